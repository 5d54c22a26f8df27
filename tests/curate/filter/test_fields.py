"""The compiled field extraction equals the polars expressions it replaces."""
from curate.filter.fastfields import CODES, field_columns
from curate.filter.fields import field_text
from curate.readers import read_inputs
from tests.helpers import convo, frame


def _check(records):
    fast = field_columns(records["messages"], list(CODES))
    slow = records.select([field_text(f).alias(f) for f in CODES])
    for f in CODES:
        assert fast[f].to_list() == slow[f].to_list(), f


def test_same_as_polars_on_edge_cases():
    records = frame(
        convo("  hi \n", "\tthere  "),
        [{"role": "system", "content": "sys"}, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
         {"role": "user", "content": ""}, {"role": "assistant", "content": " a2 \r\n"}],
        [{"role": "user", "content": "only user ✓ 漢字"}],
        [{"role": "assistant", "content": "\x0cformfeed stays\x0c"}],
        [],
    )
    _check(records)
    _check(records.slice(1, 3))  # offsets into shared buffers


def test_same_as_polars_on_demo_data(repo):
    _check(read_inputs([repo / "data" / "demo" / "raw.jsonl"]).records)


def test_same_as_polars_on_real_data(shared_datasets):
    _check(read_inputs([shared_datasets / "gpteacher" / "roleplay.json"]).records)
    _check(read_inputs([shared_datasets / "gsm8k" / "train.jsonl"]).records)

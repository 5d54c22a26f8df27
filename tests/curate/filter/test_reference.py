"""The vectorised engine and the per-record reference reject the same records for the
same rules: two independent implementations of every rule kind, checked on real text."""
from curate.filter import load_rules, run
from curate.testing.filter_reference import run_reference
from curate.readers import read_inputs


def _compare(records, rules):
    result = run(records, rules)
    engine = dict(zip(result.rejected["source"].to_list(), result.rejected["rule"].to_list()))
    reference = run_reference(records["messages"].to_list(), rules)
    mismatches = [(src, engine.get(src), ref) for src, ref in zip(records["source"].to_list(), reference)
                  if engine.get(src) != ref]
    assert not mismatches, mismatches[:5]
    return result


def test_agree_on_demo_data(repo):
    records = read_inputs([repo / "data" / "demo" / "raw.jsonl"]).records
    result = _compare(records, load_rules())
    assert result.rejected.height > 300


def test_agree_on_gsm8k_and_gpteacher(shared_datasets):
    for f in ["gsm8k/train.jsonl", "gpteacher/roleplay.json", "gpteacher/toolformer-dedupe-only.json"]:
        _compare(read_inputs([shared_datasets / f]).records, load_rules())

"""stages.get(NAME).apply: the Python entry to any registered stage, with the same options model
as the CLI and pipeline steps (docs/data.md's example)."""
from __future__ import annotations

import pydantic
import pytest

from curate import stages
from curate.readers import read_inputs


def _records(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"ok"}]}\n' * 2
                    + '{"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]}\n')
    return read_inputs([path]).records


def test_apply_validates_prepares_and_runs(tmp_path):
    records = _records(tmp_path)
    dedup = stages.get("dedup")
    assert dedup is stages.get("dedup")  # loaded once
    by_keywords = dedup.apply(records, methods=["exact"])
    by_dict = dedup.apply(records, {"method": "exact"})
    by_model = dedup.apply(records, dedup.options(methods=["exact"]))
    for result in (by_keywords, by_dict, by_model):
        assert (result.kept.height, result.rejected.height) == (2, 1)
        assert result.rejected["rule"].to_list() == ["dedup.exact"]


def test_apply_refuses_an_unknown_option(tmp_path):
    with pytest.raises(pydantic.ValidationError, match="threshhold"):
        stages.get("dedup").apply(_records(tmp_path), threshhold=0.9)


def test_keywords_on_top_of_a_model_are_validated_too(tmp_path):
    records = _records(tmp_path)
    dedup = stages.get("dedup")
    result = dedup.apply(records, dedup.options(), method="minhash")  # the alias, over the model's default
    assert result.stats["methods"][0]["method"] == "minhash"
    result = dedup.apply(records, dedup.options(methods=["minhash"]), threshold=0.5)  # the shorthand, parsed
    assert result.stats["methods"][0]["threshold"] == 0.5
    with pytest.raises(pydantic.ValidationError, match="num_perm"):
        dedup.apply(records, dedup.options(), num_perm="abc")

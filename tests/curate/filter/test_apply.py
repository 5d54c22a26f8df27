"""The filter stage as a whole: contract, first rule wins, counts."""
import polars as pl

from curate.filter import load_rules, run
from curate.filter.rules import RuleSet
from curate.readers import read_inputs
from tests.contract import assert_stage_contract
from tests.helpers import convo, frame


def test_contract_on_demo_data(repo, tmp_path):
    records = read_inputs([repo / "data" / "demo" / "raw.jsonl"]).records
    result = assert_stage_contract(lambda df: run(df, load_rules()), records, tmp_path)
    assert result.rejected.height > 0 and result.kept.height > 0
    assert set(result.rejected["stage"].unique()) == {"filter"}


def test_contract_on_empty_and_single(tmp_path):
    rules = load_rules()
    empty = read_inputs([]).records
    result = assert_stage_contract(lambda df: run(df, rules), empty, tmp_path / "e")
    assert result.kept.height == 0 and result.rejected.height == 0
    one = frame(convo("What is 2+2?", "4"))
    result = assert_stage_contract(lambda df: run(df, rules), one, tmp_path / "o")
    assert result.kept.height == 1


def test_first_rule_in_file_order_wins_and_fired_counts_all():
    rules = RuleSet.model_validate({"rules": [
        {"name": "a.short", "kind": "length", "field": "assistant", "min_words": 3},
        {"name": "b.word", "kind": "keywords", "field": "assistant", "phrases": ["bad"]},
    ]})
    result = run(frame(convo("q", "bad"), convo("q", "this is bad"), convo("q", "this is fine")), rules)
    assert result.rejected["rule"].to_list() == ["a.short", "b.word"]
    assert result.stats["rules"] == {"a.short": 1, "b.word": 1}
    assert result.stats["fired"] == {"a.short": 1, "b.word": 2}
    assert result.kept["messages"].to_list()[0][1]["content"] == "this is fine"


def test_extra_columns_pass_through():
    df = frame(convo("q", "an answer here"), convo("q", "")).with_columns(pl.Series("score", [4.5, 1.0]))
    result = run(df, load_rules())
    assert result.kept.columns == df.columns
    assert result.kept["score"].to_list() == [4.5]

"""curate dedup as a stage: contract, keep rule, methods in order, edge cases, CLI."""
import json

import polars as pl
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.dedup import DedupConfig, run
from curate.readers import read_inputs
from tests.contract import assert_stage_contract
from tests.helpers import convo, frame

LONG = ("Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide "
        "to produce glucose and oxygen. It happens mostly in the leaves, inside chloroplasts, where "
        "chlorophyll absorbs light energy and drives a chain of reactions that store it in sugar.")


@pytest.mark.parametrize("methods", [["exact"], ["minhash"], ["exact", "minhash"]])
def test_contract_on_demo_data(repo, tmp_path, methods):
    records = read_inputs([repo / "data" / "demo" / "raw.jsonl"]).records
    result = assert_stage_contract(lambda df: run(df, DedupConfig(methods=methods)), records, tmp_path)
    assert result.rejected.height > 0
    assert set(result.rejected["rule"].unique()) == {f"dedup.{m}" for m in methods}
    assert result.rejected["cluster"].null_count() == 0


def test_exact_finds_case_width_and_space_variants():
    df = frame(convo("What is photosynthesis?", LONG), convo("what is  PHOTOSYNTHESIS?", LONG.upper()),
               convo("Ｗｈａｔ is photosynthesis?", LONG), convo("What is photosynthesis!", LONG))
    result = run(df, DedupConfig(methods=["exact"]))
    assert result.kept["messages"].to_list() == [df["messages"][0].to_list(), df["messages"][3].to_list()]
    kept_id = df["id"][0]
    assert result.rejected["reason"].to_list() == [f"duplicate of test:1 (id {kept_id}, exact match)"] * 2
    punct = run(df, DedupConfig(methods=["exact"], strip_punct=True))
    assert punct.kept.height == 1


def test_minhash_finds_near_duplicate_not_boilerplate_sibling():
    edited = LONG.replace("mostly", "largely")
    other = ("Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide "
             "to produce glucose and oxygen. Cellular respiration runs the other way: cells burn that sugar "
             "with oxygen and release energy, water and carbon dioxide back into the air around them.")
    df = frame(convo("Explain photosynthesis.", LONG), convo("Explain photosynthesis.", edited),
               convo("Explain photosynthesis.", other))
    for verify in ("estimate", "exact"):
        result = run(df, DedupConfig(methods=["minhash"], threshold={"minhash": 0.7}, verify=verify))
        assert result.kept.height == 2, verify
        assert result.rejected["messages"][0].to_list()[1]["content"] == edited
        sim = float(result.rejected["reason"][0].split("jaccard ")[1].rstrip(")"))
        assert 0.7 <= sim < 1.0
        stats = result.stats["methods"][0]
        assert (stats["bands"], stats["rows"]) == (25, 5) and stats["verify"] == verify


def test_keep_highest_score_else_first():
    a, b = convo("Explain photosynthesis.", LONG), convo("explain photosynthesis.", LONG)
    df = frame(a, b)
    assert run(df, DedupConfig()).kept["id"].to_list() == [df["id"][0]]
    scored = df.with_columns(pl.Series("score", [2.0, 4.0]))
    result = run(scored, DedupConfig(methods=["exact", "minhash"]))
    assert result.kept["id"].to_list() == [df["id"][1]]
    assert result.extra["clusters"].filter(pl.col("method") == "exact")["kept_id"].to_list() == [df["id"][1]] * 2


def test_edge_cases_empty_one_and_all_identical(tmp_path):
    for methods in (["exact"], ["minhash"]):
        empty = frame()
        result = assert_stage_contract(lambda d: run(d, DedupConfig(methods=methods)), empty, tmp_path / "e")
        assert result.kept.height == 0 and result.extra["clusters"].height == 0
        one = frame(convo("hi", "hello"))
        assert run(one, DedupConfig(methods=methods)).kept.height == 1
        same = frame(*[convo("hi", LONG)] * 50)
        result = assert_stage_contract(lambda d: run(d, DedupConfig(methods=methods)), same, tmp_path / methods[0])
        assert result.kept.height == 1 and result.rejected.height == 49
        assert result.extra["clusters"]["cluster"].n_unique() == 1


def test_on_response_ignores_the_prompt():
    df = frame(convo("First question?", LONG), convo("A totally different question?", LONG))
    assert run(df, DedupConfig(on="conversation")).kept.height == 2
    assert run(df, DedupConfig(on="response")).kept.height == 1
    assert run(df, DedupConfig(on="prompt")).kept.height == 2


def test_config_errors():
    with pytest.raises(ValueError, match="both bands and rows"):
        DedupConfig(methods=["minhash"], bands=10)
    with pytest.raises(ValueError, match="exceeds num_perm"):
        DedupConfig(methods=["minhash"], bands=20, rows=10)
    with pytest.raises(ValueError, match="takes none"):
        DedupConfig(methods=["exact"], threshold={"exact": 0.5})


def test_cli_writes_clusters_and_stats(repo, tmp_path):
    out = tmp_path / "d"
    res = CliRunner().invoke(main, ["dedup", str(repo / "data/demo/raw.jsonl"), "-o", str(out),
                                    "--method", "exact,minhash", "--threshold", "0.8"])
    assert res.exit_code == 0, res.output
    stats = json.loads((out / "stats.json").read_text())
    kept, rejected = pl.read_parquet(out / "kept.parquet"), pl.read_parquet(out / "rejected.parquet")
    clusters = pl.read_parquet(out / "clusters.parquet")
    assert stats["in"] == kept.height + rejected.height == 2587
    assert stats["methods"][1]["bands"] == 18 and stats["methods"][1]["rows"] == 7
    assert set(clusters.columns) == {"id", "source", "cluster", "kept_id", "kept_source", "method", "similarity"}
    dups = rejected.filter(pl.col("stage") == "dedup")
    assert set(dups["id"].to_list()) <= set(clusters["id"].to_list())
    # a kept_id names the member kept at that step; a later method may still reject it
    exact_kept = set(clusters.filter(pl.col("method") == "exact")["kept_id"].to_list())
    later = set(rejected.filter(pl.col("rule") == "dedup.minhash")["id"].to_list())
    assert exact_kept <= set(kept["id"].to_list()) | later
    assert set(clusters.filter(pl.col("method") == "minhash")["kept_id"].to_list()) <= set(kept["id"].to_list())
    assert "minhash:" in res.output


@pytest.mark.parametrize("args,msg", [
    (["--method", "fuzzy"], "dedup option methods.0"),
    (["--method", "minhash", "--threshold", "high"], "--threshold expects a number"),
    (["--method", "minhash", "--bands", "4"], "give both bands and rows"),
    (["--method", "semantic", "--model", "/nonexistent/model"], "cannot load sentence-transformers model"),
])
def test_cli_option_errors_are_one_line(repo, tmp_path, args, msg):
    res = CliRunner().invoke(main, ["dedup", str(repo / "data/demo/raw.jsonl"), "-o", str(tmp_path / "o"), *args])
    assert res.exit_code == 2, res.output
    assert msg in res.output and "Traceback" not in res.output


def test_signature_scheme_is_part_of_a_minhash_steps_identity_only():
    from curate.dedup import STAGE

    oph, kperm = DedupConfig(methods=["exact", "minhash"]), DedupConfig(methods=["exact", "minhash"], signature="kperm")
    assert STAGE.recorded(oph)["signature"] == "oph" and STAGE.recorded(kperm)["signature"] == "kperm"
    # a step without MinHash records the options it recorded before the option existed
    assert "signature" not in STAGE.recorded(DedupConfig(methods=["exact"]))
    assert "signature" not in STAGE.recorded(DedupConfig(methods=["semantic"], signature="kperm"))

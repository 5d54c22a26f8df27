"""#21 item 17: identical conversations share an id (the content hash), so dedup names the
copy it kept by the row key, ``source``, unique within a read and a build."""
from __future__ import annotations

import json

import polars as pl

from curate.dedup import DedupConfig, run
from curate.readers import read_inputs

SAME = {"prompt": "What is the capital of France?", "completion": "Paris is the capital of France."}


def test_identical_copies_are_told_apart_by_source(tmp_path):
    path = tmp_path / "raw.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [SAME, {"prompt": "Other?", "completion": "Yes."}, SAME, SAME]))
    records = read_inputs([path], labels=["raw.jsonl"]).records
    assert records["id"][0] == records["id"][2] == records["id"][3]  # the content hash, shared
    result = run(records, DedupConfig(methods=["exact"]))
    rid = records["id"][0]
    assert result.rejected["reason"].to_list() == [f"duplicate of raw.jsonl:1 (id {rid}, exact match)"] * 2
    clusters = result.extra["clusters"]
    assert clusters["source"].to_list() == ["raw.jsonl:1", "raw.jsonl:3", "raw.jsonl:4"]
    assert clusters["kept_source"].to_list() == ["raw.jsonl:1"] * 3
    assert clusters["kept_id"].to_list() == [rid] * 3


def test_sources_are_unique_when_one_file_is_read_twice(tmp_path):
    path = tmp_path / "raw.jsonl"
    path.write_text(json.dumps(SAME) + "\n" + "{broken\n")
    read = read_inputs([path, path], labels=["raw.jsonl", "raw.jsonl"])
    both = pl.concat([read.records["source"], read.rejected["source"]]).to_list()
    assert both == ["raw.jsonl:1", "raw.jsonl:1 #2", "raw.jsonl:2", "raw.jsonl:2 #2"]
    kept = run(read.records, DedupConfig(methods=["exact"]))
    assert kept.rejected["reason"].to_list() == [f"duplicate of raw.jsonl:1 (id {read.records['id'][0]}, exact match)"]


def test_a_pipeline_with_one_file_as_two_inputs_keeps_sources_unique(tmp_path, monkeypatch):
    import yaml

    from curate.pipeline import build

    monkeypatch.chdir(tmp_path)
    (tmp_path / "raw.jsonl").write_text(json.dumps(SAME) + "\n")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "p", "inputs": [{"path": "raw.jsonl"}, {"path": "raw.jsonl"}],
                                                      "steps": [{"dedup": {"method": "exact"}}], "output": "out"}))
    build("p.yaml", echo=lambda _: None)
    rejected = pl.read_parquet("out/01-dedup/rejected.parquet")
    assert rejected["source"].to_list() == ["raw.jsonl:1 #2"]
    assert rejected["reason"][0].startswith("duplicate of raw.jsonl:1 (")
    clusters = pl.read_parquet("out/01-dedup/clusters.parquet")
    assert clusters["kept_source"].to_list() == ["raw.jsonl:1"] * 2

"""Verdicts: identical, the same decisions within tolerance, or other decisions (named)."""
from __future__ import annotations

import copy

from curate.pipeline.compare import compare


def _lock(sim=0.930001, kept=9, decisions="d1", output="o1", versions=None):
    step = {"step": "01-dedup", "kind": "dedup", "files": {}, "options": {"methods": ["semantic"]},
            "config_hash": "c", "input_hash": "i", "output_hash": output, "decisions_hash": decisions,
            "values": {"clusters.parquet": {"similarity": {"n": 2, "nulls": 0, "values": [1.0, sim]}}},
            "in": 10, "kept": kept, "rejected": 10 - kept, "rules": {"dedup.semantic": 10 - kept}}
    return {"lock_format": 2, "pipeline": "p", "inputs": [{"path": "a.jsonl", "sha256": "s", "records": 10}],
            "steps": [step], "versions": versions or {"transformers": "5.23.0"}}


def test_identical_and_version_hints_are_not_failures():
    v = compare(_lock(), _lock(versions={"transformers": "5.24.0"}))
    assert v.kind == "identical" and v.ok
    assert v.hints == ["versions differ (a hint, not a failure): transformers 5.23.0 -> 5.24.0"]


def test_floats_moved_within_tolerance_is_the_same_decisions():
    v = compare(_lock(), _lock(sim=0.930002, output="o2"))
    assert v.kind == "tolerant" and v.ok
    assert "the same decisions" in v.lines[0] and "01-dedup clusters.parquet" in v.lines[0]
    far = compare(_lock(), _lock(sim=0.94, output="o2"))
    assert far.kind == "different" and "clusters.parquet: float values moved by more than 1e-05" in "\n".join(far.lines)


def test_a_changed_decision_names_the_step_counts_and_the_pair_at_the_threshold():
    old = _lock()
    new = _lock(kept=8, decisions="d2", output="o2")
    new["steps"][0]["near_threshold"] = [["r1", "r7", "cosine", 0.920001, 0.92]]
    v = compare(old, new)
    assert v.kind == "different" and not v.ok
    text = "\n".join(v.lines)
    assert v.lines[0] == "first step that differs: 01-dedup"
    assert "kept 9 -> 8" in text and "rejected by dedup.semantic: 1 -> 2" in text
    assert "pair r1 ~ r7: cosine 0.920001 lies within float noise of the threshold 0.92" in text


def test_a_lock_of_the_old_format_asks_for_a_rewrite():
    old = copy.deepcopy(_lock())
    del old["lock_format"]
    v = compare(old, _lock())
    assert v.kind == "different" and "`curate run` rewrites it" in v.lines[0]


def test_records_that_changed_side_are_named_from_the_old_build(tmp_path):
    import polars as pl

    for name, kept, rejected in (("old", ["a", "b", "c"], ["d"]), ("new", ["a", "c"], ["b", "d"])):
        step = tmp_path / name / "01-dedup"
        step.mkdir(parents=True)
        pl.DataFrame({"id": kept}).write_parquet(step / "kept.parquet")
        pl.DataFrame({"id": rejected, "rule": ["dedup.semantic"] * len(rejected),
                      "reason": [f"duplicate of a (cosine 0.92{i})" for i in range(len(rejected))]}
                     ).write_parquet(step / "rejected.parquet")
    v = compare(_lock(), _lock(kept=8, decisions="d2", output="o2"), old_build=tmp_path / "old",
                new_build=tmp_path / "new")
    assert "  now rejected: b by dedup.semantic: duplicate of a (cosine 0.920)" in v.lines

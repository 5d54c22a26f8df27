"""The stage contract, checked the same way for every stage.

    assert_stage_contract(lambda df: stage.run(df, config), records, tmp_path)
"""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import polars as pl

from curate.stage import StageResult, write_stage


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_stage_contract(run, records: pl.DataFrame, tmp_path: Path) -> StageResult:
    # A row tracer makes "exactly once" and "in order" checkable even with repeated ids,
    # and checks that the stage carries input columns through.
    traced = records.with_row_index("__row")
    result = run(traced)
    rows = result.kept["__row"].to_list() + result.rejected["__row"].to_list()
    assert sorted(rows) == list(range(records.height)), "a row was lost or duplicated"
    assert result.kept["__row"].to_list() == sorted(result.kept["__row"].to_list()), "kept rows out of input order"
    assert Counter(records["id"].to_list()) == Counter(result.kept["id"].to_list() + result.rejected["id"].to_list())
    # Rejections say who and why.
    for col in ("stage", "rule", "reason"):
        assert col in result.rejected.columns
        assert result.rejected[col].null_count() == 0
    assert result.stats["in"] == records.height
    assert result.stats["kept"] == result.kept.height
    assert result.stats["rejected"] == result.rejected.height
    # Deterministic: two runs write byte-identical Parquet.
    write_stage(run(records), tmp_path / "a")
    write_stage(run(records), tmp_path / "b")
    for name in ("kept.parquet", "rejected.parquet"):
        assert _digest(tmp_path / "a" / name) == _digest(tmp_path / "b" / name), name
    return result

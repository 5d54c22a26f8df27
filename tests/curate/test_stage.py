"""curate.stage: what every stage writes."""
from __future__ import annotations

import hashlib

import polars as pl

from curate.stage import write_parquet


def test_parquet_bytes_do_not_depend_on_how_the_table_was_assembled(tmp_path):
    """A table put together from filtered blocks (as the Ray engine does) must write the
    bytes the same table written whole does: polars' pages follow chunk boundaries."""
    n = 100_000
    table = pl.DataFrame({"i": pl.int_range(n, eager=True)}).select(
        pl.format("{}", pl.col("i")).alias("id"),
        pl.concat_list([pl.struct(role=pl.lit("user"), content=pl.format("question {} about {}", "i", pl.col("i") * 7919 % 1000)),
                        pl.struct(role=pl.lit("assistant"), content=pl.format("answer {} {}", pl.col("i") * 31, pl.col("i") % 97))]).alias("messages"),
        (pl.col("i") % 17 != 3).alias("keep"))
    whole = table.filter("keep").drop("keep")
    blocks = pl.concat([pl.from_arrow(table.slice(s, 12_500).to_arrow()).filter("keep").drop("keep")
                        for s in range(0, n, 12_500)], how="vertical")
    assert blocks.n_chunks() == 8 and blocks.equals(whole)
    write_parquet(whole, tmp_path / "whole.parquet")
    write_parquet(blocks, tmp_path / "blocks.parquet")
    digest = [hashlib.sha256((tmp_path / f).read_bytes()).hexdigest() for f in ("whole.parquet", "blocks.parquet")]
    assert digest[0] == digest[1]


def test_stats_json_is_standard_json(tmp_path):
    import json

    from curate.stage import StageResult, write_stage

    empty = pl.DataFrame({"id": pl.Series([], dtype=pl.String)})
    stats = {"p50": float("nan"), "max": float("inf"), "nested": {"x": [float("-inf"), 1.5]}, "n": 3}
    write_stage(StageResult(empty, empty, stats), tmp_path)
    text = (tmp_path / "stats.json").read_text()
    got = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not JSON")))
    assert got == {"p50": None, "max": None, "nested": {"x": [None, 1.5]}, "n": 3}

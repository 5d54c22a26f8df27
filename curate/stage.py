"""The stage contract: ``run(records, config) -> StageResult(kept, rejected, stats)``.

Every stage keeps input order, puts each input row in exactly one of kept/rejected, and
writes byte-identical Parquet for the same input and config. Timings go only to
``stats.json``, never into hashed output.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from .compression import DEFAULT, polars_options
from .record import REJECT_COLUMNS, to_json
from .storage import output_folder

# Row groups of 512^2 rows, polars' documented default, given explicitly: left unset, polars'
# streaming writer cuts far smaller groups (185,000 rows in two), and each group costs ~0.05
# CPU-s more to write (docs/speed.md)
_LAYOUT = dict(statistics=True, row_group_size=512 ** 2)
# the default codec, zstd level 1: a quarter less CPU than level 3 for 2% larger files (locks
# hash the rows, not the bytes, curate.pipeline.content); --compression picks another
PARQUET_OPTS = {**polars_options(DEFAULT), **_LAYOUT}


def parquet_options(compression: str | None = None) -> dict:
    """polars' write_parquet options for ``compression`` (curate.compression; None: the default)."""
    return PARQUET_OPTS if compression is None else {**polars_options(compression), **_LAYOUT}


@dataclass
class StageResult:
    kept: pl.DataFrame
    rejected: pl.DataFrame
    stats: dict = field(default_factory=dict)
    extra: dict[str, pl.DataFrame] = field(default_factory=dict)  # more tables: OUT/<name>.parquet
    files: dict[str, str] = field(default_factory=dict)  # text files: OUT/<name>


def split(df: pl.DataFrame, stage: str, rule: pl.Series, reason: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``df`` on ``rule`` (null = keep). Both sides keep input order."""
    tagged = df.with_columns(
        pl.lit(stage, pl.String).alias("stage"), rule.alias("rule"), reason.alias("reason")
    )
    kept = tagged.filter(pl.col("rule").is_null()).drop(list(REJECT_COLUMNS))
    rejected = tagged.filter(pl.col("rule").is_not_null())
    return kept, rejected


def merge_rejected(*frames: pl.DataFrame) -> pl.DataFrame:
    frames = [f for f in frames if f is not None]
    return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]


def count_rules(rejected: pl.DataFrame) -> dict[str, int]:
    if rejected.height == 0:
        return {}
    counts = rejected.group_by("rule").len().sort("rule")
    return dict(zip(counts["rule"].to_list(), counts["len"].to_list()))


def base_stats(stage: str, kept: pl.DataFrame, rejected: pl.DataFrame, rules: dict | None = None) -> dict:
    """The stats every stage starts with: its name, rows in, kept, rejected and the rejections
    per rule (``rules``: the stage's own count, e.g. with its rules that rejected nothing)."""
    return {"stage": stage, "in": kept.height + rejected.height, "kept": kept.height, "rejected": rejected.height,
            "rules": count_rules(rejected) if rules is None else rules}


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def write_parquet(df: pl.DataFrame, path: Path, compression: str | None = None) -> None:
    # one chunk: polars' pages follow chunk boundaries, so a table assembled from blocks
    # (the Ray engine, concatenated parts) would otherwise write other bytes for equal data
    try:
        df.rechunk().write_parquet(path, **parquet_options(compression))
    except pl.exceptions.ComputeError as e:
        # polars reports a failed write (a full disk) as a ComputeError "... (os error 28)":
        # give callers the OSError it is, with the file, like every other write
        found = _OS_ERROR.search(str(e))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from None


def write_stage(result: StageResult, out: Path, compression: str | None = None) -> None:
    write_tables(result, out, compression)
    write_stats(out, result.stats)


def write_tables(result: StageResult, out: Path, compression: str | None = None) -> None:
    """Everything a stage writes but its stats.json; every table with ``compression``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(result.kept, out / "kept.parquet", compression)
    write_parquet(result.rejected, out / "rejected.parquet", compression)
    for name, table in result.extra.items():
        write_parquet(table, out / f"{name}.parquet", compression)
    for name, text in result.files.items():
        (out / name).write_text(text, encoding="utf-8")


def write_stats(out: Path, stats: dict) -> None:
    # standard JSON: a NaN (an empty percentile, a failed score) is written as null
    (Path(out) / "stats.json").write_text(to_json(stats, indent=2, default=None) + "\n")


def run_on(read, out: Path, run, t0: float | None = None, compression: str | None = None) -> dict:
    """Run one stage on records already read; the reader's rejections join the stage's own.
    ``compression``: the codec of every table written (curate.compression; None: the default)."""
    t0 = time.perf_counter() if t0 is None else t0
    t_read = time.perf_counter()  # reading (a caller's t0 is taken before it) ends here
    result = run(read.records)
    t_stage = time.perf_counter()
    rejected = merge_rejected(read.rejected, result.rejected)
    stats = dict(result.stats)
    read_counts = count_rules(read.rejected)
    stats["in"] = read.records.height + read.rejected.height
    stats["rejected"] = rejected.height
    stats["rules"] = {**read_counts, **stats["rules"]}
    if read.notices:  # what the reader skipped that is not a record (a symlink loop, ...)
        stats["notices"] = list(read.notices)
    if "fired" in stats:
        stats["fired"] = {**read_counts, **stats["fired"]}
    # seconds: reading and the stage; apart, so a slow reader is not taken for a slow stage
    stats["read_seconds"] = round(t_read - t0, 4)
    stats["stage_seconds"] = round(t_stage - t_read, 4)
    stats["seconds"] = round(time.perf_counter() - t0, 4)
    with output_folder(out) as local:  # a URL is written here, then uploaded
        t_write = time.perf_counter()
        write_tables(StageResult(result.kept, rejected, stats, result.extra, result.files), local, compression)
        stats["write_seconds"] = round(time.perf_counter() - t_write, 4)  # the tables and text files
        write_stats(local, stats)
    return stats

"""A stage kind added the way a new one is: this one module, then ``stages.register(STAGE)``.

``parity`` rejects records whose first user turn has an odd (or, with ``reject: even``, an
even) number of characters. tests/curate/test_stage_registry.py runs it through the CLI, a
pipeline and both engines."""
from __future__ import annotations

import time
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from curate.stage import StageResult, base_stats, split
from curate.stages import Stage


class ParityConfig(BaseModel):
    """`curate parity`'s options (a pipeline's ``parity:`` step)."""
    model_config = ConfigDict(extra="forbid")
    reject: Literal["odd", "even"] = Field("odd", description="Reject records whose first user turn has an odd "
                                           "(or even) number of characters.")
    min_chars: int = Field(0, ge=0, description="Keep every record whose first user turn is shorter than this.")


def first_user_length(messages: list[dict]) -> int:
    return next((len(m["content"] or "") for m in messages if m["role"] == "user"), 0)


class ParityStage(Stage):
    """Reject records by the parity of their first user turn's length; writes OUT/kept.parquet,
    rejected.parquet, stats.json."""
    name = "parity"
    options = ParityConfig

    def run(self, records: pl.DataFrame, config: ParityConfig) -> StageResult:
        t0 = time.perf_counter()
        want = 1 if config.reject == "odd" else 0
        lengths = [first_user_length(m) for m in records["messages"].to_list()]
        bad = [n >= config.min_chars and n % 2 == want for n in lengths]
        rule = pl.Series([f"parity.{config.reject}" if b else None for b in bad], dtype=pl.String)
        reason = pl.Series([f"first user turn has {n} characters" if b else None for n, b in zip(lengths, bad)],
                           dtype=pl.String)
        kept, rejected = split(records, self.name, rule, reason)
        stats = base_stats(self.name, kept, rejected)
        stats["seconds"] = round(time.perf_counter() - t0, 4)
        return StageResult(kept, rejected, stats)


STAGE = ParityStage()

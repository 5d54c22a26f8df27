"""Where a stage runs: ``local`` (this process, the default) or ``ray`` (Ray Data on a local
or existing cluster). Both engines call the same stage functions; Ray runs them over blocks
of records in parallel and writes byte-identical outputs."""
from __future__ import annotations

from typing import Callable

import polars as pl

from .. import stages
from ..stage import StageResult

ENGINES = ("local", "ray")


def check_engine(engine: str | None) -> str:
    from ..config import ConfigError

    engine = engine or "local"
    if engine not in ENGINES:
        raise ConfigError(f"engine '{engine}' is not one of {', '.join(ENGINES)}")
    return engine


def local_run(kind: str, config) -> Callable[[pl.DataFrame], StageResult]:
    """The registered stage ``kind``'s run with its config bound."""
    stage = stages.get(kind)
    return lambda records: stage.run(records, config)


def stage_runner(kind: str, config, engine: str | None = "local") -> Callable[[pl.DataFrame], StageResult]:
    """``records -> StageResult`` for one stage on one engine."""
    if check_engine(engine) == "local":
        return local_run(kind, config)
    from .ray_engine import ray_run  # ray is an optional extra: imported only when asked for

    return ray_run(kind, config)

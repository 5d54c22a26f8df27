"""The stage registry: every stage kind (filter, dedup, score, format, and any added later)
is one :class:`Stage` registered here by name. The CLI, the pipeline file, the build cache,
both engines and the report read this registry; none of them names a kind.

Adding a stage is one module holding a ``Stage`` subclass and one :func:`register` call
(``docs/stages.md``). The built-in stages are registered by module path so that importing
this module (as ``curate --help`` does) loads neither pydantic nor polars.
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any, ClassVar

# name -> the module whose STAGE attribute is the stage (built-ins), or the Stage itself
_REGISTRY: dict[str, Any] = {
    "filter": "curate.filter",
    "dedup": "curate.dedup",
    "score": "curate.score",
    "format": "curate.format",
}
_ORDER = list(_REGISTRY)  # report order: the order stages were registered in


class Stage:
    """One stage kind. Subclasses set ``name`` and ``options`` and implement :meth:`run`;
    the rest has defaults that fit a stage which decides each record on its own.

    - ``options``: the one pydantic model (``extra="forbid"``, each field with its
      ``Field(description=...)``) from which the command's flags, the pipeline step's keys
      and the docs are derived; a field's ``json_schema_extra={"cli": {...}}`` adjusts its
      flag (see :mod:`curate.cliopts`).
    - :meth:`prepare`: the options -> what :meth:`run` takes (a loaded rule set, a jury).
    - :meth:`files`: the config files the output depends on, hashed by a pipeline's build
      cache (a file left out here leaves the cache stale, so each config names its own).
    - :meth:`recorded`: the options a pipeline lock records (and hashes).
    - ``blockwise``: the Ray engine may run it on blocks of records (:meth:`run_block`) and
      put the blocks back together (:meth:`merge`); a stage that needs every record at once
      (dedup) sets it False and gets :meth:`run_distributed` with the engine's backend.
    """

    name: ClassVar[str]
    options: ClassVar[type]
    blockwise: ClassVar[bool] = True
    stateful: ClassVar[bool] = False  # Ray: blocks run in actors that keep what the stage loads
    block_files: ClassVar[tuple[str, ...]] = ()  # Ray: the text files of each block its merge reads

    def prepare(self, options, **settings) -> Any:
        """``settings``: what a build or verify asks of every stage (``embed_cache``, ``embed_store``);
        a stage uses those it knows."""
        return options

    def files(self, options, config) -> list[Path]:
        return []

    def recorded(self, options) -> dict:
        return options.model_dump()

    def run(self, records, config):
        raise NotImplementedError

    def apply(self, records, options=None, **fields):
        """Run the stage from Python with its options as the command line and a pipeline step
        take them (a model, a dict, or keywords): validated, prepared, run. Returns the
        :class:`curate.stage.StageResult`."""
        if options is None or isinstance(options, dict):
            options = self.options.model_validate({**(options or {}), **fields})
        elif fields:  # validated again with the keywords on top (model_copy would not validate them)
            options = self.options.model_validate({**options.model_dump(exclude_unset=True), **fields})
        return self.run(records, self.prepare(options))

    # ---- the Ray engine ----
    def context(self, records, config) -> dict:
        """What every block needs from the whole input, computed once on the driver."""
        return {}

    def run_block(self, records, config, context: dict, state: dict, offset: int):
        return self.run(records, config)

    def merge(self, blocks, records, config):
        """One result from the blocks (``curate.engine.ray_engine.Blocks``: kept and rejected rows
        in input order, each block's stats and files): by default the shared stats of the rows."""
        from .stage import StageResult, base_stats

        stats = base_stats(self.name, blocks.kept, blocks.rejected)
        stats["seconds"] = round(time.perf_counter() - blocks.t0, 4)
        return StageResult(blocks.kept, blocks.rejected, stats)

    def gpus(self, config) -> int:
        return 0

    def run_distributed(self, records, config, backend):
        raise NotImplementedError(f"stage {self.name} is blockwise")


def register(stage: Stage | str, name: str | None = None) -> None:
    """Register a stage (an instance, or the module path holding one as ``STAGE``)."""
    key = name or stage.name
    if key not in _ORDER:
        _ORDER.append(key)
    _REGISTRY[key] = stage


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)
    if name in _ORDER:
        _ORDER.remove(name)


def names() -> list[str]:
    return list(_ORDER)


def get(name: str) -> Stage:
    entry = _REGISTRY.get(name)
    if entry is None:
        from .config import ConfigError

        raise ConfigError(f"stage '{name}' is not one of {', '.join(_ORDER)}")
    if isinstance(entry, str):
        entry = _REGISTRY[name] = importlib.import_module(entry).STAGE
    return entry


def order(name: str) -> int:
    """A stage's place in the report's order (unknown kinds last)."""
    return _ORDER.index(name) if name in _ORDER else len(_ORDER)

"""Turn a pipeline step into something runnable and hashable: its validated stage config,
the config files it declares (hashed by their bytes), and a function that runs it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import stages
from ..compression import DEFAULT, parse
from ..engine import stage_runner
from ..stage import run_on
from .hashing import display_path, sha256_file, sha256_json
from .spec import InputSpec, Step


@dataclass
class Prepared:
    name: str                 # 03-dedup
    kind: str
    options: dict             # as validated, minus what cannot change the output (cache locations)
    files: dict[str, str]     # config files read -> sha256
    run: Callable             # (ReadResult, out folder) -> stats
    compression: str = DEFAULT  # the codec it writes with: in the step's cache key, not its config hash

    @property
    def config_hash(self) -> str:
        return sha256_json({"kind": self.kind, "options": self.options, "files": sorted(self.files.items())})


def prepare(step: Step, name: str, embed_cache: str | None = None, engine: str = "local",
            embed_store: str | None = None, compression: str = DEFAULT) -> Prepared:
    """Validate a step and load every file it reads, before anything runs. ``embed_cache``
    replaces the default embedding cache; ``embed_store`` (``readonly`` or ``none``) says how
    a semantic step uses the store it names (`curate verify`); ``compression`` is the codec
    of its Parquet files (curate.compression). The step's hash covers the
    options its stage records and the bytes of the files its config declares (Stage.files)."""
    stage = stages.get(step.kind)
    config = stage.prepare(step.options, embed_cache=embed_cache, embed_store=embed_store)
    files = {display_path(p): sha256_file(p) for p in stage.files(step.options, config)}
    options = stage.recorded(step.options)
    runner = stage_runner(step.kind, config, engine)
    compression = parse(compression)
    run = lambda read, out: run_on(read, out, runner, compression=compression)  # noqa: E731
    return Prepared(name, step.kind, options, dict(sorted(files.items())), run, compression)


def read_entries(inputs: list[InputSpec], sources: list[Path] | None = None):
    """Read every input with its own format and field mapping (from ``sources``, local
    copies of URL inputs, where given); returns the combined read and the number of rows
    (records plus unreadable ones) each input gave."""
    import polars as pl

    from ..readers import ReadResult, read_inputs
    from ..record import unique_sources
    from ..stage import merge_rejected

    sources = sources or [spec.path for spec in inputs]
    parts = [read_inputs([src], spec.format, spec.map or None, labels=[spec.path]) for spec, src in zip(inputs, sources)]
    counts = [r.records.height + r.rejected.height for r in parts]
    if len(parts) == 1:
        return parts[0], counts
    records = pl.concat([r.records for r in parts], how="vertical_relaxed")
    # two inputs may be one file (or one label): sources stay unique across them all
    records, rejected = unique_sources(records, merge_rejected(*[r.rejected for r in parts]))
    return ReadResult(records, rejected), counts

"""Turn a pipeline step into something runnable and hashable: its validated stage config,
the config files it reads (hashed by their bytes), and a function that runs it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import ConfigError, tracked_reads
from ..engine import stage_runner
from ..shipped import resolve
from ..stage import run_on
from .hashing import display_path, sha256_file, sha256_json, tree_files
from .spec import InputSpec, Step

# Files of a tokenizer folder that shape what `format` writes (weights do not).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model")


@dataclass
class Prepared:
    name: str                 # 03-dedup
    kind: str
    options: dict             # as validated, minus what cannot change the output (cache locations)
    files: dict[str, str]     # config files read -> sha256
    run: Callable             # (ReadResult, out folder) -> stats

    @property
    def config_hash(self) -> str:
        return sha256_json({"kind": self.kind, "options": self.options, "files": sorted(self.files.items())})


def prepare(step: Step, name: str, embed_cache: str | None = None, engine: str = "local",
            embed_store: str | None = None) -> Prepared:
    """Validate a step and load every file it reads, before anything runs. ``embed_cache``
    replaces the default embedding cache; ``embed_store`` (``readonly`` or ``none``) says how
    a semantic step uses the store it names (`curate verify`)."""
    with tracked_reads() as reads:
        options, config, extra = _BUILDERS[step.kind](step.options, embed_cache, embed_store)
    runner = stage_runner(step.kind, config, engine)
    run = lambda read, out: run_on(read, out, runner)  # noqa: E731
    files = {display_path(p): sha256_file(p) for p in [*reads, *extra]}
    return Prepared(name, step.kind, options, dict(sorted(files.items())), run)


def _filter(opts, _embed_cache, _embed_store):
    from ..filter import load_rule_sets

    return opts.model_dump(), load_rule_sets(opts.rule_files()), []


def _dedup(opts, embed_cache, embed_store):
    cfg = opts.config()
    if embed_cache is not None:
        cfg = cfg.model_copy(update={"cache_dir": embed_cache})
    if embed_store == "readonly":
        cfg = cfg.model_copy(update={"embeddings_readonly": True})
    elif embed_store == "none":
        cfg = cfg.model_copy(update={"embeddings": None})
    extra = []
    if "semantic" in cfg.methods and cfg.model and Path(cfg.model).is_dir():
        extra = tree_files(Path(cfg.model))  # a user's own embedding model: its bytes are its identity
    # where vectors are kept is not what they are: recorded model outputs, not options
    options = cfg.model_dump(exclude={"cache_dir", "embeddings", "embeddings_readonly"}
                             | ({"encoder"} if cfg.encoder == "torch" else set()))  # the default: as before it existed
    return options, cfg, extra


def _score(opts, _embed_cache, _embed_store):
    from .. import score

    cfg = score.ScoreConfig(**opts.model_dump())
    jury = cfg.load()  # reads (and so hashes) the jury file and its rubric
    cfg = cfg.model_copy(update={"jury": jury})
    options = opts.model_dump(exclude={"cache"})
    return options, cfg, []


def _format(cfg, _embed_cache, _embed_store):
    from ..format.template import SHIPPED, TEMPLATES, family_template
    from ..models import SHIPPED as SHIPPED_MODELS

    extra = []
    if cfg.template in SHIPPED:
        extra.append(TEMPLATES / f"{cfg.template}.jinja")
    elif cfg.template is not None:  # a file, or a family name from TRL's set (format.template.choose)
        path = resolve(cfg.template)
        if not path.is_file():
            path = family_template(cfg.template) or path
        if not path.is_file():
            raise ConfigError(f"template {cfg.template}: not a file, nor one of {', '.join(SHIPPED)}, "
                              "nor a chat template TRL ships (see docs/templates.md)")
        extra.append(path)
    if cfg.tokenizer in SHIPPED_MODELS:
        pass  # pinned by its package's version
    elif cfg.tokenizer.endswith(".gguf"):  # a GGUF file: its bytes are its identity
        gguf = Path(cfg.tokenizer).expanduser()
        if not gguf.is_file():
            raise ConfigError(f"tokenizer {cfg.tokenizer}: no such .gguf file")
        extra.append(gguf)
    else:
        folder = Path(cfg.tokenizer)
        if not folder.is_dir():
            raise ConfigError(f"tokenizer {cfg.tokenizer}: not a folder, nor a .gguf file, nor one of "
                              f"{', '.join(SHIPPED_MODELS)}")
        extra += [folder / f for f in TOKENIZER_FILES if (folder / f).is_file()]
    # system: only when set, so that the locks written before the option existed stay as they are
    return cfg.model_dump(exclude={"system"} if cfg.system == "default" else set()), cfg, extra


_BUILDERS = {"filter": _filter, "dedup": _dedup, "score": _score, "format": _format}


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

"""The Python API behind the CLI: each function is one command, usable on its own."""
from __future__ import annotations

import time
from pathlib import Path

from . import stages
from .config import ConfigError, read_yaml
from .engine import stage_runner
from .readers import read_inputs
from .stage import count_rules, run_on


def stage_options(kind: str, options):
    """The registered stage ``kind``'s options model from ``options`` (the model or its fields)."""
    return _options(stages.get(kind).options, options, kind)


def stage_inputs(kind: str, inputs, out: Path, options=None, fmt=None, mapping=None, engine: str = "local",
                 compression: str | None = None) -> dict:
    """Read ``inputs``, run the registered stage ``kind`` with ``options`` (its options model or
    its fields; the config files it names are loaded first), write ``out`` (every Parquet file
    with ``compression``: ``zstd``, ``zstd:N``, ``lz4``, ``snappy``, ``none``...; None: zstd level 1)."""
    stage = stages.get(kind)
    compression = _compression(compression)
    config = stage.prepare(stage_options(kind, options or {}))  # a bad config file fails before any input is read
    return _run_stage(inputs, out, stage_runner(kind, config, engine), fmt, mapping, compression)


def filter_inputs(inputs, out: Path, rule_files=None, fmt=None, mapping=None, engine: str = "local",
                  compression: str | None = None) -> dict:
    """Read ``inputs``, apply the rule sets (default ``rules/default.yaml``), write ``out``."""
    rules = [str(p) for p in rule_files] if rule_files else None
    return stage_inputs("filter", inputs, out, {"rules": rules}, fmt, mapping, engine, compression)


def dedup_inputs(inputs, out: Path, config, fmt=None, mapping=None, engine: str = "local",
                 compression: str | None = None) -> dict:
    """Read ``inputs``, deduplicate with ``config`` (a DedupConfig or its fields), write ``out``."""
    return stage_inputs("dedup", inputs, out, config, fmt, mapping, engine, compression)


def _compression(value: str | None) -> str | None:
    """A Parquet codec (curate.compression) checked, or a one-line ConfigError."""
    from .compression import parse

    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as e:
        raise ConfigError(f"compression {e}") from None


def _options(model, config, command: str):
    """A command's options as its pydantic config; a bad one is one line naming it."""
    from pydantic import ValidationError

    if isinstance(config, model):
        return config
    try:
        return model(**config)
    except ValidationError as e:
        from .config import choice_message

        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        # a typo in a value (--method minhsh) gets the nearest valid one, as a typo in an option name does
        msg = choice_message(err) if err["type"] == "literal_error" else err["msg"].removeprefix("Value error, ")
        # a check across options (bands with rows ...) has no field to name
        raise ConfigError(f"{command} option {where}: {msg}" if where else f"{command} options: {msg}") from None


def _run_stage(inputs, out: Path, run, fmt=None, mapping=None, compression: str | None = None) -> dict:
    """Read, run one stage, fold the read rejections in, write the stage folder."""
    from .storage import filesystem, foreign_outputs, is_url, overlap

    t0 = time.perf_counter()
    if is_url(out):
        filesystem(str(out))  # an unknown protocol or missing fsspec fails before any work
    problem = overlap(out, inputs) or foreign_outputs(out)
    if problem:
        raise ConfigError(f"-o {out}: {problem}")
    return run_on(read_inputs(inputs, fmt, mapping), out, run, t0, compression)


def format_inputs(inputs, out: Path, config, fmt=None, mapping=None, engine: str = "local",
                  compression: str | None = None) -> dict:
    """Read ``inputs``, render and measure them with a chat template, write ``out``
    (``config``: a FormatConfig or its fields)."""
    return stage_inputs("format", inputs, out, config, fmt, mapping, engine, compression)


def score_inputs(inputs, out: Path, config, fmt=None, mapping=None, engine: str = "local",
                 compression: str | None = None) -> dict:
    """Read ``inputs``, score them with a jury (``config``: a ScoreConfig or its fields), write ``out``."""
    return stage_inputs("score", inputs, out, config, fmt, mapping, engine, compression)


def score_plan(inputs, config, fmt=None, mapping=None) -> dict:
    """What ``score_inputs`` would send to each judge, and what is already cached."""
    from . import score

    cfg = _options(score.ScoreConfig, config, "score")
    cfg.load()
    return score.plan(read_inputs(inputs, fmt, mapping).records, cfg)


def calibrate(labels, jury, label_field: str = "human_score", cache: str | None = None) -> dict:
    """Compare each judge and the jury with human scores in ``labels`` (records with ``label_field``)."""
    from . import score

    cfg = _options(score.ScoreConfig, {"jury": jury, "cache": cache}, "score")
    j = cfg.load()
    return score.calibrate(read_inputs([labels]).records, j, label_field)


def validate_file(path: Path) -> str:
    """Validate one config file by its shape; return a short description."""
    from .filter.rules import RuleSet
    from .config import load_config

    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    if isinstance(data, dict) and "rules" in data:
        rs = load_config(path, RuleSet)
        return f"rule set, {len(rs.rules)} rules"
    if isinstance(data, dict) and "steps" in data:
        from .pipeline.build import check

        pipe = check(path)
        return f"pipeline {pipe.name}, {len(pipe.steps)} steps ({', '.join(s.kind for s in pipe.steps)}) -> {pipe.output}"
    if isinstance(data, dict) and "judges" in data:
        from .score.jury import Jury

        jury = load_config(path, Jury)
        return f"jury, {len(jury.judges)} judges ({', '.join(j.name for j in jury.judges)}), rubric {jury.rubric}"
    if isinstance(data, dict) and {"model", "data", "output_dir"} & set(data) and "judges" not in data:
        from train.config import COMMAND_LINE, load

        # a shipped config is a template: what the command line gives (--data, -o) may be missing
        missing = {k: f"<{k}>" for k in COMMAND_LINE if data.get(k) in (None, "")}
        cfg = load(path, values=missing)
        given = f" (a template: {', '.join(COMMAND_LINE[k].split(' (')[0] for k in missing)} on the command line)" if missing else ""
        return f"training config, {cfg.method} on {cfg.model}{given}"
    if isinstance(data, dict) and "compute_environment" in data:
        from train.launch import check

        return check(path)
    keys = ", ".join(sorted(map(str, data))) if isinstance(data, dict) else type(data).__name__
    raise ConfigError(f"{path}: not a known config kind (top-level keys: {keys}); a rule set has 'rules', a jury 'judges', a pipeline 'steps'")


def export(inputs, dest: Path, fmt: str) -> dict:
    """Write the readable records of ``inputs`` to ``dest``; returns ``written``, the
    unreadable records left out counted by rule (``skipped``) and the reader's ``notices``."""
    from .layouts.write import write_export
    from .storage import output_file

    read = read_inputs(inputs)
    with output_file(dest) as local:
        written = write_export(read.records, local, fmt)
    return {"written": written, "skipped": count_rules(read.rejected), "notices": read.notices}

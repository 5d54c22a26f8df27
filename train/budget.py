"""Budgets `train sft` settles before it loads anything: the token budget (max_length) from the
build's own, and how many eval records the run's evaluations use."""
from __future__ import annotations

import json
import math
from pathlib import Path

from curate.config import ConfigError

from .config import DEFAULT_MAX_LENGTH, SFTConfig, default_eval_records


def format_stats(train: Path) -> tuple[dict, Path]:
    """The `curate format` stats.json beside the training file ({} when there is none)."""
    path = Path(train).parent / "stats.json"
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, path
    return (stats if isinstance(stats, dict) and stats.get("stage") == "format" else {}), path


def _longer_than(folder: Path, limit: int) -> int | None:
    """Records of the build's train and eval splits longer than ``limit`` tokens (None: not known)."""
    import polars as pl

    total = 0
    for name in ("train.parquet", "eval.parquet"):
        p = folder / name
        if not p.is_file():
            return None
        try:
            total += pl.scan_parquet(p).filter(pl.col("n_tokens") > limit).select(pl.len()).collect().item()
        except Exception:  # noqa: BLE001 (an older or foreign file: the count is only a detail)
            return None
    return total


def _same(a, b) -> bool:
    if not a or not b:
        return False
    return a == b or Path(a).resolve() == Path(b).resolve()


def token_budget(cfg: SFTConfig, files: dict, echo) -> SFTConfig:
    """``cfg`` with max_length settled: the config's; unset, the budget the data's `curate format`
    step recorded, else the larger of DEFAULT_MAX_LENGTH and the build's longest record. A
    max_length below the build's longest record stops here, before any tokenizer or model
    loads, when the build counted with the same tokenizer and template (a note otherwise)."""
    stats, where = format_stats(files["train"])
    budget = stats.get("max_tokens")
    longest = ((stats.get("tokens") or {}).get("n_tokens") or {}).get("max")
    if cfg.max_length is None:
        if budget:
            value, why = budget, f"the data's budget ({where}: max_tokens)"
        elif longest and longest > DEFAULT_MAX_LENGTH:
            value, why = longest, f"the data's longest record ({where}; it recorded no budget)"
        else:
            value, why = DEFAULT_MAX_LENGTH, "the default" + (f"; {where} recorded no budget" if stats else "")
        echo(f"max_length {value}: {why}")
        return cfg.model_copy(update={"max_length": value})
    if longest and longest > cfg.max_length:
        over = _longer_than(where.parent, cfg.max_length)
        count = f"{over} records are longer" if over else "records are longer"
        msg = (f"max_length {cfg.max_length} is below the data's longest record, {longest} tokens"
               + (f" (its budget: {budget}, {where})" if budget else f" ({where})")
               + f": {count} and would be refused; leave max_length unset to take the data's"
               + (" budget" if budget else " longest record") + f", set it to at least {longest}, or re-run "
               f"curate format --max-tokens {cfg.max_length}")
        if cfg.template is None and _same(stats.get("tokenizer"), cfg.init.model or cfg.model):
            raise ConfigError(msg)
        echo(f"note: {msg} (counted by curate format with tokenizer {stats.get('tokenizer')}; every record is "
             "checked again with this run's tokenizer and template)")
    elif budget and budget > cfg.max_length:
        echo(f"note: max_length {cfg.max_length} is below the data's budget of {budget} ({where}); every record "
             f"fits (the longest has {longest} tokens)" if longest else
             f"note: max_length {cfg.max_length} is below the data's budget of {budget} ({where})")
    return cfg


def eval_cap(cfg: SFTConfig, n_eval: int, steps_per_epoch: int, total_steps: int, per_step: int) -> tuple[int, str]:
    """(eval records to use, how the plan line says it). Unset eval_records: default_eval_records
    for the run's rows trained and its eval passes (one at the start, then every eval_every
    steps, else one per epoch); the run's steps as ``train sft`` counts them (packed rows too)."""
    if not n_eval:
        return 0, "0 records"
    if cfg.eval_records == "all":
        return n_eval, f"{n_eval} records"
    if cfg.eval_records is not None:
        cap, why = cfg.eval_records, "eval_records"
    else:
        passes = 1 + (total_steps // cfg.eval_every if cfg.eval_every
                      else math.ceil(total_steps / max(steps_per_epoch, 1)))
        cap = default_eval_records(total_steps * per_step, passes)
        why = (f"eval_records: the default for a {total_steps}-step run with {passes} eval passes; "
               "set eval_records: N or all")
    if cap >= n_eval:
        return n_eval, f"{n_eval} records"
    return cap, f"{cap} of {n_eval} records ({why})"

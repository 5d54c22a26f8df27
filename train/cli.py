"""The ``train`` command: thin wrappers over train.sft (parse, validate, call, print)."""
from __future__ import annotations

import sys

import click

from curate.cli import _user_errors, suggest_choices  # the same one-line errors, exit 2, as curate
from curate.hfquiet import hf_model_quiet  # light: imports transformers only when entered


@click.group()
@click.version_option(package_name="sft-curate")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress lines nor timing summaries on stderr (progress shows only on a terminal anyway).")
def main(quiet):
    """Fine-tune a model on a curated dataset."""
    from curate.progress import set_quiet

    set_quiet(quiet)


def require_model(spec: str, label: str = "") -> None:
    """A one-line refusal for a model that is neither a folder here, a shipped name, nor (offline)
    in the local Hugging Face cache: before transformers says "check your internet connection"."""
    from pathlib import Path

    from curate.config import ConfigError
    from curate.models import SHIPPED

    if spec in SHIPPED or Path(spec).exists():
        return
    missing = f"{label}{spec}: no such model: it does not exist as a folder here"
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ConfigError(missing)
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE:
        return  # a hub name: transformers fetches it (and says so in one line if it cannot)
    try:
        cached = try_to_load_from_cache(spec, "config.json")
    except Exception:  # noqa: BLE001 (not a valid hub name either)
        cached = None
    if not isinstance(cached, str):
        raise ConfigError(f"{missing}, nor as a hub model in the local Hugging Face cache (offline: HF_HUB_OFFLINE=1)")


@main.command("sft", epilog="Every key, its type, default and aliases: train config")
@click.argument("config", type=click.Path(), required=False)
@click.option("--model", default=None, help="Base model (the config's `model`): a folder, hub name or shipped name.")
@click.option("--data", default=None, help="Dataset (the config's `data`): a build, a format folder or a .jsonl.")
@click.option("-o", "--output-dir", "output_dir", default=None, help="Run folder (the config's `output_dir`).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. --set lora.r=32.")
@click.option("--dry-run", is_flag=True, help="Check data, masks and model; print the plan; train nothing.")
@_user_errors
def sft_cmd(config, model, data, output_dir, overrides, dry_run):
    """Supervised fine-tuning (LoRA, QLoRA or full) as CONFIG.yaml says, or without one:

    train sft --model M --data BUILD -o OUT [--set KEY=VALUE ...]

    A shipped config (train/configs/*.yaml) is a template: give it --data and -o.
    --model, --data and -o override the config's model, data and output_dir."""
    from . import config as cfgmod
    from .sft import sft

    notices = []
    cfg = cfgmod.load(config, list(overrides), {"model": model, "data": data, "output_dir": output_dir}, notices)
    for line in notices:
        click.echo(f"note: {line}")
    require_model(cfg.init.model or cfg.model, "init.model " if cfg.init.model else "model ")
    from .progress import live

    with hf_model_quiet(datasets_bars=live()):
        result = sft(cfg, dry_run=dry_run, echo=click.echo)
    if not dry_run:
        click.echo(f"done: {result['global_step']} steps in {result['seconds']:.0f}s, train loss {result['train_loss']}, "
                   f"eval loss {result['eval_loss']}")


@main.command("merge")
@click.argument("adapter", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Folder for the merged model (created).")
@click.option("--base", default=None, help="Base model (default: the one the adapter names).")
@_user_errors
def merge_cmd(adapter, out, base):
    """Fold a LoRA adapter into its base model: a full model folder."""
    from .model import merge

    if base:
        require_model(base, "--base ")
    with hf_model_quiet():
        click.echo(f"wrote {merge(adapter, out, base)}")


@main.command("generate")
@click.argument("model", type=click.Path())
@click.option("--prompt", required=True, help="The user turn to answer.")
@click.option("--system", default=None, help="A system turn before it (default: none).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=128, show_default=True,
              help="Stop after this many new tokens (or at the end-of-turn token).")
@_user_errors
def generate_cmd(model, prompt, system, max_new_tokens):
    """Greedy answer from MODEL (a run folder, adapter or full) with its training chat template."""
    from .evaluate import generate

    require_model(model)
    with hf_model_quiet():
        answer = generate(model, prompt, max_new_tokens, system)
    click.echo(answer)


@main.command("eval")
@click.argument("models", nargs=-1, required=True)
@click.option("--data", required=True, help="Held-out set: a .jsonl, a `curate format` folder (eval.jsonl) or a build.")
@click.option("--metric", "metrics", multiple=True,
              type=click.Choice(["loss", "exact_match", "json_valid", "refusal", "length"]),
              help="Repeatable; default all. loss needs no generation, the others generate greedily.")
@click.option("--extract", "extractor", default="gsm8k", show_default=True,
              help="Answer extractor for exact_match: gsm8k (number after ####), last_number, or a regex (group 1).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Records per forward pass (loss and generation).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=256, show_default=True,
              help="Greedy generation stops after this many new tokens (or at the end-of-turn token).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N records.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the table as JSON.")
@_user_errors
def eval_cmd(models, data, metrics, extractor, batch_size, max_new_tokens, limit, json_out):
    """Compare MODELS (run folders, model folders, shipped names) on one held-out set."""
    import json
    from pathlib import Path

    from .evaluate import evaluate, notes, table

    for spec in models:
        require_model(spec)
    with hf_model_quiet():
        result = evaluate(list(models), data, list(metrics) or None, extractor, batch_size, max_new_tokens, limit,
                          echo=lambda line: click.echo(line, err=True))
    click.echo(f"{result['records']} records from {result['data']}")
    for line in table(result):
        click.echo(line)
    for line in notes(result):
        click.echo(f"note: {line}")
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        click.echo(f"wrote {json_out}")


@main.command("config")
@click.option("--markdown", is_flag=True, help="The key table as Markdown (docs/train-config.md is generated from it).")
def config_cmd(markdown):
    """Every `train sft` config key: type, default, accepted aliases and meaning, from the config model."""
    from .config import markdown_table, text_table

    click.echo(markdown_table() if markdown else "\n".join(text_table()), nl=not markdown)


suggest_choices(main)  # a mistyped --metric says "did you mean", as in curate


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

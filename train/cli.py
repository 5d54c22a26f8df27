"""The ``train`` command: thin wrappers over train.sft (parse, validate, call, print)."""
from __future__ import annotations

import sys

import click

from curate.cli import _user_errors  # the same one-line errors, exit 2, as curate


@click.group()
def main():
    """Fine-tune a model on a curated dataset."""


@main.command("sft")
@click.argument("config", type=click.Path())
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. --set lora.r=32.")
@click.option("--dry-run", is_flag=True, help="Check data, masks and model; print the plan; train nothing.")
@_user_errors
def sft_cmd(config, overrides, dry_run):
    """Supervised fine-tuning (LoRA, QLoRA or full) as CONFIG.yaml says."""
    from . import config as cfgmod
    from .sft import sft

    cfg = cfgmod.load(config, list(overrides))
    result = sft(cfg, dry_run=dry_run, echo=click.echo)
    if not dry_run:
        click.echo(f"done: {result['global_step']} steps in {result['seconds']:.0f}s, train loss {result['train_loss']}, "
                   f"eval loss {result['eval_loss']}")


@main.command("merge")
@click.argument("adapter", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False))
@click.option("--base", default=None, help="Base model (default: the one the adapter names).")
@_user_errors
def merge_cmd(adapter, out, base):
    """Fold a LoRA adapter into its base model: a full model folder."""
    from .sft import merge

    click.echo(f"wrote {merge(adapter, out, base)}")


@main.command("generate")
@click.argument("model", type=click.Path())
@click.option("--prompt", required=True)
@click.option("--system", default=None)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=128, show_default=True)
@_user_errors
def generate_cmd(model, prompt, system, max_new_tokens):
    """Greedy answer from MODEL (a run folder, adapter or full) with its training chat template."""
    from .sft import generate

    click.echo(generate(model, prompt, max_new_tokens, system))


@main.command("eval")
@click.argument("models", nargs=-1, required=True)
@click.option("--data", required=True, help="Held-out set: a .jsonl, a `curate format` folder (eval.jsonl) or a build.")
@click.option("--metric", "metrics", multiple=True,
              type=click.Choice(["loss", "exact_match", "json_valid", "refusal", "length"]),
              help="Repeatable; default all. loss needs no generation, the others generate greedily.")
@click.option("--extract", "extractor", default="gsm8k", show_default=True,
              help="Answer extractor for exact_match: gsm8k (number after ####), last_number, or a regex (group 1).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N records.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the table as JSON.")
@_user_errors
def eval_cmd(models, data, metrics, extractor, batch_size, max_new_tokens, limit, json_out):
    """Compare MODELS (run folders, model folders, shipped names) on one held-out set."""
    import json
    from pathlib import Path

    from .evaluate import evaluate, table

    result = evaluate(list(models), data, list(metrics) or None, extractor, batch_size, max_new_tokens, limit,
                      echo=lambda line: click.echo(line, err=True))
    click.echo(f"{result['records']} records from {result['data']}")
    for line in table(result):
        click.echo(line)
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        click.echo(f"wrote {json_out}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

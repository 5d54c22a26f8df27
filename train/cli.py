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
@click.option("--max-new-tokens", type=int, default=128, show_default=True)
@_user_errors
def generate_cmd(model, prompt, system, max_new_tokens):
    """Greedy answer from MODEL (a run folder, adapter or full) with its training chat template."""
    from .sft import generate

    click.echo(generate(model, prompt, max_new_tokens, system))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

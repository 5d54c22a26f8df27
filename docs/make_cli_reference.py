"""Write docs/cli.md from the commands' own --help, docs/train-config.md's key table from
the training config's pydantic model, and docs/steps.md from the stages' options models
(docs/make_step_reference.py): the code is the schema; the docs follow it.

    python docs/make_cli_reference.py          # rewrites all three
    python docs/make_cli_reference.py --check  # exit 1 when any is out of date

tests/test_cli_reference.py and tests/train/test_ux.py run the checks, so a changed option or
config key fails the suite until the reference is regenerated.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import click

OUT = Path(__file__).resolve().parent / "cli.md"
TRAIN_CONFIG = OUT.parent / "train-config.md"
STEPS = OUT.parent / "steps.md"
KEYS = re.compile(r"(<!-- keys:start.*?-->\n)(.*?)(<!-- keys:end -->)", re.S)  # the generated block
WIDTH = 100


def _walk(cmd: click.Command, path: list[str]):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.list_commands(click.Context(cmd))):
            yield from _walk(cmd.get_command(click.Context(cmd), name), path + [name])


def render() -> str:
    from curate.cli import main as curate_main
    from train.cli import main as train_main

    parts = ["# Command reference", "",
             "Generated from each command's `--help` by `python docs/make_cli_reference.py`; a test fails when",
             "it is out of date. The options' meanings live in the code (click options, pydantic models).", ""]
    for prog, group in (("curate", curate_main), ("train", train_main)):
        for path, cmd in _walk(group, [prog]):
            if getattr(cmd, "hidden", False):
                continue
            ctx = click.Context(cmd, info_name=" ".join(path), terminal_width=WIDTH, max_content_width=WIDTH)
            parts += [f"## `{' '.join(path)}`", "", "```", cmd.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(parts)


def train_config() -> str:
    """docs/train-config.md with its key table (between the keys:start/end marks) from train.config."""
    from train.config import markdown_table

    text = TRAIN_CONFIG.read_text(encoding="utf-8")
    if not KEYS.search(text):
        raise SystemExit(f"{TRAIN_CONFIG}: no <!-- keys:start --> ... <!-- keys:end --> block")
    return KEYS.sub(lambda m: m.group(1) + markdown_table() + m.group(3), text)


def main() -> int:
    import runpy

    steps = runpy.run_path(str(OUT.parent / "make_step_reference.py"))["render"]()
    outputs = {OUT: render(), TRAIN_CONFIG: train_config(), STEPS: steps}
    if "--check" in sys.argv:
        stale = [path for path, text in outputs.items()
                 if not path.is_file() or path.read_text(encoding="utf-8") != text]
        for path in stale:
            print(f"{path} is out of date: python docs/make_cli_reference.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())

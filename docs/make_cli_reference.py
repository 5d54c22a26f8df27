"""Write docs/cli.md from the commands' own --help (the CLI is the schema; the docs follow it).

    python docs/make_cli_reference.py          # rewrites docs/cli.md
    python docs/make_cli_reference.py --check  # exit 1 when docs/cli.md is out of date

tests/test_cli_reference.py runs the check, so a changed option fails the suite until the
reference is regenerated.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

OUT = Path(__file__).resolve().parent / "cli.md"
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


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: python docs/make_cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())

"""Every visible option of every command says what it is, and shows its default where it
has one (issue #22: --help shows each option with its description and default)."""
from __future__ import annotations

import click

from curate.cli import main as curate_main
from train.cli import main as train_main


def _commands(group: click.Group, path: tuple[str, ...]):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path + (name,))
        else:
            yield " ".join(path + (name,)), cmd


def _undocumented(group: click.Group, root: str) -> list[str]:
    bad = []
    for where, cmd in _commands(group, (root,)):
        for p in cmd.get_params(click.Context(cmd)):
            if not isinstance(p, click.Option) or p.hidden or p.name == "help":
                continue
            if not p.help:
                bad.append(f"{where} {p.opts[0]}: no help")
            has_default = p.default is not None and not isinstance(p.default, bool) and p.default != () \
                and "UNSET" not in repr(p.default)
            if has_default and not p.show_default:
                bad.append(f"{where} {p.opts[0]}: default {p.default!r} not shown")
    return bad


def test_every_option_has_help_and_shows_its_default():
    assert _undocumented(curate_main, "curate") + _undocumented(train_main, "train") == []


def test_the_check_sees_a_bare_option():
    @click.group()
    def g():
        pass

    @g.command()
    @click.option("--n", default=3)
    def c(n):
        pass

    assert _undocumented(g, "g") == ["g c --n: no help", "g c --n: default 3 not shown"]

"""Command-line options derived from a stage's pydantic options model: one click option per
field, with the field's description as its help and its default shown. A field's
``json_schema_extra={"cli": {...}}`` adjusts its flag: ``flag`` (another name), ``type``
(``str``, ``threshold``), ``default``, ``metavar``, ``multiple``, ``path``, ``invert`` (a
``--no-X`` flag for a field that defaults to true, with its own ``help``); ``"cli": False``
leaves the field off the command line.

The options are made when a command is first parsed or shown, not at import: the models
import pydantic (and their stage packages polars), and ``curate --help`` stays instant.
"""
from __future__ import annotations

import click

from . import stages


class SuggestingChoice(click.Choice):
    """click.Choice whose error names the nearest choice, as click does for a mistyped option name."""

    def get_invalid_choice_message(self, value, ctx) -> str:
        import difflib

        hint = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=1)
        return super().get_invalid_choice_message(value, ctx) + (f" Did you mean {hint[0]!r}?" if hint else "")


class Threshold(click.ParamType):
    """dedup's threshold shorthand, parsed by the model's own parser (a number or METHOD=NUMBER,...)."""

    name = "threshold"

    def convert(self, value, param, ctx):
        from .dedup import parse_threshold

        if not isinstance(value, str):
            return value
        try:
            return parse_threshold(value)
        except ValueError as e:
            # one line, exit 2, as every user error (curate.cli.UserError)
            raise _usage_error(f"{param.opts[-1]} {e}") from None


class Compression(click.ParamType):
    """A Parquet codec (curate.compression), checked as it is parsed: a bad value is one line,
    exit 2, with the nearest codec."""

    name = "compression"

    def convert(self, value, param, ctx):
        from .compression import parse

        try:
            return parse(value)
        except ValueError as e:
            raise _usage_error(f"{param.opts[-1]} {e}") from None


def compression_option(default: str | None = "zstd", help: str | None = None):
    """``--compression CODEC[:LEVEL]`` of a command that writes stage tables."""
    from .compression import HELP

    return click.option("--compression", type=Compression(), default=default, show_default=default is not None,
                        metavar="CODEC[:LEVEL]", help=help or HELP)


def _usage_error(message: str) -> click.ClickException:
    err = click.ClickException(message)
    err.exit_code = 2
    return err


def _spec(field) -> dict | None:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    spec = extra.get("cli", {})
    return None if spec is False else dict(spec)


def _base_type(annotation):
    """(kind, choices) of a field's annotation: bool, int, float, str, or a Literal's choices."""
    import types
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return "choice", list(typing.get_args(annotation))
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return _base_type(args[0])
    return {bool: "bool", int: "int", float: "float"}.get(annotation, "str"), None


def field_option(name: str, field) -> click.Option | None:
    """The click option of one model field (None: not on the command line)."""
    spec = _spec(field)
    if spec is None:
        return None
    from pydantic_core import PydanticUndefined

    flag = spec.get("flag", "--" + name.replace("_", "-"))
    kind, choices = _base_type(field.annotation)
    kind = spec.get("type", kind)
    # help: an inverted flag says what the flag does, not what the field means
    kw: dict = {"help": spec.get("help", field.description), "metavar": spec.get("metavar"),
                "multiple": spec.get("multiple", False)}
    required = field.is_required()
    default = spec.get("default", None if required or field.default is PydanticUndefined else field.default)
    if kind == "bool":
        kw.update(is_flag=True, default=False)
    else:
        kw.update(default=default, required=required, show_default=default is not None and not kw["multiple"])
        kw["type"] = (SuggestingChoice(choices) if kind == "choice" else Threshold() if kind == "threshold"
                      else click.Path() if spec.get("path") else {"int": click.INT, "float": click.FLOAT}.get(kind))
    if kw["multiple"]:
        kw["default"] = None
    return click.Option([flag, name], **{k: v for k, v in kw.items() if v is not None})


def model_options(model) -> list[click.Option]:
    return [o for name, f in model.model_fields.items() if (o := field_option(name, f)) is not None]


def option_values(model, params: dict) -> dict:
    """The model's fields from a command's parsed parameters (removed from ``params``)."""
    out = {}
    for name, f in model.model_fields.items():
        spec = _spec(f)
        if spec is None or name not in params:
            continue
        value = params.pop(name)
        if spec.get("invert"):
            value = not value
        elif spec.get("multiple"):
            value = list(value) or None
        out[name] = value
    return out


class StageCommand(click.Command):
    """A command whose stage's options (from its model) come after ``-o/--out`` (or the
    arguments) and reach the callback as one ``options`` dict of field values."""

    def __init__(self, *args, stage: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage = stage
        self._built = False

    def get_params(self, ctx):
        if not self._built:
            self._built = True
            at = next((i + 1 for i, p in enumerate(self.params) if p.name == "out"),
                      sum(isinstance(p, click.Argument) for p in self.params))
            self.params[at:at] = model_options(stages.get(self.stage).options)
        return super().get_params(ctx)

    def invoke(self, ctx):
        ctx.params["options"] = option_values(stages.get(self.stage).options, ctx.params)
        return super().invoke(ctx)


def stage_command(group: click.Group, kind: str, **attrs):
    """``@stage_command(main, "dedup")``: a command of ``group`` taking the stage's options."""
    return group.command(kind, cls=StageCommand, stage=kind, **attrs)

"""docs/steps.md, the pipeline step reference, rendered from the stages' options models (the
same models the commands' flags come from: curate.stages, curate.cliopts).
``python docs/make_cli_reference.py`` writes it with the other references (``--check``:
exit 1 when any is out of date); tests/test_cli_reference.py checks it.
"""
from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent / "steps.md"


def _type(annotation) -> str:
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        shown = [a for a in args if a is not type(None)]
        if str in shown:  # a path given as text: the Path or loaded object the Python API also takes is not a key's type
            shown = [a for a in shown if typing.get_origin(a) is not None or a in (str, int, float, bool)]
        return " or ".join(_type(a) for a in shown)
    if origin in (list, dict):
        return f"{origin.__name__} of " + ", ".join(_type(a) for a in args)
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    from pydantic_core import PydanticUndefined

    if field.is_required():
        return "required"
    value = field.default_factory() if field.default is PydanticUndefined else field.default
    return "" if value is None else f"`{value}`"


def _keys(name: str, field) -> str:
    aliases = [a for a in getattr(field.validation_alias, "choices", ()) if isinstance(a, str) and a != name]
    return f"`{name}`" + "".join(f" (or `{a}`)" for a in aliases)


def render() -> str:
    from curate import stages

    parts = ["# Pipeline step reference", "",
             "Generated from the stages' options models by `python docs/make_cli_reference.py`; a test fails",
             "when it is out of date. The same models give the commands' flags (docs/cli.md): a key `max_tokens`",
             "is the flag `--max-tokens`. A step is one key, the stage's name, holding these options.", ""]
    for kind in stages.names():
        model = stages.get(kind).options
        doc = " ".join((model.__doc__ or "").split())
        parts += [f"## `{kind}`", "", doc, "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            meaning = " ".join((field.description or "").split()).replace("|", "\\|")
            parts.append(f"| {_keys(name, field)} | {_type(field.annotation)} | {_default(field)} | {meaning} |")
        parts.append("")
    return "\n".join(parts)


"""YAML configs validated by pydantic, with one-line errors that name file, entry and key."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from .shipped import resolve

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A bad config file: the message is one line naming the file, the entry and the key."""


def read_yaml(path: Path):
    import yaml

    given = Path(path)
    path = resolve(given)  # a `rules/...` path not here names the shipped file
    if not path.is_file():
        raise ConfigError(f"{given}: no such file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


def _entry_label(data, loc: tuple) -> list[str]:
    """Turn pydantic's loc into readable parts, naming list entries by their `name` key."""
    parts, node = [], data
    for item in loc:
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) else None
            parts.append(f"[{item}]" + (f" ({name})" if name else ""))
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            # discriminated unions put the tag in loc: skip it when it is not a key of the node
            if isinstance(node, dict) and item not in node and parts and parts[-1].startswith("["):
                continue
            parts.append(f".{item}" if parts else str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return parts


def format_validation_error(path: Path, data, err: ValidationError, model: type[BaseModel]) -> str:
    first = err.errors()[0]
    loc = tuple(first["loc"])
    where = "".join(_entry_label(data, loc)) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(model)
        hint = difflib.get_close_matches(key, allowed, n=1)
        msg = f"unknown key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
        where = "".join(_entry_label(data, loc[:-1])) or "(top level)"
    elif first["type"] == "missing":
        msg = f"required key '{loc[-1]}' is missing"
        where = "".join(_entry_label(data, loc[:-1])) or "(top level)"
    elif first["type"] in ("union_tag_invalid", "literal_error"):
        ctx = first.get("ctx", {})
        if "discriminator" in ctx:
            where += "." + str(ctx["discriminator"]).strip("'\"")
        msg = choice_message(first)
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{path}: {where}: {msg}{tail}"


def choice_message(err: dict) -> str:
    """A pydantic literal (or tag) error as "'x' is not one of a, b (did you mean 'a'?)"."""
    ctx = err.get("ctx", {})
    got = ctx.get("tag", err.get("input"))
    expected = ctx.get("expected_tags") or ctx.get("expected", "")
    options = [o.strip(" '\"") for o in str(expected).replace(" or ", ",").split(",") if o.strip()]
    hint = difflib.get_close_matches(str(got), options, n=1)
    return f"'{got}' is not one of {', '.join(options)}" + (f" (did you mean '{hint[0]}'?)" if hint else "")


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    keys: set[str] = set()

    def walk(m):
        for name, f in m.model_fields.items():
            keys.add(name)
            # accepted aliases (pydantic AliasChoices) are keys too: a typo of one gets its did-you-mean
            keys.update(a for a in getattr(f.validation_alias, "choices", ()) if isinstance(a, str))
            for sub in _models_in(f.annotation):
                if sub not in seen:
                    seen.add(sub)
                    walk(sub)

    seen: set = set()
    walk(model)
    return sorted(keys)


def _models_in(annotation) -> list[type[BaseModel]]:
    import typing

    out = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        out.append(annotation)
    for arg in typing.get_args(annotation):
        out.extend(_models_in(arg))
    return out


def load_config(path, model: type[M], context: dict | None = None, edit=None) -> M:
    """Read and validate a YAML config; ``edit(data)`` may change the mapping first
    (command-line overrides), so its errors are reported like the file's own."""
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    if edit is not None:
        data = edit(data)
    try:  # files it names are found beside the file actually read (a shipped one, maybe)
        return model.model_validate(data, context={"path": resolve(path), **(context or {})})
    except ValidationError as e:
        raise ConfigError(format_validation_error(path, data, e, model)) from None

"""Read a JSON file the toolkit wrote (a lock, a manifest, stats.json, a Hugging Face
``dataset_dict.json``) that a person or a crash may have broken: a file that does not parse,
or does not have the shape its reader indexes, is one line naming the file and what is
wrong, never a KeyError or TypeError traceback from deep inside the reader."""
from __future__ import annotations

import json
from pathlib import Path

from .config import ConfigError

# A shape: a type (or tuple of types) the value must be; a dict {key: shape} for an object
# whose keys must be there ("key?": only checked when present); [shape] for a list of such.
_NAMES = {str: "a string", int: "a number", float: "a number", dict: "an object", list: "a list", bool: "true or false"}


def read_json(path, what: str, shape=None, error: type[Exception] = ConfigError):
    """The parsed contents of ``path`` (``what`` names the kind of file in the message),
    checked against ``shape``; ``error`` (ConfigError, InputError) otherwise."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a {what}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}: not a {what}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg})") from None
    except (OSError, RecursionError, ValueError) as e:
        raise error(f"{path}: cannot read the {what}: {getattr(e, 'strerror', None) or e}") from None
    if shape is not None:
        problem = mismatch(value, shape)
        if problem:
            raise error(f"{path}: not a {what}: {problem}")
    return value


def mismatch(value, shape, where: str = "") -> str | None:
    """What in ``value`` does not fit ``shape`` (None: it fits)."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where or 'the file'} is {_kind(value)}, expected an object"
        for key, sub in shape.items():
            name, optional = key.rstrip("?"), key.endswith("?")
            here = f"{where}.{name}" if where else f"'{name}'"
            if name not in value:
                if optional:
                    continue
                return f"{here} is missing"
            found = mismatch(value[name], sub, here)
            if found:
                return found
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{where or 'the file'} is {_kind(value)}, expected a list"
        for i, item in enumerate(value):
            found = mismatch(item, shape[0], f"{where}[{i}]")
            if found:
                return found
        return None
    types = shape if isinstance(shape, tuple) else (shape,)
    if float in types:
        types = (*types, int)
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        return f"{where} is {_kind(value)}, expected {_NAMES.get(types[0], types[0].__name__)}"
    return None


def _kind(value) -> str:
    if value is None:
        return "null"
    return _NAMES.get(type(value), type(value).__name__)

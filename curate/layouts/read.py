"""Input record formats: recognise one, and turn a raw dict into ``messages`` plus leftover meta.

Each converter raises :class:`RecordError` with a ``read.*`` rule code for a record it
cannot convert; the reader turns that into a rejected row, never a crash.
"""
from __future__ import annotations

from typing import Callable

from ..errors import RecordError
from ..turns import read_extras

FORMATS = ("openai", "sharegpt", "alpaca", "prompt_completion", "qa")

# The key whose presence selects a format in auto-detection, in priority order.
SIGNATURE = (
    ("messages", "openai"),
    ("conversations", "sharegpt"),
    ("instruction", "alpaca"),
    ("prompt", "prompt_completion"),
    ("question", "qa"),
)

SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bard": "assistant",
    "bing": "assistant", "model": "assistant",
    "system": "system",
}
# the name each role is written under in ShareGPT (curate export); each reads back through SHAREGPT_ROLES
SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}
OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def detect(record: dict) -> str | None:
    for key, fmt in SIGNATURE:
        if key in record:
            return fmt
    return None


def _text(record: dict, key: str, required: bool = True) -> str | None:
    if key not in record or record[key] is None:
        if required:
            raise RecordError("read.missing_field", f"field '{key}' is missing")
        return None
    value = record[key]
    if not isinstance(value, str):
        raise RecordError(
            "read.bad_field", f"field '{key}' is {type(value).__name__}, expected a string"
        )
    return value


def _content(value, where: str) -> str:
    if isinstance(value, str):
        return value
    # OpenAI content parts: keep text, refuse media rather than silently dropping it.
    if isinstance(value, list):
        texts = []
        for part in value:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RecordError("read.non_text_content", f"{where} has a '{kind}' content part")
        return "".join(texts)
    raise RecordError("read.bad_field", f"{where} content is {type(value).__name__}, expected a string")


def _turns(items, key: str, role_key: str, text_key: str, roles: dict) -> list[dict]:
    if not isinstance(items, list):
        raise RecordError("read.bad_field", f"field '{key}' is {type(items).__name__}, expected a list")
    out = []
    for i, turn in enumerate(items):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise RecordError("read.bad_field", f"{where} is {type(turn).__name__}, expected an object")
        if role_key not in turn:
            raise RecordError("read.missing_field", f"{where} has no '{role_key}'")
        raw_role = turn[role_key]
        role = roles.get(str(raw_role).strip().lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise RecordError("read.bad_role", f"{where} has role {raw_role!r}, not one of {sorted(set(roles.values()))}")
        extras = read_extras(turn, role, where, {role_key, text_key})
        if turn.get(text_key) is None and "tool_calls" in extras:
            content = ""  # an assistant turn that only calls tools has null content (OpenAI)
        elif text_key not in turn or turn[text_key] is None:
            raise RecordError("read.missing_field", f"{where} has no '{text_key}'")
        else:
            content = _content(turn[text_key], where)
        out.append({"role": role, "content": content, **extras})
    return out


def _openai(r: dict):
    return _turns(r.get("messages"), "messages", "role", "content", OPENAI_ROLES), {"messages"}


def _sharegpt(r: dict):
    return _turns(r.get("conversations"), "conversations", "from", "value", SHAREGPT_ROLES), {"conversations"}


def _alpaca(r: dict):
    instruction = _text(r, "instruction")
    inp = _text(r, "input", required=False)
    output = _text(r, "output")
    system = _text(r, "system", required=False)
    user = instruction if not (inp and inp.strip()) else f"{instruction}\n\n{inp}"
    msgs = [{"role": "system", "content": system}] if system and system.strip() else []
    msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return msgs, {"instruction", "input", "output", "system"}


def _pair(user_key: str, assistant_key: str):
    def convert(r: dict):
        system = _text(r, "system", required=False)
        msgs = [{"role": "system", "content": system}] if system and system.strip() else []
        msgs += [
            {"role": "user", "content": _text(r, user_key)},
            {"role": "assistant", "content": _text(r, assistant_key)},
        ]
        return msgs, {user_key, assistant_key, "system"}

    return convert


CONVERTERS: dict[str, Callable[[dict], tuple[list[dict], set[str]]]] = {
    "openai": _openai,
    "sharegpt": _sharegpt,
    "alpaca": _alpaca,
    "prompt_completion": _pair("prompt", "completion"),
    "qa": _pair("question", "answer"),
}


def convert(record: dict, fmt: str | None, mapping: dict[str, str] | None = None):
    """Return (messages, meta_fields) for one raw record, or raise RecordError.

    ``mapping`` renames input columns to the format's field names, e.g.
    ``{"instruction": "query", "output": "response"}``.
    """
    if not isinstance(record, dict):
        raise RecordError("read.bad_record", f"record is {type(record).__name__}, expected an object")
    if mapping:
        record = dict(record)
        for target, column in mapping.items():
            if column in record:
                record[target] = record.pop(column)
    chosen = fmt or detect(record)
    if chosen is None:
        keys = ", ".join(sorted(map(str, record))[:8]) or "none"
        raise RecordError(
            "read.unknown_format", f"no known format matches the fields ({keys}); use --format/--map"
        )
    messages, used = CONVERTERS[chosen](record)
    if not messages or all(not m["content"].strip() for m in messages):
        raise RecordError("read.empty_conversation", "the conversation has no text")
    inverse = {target: column for target, column in (mapping or {}).items()}
    meta = {inverse.get(k, k): v for k, v in record.items() if k not in used}
    return messages, meta

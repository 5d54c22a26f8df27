"""The optional fields of a turn, beyond ``role`` and ``content``: ``weight`` (0 = do not train
on this assistant turn, as ShareGPT/Axolotl and OpenAI fine-tuning files say it), ``name``
(who speaks) and ``tool_calls`` (an OpenAI assistant turn's calls, kept as JSON text).

They are kept rather than dropped: a weight-0 answer trained on anyway, or a tool call
trained as an empty turn, would be a silent change of the user's data. A turn field the
toolkit cannot represent is a rejected record with a reason (:class:`RecordError`), and so is
a field the chat template would drop (curate.format). A turn without them reads, hashes and
writes exactly as before.
"""
from __future__ import annotations

import json

from .errors import RecordError

EXTRA = ("weight", "name", "tool_calls")


def empty(value) -> bool:
    """A value that says nothing (null, "", [], {}): as if the field were absent."""
    return value is None or (isinstance(value, (str, list, dict)) and not value)


def read_extras(turn: dict, role: str, where: str, known: set[str]) -> dict:
    """The optional fields of one input turn, checked; ``known``: the keys the format itself
    reads (role and text). Any other non-empty field is refused: it would be lost."""

    out = {}
    for key, value in turn.items():
        if key in known or empty(value):
            continue
        if key == "weight":
            out["weight"] = _weight(value, role, where)
        elif key == "name":
            if not isinstance(value, str):
                raise RecordError("read.bad_field", f"{where} name is {type(value).__name__}, expected a string")
            out["name"] = value
        elif key == "tool_calls":
            if role != "assistant" or not isinstance(value, list):
                raise RecordError("read.bad_field", f"{where} has tool_calls on a {role} turn"
                                  if role != "assistant" else f"{where} tool_calls is {type(value).__name__}, expected a list")
            out["tool_calls"] = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        else:
            raise RecordError("read.unsupported_field",
                              f"{where} has a '{key}' field, which the toolkit cannot keep (it keeps weight, name, tool_calls)")
    return out


def _weight(value, role: str, where: str) -> int:

    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in (0, 1):
        raise RecordError("read.bad_field", f"{where} has weight {value!r}; a turn's weight is 0 or 1")
    if value == 1 and role != "assistant":
        raise RecordError("read.unsupported_field", f"{where} has weight 1 on a {role} turn; only assistant turns are trained")
    return int(value)


def for_template(message: dict) -> dict:
    """A turn as a chat template sees it: the fields it has (tool_calls as the list they
    were), not the toolkit's weight, nor null placeholders."""
    out = {"role": message["role"], "content": message["content"]}
    if message.get("name") is not None:
        out["name"] = message["name"]
    calls = message.get("tool_calls")
    if calls is not None:  # JSON text in a record table; already a list in a turn from plain()
        out["tool_calls"] = json.loads(calls) if isinstance(calls, str) else calls
    return out


def plain(message: dict) -> dict:
    """A turn as written out (train.jsonl, exports): the fields it has, in OpenAI's layout."""
    out = for_template(message)
    if message.get("weight") is not None:
        out["weight"] = message["weight"]
    return out


def has_extras(message: dict) -> bool:
    return any(message.get(k) is not None for k in EXTRA)


def untrained(message: dict) -> bool:
    return message.get("role") == "assistant" and message.get("weight") == 0


def rendered_extras(message: dict) -> list[str]:
    """The fields of a turn a template must print (name, tool_calls)."""
    return [k for k in ("name", "tool_calls") if message.get(k) is not None]

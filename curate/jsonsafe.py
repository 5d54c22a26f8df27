"""JSON from untrusted text (model outputs, judge servers) without a RecursionError:
nesting is measured first, and deeper than ``MAX_DEPTH`` is refused before a parser recurses.

Python's json module recurses once per level and fails near the interpreter's recursion
limit, which depends on how deep the caller already is; a fixed limit gives the same verdict
wherever it is asked."""
from __future__ import annotations

import json
import re

MAX_DEPTH = 256
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"?|[\[\]{}]')


class TooDeep(ValueError):
    def __init__(self, depth: int):
        super().__init__(f"JSON nests {depth} levels deep, more than {MAX_DEPTH}")
        self.depth = depth


def depth(text: str) -> int:
    """How deep brackets nest in ``text``, outside JSON strings (an unclosed bracket counts)."""
    opening = text.count("[") + text.count("{")
    if opening <= MAX_DEPTH:
        return opening  # an upper bound, and not above the limit: no need to scan
    level = deepest = 0
    for m in _TOKEN.finditer(text):
        c = m.group(0)
        if c == "[" or c == "{":
            level += 1
            deepest = max(deepest, level)
        elif c == "]" or c == "}":
            level = max(0, level - 1)
    return deepest


def loads(text: str | bytes):
    """``json.loads``, refusing nesting deeper than ``MAX_DEPTH`` (``TooDeep``, a ValueError)
    and bytes that are not UTF-8 (UnicodeDecodeError, a ValueError)."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    d = depth(text)
    if d > MAX_DEPTH:
        raise TooDeep(d)
    try:
        return json.loads(text)
    except RecursionError:  # not under the limit above; kept as a ValueError all the same
        raise TooDeep(d) from None

"""Generation metrics for `train eval`: answer extraction and exact match, JSON validity,
refusals (the filter rules' own phrase list), response length. Pure functions, no model."""
from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

_NUMBER = r"[-+−]?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+−]?\.\d+"
GSM8K = re.compile(r"####\s*(" + _NUMBER + r")")
LAST_NUMBER = re.compile(_NUMBER)
EXTRACTORS = ("gsm8k", "last_number")


def normalise_number(text: str) -> str | None:
    """'1,234.50' -> '1234.5', '−7' -> '-7', '$ 12' -> '12'; None when it is no number."""
    t = text.replace("−", "-").replace("$", "").replace(",", "").replace(" ", "").strip()
    try:
        d = Decimal(t)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    d = d.normalize()
    out = format(d, "f")
    return "0" if out in ("-0", "+0") else out


def check_extractor(how: str) -> str:
    """``how`` itself when extract() can use it: gsm8k, last_number, or a regular expression that
    compiles; otherwise a one-line ConfigError (before any model is loaded)."""
    from curate.config import ConfigError

    if how in EXTRACTORS:
        return how
    try:
        re.compile(how)
    except (re.error, RecursionError, OverflowError) as e:
        raise ConfigError(f"--extract {how!r}: not {' or '.join(EXTRACTORS)}, nor a valid regular expression "
                          f"({e})") from None
    return how


def extract(text: str, how: str = "gsm8k") -> str | None:
    """The answer in ``text``: the number after '####' (gsm8k), the last number (last_number),
    or the first group of a regular expression; None when there is none."""
    if text is None:
        return None
    if how == "gsm8k":
        m = GSM8K.search(text)
        return normalise_number(m.group(1)) if m else None
    if how == "last_number":
        found = LAST_NUMBER.findall(text)
        return normalise_number(found[-1]) if found else None
    m = re.search(how, text)
    if not m:
        return None
    value = m.group(1) if m.groups() else m.group(0)
    number = normalise_number(value)
    return number if number is not None else value.strip()


def exact_match(predictions: list[str], references: list[str], how: str = "gsm8k") -> float | None:
    """Share of predictions whose extracted answer equals the reference's (a prediction with no
    answer never matches; references without one are left out)."""
    pairs = [(extract(p, how), extract(r, how)) for p, r in zip(predictions, references)]
    scored = [(p, r) for p, r in pairs if r is not None]
    if not scored:
        return None
    return sum(p is not None and p == r for p, r in scored) / len(scored)


_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n?```\s*$", re.S)


def is_json(text: str) -> bool:
    """Parses as JSON (an object or array), alone or inside one fenced code block."""
    m = _FENCE.match(text or "")
    body = (m.group(1) if m else text or "").strip()
    if not body or body[0] not in "[{":
        return False
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def json_valid(predictions: list[str], references: list[str]) -> float | None:
    """Share of valid JSON among predictions whose reference is JSON (None: no such records)."""
    scored = [p for p, r in zip(predictions, references) if is_json(r)]
    return sum(map(is_json, scored)) / len(scored) if scored else None


@lru_cache(maxsize=1)
def refusal_pattern() -> re.Pattern:
    """The default rule set's refusal rule, phrases and matching exactly as `curate filter` uses them."""
    from curate.filter import load_rules

    rule = next(r for r in load_rules().rules if r.name == "output.refusal")
    return re.compile(rule._regex())


def refusal_rate(predictions: list[str]) -> float | None:
    if not predictions:
        return None
    pattern = refusal_pattern()
    return sum(bool(pattern.search(p or "")) for p in predictions) / len(predictions)

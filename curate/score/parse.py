"""Turn a judge's answer into a score on the scale, or a failure kind. Never guess."""
from __future__ import annotations

import json
import math
import re

from .. import jsonsafe
from .scrub import scrub

_OBJECT = re.compile(r"\{[^{}]*\}", re.S)
MAX_REASON_CHARS = 2000  # a judge's reason is a sentence: a longer one is cut, not stored whole
LOGPROB_SLACK = 1e-3     # a log-probability is <= 0; servers round, but never by more than this


class BadAnswer(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind  # parse_error | out_of_scale | no_scale_token


def parse_json_answer(text: str | None, scale: tuple[int, int]) -> tuple[float, str]:
    """``{"score": N, "reason": "..."}``, also inside code fences or prose; the first object
    with a ``score`` wins. A score must be a number (or a numeric string) within the scale."""
    if not text or not text.strip():
        raise BadAnswer("parse_error", "empty answer")
    candidates = []
    try:  # jsonsafe: deep nesting is a ValueError here, not json's RecursionError
        candidates.append(jsonsafe.loads(text))
    except ValueError:
        for m in _OBJECT.finditer(text):
            try:
                candidates.append(jsonsafe.loads(m.group(0)))
            except ValueError:
                continue
    obj = next((c for c in candidates if isinstance(c, dict) and "score" in c), None)
    if obj is None:
        raise BadAnswer("parse_error", f"no JSON object with a score in: {text[:80]!r}")
    raw = obj["score"]
    if isinstance(raw, bool):
        raise BadAnswer("parse_error", f"score is not a number: {raw!r}")
    if not isinstance(raw, (int, float, str)):
        raise BadAnswer("parse_error", f"score is not a number: {type(raw).__name__}")
    lo, hi = scale
    try:
        score = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except ValueError:
        raise BadAnswer("parse_error", f"score is not a number: {str(raw)[:20]!r}") from None
    except OverflowError:  # an integer of hundreds of digits: a number, far off the scale
        raise BadAnswer("out_of_scale", f"score of {len(str(raw))} digits is outside {lo}..{hi}") from None
    if not math.isfinite(score) or not lo <= score <= hi:
        raise BadAnswer("out_of_scale", f"score {str(raw)[:20]!r} is outside {lo}..{hi}")
    reason = obj.get("reason")
    try:
        text = reason if isinstance(reason, str) else ("" if reason is None else json.dumps(reason))
    except (ValueError, RecursionError):
        raise BadAnswer("parse_error", "the reason is not text") from None
    return score, text  # the server's text: clean_reason before it is kept


def clean_reason(text: str, secrets=()) -> str:
    """A server's reason as it may be stored and shown: secrets and credential-shaped strings
    replaced (before the cut, so no half of a key survives it), cut to MAX_REASON_CHARS."""
    text = scrub(text, secrets)
    if len(text) > MAX_REASON_CHARS:
        text = text[:MAX_REASON_CHARS] + f" [... {len(text) - MAX_REASON_CHARS} characters cut]"
    return text


def expected_digit(logprobs: dict[str, float], scale: tuple[int, int]) -> tuple[float, str]:
    """The expectation over the scale's digits of a next-token distribution given as
    ``{token: logprob}`` (tokens that strip to the same digit are summed)."""
    lo, hi = scale
    mass = {d: 0.0 for d in range(lo, hi + 1)}
    for token, lp in logprobs.items():
        if lp is not None and lp > LOGPROB_SLACK:  # exp() of it is no probability (and overflows past 709)
            raise BadAnswer("parse_error", f"log-probability {lp:.3g} of token {token[:10]!r} is above 0")
        t = token.strip()
        if len(t) == 1 and t.isdecimal() and lo <= int(t) <= hi and lp is not None and math.isfinite(lp):
            mass[int(t)] += math.exp(lp)
    total = sum(mass.values())
    if total <= 0:
        raise BadAnswer("no_scale_token", f"no digit {lo}..{hi} among the top tokens")
    score = sum(d * p for d, p in mass.items()) / total
    probs = " ".join(f"{d}:{p / total:.2f}" for d, p in mass.items())
    return round(score, 4), f"digit probabilities {probs} (scale mass {total:.2f})"

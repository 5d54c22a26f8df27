"""Turn a judge's answer into a score on the scale, or a failure kind. Never guess."""
from __future__ import annotations

import json
import math
import re

_OBJECT = re.compile(r"\{[^{}]*\}", re.S)


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
    try:
        candidates.append(json.loads(text))
    except ValueError:
        for m in _OBJECT.finditer(text):
            try:
                candidates.append(json.loads(m.group(0)))
            except ValueError:
                continue
    obj = next((c for c in candidates if isinstance(c, dict) and "score" in c), None)
    if obj is None:
        raise BadAnswer("parse_error", f"no JSON object with a score in: {text[:80]!r}")
    raw = obj["score"]
    if isinstance(raw, bool):
        raise BadAnswer("parse_error", f"score is not a number: {raw!r}")
    try:
        score = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        raise BadAnswer("parse_error", f"score is not a number: {raw!r}") from None
    lo, hi = scale
    if not math.isfinite(score) or not lo <= score <= hi:
        raise BadAnswer("out_of_scale", f"score {raw!r} is outside {lo}..{hi}")
    reason = obj.get("reason")
    return score, reason if isinstance(reason, str) else ("" if reason is None else json.dumps(reason))


def expected_digit(logprobs: dict[str, float], scale: tuple[int, int]) -> tuple[float, str]:
    """The expectation over the scale's digits of a next-token distribution given as
    ``{token: logprob}`` (tokens that strip to the same digit are summed)."""
    lo, hi = scale
    mass = {d: 0.0 for d in range(lo, hi + 1)}
    for token, lp in logprobs.items():
        t = token.strip()
        if len(t) == 1 and t.isdigit() and lo <= int(t) <= hi and lp is not None and math.isfinite(lp):
            mass[int(t)] += math.exp(lp)
    total = sum(mass.values())
    if total <= 0:
        raise BadAnswer("no_scale_token", f"no digit {lo}..{hi} among the top tokens")
    score = sum(d * p for d, p in mass.items()) / total
    probs = " ".join(f"{d}:{p / total:.2f}" for d, p in mass.items())
    return round(score, 4), f"digit probabilities {probs} (scale mass {total:.2f})"

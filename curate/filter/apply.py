"""``curate filter`` as a library call: apply a rule set to records.

Every rule is evaluated on every record (so stats can say how often each rule *fires*,
not only which rule rejected first); a record is rejected by the first rule, in file
order, that has a reason for it.
"""
from __future__ import annotations

import time

import polars as pl

from ..config import load_config
from ..shipped import RULES
from ..stage import StageResult, count_rules, split
from .fields import build_frame
from .rules import RuleSet

DEFAULT_RULES = RULES / "default.yaml"


def load_rules(path=None) -> RuleSet:
    return load_config(path or DEFAULT_RULES, RuleSet)


def load_rule_sets(paths) -> RuleSet:
    """Several rule set files as one, rules in file order (none given: the default)."""
    sets = [load_rules(p) for p in (paths or [None])]
    return RuleSet(rules=[r for s in sets for r in s.rules]) if len(sets) > 1 else sets[0]


def run(records: pl.DataFrame, rules: RuleSet) -> StageResult:
    t0 = time.perf_counter()
    text_fields = set().union(*(r.text_fields() for r in rules.rules))
    turn_fields = set().union(*(r.turn_fields() for r in rules.rules))
    frame = build_frame(records, text_fields, turn_fields)
    timings = {"(fields)": time.perf_counter() - t0}

    reasons: list[pl.Series] = []
    for rule in rules.rules:
        t = time.perf_counter()
        reasons.append(rule.checked_reasons(frame).alias(rule.name))
        timings[rule.name] = time.perf_counter() - t

    table = pl.DataFrame(reasons)  # a rule set has at least one rule
    picked = table.select(
        pl.coalesce([pl.when(pl.col(r.name).is_not_null()).then(pl.lit(r.name)) for r in rules.rules]
                    + [pl.lit(None, pl.String)]).alias("rule"),
        pl.coalesce([pl.col(r.name) for r in rules.rules] + [pl.lit(None, pl.String)]).alias("reason"),
    )
    kept, rejected = split(records, "filter", picked["rule"], picked["reason"])
    fired = {r.name: int(table[r.name].is_not_null().sum()) for r in rules.rules}
    counts = count_rules(rejected)
    stats = {
        "stage": "filter",
        "in": records.height,
        "kept": kept.height,
        "rejected": rejected.height,
        "rules": {r.name: counts.get(r.name, 0) for r in rules.rules},
        "fired": fired,
        "seconds": round(time.perf_counter() - t0, 4),
        "rule_seconds": {k: round(v, 4) for k, v in timings.items()},
    }
    return StageResult(kept, rejected, stats)


def merge_stats(parts: list[dict], t0: float) -> dict:
    """The stats of several blocks filtered separately, as one run would count them."""
    first = parts[0]
    out = {"stage": "filter", "in": 0, "kept": 0, "rejected": 0, "rules": dict.fromkeys(first["rules"], 0),
           "fired": dict.fromkeys(first["fired"], 0), "seconds": 0.0,
           "rule_seconds": dict.fromkeys(first["rule_seconds"], 0.0)}
    for p in parts:
        for k in ("in", "kept", "rejected"):
            out[k] += p[k]
        for group in ("rules", "fired", "rule_seconds"):
            for name, v in p[group].items():
                out[group][name] += v
    out["rule_seconds"] = {k: round(v, 4) for k, v in out["rule_seconds"].items()}
    out["seconds"] = round(time.perf_counter() - t0, 4)
    return out

"""A lock against a rebuild's lock (`curate verify`, and `curate run` deciding whether to
rewrite a lock). Three outcomes:

- ``identical``: every table's content and every text file is what the lock records;
- ``tolerant``: the same decisions (which records are kept, rejected by which rule, in
  which cluster), with floating-point values within ``content.TOLERANCE`` of the lock's:
  what another CPU or thread count gives when a model's outputs are recomputed;
- ``different``: a decision changed, or an input or a config; the first step that
  differs is named, with the records that changed side where the old build is at hand,
  and the pairs within float noise of a threshold when they may explain it.

Library versions that moved are shown as hints, never as a difference on their own.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError
from .content import TOLERANCE, values_within
from .spec import lock_path

LOCK_FORMAT = 2


@dataclass
class Verdict:
    kind: str                                   # identical | tolerant | different
    lines: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.kind != "different"

    def __bool__(self):  # a truthy verdict is a difference, as the old list of lines was
        return not self.ok


# What :func:`compare` indexes in a lock: a hand-edited or truncated lock that lacks it is
# refused in one line naming the file, not a KeyError in the middle of a comparison.
_STEP = {"step": str, "kind?": str, "files?": dict, "options?": dict, "rules?": dict, "values?": dict}
LOCK_SHAPE = {"steps": [_STEP], "inputs?": [{"path": str}], "versions?": dict, "outputs?": dict}


def read_lock(pipeline_path) -> dict:
    from ..jsonfile import read_json

    path = lock_path(pipeline_path)
    if not path.is_file():
        raise ConfigError(f"{path}: no lock file; `curate run {pipeline_path}` writes it")
    try:
        return read_json(path, "lock file", LOCK_SHAPE)
    except ConfigError as e:
        raise ConfigError(f"{e}; `curate run {pipeline_path}` rewrites it") from None


def diff(old: dict, new: dict) -> list[str]:
    """The lines of :func:`compare` (empty: identical or within tolerance)."""
    verdict = compare(old, new)
    return [] if verdict.ok else verdict.lines + verdict.hints


def _short(h) -> str:
    return str(h)[:12] if h else "-"


def compare(old: dict, new: dict, old_build: Path | None = None, new_build: Path | None = None) -> Verdict:
    """The verdict on a rebuild ``new`` against the lock ``old``."""
    out = _input_lines(old, new)
    kind, worst = "identical", (0.0, "")
    old_steps, new_steps = old.get("steps", []), new.get("steps", [])
    for a, b in zip(old_steps, new_steps):
        step_kind, lines, moved = _step_verdict(a, b)
        if step_kind == "different":
            out.append(f"first step that differs: {b['step']}")
            out.extend("  " + line for line in lines)
            out.extend("  " + line for line in _changed_side(b["step"], old_build, new_build))
            out.extend("  " + line for line in _near_threshold(a, b))
            break
        if step_kind == "tolerant":
            kind = "tolerant"
            if moved[0] >= worst[0]:
                worst = (moved[0], f"{b['step']} {moved[1]}")
    if len(old_steps) != len(new_steps):
        out.append(f"steps: {len(old_steps)} in the lock, {len(new_steps)} now "
                   f"({', '.join(s['step'] for s in old_steps)} -> {', '.join(s['step'] for s in new_steps)})")
    hints = _version_hints(old, new)
    if out:
        return Verdict("different", out, hints)
    if kind == "tolerant":
        return Verdict("tolerant", [f"the same decisions; float values moved within {TOLERANCE:g} "
                                    f"(largest {worst[0]:.2g}, in {worst[1]})"], hints)
    return Verdict("identical", [], hints)


def _input_lines(old: dict, new: dict) -> list[str]:
    out = []
    if old.get("pipeline") != new.get("pipeline"):
        out.append(f"pipeline name: {old.get('pipeline')} -> {new.get('pipeline')}")
    if old.get("lock_format", 1) != LOCK_FORMAT:
        out.append(f"the lock is in format {old.get('lock_format', 1)} (byte hashes of Parquet files), this version "
                   f"writes format {LOCK_FORMAT} (content hashes): `curate run` rewrites it")
    old_in = {i["path"]: i for i in old.get("inputs", [])}
    new_in = {i["path"]: i for i in new.get("inputs", [])}
    for path in sorted(old_in.keys() | new_in.keys()):
        a, b = old_in.get(path), new_in.get(path)
        if a is None or b is None:
            out.append(f"input {path}: {'added' if a is None else 'removed'}")
        elif a != b:
            parts = [f"sha256 {_short(a.get('sha256'))} -> {_short(b.get('sha256'))}"] if a.get("sha256") != b.get("sha256") else []
            if a.get("records") != b.get("records"):
                parts.append(f"records {a.get('records')} -> {b.get('records')}")
            for k in ("format", "map"):
                if a.get(k) != b.get(k):
                    parts.append(f"{k} {a.get(k)} -> {b.get(k)}")
            out.append(f"input {path}: " + ", ".join(parts))
    return out


def _step_verdict(a: dict, b: dict) -> tuple[str, list[str], tuple[float, str]]:
    """(identical | tolerant | different, the lines that say why, (largest value moved, where)).
    A step's input hash is not a verdict of its own: a tolerant step before it changes it."""
    if a.get("kind") != b.get("kind"):
        return "different", [f"kind {a.get('kind')} -> {b.get('kind')}"], (0.0, "")
    config = []
    fa, fb = a.get("files", {}), b.get("files", {})
    for path in sorted(fa.keys() | fb.keys()):
        if fa.get(path) != fb.get(path):
            what = "added" if path not in fa else "no longer read" if path not in fb else \
                f"changed ({_short(fa[path])} -> {_short(fb[path])})"
            config.append(f"config file {path}: {what}")
    for key, (x, y) in _changed(a.get("options", {}), b.get("options", {})):
        config.append(f"option {key}: {json.dumps(x)} -> {json.dumps(y)}")
    if a.get("config_hash") != b.get("config_hash") and not config:
        config.append(f"config hash {_short(a.get('config_hash'))} -> {_short(b.get('config_hash'))}")
    counts = [f"{k} {a.get(k)} -> {b.get(k)}" for k in ("in", "kept", "rejected") if a.get(k) != b.get(k)]
    ra, rb = a.get("rules", {}), b.get("rules", {})
    counts += [f"rejected by {rule}: {ra.get(rule, 0)} -> {rb.get(rule, 0)}"
               for rule in sorted(ra.keys() | rb.keys()) if ra.get(rule, 0) != rb.get(rule, 0)]
    if not config and not counts and a.get("output_hash") == b.get("output_hash"):
        return "identical", [], (0.0, "")
    same_decisions = bool(a.get("decisions_hash")) and a.get("decisions_hash") == b.get("decisions_hash")
    values = []
    if not config and not counts and same_decisions:
        va, vb = a.get("values", {}), b.get("values", {})
        worst, where = 0.0, ""
        for name in sorted(va.keys() | vb.keys()):
            ok, moved = values_within(va.get(name, {}), vb.get(name, {}))
            if not ok:
                values.append(f"{name}: float values moved by more than {TOLERANCE:g}")
            elif moved >= worst:
                worst, where = moved, name
        if not values and worst > 0:
            return "tolerant", [], (worst, where)
        if not values:  # no float moved (as far as the lock shows), yet the content hash differs
            values.append("the same decisions and float values, but other content differs "
                          "(a text or integer column, or a hash edited in the lock)")
    lines = list(config)
    if a.get("input_hash") != b.get("input_hash"):
        lines.append(f"its input differs ({_short(a.get('input_hash'))} -> {_short(b.get('input_hash'))})")
    lines += counts + values
    if not same_decisions and (a.get("decisions_hash") or b.get("decisions_hash")):
        lines.append(f"decisions {_short(a.get('decisions_hash'))} -> {_short(b.get('decisions_hash'))}")
    lines.append(f"output hash {_short(a.get('output_hash'))} -> {_short(b.get('output_hash'))}")
    return "different", lines, (0.0, "")


def _changed_side(step: str, old_build: Path | None, new_build: Path | None, limit: int = 10) -> list[str]:
    """The records kept in one build and rejected in the other, from the two step folders."""
    if old_build is None or new_build is None:
        return []
    import polars as pl

    try:
        old_kept = set(pl.read_parquet(old_build / step / "kept.parquet", columns=["id"])["id"].to_list())
        new = pl.read_parquet(new_build / step / "kept.parquet", columns=["id"])["id"].to_list()
        new_rej = pl.read_parquet(new_build / step / "rejected.parquet")
        old_rej = pl.read_parquet(old_build / step / "rejected.parquet")
    except Exception:  # an old build that is incomplete or of another shape: nothing to name
        return []
    new_kept = set(new)
    lines = []
    for label, gone, table in (("now rejected", old_kept - new_kept, new_rej), ("now kept", new_kept - old_kept, old_rej)):
        rows = table.filter(pl.col("id").is_in(sorted(gone))).head(limit)
        for rid, rule, reason in zip(rows["id"].to_list(), rows["rule"].to_list(), rows["reason"].to_list()):
            was = "" if label == "now rejected" else " (was: "
            lines.append(f"{label}: {rid}" + (f" by {rule}: {reason}" if label == "now rejected" else f"{was}{rule}: {reason})"))
        if len(gone) > limit:
            lines.append(f"... and {len(gone) - limit} more {label}")
    return lines


def _near_threshold(a: dict, b: dict) -> list[str]:
    pairs = {tuple(p[:2]): p for p in (a.get("near_threshold") or []) + (b.get("near_threshold") or [])}
    return [f"pair {x} ~ {y}: {measure} {sim} lies within float noise of the threshold {thr}; "
            f"another CPU's last bits can put it on either side" for (x, y), (_, _, measure, sim, thr) in sorted(pairs.items())]


def _version_hints(old: dict, new: dict) -> list[str]:
    moved = {k: (v, new.get("versions", {}).get(k)) for k, v in old.get("versions", {}).items()
             if new.get("versions", {}).get(k) != v}
    if not moved:
        return []
    return ["versions differ (a hint, not a failure): " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(moved.items()))]


def _changed(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(a.keys() | b.keys()):
            yield from _changed(a.get(k), b.get(k), f"{prefix}{k}" if not prefix else f"{prefix}.{k}")
    elif a != b:
        yield prefix, (a, b)

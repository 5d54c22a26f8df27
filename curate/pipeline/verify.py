"""`curate verify`: rebuild from the inputs into a scratch folder (judge cache allowed, cached
step outputs and embeddings not) and compare with the lock, naming the first step that differs."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..config import ConfigError
from .spec import lock_path


def read_lock(pipeline_path) -> dict:
    path = lock_path(pipeline_path)
    if not path.is_file():
        raise ConfigError(f"{path}: no lock file; `curate run {pipeline_path}` writes it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None


def verify(pipeline_path, echo=print, engine: str | None = None) -> list[str]:
    """Rebuild and diff against the lock; returns the differences (empty: identical)."""
    from .build import build

    locked = read_lock(pipeline_path)
    with tempfile.TemporaryDirectory(prefix="curate-verify-") as tmp:
        fresh = build(pipeline_path, force=True, output=Path(tmp) / "build", embed_cache=str(Path(tmp) / "embeddings"),
                      write_lock=False, engine=engine, echo=echo)
    return diff(locked, fresh)


def _short(h) -> str:
    return str(h)[:12] if h else "-"


def diff(old: dict, new: dict) -> list[str]:
    """Readable differences between two locks: the inputs, then the first step that differs
    (config files, options, input, counts per rule, output hash), then the final files."""
    out = []
    if old.get("pipeline") != new.get("pipeline"):
        out.append(f"pipeline name: {old.get('pipeline')} -> {new.get('pipeline')}")
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
    old_steps, new_steps = old.get("steps", []), new.get("steps", [])
    for a, b in zip(old_steps, new_steps):
        lines = _step_diff(a, b)
        if lines:
            out.append(f"first step that differs: {b['step']}")
            out.extend("  " + line for line in lines)
            break
    if len(old_steps) != len(new_steps):
        out.append(f"steps: {len(old_steps)} in the lock, {len(new_steps)} now "
                   f"({', '.join(s['step'] for s in old_steps)} -> {', '.join(s['step'] for s in new_steps)})")
    old_out, new_out = old.get("outputs", {}), new.get("outputs", {})
    for name in sorted(old_out.keys() | new_out.keys()):
        if old_out.get(name) != new_out.get(name):
            out.append(f"output {name}: {_short(old_out.get(name))} -> {_short(new_out.get(name))}")
    if out:
        moved = {k: (v, new.get("versions", {}).get(k)) for k, v in old.get("versions", {}).items()
                 if new.get("versions", {}).get(k) != v}
        if moved:
            out.append("versions differ (they may explain it): " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(moved.items())))
    return out


def _step_diff(a: dict, b: dict) -> list[str]:
    lines = []
    if a.get("kind") != b.get("kind"):
        return [f"kind {a.get('kind')} -> {b.get('kind')}"]
    fa, fb = a.get("files", {}), b.get("files", {})
    for path in sorted(fa.keys() | fb.keys()):
        if fa.get(path) != fb.get(path):
            what = "added" if path not in fa else "no longer read" if path not in fb else \
                f"changed ({_short(fa[path])} -> {_short(fb[path])})"
            lines.append(f"config file {path}: {what}")
    for key, (x, y) in _changed(a.get("options", {}), b.get("options", {})):
        lines.append(f"option {key}: {json.dumps(x)} -> {json.dumps(y)}")
    if a.get("config_hash") != b.get("config_hash") and not lines:
        lines.append(f"config hash {_short(a.get('config_hash'))} -> {_short(b.get('config_hash'))}")
    if a.get("input_hash") != b.get("input_hash"):
        lines.append(f"its input differs ({_short(a.get('input_hash'))} -> {_short(b.get('input_hash'))})")
    for k in ("in", "kept", "rejected"):
        if a.get(k) != b.get(k):
            lines.append(f"{k} {a.get(k)} -> {b.get(k)}")
    ra, rb = a.get("rules", {}), b.get("rules", {})
    for rule in sorted(ra.keys() | rb.keys()):
        if ra.get(rule, 0) != rb.get(rule, 0):
            lines.append(f"rejected by {rule}: {ra.get(rule, 0)} -> {rb.get(rule, 0)}")
    if a.get("output_hash") != b.get("output_hash"):
        lines.append(f"output hash {_short(a.get('output_hash'))} -> {_short(b.get('output_hash'))}")
    return lines


def _changed(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(a.keys() | b.keys()):
            yield from _changed(a.get(k), b.get(k), f"{prefix}{k}" if not prefix else f"{prefix}.{k}")
    elif a != b:
        yield prefix, (a, b)

"""Gather what the report shows from a `curate run` build folder (and the training runs
that trained on it): plain dicts and lists, no HTML."""
from __future__ import annotations

import json
from pathlib import Path

from ..config import ConfigError

# What the report indexes in a manifest (a broken one is one line naming it).
MANIFEST_SHAPE = {"pipeline": str, "inputs": [{"records?": int}], "build?": dict, "outputs?": dict, "versions?": dict,
                  "steps": [{"step": str, "kind": str, "in": int, "kept": int, "rejected": int, "rules": dict,
                             "options": dict}]}
EXAMPLES_PER_RULE = 3
CLUSTERS_SHOWN = 5
SNIPPET = 280


def snippet(messages, limit: int = SNIPPET) -> str:
    """The conversation in one short string: role-tagged turns, cut at ``limit`` characters."""
    parts = [f"[{m['role']}] {' '.join(str(m['content']).split())}" for m in (messages or [])]
    text = "  ".join(parts)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def collect(build: Path, train_dirs: list[Path] | None = None) -> dict:
    import polars as pl

    from ..jsonfile import read_json

    build = Path(build)
    if not (build / "manifest.json").is_file():
        raise ConfigError(f"{build}: no manifest.json; `curate run PIPELINE` writes one when a build completes")
    manifest = read_json(build / "manifest.json", "`curate run` manifest", MANIFEST_SHAPE)
    steps = []
    for s in manifest["steps"]:
        folder = build / s["step"]
        stats = read_json(folder / "stats.json", "step's stats.json", dict)
        rejected = pl.read_parquet(folder / "rejected.parquet")
        step = {**{k: s[k] for k in ("step", "kind", "in", "kept", "rejected", "rules", "options")},
                "seconds": stats.get("seconds"), "examples": _examples(rejected),
                "status": manifest.get("build", {}).get(s["step"], {}).get("status")}
        if s["kind"] == "dedup" and (folder / "clusters.parquet").is_file():
            step["dedup"] = _clusters(folder, stats)
        if s["kind"] == "score":
            step["score"] = {k: stats.get(k) for k in ("histogram", "judges", "agreement", "jury", "warnings")}
        if s["kind"] == "format":
            step["tokens"] = _tokens(folder, stats)
        steps.append(step)
    inputs = sum(i.get("records", 0) for i in manifest["inputs"])
    runs = [_training(d) for d in (train_dirs if train_dirs is not None else _find_training(build, manifest))]
    return {"pipeline": manifest["pipeline"], "pipeline_file": manifest.get("pipeline_file"), "build": str(build),
            "lock_sha256": manifest.get("lock_sha256"), "inputs": manifest["inputs"], "records_in": inputs,
            "steps": steps, "versions": manifest.get("versions", {}), "training": [r for r in runs if r]}


def _examples(rejected) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    if rejected.height == 0:
        return out
    for row in rejected.select("rule", "reason", "source", "messages").iter_rows(named=True):
        shown = out.setdefault(row["rule"], [])
        if len(shown) < EXAMPLES_PER_RULE:
            shown.append({"source": row["source"], "reason": row["reason"], "text": snippet(row["messages"])})
    return out


def _clusters(folder: Path, stats: dict) -> dict:
    import polars as pl

    clusters = pl.read_parquet(folder / "clusters.parquet")
    # rows are told apart by source (unique), not id (shared by exact copies); a build from
    # before clusters had sources falls back to ids
    key = "source" if "source" in clusters.columns else "id"
    texts = {}
    for name in ("kept.parquet", "rejected.parquet"):
        t = pl.read_parquet(folder / name, columns=[key, "messages"])
        texts.update(zip(t[key].to_list(), t["messages"].to_list()))
    sizes = clusters.group_by("cluster", "method").len().sort(["len", "cluster"], descending=[True, False])
    shown = []
    for cluster, method, size in sizes.head(CLUSTERS_SHOWN).iter_rows():
        members = clusters.filter(pl.col("cluster") == cluster).sort("similarity", descending=True, maintain_order=True)
        kept_id, kept_key = members["kept_id"][0], members[f"kept_{key}"][0]
        rows = list(members.iter_rows(named=True))
        kept_at = next((i for i, r in enumerate(rows) if r[key] == kept_key), None)
        if kept_at is not None:
            rows.pop(kept_at)  # the kept member (by id, in an old build: one of the copies)
        dups = [{"id": r["id"], "source": r.get("source"), "similarity": r["similarity"],
                 "text": snippet(texts.get(r[key]), 160)} for r in rows]
        shown.append({"method": method, "size": size, "kept_id": kept_id, "kept_source": kept_key if key == "source" else None,
                      "kept": snippet(texts.get(kept_key), 200), "duplicates": dups[:6], "more": max(0, len(dups) - 6)})
    return {"methods": stats.get("methods", []), "clusters": shown, "n_clusters": sizes.height,
            "largest": int(sizes["len"].max()) if sizes.height else 0}


def _tokens(folder: Path, stats: dict) -> dict:
    import polars as pl

    kept = pl.read_parquet(folder / "kept.parquet", columns=["n_tokens", "n_train_tokens", "split"])
    return {"n_tokens": kept["n_tokens"].to_list(), "n_train_tokens": kept["n_train_tokens"].to_list(),
            "split": dict(zip(*kept.group_by("split").len().sort("split").get_columns())) if kept.height else {},
            "stats": stats.get("tokens") or {}, "template": stats.get("template"), "tokenizer": stats.get("tokenizer"),
            "max_tokens": stats.get("max_tokens")}


def _find_training(build: Path, manifest: dict) -> list[Path]:
    """Training runs that trained on this build's final train.jsonl: inside the build folder or
    beside it."""
    final = manifest.get("outputs", {}).get(f"{manifest.get('final')}/train.jsonl")
    if not final:
        return []
    found = []
    for prov in sorted([*build.glob("*/provenance.json"), *build.parent.glob("*/provenance.json")]):
        try:
            files = json.loads(prov.read_text(encoding="utf-8"))["dataset"]["files"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if files.get("train") == final and prov.parent not in found:
            found.append(prov.parent)
    return found


def _training(folder: Path) -> dict | None:
    try:
        history = json.loads((folder / "history.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    prov = {}
    try:
        prov = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    return {"folder": str(folder), "model": prov.get("model"), "method": prov.get("method"),
            "dataset_hash": (prov.get("dataset") or {}).get("hash"), "train_loss": train, "eval_loss": evals,
            "eval_before": evals[0][1] if evals else None, "eval_after": evals[-1][1] if evals else None,
            "eval_best": min(v for _, v in evals) if evals else None}


def summary(data: dict) -> list[str]:
    """The report's gist as text lines, for the terminal."""
    lines = [f"pipeline {data['pipeline']}: {data['records_in']} records in"]
    for s in data["steps"]:
        top = sorted(((n, r) for r, n in s["rules"].items() if n), reverse=True)[:3]
        why = ", ".join(f"{r} {n}" for n, r in top)
        lines.append(f"  {s['step']:<10} {s['in']:>7} -> {s['kept']:>7}" + (f"   ({why})" if why else ""))
    everything: dict[str, int] = {}
    for s in data["steps"]:
        for r, n in s["rules"].items():
            everything[r] = everything.get(r, 0) + n
    top = sorted(((n, r) for r, n in everything.items() if n), reverse=True)[:5]
    if top:
        lines.append("top rejection reasons: " + ", ".join(f"{r} {n}" for n, r in top))
    for run in data["training"]:
        if run["eval_before"] is not None:
            lines.append(f"training {run['folder']}: eval loss {run['eval_before']:.4f} before, "
                         f"{run['eval_after']:.4f} after ({len(run['train_loss'])} logged steps)")
    return lines

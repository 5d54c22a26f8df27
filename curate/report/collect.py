"""Gather what the report shows from a `curate run` build folder (and the training runs
that trained on it): plain dicts and lists, no HTML."""
from __future__ import annotations

import json
from pathlib import Path

from .. import stages
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


MORE_EXAMPLES = 20      # further examples per rule, behind "N more"
DUPLICATES_SHOWN = 6    # duplicates per cluster shown open; up to MORE_DUPLICATES more behind "N more"
MORE_DUPLICATES = 30
FULL_TEXT = 4000        # characters of a record shown in full (side by side, samples)
SAMPLES = 4             # kept records of a format step shown as rendered for training
# The counts _read_manifest indexes and sorts by in a step folder's stats.json: a hand-edited
# "many" or 1e400 would be a ValueError/OverflowError traceback from int() otherwise.
STEP_STATS_SHAPE = {"in?": int, "kept?": int, "rejected?": int, "rules?": dict}


def read_table(path: Path, **kwargs):
    """A parquet file of a step folder, or one line naming it: a file cut short or overwritten
    (a crash, a full disk, a hand edit) is a polars ComputeError traceback otherwise."""
    import polars as pl

    return _parquet(pl.read_parquet, path, **kwargs)


def read_schema(path: Path):
    """pl.read_parquet_schema, one line naming the file on failure (as :func:`read_table`)."""
    import polars as pl

    return _parquet(pl.read_parquet_schema, path)


def _parquet(reader, path: Path, **kwargs):
    import polars as pl

    try:
        return reader(path, **kwargs)
    except (pl.exceptions.PolarsError, OSError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{path}: cannot read this parquet file (cut short, or not written by curate?): "
                          f"{why}") from None


def full_text(messages, limit: int = FULL_TEXT) -> str:
    """The conversation as role-tagged lines (whitespace kept), cut at ``limit`` characters."""
    text = "\n".join(f"[{m['role']}] {m['content']}" for m in (messages or []))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _read_manifest(build: Path) -> dict:
    """The build's manifest; for a folder made by separate commands (`curate filter -o F/filter`,
    `curate dedup ...`: step folders with stats.json, no manifest), one assembled from the
    step folders' stats.json, ordered as a chain (each step's input is the previous one's output,
    so larger inputs first)."""
    from ..jsonfile import read_json

    if (build / "manifest.json").is_file():
        return read_json(build / "manifest.json", "`curate run` manifest", MANIFEST_SHAPE)
    folders = [build] if (build / "stats.json").is_file() else [
        f for f in sorted(build.iterdir()) if (f / "stats.json").is_file() and (f / "rejected.parquet").is_file()
    ] if build.is_dir() else []
    if not folders:
        raise ConfigError(f"{build}: no manifest.json and no step folders (with stats.json); `curate run PIPELINE` "
                          "writes a build, `curate filter/dedup/score/format -o FOLDER` a step folder")
    steps = []
    for f in folders:
        st = read_json(f / "stats.json", "step's stats.json", STEP_STATS_SHAPE)
        kind = str(st.get("stage") or ("dedup" if (f / "clusters.parquet").is_file() else "filter"))
        steps.append({"step": f.name if f != build else build.name, "kind": kind, "in": int(st.get("in", 0)),
                      "kept": int(st.get("kept", 0)), "rejected": int(st.get("rejected", 0)),
                      "rules": st.get("rules") or {}, "options": {}, "_folder": f})
    steps.sort(key=lambda s: (-s["in"], stages.order(s["kind"]), s["step"]))
    return {"pipeline": Path(build).resolve().name or str(build), "inputs": [{"path": "(separate commands: no manifest.json)",
                                               "records": steps[0]["in"]}], "steps": steps, "separate": True}


def collect(build: Path, train_dirs: list[Path] | None = None) -> dict:
    from ..jsonfile import read_json

    build = Path(build)
    manifest = _read_manifest(build)
    steps = []
    for s in manifest["steps"]:
        folder = s.get("_folder") or build / s["step"]
        stats = read_json(folder / "stats.json", "step's stats.json", dict)
        rejected = read_table(folder / "rejected.parquet")
        timing = manifest.get("build", {}).get(s["step"], {})
        step = {**{k: s[k] for k in ("step", "kind", "in", "kept", "rejected", "rules", "options")},
                "seconds": stats.get("seconds"), "examples": _examples(rejected),
                "status": timing.get("status")}
        if step["status"] == "cached":
            # the seconds of the run that made the step (step.json records them), not this
            # build's check of the cache
            ran = timing.get("stage_seconds")
            if ran is None and (folder / "step.json").is_file():
                ran = (read_json(folder / "step.json", "step.json", dict).get("counts") or {}).get("seconds")
            step["ran_seconds"] = ran if ran is not None else stats.get("seconds")
            step["seconds"] = timing.get("seconds")
        if s["kind"] == "dedup" and (folder / "clusters.parquet").is_file():
            step["dedup"] = _clusters(folder, stats)
        if s["kind"] == "score":
            step["score"] = {k: stats.get(k) for k in ("histogram", "judges", "agreement", "jury", "warnings")}
        if s["kind"] == "format" and (folder / "kept.parquet").is_file():
            step["tokens"] = _tokens(folder, stats)
            step["samples"] = _samples(folder, stats)
        steps.append(step)
    inputs = sum(i.get("records", 0) for i in manifest["inputs"])
    runs = [_training(d) for d in (train_dirs if train_dirs is not None else _find_training(build, manifest))]
    return {"pipeline": manifest["pipeline"], "pipeline_file": manifest.get("pipeline_file"), "build": str(build),
            "lock_sha256": manifest.get("lock_sha256"), "inputs": manifest["inputs"], "records_in": inputs,
            "steps": steps, "versions": manifest.get("versions", {}), "training": [r for r in runs if r],
            "separate": bool(manifest.get("separate"))}


def _examples(rejected) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    if rejected.height == 0:
        return out
    for row in rejected.select("rule", "reason", "source", "messages").iter_rows(named=True):
        shown = out.setdefault(row["rule"], [])
        if len(shown) < EXAMPLES_PER_RULE + MORE_EXAMPLES:
            shown.append({"source": row["source"], "reason": row["reason"], "text": snippet(row["messages"])})
    return out


def _clusters(folder: Path, stats: dict) -> dict:
    import polars as pl

    clusters = read_table(folder / "clusters.parquet")
    # rows are told apart by source (unique), not id (shared by exact copies); a build from
    # before clusters had sources falls back to ids
    key = "source" if "source" in clusters.columns else "id"
    texts = {}
    for name in ("kept.parquet", "rejected.parquet"):
        t = read_table(folder / name, columns=[key, "messages"])
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
        kept_full = full_text(texts.get(kept_key))
        dups = []
        for r in rows[:DUPLICATES_SHOWN + MORE_DUPLICATES]:
            full = full_text(texts.get(r[key]))
            dups.append({"id": r["id"], "source": r.get("source"), "similarity": r["similarity"],
                         "text": snippet(texts.get(r[key]), 160), "full": full, "diff": word_diff(kept_full, full)})
        shown.append({"method": method, "size": size, "kept_id": kept_id, "kept_source": kept_key if key == "source" else None,
                      "kept": snippet(texts.get(kept_key), 200), "kept_full": kept_full, "duplicates": dups,
                      "shown": DUPLICATES_SHOWN, "more": max(0, len(rows) - DUPLICATES_SHOWN)})
    return {"methods": stats.get("methods", []), "clusters": shown, "n_clusters": sizes.height,
            "largest": int(sizes["len"].max()) if sizes.height else 0}


def word_diff(a: str, b: str) -> tuple[list, list]:
    """``a`` and ``b`` as runs of (text, changed): the words (and the whitespace between them)
    that differ between the two, by difflib on word tokens."""
    import difflib
    import re

    wa, wb = re.findall(r"\s+|\S+", a), re.findall(r"\s+|\S+", b)
    left: list = []
    right: list = []

    def add(out, words, changed):
        if not words:
            return
        text = "".join(words)
        changed = changed and bool(text.strip())
        if out and out[-1][1] == changed:
            out[-1] = (out[-1][0] + text, changed)
        else:
            out.append((text, changed))

    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        add(left, wa[i1:i2], op != "equal")
        add(right, wb[j1:j2], op != "equal")
    return left, right


def trained_spans(text: str, messages) -> list[tuple[int, int]]:
    """Where the trained (assistant) turns' content lies in the rendered ``text``: each assistant
    turn not weighted 0, found in order. An approximation of the format step's own spans (it
    does not store them; they come from the template and the tokenizer): a template that rewrites
    the content (strips it, say) is matched on the stripped content, and the turn's closing
    token, which the step trains too, is not marked."""
    spans, at = [], 0
    for m in messages or []:
        if m.get("role") != "assistant" or m.get("weight") == 0:
            if m.get("content"):  # step past this turn's text so a later answer is not found in it
                found = text.find(str(m["content"]).strip(), at)
                at = found + len(str(m["content"]).strip()) if found >= 0 else at
            continue
        content = str(m.get("content") or "").strip()
        found = text.find(content, at) if content else -1
        if found >= 0:
            spans.append((found, found + len(content)))
            at = found + len(content)
    return spans


def _samples(folder: Path, stats: dict) -> list[dict]:
    cols = read_schema(folder / "kept.parquet")
    if "text" not in cols:
        return []
    kept = read_table(folder / "kept.parquet", n_rows=SAMPLES * 4,
                           columns=[c for c in ("source", "messages", "text", "n_tokens", "n_train_tokens", "split")
                                    if c in cols])
    rows = [r for r in kept.iter_rows(named=True) if r.get("split") in (None, "train")][:SAMPLES]
    exact = _format_spans(folder, stats, rows)
    out = []
    for r, spans in zip(rows, exact or [None] * len(rows)):
        text = r["text"][:FULL_TEXT]
        found = spans if spans is not None else trained_spans(r["text"], r.get("messages"))
        out.append({"source": r.get("source"), "text": text, "cut": len(r["text"]) > FULL_TEXT,
                    "spans": [(a, min(b, len(text))) for a, b in found if a < len(text)], "exact": spans is not None,
                    "n_tokens": r.get("n_tokens"), "n_train_tokens": r.get("n_train_tokens")})
    return out


def _format_spans(folder: Path, stats: dict, rows: list[dict]) -> list | None:
    """The trained character spans of ``rows`` as the format step finds them: its template
    (template.jinja in the step folder) rendered again with its tokenizer; a record whose text
    does not come out the same gets None (and the approximation). None when the tokenizer or
    the template cannot be had here (the tokenizer's folder is elsewhere, say)."""
    template = folder / "template.jinja"
    if not rows or not template.is_file() or not stats.get("tokenizer"):
        return None
    try:
        from ..format import _render
        from ..format.tokenizer import load_tokenizer

        tok = load_tokenizer(str(stats["tokenizer"]))
        rendered = _render(template.read_text(encoding="utf-8"), [r["messages"] for r in rows], tok)
    except Exception:  # noqa: BLE001  (any failure: the report still shows the records, approximately)
        return None
    return [sorted(tuple(s) for s in spans) if text == r["text"] else None
            for r, (text, spans, _) in zip(rows, rendered)]


def _tokens(folder: Path, stats: dict) -> dict:
    kept = read_table(folder / "kept.parquet", columns=["n_tokens", "n_train_tokens", "split"])
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

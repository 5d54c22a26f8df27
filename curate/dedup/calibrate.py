"""``curate dedup --method semantic --calibrate PAIRS.jsonl``: precision and recall of the
semantic rule per threshold on pairs a person labelled, and the threshold for a target precision.

The texts are embedded as the dedup step would embed them (boilerplate lines found among the
pairs' own texts left out, long texts in pieces), through the same embedding store.

A line of PAIRS.jsonl: ``{"a": A, "b": B, "duplicate": true|false}`` where A and B are each a
text, a list of messages (``[{"role": ..., "content": ...}]``) or ``{"prompt": ..., "response": ...}``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import ConfigError

THRESHOLDS = [round(0.80 + 0.01 * i, 2) for i in range(20)]


def _sides(x) -> tuple[str, str]:
    """(prompt, response) of one side of a labelled pair."""
    if isinstance(x, str):
        return x, ""
    if isinstance(x, dict):
        return str(x.get("prompt", "")), str(x.get("response", ""))
    if isinstance(x, list):
        prompt = "\n\n".join(str(m.get("content", "")).strip() for m in x if m.get("role") != "assistant")
        response = "\n\n".join(str(m.get("content", "")).strip() for m in x if m.get("role") == "assistant")
        return prompt, response
    raise ValueError("a side is a text, a list of messages or {prompt, response}")


def _text(prompt: str, response: str, on: str) -> str:
    return {"prompt": prompt, "response": response}.get(on) or "\n\n".join(p for p in (prompt, response) if p)


def read_pairs(path: str | Path) -> list[tuple[tuple[str, str], tuple[str, str], bool]]:
    pairs = []
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"--calibrate: cannot read {path}: {e.strerror or e}") from None
    # lines of bytes, each decoded on its own: a byte that is not UTF-8 is named by its line
    # (and a U+2028 inside a JSON string does not cut a line, as str.splitlines would)
    for n, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"--calibrate {path}, line {n}: not UTF-8 (byte {e.start + 1})") from None
        try:
            row = json.loads(line)
            label = row["duplicate"]
            if not isinstance(label, bool):
                raise ValueError("'duplicate' must be true or false")
            pairs.append((_sides(row["a"]), _sides(row["b"]), label))
        except RecursionError:  # json's parser recurses once per level of nesting
            raise ConfigError(f"--calibrate {path}, line {n}: nested too deeply to read") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"--calibrate {path}, line {n}: expected {{\"a\": ..., \"b\": ..., "
                              f"\"duplicate\": true|false}} ({e})") from None
    if not pairs:
        raise ConfigError(f"--calibrate {path}: no labelled pairs")
    return pairs


def calibrate(path: str | Path, config, target: float = 0.95, embedder=None) -> dict:
    from .check import Features, check_pair
    from .semantic import Embedder, exact_cosine

    pairs = read_pairs(path)
    emb = embedder or Embedder(config.model, config.batch_size, config.cache_dir, store=config.embeddings,
                               readonly=config.embeddings_readonly, encoder=config.encoder)
    texts = [_text(p, r, config.on) for a, b, _ in pairs for p, r in (a, b)]
    if config.boilerplate:  # as the dedup step would: lines many of these texts share are left out
        from .check import boilerplate_lines, strip_boilerplate

        texts, _ = strip_boilerplate(texts, boilerplate_lines(texts))
    vectors = emb.embed(texts)
    idx = np.arange(len(pairs))
    cos = exact_cosine(vectors, 2 * idx, 2 * idx + 1)
    passes = np.array([config.check == "off" or check_pair(Features(*a), Features(*b), config.on) is None
                       for a, b, _ in pairs])
    label = np.array([d for *_, d in pairs])
    rows = []
    for t in THRESHOLDS:
        pred = (cos >= t) & passes
        tp = int((pred & label).sum())
        rows.append({"threshold": t, "removed": int(pred.sum()), "true": tp,
                     "precision": round(tp / pred.sum(), 4) if pred.sum() else None,
                     "recall": round(tp / label.sum(), 4) if label.sum() else None})
    good = [r for r in rows if r["precision"] is not None and r["precision"] >= target]
    best = max(good, key=lambda r: (r["recall"] or 0, -r["threshold"])) if good else None
    return {"pairs": len(pairs), "duplicates": int(label.sum()), "check": config.check, "on": config.on,
            "target_precision": target, "rows": rows, "threshold": best["threshold"] if best else None,
            "failed_check": int((~passes).sum())}

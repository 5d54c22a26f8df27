"""The MinHash kernels and union-find (numba), at module level so numba's disk cache finds them.
Imported lazily by :mod:`.minhash`; see there for the algorithm."""
from __future__ import annotations

import numba as nb
import numpy as np

from ..hashconst import FNV_OFFSET, FNV_PRIME, GOLDEN, MIX1, MIX2
from ..textkernels import is_space, text_bytes


@nb.njit(cache=True, nogil=True, inline="always")
def units(cps, a, b, word_mode, seq):
    """Fill ``seq`` with a document's units: FNV-1a hashes of its words (split on white
    space, ASCII lower-cased: other text arrives casefolded) or its code points.
    Returns how many."""
    k = 0
    if word_mode:
        h = np.uint64(FNV_OFFSET)
        inword = False
        for i in range(a, b):
            c = cps[i]
            if is_space(c):
                if inword:
                    seq[k] = h
                    k += 1
                    inword = False
                h = np.uint64(FNV_OFFSET)
            else:
                inword = True
                if 65 <= c <= 90:
                    c += 32
                h = (h ^ np.uint64(c)) * np.uint64(FNV_PRIME)
        if inword:
            seq[k] = h
            k += 1
    else:
        for i in range(a, b):
            seq[k] = np.uint64(cps[i])
            k += 1
    return k


@nb.njit(cache=True, nogil=True, inline="always")
def gram_hash(seq, j, width):
    """Fold ``width`` units from ``j``, then the splitmix64 finaliser."""
    g = np.uint64(GOLDEN)
    for t in range(j, j + width):
        g = (g ^ seq[t]) * np.uint64(FNV_PRIME)
    g = g + np.uint64(GOLDEN)
    g = (g ^ (g >> np.uint64(30))) * np.uint64(MIX1)
    g = (g ^ (g >> np.uint64(27))) * np.uint64(MIX2)
    return g ^ (g >> np.uint64(31))


@nb.njit(cache=True, nogil=True)
def shingle(cps, starts, ends, word_mode, n):
    """Shingle hashes for each document, and their offsets (one shingle of all units
    when a document has fewer than n; an empty document gets the hash of nothing)."""
    D = starts.shape[0]
    seq = np.empty(cps.shape[0] + 1, dtype=np.uint64)
    counts = np.zeros(D, dtype=np.int64)
    for d in range(D):
        counts[d] = max(units(cps, starts[d], ends[d], word_mode, seq) - n + 1, 1)
    offsets = np.zeros(D + 1, dtype=np.int64)
    for d in range(D):
        offsets[d + 1] = offsets[d] + counts[d]
    out = np.empty(offsets[D], dtype=np.uint64)
    for d in range(D):
        k = units(cps, starts[d], ends[d], word_mode, seq)
        width = n if k >= n else k
        for j in range(counts[d]):
            out[offsets[d] + j] = gram_hash(seq, j, width)
    return out, offsets


@nb.njit(cache=True, nogil=True, fastmath=True, inline="always")
def sign_one(cps, a_, b_, word_mode, n, a, b, seq, m):
    """One document's signature into ``m``, its units into the scratch ``seq``."""
    P = a.shape[0]
    k = units(cps, a_, b_, word_mode, seq)
    for p in range(P):
        m[p] = np.uint32(0xFFFFFFFF)
    width = n if k >= n else k
    for j in range(max(k - n + 1, 1)):
        x = np.uint32(gram_hash(seq, j, width) & np.uint64(0xFFFFFFFF))
        for p in range(P):  # the loop the compiler vectorises
            # numba widens integer products to 64 bits: truncate to get mod 2^32
            v = np.uint32(np.uint32(a[p] * x) + b[p])
            v = np.uint32(v ^ (v >> np.uint32(15)))
            m[p] = min(m[p], v)


@nb.njit(cache=True, nogil=True, fastmath=True, parallel=True)
def sign_docs(cps, starts, ends, word_mode, n, a, b, out):
    """Shingle and sign in one pass, documents in parallel: no shingle array is
    materialised. Same values as shingle() followed by signatures()."""
    for d in nb.prange(starts.shape[0]):
        seq = np.empty(ends[d] - starts[d] + 1, dtype=np.uint64)
        sign_one(cps, starts[d], ends[d], word_mode, n, a, b, seq, out[d])


@nb.njit(cache=True, nogil=True, fastmath=True)
def sign_docs_serial(cps, starts, ends, word_mode, n, a, b, out):
    """sign_docs on one thread: starting numba's thread pool costs a quarter of a CPU
    second, more than signing 40,000 documents."""
    longest = 0
    for d in range(starts.shape[0]):
        longest = max(longest, ends[d] - starts[d])
    seq = np.empty(longest + 1, dtype=np.uint64)
    for d in range(starts.shape[0]):
        sign_one(cps, starts[d], ends[d], word_mode, n, a, b, seq, out[d])


@nb.njit(cache=True, nogil=True, fastmath=True, parallel=True)
def sign_spans(addresses, lengths, rows, n, a, b, out):
    """sign_docs on word shingles of ASCII texts read in place (``textkernels.utf8_spans``):
    their bytes are their code points. Only the documents in ``rows``."""
    for r in nb.prange(rows.shape[0]):
        d = rows[r]
        seq = np.empty(lengths[d] + 1, dtype=np.uint64)
        sign_one(text_bytes(addresses, lengths, d), 0, lengths[d], True, n, a, b, seq, out[d])


@nb.njit(cache=True, nogil=True, fastmath=True)
def sign_spans_serial(addresses, lengths, rows, n, a, b, out):
    longest = 0
    for r in range(rows.shape[0]):
        longest = max(longest, lengths[rows[r]])
    seq = np.empty(longest + 1, dtype=np.uint64)
    for r in range(rows.shape[0]):
        d = rows[r]
        sign_one(text_bytes(addresses, lengths, d), 0, lengths[d], True, n, a, b, seq, out[d])


@nb.njit(cache=True, nogil=True, fastmath=True)
def signatures(hashes, offsets, a, b, out):
    P = a.shape[0]
    x32 = (hashes & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    for d in range(offsets.shape[0] - 1):
        m = out[d]
        for p in range(P):
            m[p] = np.uint32(0xFFFFFFFF)
        for s in range(offsets[d], offsets[d + 1]):
            x = x32[s]
            for p in range(P):  # the loop the compiler vectorises
                # numba widens integer products to 64 bits: truncate to get mod 2^32
                v = np.uint32(np.uint32(a[p] * x) + b[p])
                v = np.uint32(v ^ (v >> np.uint32(15)))
                m[p] = min(m[p], v)


@nb.njit(cache=True, nogil=True)
def jaccard_pairs(sets, offsets, left, right):
    """True Jaccard of sorted unique hash sets, per pair."""
    out = np.empty(left.shape[0], dtype=np.float64)
    for k in range(left.shape[0]):
        i, j = left[k], right[k]
        p, pe = offsets[i], offsets[i + 1]
        q, qe = offsets[j], offsets[j + 1]
        inter = 0
        while p < pe and q < qe:
            if sets[p] == sets[q]:
                inter += 1
                p += 1
                q += 1
            elif sets[p] < sets[q]:
                p += 1
            else:
                q += 1
        union = (offsets[i + 1] - offsets[i]) + (offsets[j + 1] - offsets[j]) - inter
        out[k] = inter / union if union else 1.0
    return out


@nb.njit(cache=True, nogil=True)
def band_keys_kernel(sigs, bands, rows, out):
    for d in range(sigs.shape[0]):  # one thread: memory-bound, and a thread pool costs more
        for band in range(bands):
            key = np.uint64(FNV_OFFSET)
            for r in range(band * rows, band * rows + rows):
                key = (key ^ np.uint64(sigs[d, r])) * np.uint64(FNV_PRIME)
            out[d, band] = key


@nb.njit(cache=True, nogil=True, inline="always")
def _root(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        parent[x], x = root, parent[x]
    return root


@nb.njit(cache=True, nogil=True)
def union_find(parent, left, right):
    """Join each pair's sets, the smaller index the root, so that afterwards every item's
    root, written into ``parent``, is the smallest index of its component."""
    for k in range(left.shape[0]):
        ra, rb = _root(parent, left[k]), _root(parent, right[k])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    for i in range(parent.shape[0]):
        parent[i] = _root(parent, i)



@nb.njit(cache=True, nogil=True)
def band_pairs(keys, big_bucket):
    """Pairs, encoded ``i * n + j`` (i < j, repeats possible), of documents with the same
    key in some band: every pair in a bucket of up to ``big_bucket`` members, a larger
    bucket linked as a star to its first member. One open-addressing table per band, so
    grouping costs one pass, not a sort; keys are compared whole, so only equal keys
    share a bucket, as with sorting."""
    n, nb_ = keys.shape
    size = 16
    while size < 2 * n:
        size *= 2
    mask = np.uint64(size - 1)
    tkeys = np.empty(size, dtype=np.uint64)
    thead = np.empty(size, dtype=np.int64)  # a bucket's first document, -1: an empty slot
    ttail = np.empty(size, dtype=np.int64)  # its last so far
    tcount = np.empty(size, dtype=np.int64)
    slot_of = np.empty(n, dtype=np.int64)
    prev = np.empty(n, dtype=np.int64)  # the member before this one in its bucket, -1 for the first
    out = np.empty(max(n, 16), dtype=np.int64)
    k = 0
    for band in range(nb_):
        thead[:] = -1
        for d in range(n):
            key = keys[d, band]
            slot = (key ^ (key >> np.uint64(29))) & mask
            while thead[slot] != -1 and tkeys[slot] != key:
                slot = (slot + np.uint64(1)) & mask
            if thead[slot] == -1:
                tkeys[slot], thead[slot], tcount[slot], prev[d] = key, d, 1, -1
            else:
                prev[d] = ttail[slot]
                tcount[slot] += 1
            ttail[slot] = d
            slot_of[d] = slot
        for d in range(n):
            s = slot_of[d]
            if prev[d] == -1:
                continue
            if tcount[s] > big_bucket:
                need, p = 1, thead[s]
            else:
                need, p = 0, prev[d]
                while p != -1:
                    need += 1
                    p = prev[p]
                p = prev[d]
            if k + need > out.shape[0]:
                grown = np.empty(2 * out.shape[0] + need, dtype=np.int64)
                grown[:k] = out[:k]
                out = grown
            if tcount[s] > big_bucket:
                out[k] = p * n + d
                k += 1
            else:
                while p != -1:
                    out[k] = p * n + d
                    k += 1
                    p = prev[p]
    return out[:k]

"""The MinHash kernels and union-find (numba), at module level so numba's disk cache finds them.
Imported lazily by :mod:`.minhash`; see there for the algorithm."""
from __future__ import annotations

import numba as nb
import numpy as np

from ..textkernels import is_space


@nb.njit(cache=True, nogil=True, inline="always")
def units(cps, a, b, word_mode, seq):
    """Fill ``seq`` with a document's units: FNV-1a hashes of its words (split on white
    space, ASCII lower-cased: other text arrives casefolded) or its code points.
    Returns how many."""
    k = 0
    if word_mode:
        h = np.uint64(0xCBF29CE484222325)
        inword = False
        for i in range(a, b):
            c = cps[i]
            if is_space(c):
                if inword:
                    seq[k] = h
                    k += 1
                    inword = False
                h = np.uint64(0xCBF29CE484222325)
            else:
                inword = True
                if 65 <= c <= 90:
                    c += 32
                h = (h ^ np.uint64(c)) * np.uint64(0x100000001B3)
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
    g = np.uint64(0x9E3779B97F4A7C15)
    for t in range(j, j + width):
        g = (g ^ seq[t]) * np.uint64(0x100000001B3)
    g = g + np.uint64(0x9E3779B97F4A7C15)
    g = (g ^ (g >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    g = (g ^ (g >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
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


@nb.njit(cache=True, nogil=True, fastmath=True, parallel=True)
def sign_docs(cps, starts, ends, word_mode, n, a, b, out):
    """Shingle and sign in one pass, documents in parallel: no shingle array is
    materialised. Same values as shingle() followed by signatures()."""
    P = a.shape[0]
    for d in nb.prange(starts.shape[0]):
        seq = np.empty(ends[d] - starts[d] + 1, dtype=np.uint64)
        k = units(cps, starts[d], ends[d], word_mode, seq)
        m = out[d]
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


@nb.njit(cache=True, nogil=True, parallel=True)
def band_keys_kernel(sigs, bands, rows, out):
    for d in nb.prange(sigs.shape[0]):
        for band in range(bands):
            key = np.uint64(0xCBF29CE484222325)
            for r in range(band * rows, band * rows + rows):
                key = (key ^ np.uint64(sigs[d, r])) * np.uint64(0x100000001B3)
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

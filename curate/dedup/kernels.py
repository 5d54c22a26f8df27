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


def _ascii_table() -> np.ndarray:
    """Per ASCII byte: 256 where str.split() splits (white space), else the byte lower-cased."""
    t = np.empty(256, dtype=np.uint16)
    for c in range(256):
        t[c] = 256 if (c == 32 or 9 <= c <= 13 or 28 <= c <= 31) else (c + 32 if 65 <= c <= 90 else c)
    return t


ASCII = _ascii_table()


@nb.njit(cache=True, nogil=True, inline="always")
def _ascii_step(text, pos, end, h, inword, seq, o):
    """units() for one byte of ASCII text, without a branch: the word hash so far is
    written at ``o`` every time and kept (o advanced) only where a word ends. Past
    ``end`` the byte reads as a space, which ends the last word."""
    return _ascii_byte(ASCII[text[pos] if pos < end else 32], h, inword, seq, o)


@nb.njit(cache=True, nogil=True, inline="always")
def _ascii_byte(t, h, inword, seq, o):
    """_ascii_step on the byte's ASCII entry ``t``. ``inword`` and ``o`` are unsigned: a
    signed index costs a negative-index check on every store."""
    space = np.uint64(t >> np.uint16(8))
    seq[o] = h
    o += space & inword
    grown = (h ^ np.uint64(t & np.uint16(0xFF))) * np.uint64(FNV_PRIME)
    return np.uint64(FNV_OFFSET) if space else grown, np.uint64(1) - space, o


@nb.njit(cache=True, nogil=True, inline="always")
def _split_at_space(text, at, end):
    while at < end and ASCII[text[at]] < 256:
        at += 1
    return at


@nb.njit(cache=True, nogil=True, inline="always")
def ascii_words(text, L, seq):
    """units() of an ASCII text's words (the same values; ``seq`` needs L + 4 slots): the
    text cut at white space near its quarters into four runs hashed side by side. FNV-1a
    is a chain of dependent multiplies along a word, and a branch per word end
    mispredicts; four branch-free chains keep the multiplier busy instead. The first
    ``short`` bytes of every run need no end check: only the longer runs' tails do."""
    s1 = _split_at_space(text, L // 4, L)
    s2 = _split_at_space(text, max(L // 2, s1), L)
    s3 = _split_at_space(text, max(3 * L // 4, s2), L)
    n = max(max(s1, s2 - s1), max(s3 - s2, L - s3))
    short = min(min(s1, s2 - s1), min(s3 - s2, L - s3))
    h0 = h1 = h2 = h3 = np.uint64(FNV_OFFSET)
    w0 = w1 = w2 = w3 = np.uint64(0)
    # run r writes from s_r + r: it has at most s_{r+1} - s_r words (a word is at least one
    # byte), so even its write-always store never reaches the next run's first slot
    o0, o1, o2, o3 = np.uint64(0), np.uint64(s1 + 1), np.uint64(s2 + 2), np.uint64(s3 + 3)
    u1, u2, u3 = np.uint64(s1), np.uint64(s2), np.uint64(s3)
    for i in range(short):
        ui = np.uint64(i)
        h0, w0, o0 = _ascii_byte(ASCII[text[ui]], h0, w0, seq, o0)
        h1, w1, o1 = _ascii_byte(ASCII[text[u1 + ui]], h1, w1, seq, o1)
        h2, w2, o2 = _ascii_byte(ASCII[text[u2 + ui]], h2, w2, seq, o2)
        h3, w3, o3 = _ascii_byte(ASCII[text[u3 + ui]], h3, w3, seq, o3)
    for i in range(short, n + 1):
        h0, w0, o0 = _ascii_step(text, i, s1, h0, w0, seq, o0)
        h1, w1, o1 = _ascii_step(text, s1 + i, s2, h1, w1, seq, o1)
        h2, w2, o2 = _ascii_step(text, s2 + i, s3, h2, w2, seq, o2)
        h3, w3, o3 = _ascii_step(text, s3 + i, L, h3, w3, seq, o3)
    k = np.int64(o0)
    for j in range(s1 + 1, np.int64(o1)):
        seq[k] = seq[j]
        k += 1
    for j in range(s2 + 2, np.int64(o2)):
        seq[k] = seq[j]
        k += 1
    for j in range(s3 + 3, np.int64(o3)):
        seq[k] = seq[j]
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


@nb.njit(cache=True, nogil=True, inline="always")
def mix64(x):
    """splitmix64 (increment, then finaliser)."""
    x = x + np.uint64(GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(MIX1)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(MIX2)
    return x ^ (x >> np.uint64(31))


EMPTY = 1 << 32  # an OPH bin no shingle fell into (bin values are < 2^31)
COPIED = 1 << 31  # marks a bin's value as copied in by densification (minhash.estimated_jaccard)


@nb.njit(cache=True, nogil=True, inline="always")
def gram_hashes(seq, k, n, g):
    """gram_hash of every n-gram of the ``k`` units in ``seq``, into ``g``; returns how
    many. Loop by loop over all grams at once, not gram by gram: each loop then has no
    dependency between iterations, and the compiler vectorises it (64-bit multiplies,
    8 lanes), where the per-gram fold was a chain of dependent multiplies."""
    width = n if k >= n else k
    m = max(k - n + 1, 1)
    for j in range(m):
        g[j] = np.uint64(GOLDEN)
    for t in range(width):
        for j in range(m):
            g[j] = (g[j] ^ seq[j + t]) * np.uint64(FNV_PRIME)
    for j in range(m):
        g[j] = mix64(g[j])
    return m


@nb.njit(cache=True, nogil=True, inline="always")
def oph_bins(g, m, salt, w):
    """One-permutation hashing of ``m`` shingle hashes into the bins ``w``: one more hash
    of each picks its bin (high 32 bits, multiply-shift: fair for any bin count) and its
    value there (low 32 bits); a bin keeps its smallest value, EMPTY if none fell in."""
    P = w.shape[0] // 2
    for p in range(P):
        w[p] = np.uint64(EMPTY)
    for j in range(m):  # vectorised: the hashes first, then the scatter below
        g[j] = mix64(g[j] ^ salt)
    for j in range(m):
        h = g[j]
        i = ((h >> np.uint64(32)) * np.uint64(P)) >> np.uint64(32)
        w[i] = min(w[i], h & np.uint64(0x7FFFFFFF))  # branch-free: a compare-and-move


PROBE_SALT = 0x5DEECE66D  # keeps the probe sequences apart from the shingles' bin hash
PROBE_ROWS = 16  # probes kept in a table; a bin needing more (rare) computes them


@nb.njit(cache=True, nogil=True, inline="always")
def oph_probe(salt, i, t, P):
    """The t-th bin (t >= 1) an empty bin ``i`` copies from, if that one is filled."""
    h = mix64(mix64(salt ^ np.uint64(PROBE_SALT)) ^ (np.uint64(i) << np.uint64(32)) ^ np.uint64(t))
    return ((h >> np.uint64(32)) * np.uint64(P)) >> np.uint64(32)


@nb.njit(cache=True, nogil=True)
def oph_probes(salt, P):
    """oph_probe for t = 1..PROBE_ROWS and every bin: the same for every document."""
    out = np.empty((PROBE_ROWS, P), dtype=np.int32)
    for t in range(PROBE_ROWS):
        for i in range(P):
            out[t, i] = oph_probe(salt, i, t + 1, P)
    return out


@nb.njit(cache=True, nogil=True, inline="always")
def oph_finish(w, salt, probes, m):
    """Optimal densification (Shrivastava 2017): an empty bin i takes the value of the
    first bin that was filled by shingles along its own probe sequence
    oph_probe(i, t), t = 1, 2, ... The sequence depends on i alone, so two documents whose
    bin i is empty copy from the same bin whenever that bin is filled in both: each bin
    then agrees with probability exactly the Jaccard similarity, as a k-permutation
    MinHash row does. Copies come from the shingles' bins only, never from another copy.
    ``w`` holds the bins in its first half; its second half is scratch."""
    P = m.shape[0]
    for i in range(P):  # the first probe for every bin at once: a gather and a select
        v = w[i]
        u = w[probes[0, i]]
        w[P + i] = (u | np.uint64(COPIED)) if v == np.uint64(EMPTY) else v
    left = 0
    for i in range(P):  # the bins still empty, listed without a branch (into m, as scratch)
        m[left] = np.uint32(i)
        left += w[P + i] >= np.uint64(EMPTY)  # EMPTY, or EMPTY marked as copied
    for e in range(left):
        i = np.int64(m[e])
        t = 1
        while True:
            j = np.int64(probes[t, i]) if t < PROBE_ROWS else np.int64(oph_probe(salt, i, t + 1, P))
            if w[j] != np.uint64(EMPTY):
                w[P + i] = w[j] | np.uint64(COPIED)
                break
            t += 1
    for i in range(P):
        m[i] = np.uint32(w[P + i])


@nb.njit(cache=True, nogil=True, fastmath=True, inline="always")
def sign_hashes(g, ng, a, b, oph, salt, probes, w, m):
    """The signature into ``m`` of the ``ng`` shingle hashes in ``g`` (overwritten):
    one-permutation hashing (``oph``: ``probes`` from oph_probes, scratch ``w`` of twice
    the bins) or the k permutations ``a``, ``b``."""
    if oph:
        oph_bins(g, ng, salt, w)
        oph_finish(w, salt, probes, m)
        return
    P = m.shape[0]
    for p in range(P):
        m[p] = np.uint32(0xFFFFFFFF)
    for j in range(ng):
        x = np.uint32(g[j] & np.uint64(0xFFFFFFFF))
        for p in range(P):  # the loop the compiler vectorises
            # numba widens integer products to 64 bits: truncate to get mod 2^32
            v = np.uint32(np.uint32(a[p] * x) + b[p])
            v = np.uint32(v ^ (v >> np.uint32(15)))
            m[p] = min(m[p], v)


@nb.njit(cache=True, nogil=True, fastmath=True, inline="always")
def sign_one(cps, a_, b_, word_mode, n, a, b, oph, salt, probes, seq, g, w, m):
    """One document's signature into ``m``; ``seq``, ``g``: scratch for its units and
    shingle hashes (as long as the text, plus one), ``w``: for the bins."""
    k = units(cps, a_, b_, word_mode, seq)
    sign_hashes(g, gram_hashes(seq, k, n, g), a, b, oph, salt, probes, w, m)


@nb.njit(cache=True, nogil=True, fastmath=True, parallel=True)
def sign_docs(cps, starts, ends, word_mode, n, a, b, oph, salt, out):
    """Shingle and sign in one pass, documents in parallel: no shingle array is
    materialised. Same values as shingle() followed by signatures()."""
    probes = oph_probes(salt, out.shape[1]) if oph else np.zeros((1, 1), dtype=np.int32)
    for d in nb.prange(starts.shape[0]):
        seq = np.empty(ends[d] - starts[d] + 1, dtype=np.uint64)
        g = np.empty(ends[d] - starts[d] + 1, dtype=np.uint64)
        w = np.empty(2 * out.shape[1], dtype=np.uint64)
        sign_one(cps, starts[d], ends[d], word_mode, n, a, b, oph, salt, probes, seq, g, w, out[d])


@nb.njit(cache=True, nogil=True, fastmath=True)
def sign_docs_serial(cps, starts, ends, word_mode, n, a, b, oph, salt, out):
    """sign_docs on one thread: starting numba's thread pool costs a quarter of a CPU
    second, more than signing 40,000 documents."""
    probes = oph_probes(salt, out.shape[1]) if oph else np.zeros((1, 1), dtype=np.int32)
    longest = 0
    for d in range(starts.shape[0]):
        longest = max(longest, ends[d] - starts[d])
    seq = np.empty(longest + 1, dtype=np.uint64)
    g = np.empty(longest + 1, dtype=np.uint64)
    w = np.empty(2 * out.shape[1], dtype=np.uint64)
    for d in range(starts.shape[0]):
        sign_one(cps, starts[d], ends[d], word_mode, n, a, b, oph, salt, probes, seq, g, w, out[d])


@nb.njit(cache=True, nogil=True, fastmath=True, parallel=True)
def sign_spans(addresses, lengths, rows, n, a, b, oph, salt, out):
    """sign_docs on word shingles of ASCII texts read in place (``textkernels.utf8_spans``):
    their bytes are their code points. Only the documents in ``rows``."""
    probes = oph_probes(salt, out.shape[1]) if oph else np.zeros((1, 1), dtype=np.int32)
    for r in nb.prange(rows.shape[0]):
        d = rows[r]
        seq = np.empty(lengths[d] + 4, dtype=np.uint64)
        g = np.empty(lengths[d] + 1, dtype=np.uint64)
        w = np.empty(2 * out.shape[1], dtype=np.uint64)
        k = ascii_words(text_bytes(addresses, lengths, d), lengths[d], seq)
        sign_hashes(g, gram_hashes(seq, k, n, g), a, b, oph, salt, probes, w, out[d])


@nb.njit(cache=True, nogil=True, fastmath=True)
def sign_spans_serial(addresses, lengths, rows, n, a, b, oph, salt, out):
    probes = oph_probes(salt, out.shape[1]) if oph else np.zeros((1, 1), dtype=np.int32)
    longest = 0
    for r in range(rows.shape[0]):
        longest = max(longest, lengths[rows[r]])
    seq = np.empty(longest + 4, dtype=np.uint64)
    g = np.empty(longest + 1, dtype=np.uint64)
    w = np.empty(2 * out.shape[1], dtype=np.uint64)
    for r in range(rows.shape[0]):
        d = rows[r]
        k = ascii_words(text_bytes(addresses, lengths, d), lengths[d], seq)
        sign_hashes(g, gram_hashes(seq, k, n, g), a, b, oph, salt, probes, w, out[d])


@nb.njit(cache=True, nogil=True, fastmath=True)
def signatures(hashes, offsets, a, b, oph, salt, out):
    """sign_docs' values from shingle()'s hashes."""
    probes = oph_probes(salt, out.shape[1]) if oph else np.zeros((1, 1), dtype=np.int32)
    longest = 0
    for d in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[d + 1] - offsets[d])
    g = np.empty(longest, dtype=np.uint64)
    w = np.empty(2 * out.shape[1], dtype=np.uint64)
    for d in range(offsets.shape[0] - 1):
        ng = offsets[d + 1] - offsets[d]
        g[:ng] = hashes[offsets[d]:offsets[d + 1]]
        sign_hashes(g, ng, a, b, oph, salt, probes, w, out[d])


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
def agreement(sigs, left, right, oph, out):
    """minhash.estimated_jaccard per pair, one pass over the two rows (numpy gathers both
    rows of every pair into new arrays first). The counts are integers, so the ratio is
    the same float numpy's mean or division gives."""
    P = sigs.shape[1]
    for k in range(left.shape[0]):
        a, b = sigs[left[k]], sigs[right[k]]
        matched = 0
        both_copied = 0
        for p in range(P):
            if oph:
                matched += (a[p] == b[p]) & (a[p] < np.uint32(COPIED))
                both_copied += (a[p] & b[p]) >= np.uint32(COPIED)
            else:
                matched += a[p] == b[p]
        counted = P - both_copied
        out[k] = matched / counted if counted else np.nan  # 0/0, as numpy's division gives


@nb.njit(cache=True, nogil=True)
def band_keys_kernel(sigs, bands, rows, out):
    """Each band's key: FNV-1a fold of its rows. One thread: memory-bound, and a thread
    pool costs more. A document's bands are folded side by side, row by row: a band's
    fold is a chain of dependent multiplies, the bands' chains are independent (3x faster
    than one band after another)."""
    key = np.empty(bands, dtype=np.uint64)
    for d in range(sigs.shape[0]):
        for band in range(bands):
            key[band] = np.uint64(FNV_OFFSET)
        for r in range(rows):
            for band in range(bands):
                key[band] = (key[band] ^ np.uint64(sigs[d, band * rows + r])) * np.uint64(FNV_PRIME)
        for band in range(bands):
            out[d, band] = key[band]


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
    share a bucket, as with sorting. A slot holds its key and its bucket's first and last
    members side by side (one cache line a probe, where four arrays cost four misses);
    the count and first member live by document, touched in order or only on a repeat."""
    n, nb_ = keys.shape
    size = 16
    while size < 2 * n:
        size *= 2
    mask = np.uint64(size - 1)
    low = np.uint64(0xFFFFFFFF)
    table = np.empty((size, 2), dtype=np.uint64)  # key; first + 1 | last << 32 (0: empty; < 2^32 - 1 docs)
    first_of = np.empty(n, dtype=np.int64)
    count = np.empty(n, dtype=np.int64)  # a bucket's size, by its first member
    prev = np.empty(n, dtype=np.int64)  # the member before this one in its bucket, -1 for the first
    column = np.empty(n, dtype=np.uint64)
    out = np.empty(max(n, 16), dtype=np.int64)
    k = 0
    for band in range(nb_):
        table[:, 1] = 0
        column[:] = keys[:, band]  # one strided copy: the probes below then read in order
        repeats = 0
        for d in range(n):
            key = column[d]
            slot = (key ^ (key >> np.uint64(29))) & mask
            while table[slot, 1] != 0 and table[slot, 0] != key:
                slot = (slot + np.uint64(1)) & mask
            v = table[slot, 1]
            if v == 0:
                table[slot, 0] = key
                table[slot, 1] = np.uint64(d + 1) | (np.uint64(d) << np.uint64(32))
                first_of[d], count[d], prev[d] = d, 1, -1
            else:
                first = np.int64(v & low) - 1
                first_of[d], prev[d] = first, np.int64(v >> np.uint64(32))
                count[first] += 1
                table[slot, 1] = (v & low) | (np.uint64(d) << np.uint64(32))
                repeats += 1
        if repeats:
            out, k = _bucket_pairs(prev, first_of, count, big_bucket, n, out, k)
    return out[:k]


@nb.njit(cache=True, nogil=True, inline="always")
def _bucket_pairs(prev, first_of, count, big_bucket, n, out, k):
    """band_pairs' pairs of one band, appended to ``out`` from ``k`` (grown as needed)."""
    for d in range(n):
        if prev[d] == -1:
            continue
        big = count[first_of[d]] > big_bucket
        if big:
            need, p = 1, first_of[d]
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
        if big:
            out[k] = p * n + d
            k += 1
        else:
            while p != -1:
                out[k] = p * n + d
                k += 1
                p = prev[p]
    return out, k


@nb.njit(cache=True, nogil=True, inline="always")
def _turns_ascii(c_addr, c_len, c_null, t_addr, t_len, t0, t1):
    """Whether every byte a conversation's turns say (their contents, and the tool calls of
    turns with content: what filter.fields.turn_text takes) is ASCII."""
    bits = np.uint8(0)
    for t in range(t0, t1):
        if c_null[t]:
            continue
        text = text_bytes(c_addr, c_len, t)
        for i in range(c_len[t]):
            bits |= text[i]
        if t_len.shape[0]:
            calls = text_bytes(t_addr, t_len, t)
            for i in range(t_len[t]):
                bits |= calls[i]
    return bits < 128


@nb.njit(cache=True, nogil=True, inline="always")
def turn_words(c_addr, c_len, c_null, t_addr, t_len, t0, t1, seq):
    """units() of the conversation text (turns joined by white space) of ASCII turns
    t0..t1, read in place: each turn's words, then its tool calls' words, in turn order.
    The joined text's separators and trimmed edges are white space, so its words are
    exactly these. ``seq`` needs the turns' bytes + 4 slots."""
    k = 0
    for t in range(t0, t1):
        if c_null[t]:  # turn_text is null: the turn (and its tool calls) says nothing
            continue
        k += ascii_words(text_bytes(c_addr, c_len, t), c_len[t], seq[k:])
        if t_len.shape[0]:
            k += ascii_words(text_bytes(t_addr, t_len, t), t_len[t], seq[k:])
    return k


@nb.njit(cache=True, nogil=True, inline="always")
def _turn_bytes(c_len, t_len, t0, t1):
    total = 0
    for t in range(t0, t1):
        total += c_len[t] + (t_len[t] if t_len.shape[0] else 0)
    return total


@nb.njit(cache=True, nogil=True, fastmath=True, parallel=True)
def sign_turns(c_addr, c_len, c_null, t_addr, t_len, offsets, n, a, b, oph, salt, out, ascii):
    """sign_spans on the conversation text of each document, read from its turns in place
    (``offsets``: each document's turns; ``t_len`` empty when no turn calls a tool).
    Documents with a non-ASCII byte are left unsigned, ``ascii`` False."""
    probes = oph_probes(salt, out.shape[1]) if oph else np.zeros((1, 1), dtype=np.int32)
    for d in nb.prange(out.shape[0]):
        t0, t1 = offsets[d], offsets[d + 1]
        ascii[d] = _turns_ascii(c_addr, c_len, c_null, t_addr, t_len, t0, t1)
        if ascii[d]:
            total = _turn_bytes(c_len, t_len, t0, t1)
            seq = np.empty(total + 4, dtype=np.uint64)
            g = np.empty(total + 1, dtype=np.uint64)
            w = np.empty(2 * out.shape[1], dtype=np.uint64)
            k = turn_words(c_addr, c_len, c_null, t_addr, t_len, t0, t1, seq)
            sign_hashes(g, gram_hashes(seq, k, n, g), a, b, oph, salt, probes, w, out[d])


@nb.njit(cache=True, nogil=True, fastmath=True)
def sign_turns_serial(c_addr, c_len, c_null, t_addr, t_len, offsets, n, a, b, oph, salt, out, ascii):
    probes = oph_probes(salt, out.shape[1]) if oph else np.zeros((1, 1), dtype=np.int32)
    longest = 0
    for d in range(out.shape[0]):
        longest = max(longest, _turn_bytes(c_len, t_len, offsets[d], offsets[d + 1]))
    seq = np.empty(longest + 4, dtype=np.uint64)
    g = np.empty(longest + 1, dtype=np.uint64)
    w = np.empty(2 * out.shape[1], dtype=np.uint64)
    for d in range(out.shape[0]):
        t0, t1 = offsets[d], offsets[d + 1]
        ascii[d] = _turns_ascii(c_addr, c_len, c_null, t_addr, t_len, t0, t1)
        if ascii[d]:
            k = turn_words(c_addr, c_len, c_null, t_addr, t_len, t0, t1, seq)
            sign_hashes(g, gram_hashes(seq, k, n, g), a, b, oph, salt, probes, w, out[d])

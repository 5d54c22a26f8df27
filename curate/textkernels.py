"""Compiled (numba) passes over many texts at once, laid out as one code-point array.

Import this module only where it is used: numba is a heavy import. Kernels are defined at
module level so numba's on-disk cache (``cache=True``) can find them again.

Used where a column-wide pass needs per-text counting that polars can only express with
explode and group-by: Gopher's repetition measures, and MinHash shingling.
"""
from __future__ import annotations

import numba as nb
import numpy as np


def code_points(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One array of code points for many texts (uint8 when all ASCII, else uint32),
    with start/end per text."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    starts = np.zeros(len(texts), dtype=np.int64)
    if len(texts) > 1:
        starts[1:] = np.cumsum(lengths + 1)[:-1]
    joined = "\x00".join(texts)
    if joined.isascii():
        return np.frombuffer(joined.encode("ascii"), dtype=np.uint8), starts, starts + lengths
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return cps, starts, starts + lengths


@nb.njit(cache=True, nogil=True, inline="always")
def is_space(c):
    # str.split()'s white space: ASCII, NEL, NBSP, and the Unicode space separators
    return (c == 32 or (9 <= c <= 13) or (28 <= c <= 31) or c == 0x85 or c == 0xA0 or c == 0x1680
            or (0x2000 <= c <= 0x200A) or c == 0x2028 or c == 0x2029 or c == 0x202F or c == 0x205F
            or c == 0x3000)


@nb.njit(cache=True, nogil=True, inline="always")
def span_hash(cps, a, b):
    h = np.uint64(0xCBF29CE484222325)
    for i in range(a, b):
        h = (h ^ np.uint64(cps[i])) * np.uint64(0x100000001B3)
    return h


@nb.njit(cache=True, nogil=True, inline="always")
def dup_fraction(hashes, k):
    if k < 2:
        return 0.0
    if k <= 16:  # few items (most texts): compare pairwise, no allocation or sort
        dup = 0
        for i in range(1, k):
            for j in range(i):
                if hashes[i] == hashes[j]:
                    dup += 1
                    break
        return dup / k
    s = np.sort(hashes[:k])
    unique = 1
    for i in range(1, k):
        if s[i] != s[i - 1]:
            unique += 1
    return (k - unique) / k


@nb.njit(cache=True, nogil=True, inline="always")
def decode(data, i):
    """The code point at byte i of UTF-8 ``data``, and its width in bytes."""
    b = np.int64(data[i])
    if b < 0x80:
        return b, 1
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), 3
    return (((b & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12) | ((np.int64(data[i + 2]) & 0x3F) << 6)
            | (np.int64(data[i + 3]) & 0x3F)), 4


def utf8_column(texts: list[str], byte_lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Many texts as one UTF-8 byte array and byte offsets (len + 1)."""
    data = "".join(texts).encode("utf-8")
    return np.frombuffer(data, dtype=np.uint8), np.r_[0, np.cumsum(byte_lengths)].astype(np.int64)


@nb.njit(cache=True, nogil=True)
def count_runs(keys, lens, m):
    """Over the first m (key, length) items, grouping equal keys: the most frequent key's
    count and length (ties: the longest), the largest count * length, the largest count."""
    order = np.argsort(keys[:m])
    best_c, best_l, max_cl, max_c = 0, 0, 0, 0
    run = 1
    for r in range(1, m + 1):
        if r < m and keys[order[r]] == keys[order[r - 1]]:
            run += 1
            continue
        length = lens[order[r - 1]]
        if run > best_c or (run == best_c and length > best_l):
            best_c, best_l = run, length
        max_cl = max(max_cl, run * length)
        max_c = max(max_c, run)
        run = 1
    return best_c, best_l, max_cl, max_c


@nb.njit(cache=True, nogil=True, parallel=True)
def repetition(data, offsets, n_chars_of, do_lines, line_limit, do_paras, para_limit, ns, limits, min_words,
               kind, value, which):
    """Per text (UTF-8 bytes ``data[offsets[d]:offsets[d+1]]``, ``n_chars_of[d]``
    characters): kind 1 = duplicate lines, 2 = duplicate paragraphs, 3 = top n-gram
    (``which`` = n), 0 = none; ``value`` the fraction. Lines and paragraphs are
    stripped and blank ones dropped; paragraphs end at a line that is only white
    space; words split as str.split() does; an n-gram's length is its words joined
    by single spaces, in characters; the top n-gram is the most frequent, ties the
    longest."""
    for d in nb.prange(offsets.shape[0] - 1):
        a, b = offsets[d], offsets[d + 1]
        n_chars = n_chars_of[d]
        one_line = True  # a text of one line has no repeated lines or paragraphs
        for q in range(a, b):
            if data[q] == 10:
                one_line = False
                break
        short = ns.shape[0] == 0 or n_chars < 2 * min_words - 1  # n words need 2n - 1 characters
        if one_line and short:
            continue
        buf = np.empty(b - a + 2, dtype=np.uint64)
        if (do_lines or do_paras) and not one_line:
            k_lines = 0
            k_paras = 0
            pbuf = np.empty(b - a + 2, dtype=np.uint64)
            para_start = -1
            para_end = -1
            i = a
            while i <= b:
                j = i
                while j < b and data[j] != 10:
                    j += 1
                s = -1  # the line [i, j), stripped to [s, e)
                e = i
                p = i
                while p < j:
                    c, w = decode(data, p)
                    if not is_space(c):
                        if s < 0:
                            s = p
                        e = p + w
                    p += w
                if s >= 0:
                    buf[k_lines] = span_hash(data, s, e)
                    k_lines += 1
                    if para_start < 0:
                        para_start = s
                    para_end = e
                elif para_start >= 0:
                    pbuf[k_paras] = span_hash(data, para_start, para_end)
                    k_paras += 1
                    para_start = -1
                i = j + 1
            if para_start >= 0:
                pbuf[k_paras] = span_hash(data, para_start, para_end)
                k_paras += 1
            if do_lines:
                f = dup_fraction(buf, k_lines)
                if f > line_limit:
                    kind[d] = 1
                    value[d] = f
                    continue
            if do_paras:
                f = dup_fraction(pbuf, k_paras)
                if f > para_limit:
                    kind[d] = 2
                    value[d] = f
                    continue
        if short:
            continue
        words = buf
        lens = np.empty(b - a + 2, dtype=np.int64)
        k = 0
        inword = False
        h = np.uint64(0xCBF29CE484222325)
        length = 0
        p = a
        while p <= b:
            if p < b:
                c, w = decode(data, p)
            else:
                c, w = 32, 1
            if is_space(c):
                if inword:
                    words[k] = h
                    lens[k] = length
                    k += 1
                    inword = False
                h = np.uint64(0xCBF29CE484222325)
                length = 0
            else:
                inword = True
                h = (h ^ np.uint64(c)) * np.uint64(0x100000001B3)
                length += 1
            p += w
        if k < min_words:
            continue
        # An exact bound first: the top n-gram's c occurrences need c copies of each of
        # its words, so c * length <= n * U + (n - 1) * K, U the largest count * length
        # of one word, K the largest word count. Most texts stop here.
        _, _, big_u, big_k = count_runs(words, lens, k)
        grams = np.empty(k, dtype=np.uint64)
        glens = np.empty(k, dtype=np.int64)
        for t in range(ns.shape[0]):
            n = ns[t]
            m = k - n + 1
            if m < 1 or (n * big_u + (n - 1) * big_k) <= limits[t] * n_chars:
                continue
            for j in range(m):
                g = np.uint64(0x9E3779B97F4A7C15)
                gl = n - 1
                for q in range(j, j + n):
                    g = (g ^ words[q]) * np.uint64(0x100000001B3)
                    gl += lens[q]
                grams[j] = g
                glens[j] = gl
            best_c, best_l, _, _ = count_runs(grams, glens, m)
            f = best_c * best_l / n_chars if n_chars else 0.0
            if best_c > 1 and f > limits[t]:
                kind[d] = 3
                value[d] = f
                which[d] = n
                break

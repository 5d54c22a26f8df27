"""Compiled (numba) passes over many texts at once: read in place from a polars column
(``utf8_spans``), or laid out as one code-point array (``code_points``).

Import this module only where it is used: numba is a heavy import. Kernels are defined at
module level so numba's on-disk cache (``cache=True``) can find them again.

Used where a column-wide pass needs per-text counting that polars can only express with
explode and group-by: Gopher's repetition measures, and MinHash shingling.
"""
from __future__ import annotations

import numba as nb
import numpy as np
from numba import types
from numba.extending import intrinsic

from .hashconst import FNV_OFFSET, FNV_PRIME, GOLDEN


def threads() -> int:
    """The threads numba's parallel kernels would use (NUMBA_NUM_THREADS, default the
    cores this process may run on), read without starting the thread pool: with one,
    callers run a kernel's serial twin instead (the pool costs ~0.25 CPU s to start)."""
    return int(nb.config.NUMBA_NUM_THREADS)


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
    if 32 < c < 0x85:  # most characters: two comparisons, not fourteen
        return False
    return (c == 32 or (9 <= c <= 13) or (28 <= c <= 31) or c == 0x85 or c == 0xA0 or c == 0x1680
            or (0x2000 <= c <= 0x200A) or c == 0x2028 or c == 0x2029 or c == 0x202F or c == 0x205F
            or c == 0x3000)


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


class LayoutError(RuntimeError):
    """Polars' string memory is not laid out as utf8_spans reads it (a new polars or pyarrow)."""


_LAYOUT_CHECKED = False
# inline (<= 12 bytes) and buffer views, multi-byte UTF-8, the empty string
_PROBE = ["", "short", "twelve bytes", "thirteen byte", "a text well past the twelve inline bytes",
          "ünïcödé, wider than twelve bytes", "日本語のテキスト"]


def utf8_spans(texts) -> tuple[np.ndarray, np.ndarray, object]:
    """_spans, after checking once per process that it reads a known column back byte for
    byte: the kernels read polars' memory through raw addresses, and a layout change must
    stop them with one clear error, not let them read the wrong bytes."""
    global _LAYOUT_CHECKED
    if not _LAYOUT_CHECKED:
        check_layout(_spans)
        _LAYOUT_CHECKED = True
    return _spans(texts)


def check_layout(spans) -> None:
    """Raise LayoutError unless ``spans`` finds each probe text's exact UTF-8 bytes, in a
    whole column and in a slice of one (a non-zero Arrow offset)."""
    import ctypes

    import polars as pl

    column = pl.Series(_PROBE * 2, dtype=pl.String)
    for col, want in ((column, _PROBE * 2), (column.slice(3, 8), (_PROBE * 2)[3:11])):
        addresses, lengths, owner = spans(col)
        got = [ctypes.string_at(int(a), int(n)) for a, n in zip(addresses.tolist(), lengths.tolist())]
        if got != [t.encode("utf-8") for t in want]:
            raise LayoutError(f"polars {pl.__version__} stores strings in a layout curate.textkernels cannot read "
                              "in place (Arrow string views expected); use the polars version pinned in pyproject.toml")
        del owner


def _spans(texts) -> tuple[np.ndarray, np.ndarray, object]:
    """Where each text of a polars string column lies in memory, as UTF-8: its address and
    length in bytes, and the Arrow array that owns the bytes (hold it while reading them).

    Polars keeps strings as Arrow string views: a 16-byte view a row, a short string
    inside it, a longer one in one of a few data buffers. Reading them in place avoids
    copying the column out (a contiguous large_string gathers every string: 0.4 µs a
    record on 500-byte conversations, as much as the scan itself)."""
    _, addresses, lengths, arr = _views(texts)
    return addresses, lengths, arr


def string_views(texts) -> tuple[np.ndarray, np.ndarray, np.ndarray, object]:
    """utf8_spans, with the Arrow views behind the spans (int32, 4 a row: the length, then
    the inline bytes or a prefix, a buffer and an offset): what a kernel needs to make new
    views of the same bytes (``arr.buffers()[2:]``, the data buffers they name), which
    polars takes without a copy. Returns (views, addresses, lengths, arr)."""
    global _LAYOUT_CHECKED
    if not _LAYOUT_CHECKED:
        check_layout(_spans)
        _LAYOUT_CHECKED = True
    return _views(texts)


def _views(texts):
    import polars as pl
    import pyarrow as pa

    if texts.null_count():  # a null reads as an empty text
        texts = texts.fill_null("")
    arr = texts.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.string_view():
        arr = arr.cast(pa.string_view())
    buffers = arr.buffers()
    bases = np.array([b.address for b in buffers[1:]], dtype=np.int64)  # views, then data buffers
    addresses = np.empty(len(arr), dtype=np.int64)
    lengths = np.empty(len(arr), dtype=np.int64)
    views = np.zeros((0, 4), dtype=np.int32)
    if len(arr):
        views = np.frombuffer(buffers[1], dtype=np.int32).reshape(-1, 4)
        _view_spans(views, arr.offset, bases, addresses, lengths)
        views = views[arr.offset:arr.offset + len(arr)]
    return views, addresses, lengths, arr


@nb.njit(cache=True, nogil=True)
def _view_spans(views, first, bases, addresses, lengths):
    for r in range(addresses.shape[0]):
        row = first + r
        length = views[row, 0]
        if length <= 12:  # inline: the bytes follow the length in the view itself
            addresses[r] = bases[0] + 16 * row + 4
        else:  # views[row, 1] is a prefix; 2 the buffer, 3 the offset in it
            addresses[r] = bases[1 + views[row, 2]] + views[row, 3]
        lengths[r] = length


@intrinsic
def _pointer(typingctx, address):
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.uint8)))

    return types.CPointer(types.uint8)(types.int64), codegen


@nb.njit(cache=True, nogil=True, inline="always")
def text_bytes(addresses, lengths, d):
    """Text d of ``utf8_spans`` as a uint8 array, no copy."""
    return nb.carray(_pointer(addresses[d]), lengths[d])


@nb.njit(cache=True, nogil=True)
def count_runs(keys, lens, m, tkeys, tcount, tlen, used):
    """Over the first m (key, length) items, grouping equal keys: the most frequent key's
    count and length (ties: the longest), the largest count * length, the largest count.
    ``tkeys``, ``tcount``, ``tlen``, ``used``: scratch of at least max(16, the power of two
    at or above 2m) items (up to ~4m: numba checks no bounds; the caller sizes it), tcount
    all zero (and left so), reused across texts: allocating and clearing a table per
    call cost more than filling it."""
    # an open-addressing table, not a sort: one pass, and what it answers does not depend
    # on the order keys are met in
    size = 16
    while size < 2 * m:
        size *= 2
    mask = np.uint64(size - 1)
    n_used = 0
    for r in range(m):
        key = keys[r]
        slot = (key ^ (key >> np.uint64(29))) & mask
        while tcount[slot] != 0 and tkeys[slot] != key:
            slot = (slot + np.uint64(1)) & mask
        if tcount[slot] == 0:
            tkeys[slot] = key
            tlen[slot] = lens[r]
            used[n_used] = slot
            n_used += 1
        tcount[slot] += 1
    best_c, best_l, max_cl, max_c = 0, 0, 0, 0
    for u in range(n_used):
        slot = used[u]
        run = tcount[slot]
        tcount[slot] = 0
        length = tlen[slot]
        if run > best_c or (run == best_c and length > best_l):
            best_c, best_l = run, length
        max_cl = max(max_cl, run * length)
        max_c = max(max_c, run)
    return best_c, best_l, max_cl, max_c


@nb.njit(cache=True, nogil=True, parallel=True)
def repetition(addresses, lengths, chunks, do_lines, line_limit, do_paras, para_limit, ns, limits, min_words,
               kind, value, which):
    """Per text (``lengths[d]`` UTF-8 bytes at ``addresses[d]``, see utf8_spans): kind 1 =
    duplicate lines, 2 = duplicate paragraphs, 3 = top n-gram (``which`` = n), 0 = none;
    ``value`` the fraction. Lines and paragraphs are stripped and blank ones dropped;
    paragraphs end at a line that is only white space; words split as str.split() does;
    an n-gram's length is its words joined by single spaces, in characters, its share
    that length times its count over the text's characters; the top n-gram is the most
    frequent, ties the longest."""
    n_texts = addresses.shape[0]
    for chunk in nb.prange(chunks):
        lo, hi = chunk * n_texts // chunks, (chunk + 1) * n_texts // chunks
        _repetition_range(lo, hi, addresses, lengths, do_lines, line_limit, do_paras, para_limit, ns,
                          limits, min_words, kind, value, which)


@nb.njit(cache=True, nogil=True)
def repetition_serial(addresses, lengths, chunks, do_lines, line_limit, do_paras, para_limit, ns, limits,
                      min_words, kind, value, which):
    """repetition on one thread (``chunks`` unused): starting numba's thread pool costs
    more than the pass on a few hundred thousand texts."""
    _repetition_range(0, addresses.shape[0], addresses, lengths, do_lines, line_limit, do_paras,
                      para_limit, ns, limits, min_words, kind, value, which)


@nb.njit(cache=True, nogil=True, inline="always")
def _strip(data, s, e):
    """data[s:e] less its leading and trailing white space (is_space), as (s, e); s == e
    where it is blank. Backwards, a character starts at its first byte that is not a
    continuation byte (10xxxxxx)."""
    while s < e:
        c, w = decode(data, s)
        if not is_space(c):
            break
        s += w
    while e > s:
        q = e - 1
        while data[q] & 0xC0 == 0x80:
            q -= 1
        c, w = decode(data, q)
        if not is_space(c):
            break
        e = q
    return s, e


@nb.njit(cache=True, nogil=True)
def _line_spans(data, b, starts, ends, para_starts, para_ends):
    """The stripped non-blank lines of data[:b] as byte spans, and its paragraphs (runs of
    non-blank lines, from the first's start to the last's end): their counts. Only a
    newline byte ends a line, and UTF-8 has no other byte 10, so the scan is bytewise;
    only a line's edges are decoded."""
    k_lines = 0
    k_paras = 0
    in_para = False
    line_start = 0
    para_end = 0
    for q in range(b + 1):
        if q < b and data[q] != 10:
            continue
        s, e = _strip(data, line_start, q)
        if s < e:
            starts[k_lines], ends[k_lines] = s, e
            k_lines += 1
            if not in_para:
                para_starts[k_paras] = s
                in_para = True
            para_end = e
        elif in_para:  # a blank line ends the paragraph
            para_ends[k_paras] = para_end
            k_paras += 1
            in_para = False
        line_start = q + 1
    if in_para:
        para_ends[k_paras] = para_end
        k_paras += 1
    return k_lines, k_paras


@nb.njit(cache=True, nogil=True)
def _has_newline(data, b):
    # branch-free, so vectorised: a quarter of the cost of _line_spans' scan, which most
    # one-line texts (half of real answers) then skip
    n = 0
    for q in range(b):
        n += data[q] == 10
    return n > 0


@nb.njit(cache=True, nogil=True, inline="always")
def _same(data, s1, e1, s2, e2):
    if e1 - s1 != e2 - s2:
        return False
    for i in range(e1 - s1):
        if data[s1 + i] != data[s2 + i]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _span_dup_fraction(data, starts, ends, k, hashes):
    """The share of the k spans equal to an earlier one: few spans (most texts) compared
    pairwise, their lengths first, so most pairs cost one comparison; many by their
    FNV-1a hashes, sorted."""
    if k < 2:
        return 0.0
    if k <= 16:
        dup = 0
        for i in range(1, k):
            for j in range(i):
                if _same(data, starts[i], ends[i], starts[j], ends[j]):
                    dup += 1
                    break
        return dup / k
    prime = np.uint64(FNV_PRIME)
    for i in range(k):
        h = np.uint64(FNV_OFFSET)
        for q in range(starts[i], ends[i]):
            h = (h ^ np.uint64(data[q])) * prime
        hashes[i] = h
    return dup_fraction(hashes, k)


@nb.njit(cache=True, nogil=True)
def _most_words(data, b):
    """A bound on the words of data[:b]: every word but the first follows a white space
    character, which is an ASCII byte up to 32 or starts with a lead byte (>= 0xC0).
    Branch-free, so the compiler vectorises it: a tenth of the cost of splitting."""
    n = 1
    for q in range(b):
        x = data[q]
        n += (x <= 32) | (x >= 0xC0)
    return n


@nb.njit(cache=True, nogil=True)
def _words(data, b, words, lens):
    """The FNV-1a hash of each word's code points and its length in characters (words
    split as str.split() does): how many words, and the text's characters."""
    offset_basis = np.uint64(FNV_OFFSET)
    prime = np.uint64(FNV_PRIME)
    k = 0
    n_chars = 0
    in_word = False
    h = offset_basis
    length = 0
    p = 0
    while p < b:
        x = data[p]
        if x < 0x80:
            c, w = np.int64(x), 1
        else:
            c, w = decode(data, p)
        n_chars += 1
        if is_space(c):
            if in_word:
                words[k], lens[k] = h, length
                k += 1
                in_word = False
        else:
            if not in_word:
                in_word, h, length = True, offset_basis, 0
            h = (h ^ np.uint64(c)) * prime
            length += 1
        p += w
    if in_word:
        words[k], lens[k] = h, length
        k += 1
    return k, n_chars


@nb.njit(cache=True, nogil=True)
def _top_ngram(words, lens, k, n_chars, ns, limits, grams, glens, table):
    """The first n (in ``ns``) whose top n-gram's share is over its limit, and the share;
    (0, 0.0) when none is."""
    prime = np.uint64(FNV_PRIME)
    # An exact bound first: the top n-gram's c occurrences need c copies of each of
    # its words, so c * length <= n * U + (n - 1) * K, U the largest count * length
    # of one word, K the largest word count. Most texts stop here.
    tkeys, tcount, tlen, used = table
    _, _, big_u, big_k = count_runs(words, lens, k, tkeys, tcount, tlen, used)
    for t in range(ns.shape[0]):
        n = ns[t]
        m = k - n + 1
        if m < 1 or (n * big_u + (n - 1) * big_k) <= limits[t] * n_chars:
            continue
        for j in range(m):
            g = np.uint64(GOLDEN)
            gl = n - 1
            for q in range(j, j + n):
                g = (g ^ words[q]) * prime
                gl += lens[q]
            grams[j] = g
            glens[j] = gl
        best_c, best_l, _, _ = count_runs(grams, glens, m, tkeys, tcount, tlen, used)
        f = best_c * best_l / n_chars if n_chars else 0.0
        if best_c > 1 and f > limits[t]:
            return n, f
    return 0, 0.0


@nb.njit(cache=True, nogil=True)
def _repetition_range(lo, hi, addresses, lengths, do_lines, line_limit, do_paras, para_limit, ns, limits,
                      min_words, kind, value, which):
    """repetition's work on texts lo..hi-1: lines and paragraphs from a scan for newlines,
    words (a pass decoding every character) only where the n-gram check may apply and
    the lines and paragraphs did not already decide."""
    # scratch arrays once per chunk of texts: allocations per text cost as much as
    # reading a short text
    longest = 0
    for d in range(lo, hi):
        longest = max(longest, lengths[d])
    size = longest + 2
    starts = np.empty(size, dtype=np.int64)
    ends = np.empty(size, dtype=np.int64)
    para_starts = np.empty(size, dtype=np.int64)
    para_ends = np.empty(size, dtype=np.int64)
    hashes = np.empty(size, dtype=np.uint64)
    words = np.empty(size, dtype=np.uint64)
    lens = np.empty(size, dtype=np.int64)
    grams = np.empty(size, dtype=np.uint64)
    glens = np.empty(size, dtype=np.int64)
    table = (np.empty(2 * size + 16, dtype=np.uint64), np.zeros(2 * size + 16, dtype=np.int64),
             np.empty(2 * size + 16, dtype=np.int64), np.empty(size, dtype=np.int64))
    # k words need 2k - 1 characters, so 2k - 1 bytes: shorter texts have no n-gram check
    fewest_bytes = 2 * min_words - 1
    for d in range(lo, hi):
        data = text_bytes(addresses, lengths, d)
        b = lengths[d]
        if (do_lines or do_paras) and _has_newline(data, b):  # one line: no repeated lines or paragraphs
            k_lines, k_paras = _line_spans(data, b, starts, ends, para_starts, para_ends)
            if do_lines:
                f = _span_dup_fraction(data, starts, ends, k_lines, hashes)
                if f > line_limit:
                    kind[d], value[d] = 1, f
                    continue
            if do_paras:
                f = _span_dup_fraction(data, para_starts, para_ends, k_paras, hashes)
                if f > para_limit:
                    kind[d], value[d] = 2, f
                    continue
        if ns.shape[0] == 0 or b < fewest_bytes or _most_words(data, b) < min_words:
            continue
        k, n_chars = _words(data, b, words, lens)
        if k < min_words:
            continue
        n, f = _top_ngram(words, lens, k, n_chars, ns, limits, grams, glens, table)
        if n:
            kind[d], value[d], which[d] = 3, f, n

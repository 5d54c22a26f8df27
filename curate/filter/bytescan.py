"""Compiled byte scans over the Arrow buffers of a text column.

(A compiled pass building every field text from the ``messages`` buffers was tried and
dropped: importing each produced text column back into polars copies it, which on long
real records cost more than the list joins it replaced.)
"""
from __future__ import annotations

import numba as nb
import numpy as np
import polars as pl

from ..textkernels import decode, string_views, text_bytes, utf8_spans
from .turnrows import flat_turns


@nb.njit(cache=True, nogil=True)
def _control(addresses, lengths, out):
    # control characters are ASCII, and UTF-8 never uses bytes < 0x80 inside a longer
    # character, so a byte scan is exact
    # Branch-free over a text (hits are rare, so stopping at one saves nothing): the
    # compiler vectorises the reduction, several times the speed of a test per byte.
    for r in range(addresses.shape[0]):
        text = text_bytes(addresses, lengths, r)
        hits = 0
        for i in range(text.shape[0]):
            c = text[i]
            hits += ((c < 32) & (c != 9) & (c != 10) & (c != 13)) | (c == 127)
        out[r] = hits > 0


def control_mask(texts: pl.Series) -> np.ndarray:
    """True where a text holds a control character other than tab, newline, return."""
    addresses, lengths, owner = utf8_spans(texts)
    out = np.zeros(len(texts), dtype=np.bool_)
    if len(texts):
        _control(addresses, lengths, out)
    del owner  # the bytes read above belong to it
    return out


@nb.njit(cache=True, nogil=True, inline="always")
def _white(c):
    # Unicode White_Space, what Rust's char::is_whitespace (polars' str.strip_chars())
    # strips; unlike str.split()'s, not U+001C..U+001F
    if 32 < c < 0x85:
        return False
    return (c == 32 or (9 <= c <= 13) or c == 0x85 or c == 0xA0 or c == 0x1680 or (0x2000 <= c <= 0x200A)
            or c == 0x2028 or c == 0x2029 or c == 0x202F or c == 0x205F or c == 0x3000)


@nb.njit(cache=True, nogil=True)
def _blank_rows(addresses, lengths, valid, starts, counts, out):
    # a turn is blank when every character is white space: most stop at the first
    for r in range(starts.shape[0]):
        for t in range(starts[r], starts[r] + counts[r]):
            if not valid[t]:
                continue
            text = text_bytes(addresses, lengths, t)
            p = 0
            while p < text.shape[0]:
                c, w = decode(text, p)
                if not _white(c):
                    break
                p += w
            if p >= text.shape[0]:
                out[r] = True
                break


def blank_turns(messages: pl.Series) -> pl.Series | None:
    """Per conversation, whether a turn's content is blank (what
    ``messages.list.eval(content.str.strip_chars() == "").list.any()`` says, where
    polars builds a stripped copy of every turn); None where a turn calls a tool (its
    text is then more than its content), or where the turns do not explode as assumed:
    the caller then runs that expression."""
    found = flat_turns(messages)
    if found is None:  # polars' own way
        return None
    flat, offsets = found
    if flat.struct.field("tool_calls").null_count() != flat.len():
        return None
    content = flat.struct.field("content")
    starts, counts = offsets[:-1], np.diff(offsets)
    addresses, lengths, owner = utf8_spans(content)
    out = np.zeros(len(counts), dtype=np.bool_)
    if len(counts):
        _blank_rows(addresses, lengths, content.is_not_null().to_numpy(), starts, counts, out)
    del owner  # the bytes read above belong to it
    return pl.Series(out)


@nb.njit(cache=True, nogil=True)
def _trim_views(views, addresses, lengths, out, out8):
    # TRIM is ASCII (space, tab, newline, return): a byte trim is exact, and the trimmed
    # text starts and ends on a character. A long result is the same buffer further on;
    # a short one (Arrow: up to 12 bytes) lives in its view.
    for t in range(views.shape[0]):
        data = text_bytes(addresses, lengths, t)
        s, e = 0, data.shape[0]
        while s < e and (data[s] == 32 or data[s] == 9 or data[s] == 10 or data[s] == 13):
            s += 1
        while e > s and (data[e - 1] == 32 or data[e - 1] == 9 or data[e - 1] == 10 or data[e - 1] == 13):
            e -= 1
        out[t, 0] = e - s
        if e - s > 12:
            for j in range(4):
                out8[t, 4 + j] = data[s + j]
            out[t, 2] = views[t, 2]
            out[t, 3] = views[t, 3] + s
        else:
            for j in range(e - s):
                out8[t, 4 + j] = data[s + j]


def trimmed_contents(messages: pl.Series) -> pl.Series | None:
    """``messages.list.eval(content.str.strip_chars(TRIM))`` as new views of the contents'
    own bytes (polars builds a copy of every turn: 52 MB on 100k real conversations);
    None where a turn calls a tool (its text is then more than its content) or the turns
    do not explode as assumed: the caller then runs that expression."""
    import pyarrow as pa

    from ..jsonl_fast import arrow_series

    found = flat_turns(messages)
    if found is None:
        return None
    flat, offsets = found
    if flat.struct.field("tool_calls").null_count() != flat.len():
        return None
    content = flat.struct.field("content")
    views, addresses, lengths, arr = string_views(content)
    out = np.zeros((len(content), 4), dtype=np.int32)
    if len(content):
        _trim_views(views, addresses, lengths, out, out.view(np.uint8).reshape(-1, 16))
    # buffers from numpy, not pa.array (whose first call imports pandas: 0.2 s)
    turns = pa.Array.from_buffers(pa.string_view(), len(content), [_bits(content.is_not_null()), pa.py_buffer(out),
                                                                    *arr.buffers()[2:]])
    rows = pa.Array.from_buffers(pa.large_list(pa.string_view()), len(messages),
                                 [_bits(messages.is_not_null()), pa.py_buffer(offsets)], children=[turns])
    del arr  # the new views hold its buffers themselves
    return arrow_series(rows)


def _bits(valid: pl.Series):
    """An Arrow validity bitmap (None: all valid)."""
    import pyarrow as pa

    if valid.all():
        return None
    return pa.py_buffer(np.packbits(valid.to_numpy(), bitorder="little"))


# ASCII letters to lower case, every other byte to itself: what (?i-u) folds
_FOLD = np.arange(256, dtype=np.uint32)
_FOLD[65:91] += 32
# how rare a byte is in English text (the most common first, 99 the rest): a phrase is
# filed under its rarest 4 bytes, so few text positions stop to compare it
_RARITY = np.full(256, 99, dtype=np.int64)
_RARITY[np.frombuffer(b" etaoinshrdlcumwfgypbvkjxqz", dtype=np.uint8)] = np.arange(27)
ANCHOR = 4


def _anchor(phrase: np.ndarray) -> int:
    """The offset of the rarest 4 bytes of a (folded) phrase, the first of equals."""
    rarity = _RARITY[phrase]
    return int(np.argmax(sum(rarity[i:len(phrase) - ANCHOR + 1 + i] for i in range(ANCHOR))))


@nb.njit(cache=True, nogil=True, inline="always")
def _slot(key):
    return ((key * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) >> np.uint64(16)


@nb.njit(cache=True, nogil=True)
def _folded_any(addresses, lengths, fold, hit, first, members, anchors, phrase_bytes, phrase_start, out):
    # A rolling window of the last 4 folded bytes, hashed into a table of the phrases'
    # anchors; only a hit compares the phrases filed there, at their anchor's offset.
    for r in range(addresses.shape[0]):
        data = text_bytes(addresses, lengths, r)
        b = data.shape[0]
        key = np.uint64(0)
        found = False
        for p in range(b):
            key = ((key << np.uint64(8)) | np.uint64(fold[data[p]])) & np.uint64(0xFFFFFFFF)
            h = _slot(key)
            if p < 3 or hit[h] == 0:
                continue
            for i in range(first[h], first[h + 1]):
                m = members[i]
                s = p - 3 - anchors[m]
                n = phrase_start[m + 1] - phrase_start[m]
                if s < 0 or s + n > b:
                    continue
                same = True
                for j in range(n):
                    if fold[data[s + j]] != phrase_bytes[phrase_start[m] + j]:
                        same = False
                        break
                if same:
                    found = True
                    break
            if found:
                break
        out[r] = found


def folded_any(texts: pl.Series, phrases: list[str]) -> pl.Series | None:
    """Where a text contains one of ``phrases``, ASCII letters in either case and every
    other byte as it is (``literals.ascii_folded_any``: a (?i-u) regex, whose lazy DFA
    walks every byte of 109 refusal phrases at twice this cost). None where a phrase is
    shorter than the 4-byte window. A null text reads as empty."""
    encoded = [_FOLD[np.frombuffer(p.encode("utf-8"), dtype=np.uint8)].astype(np.uint8) for p in phrases]
    if not encoded or min(len(e) for e in encoded) < ANCHOR:
        return None
    anchors = np.array([_anchor(e) for e in encoded], dtype=np.int64)
    keys = np.array([int.from_bytes(e[o:o + ANCHOR].tobytes(), "big") for e, o in zip(encoded, anchors)], dtype=np.uint64)
    slots = ((keys * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) >> np.uint64(16)
    members = np.argsort(slots, kind="stable").astype(np.int64)
    first = np.searchsorted(slots[members], np.arange(65537, dtype=np.uint64)).astype(np.int64)
    hit = np.zeros(65536, dtype=np.uint8)
    hit[slots] = 1
    phrase_start = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=phrase_start[1:])
    addresses, lengths, owner = utf8_spans(texts)
    out = np.zeros(len(texts), dtype=np.bool_)
    if len(texts):
        _folded_any(addresses, lengths, _FOLD, hit, first, members, anchors, np.concatenate(encoded), phrase_start, out)
    del owner  # the bytes read above belong to it
    return pl.Series(out)

"""Compiled byte scans over the Arrow buffers of a text column.

(A compiled pass building every field text from the ``messages`` buffers was tried and
dropped: importing each produced text column back into polars copies it, which on long
real records cost more than the list joins it replaced.)
"""
from __future__ import annotations

import numba as nb
import numpy as np
import polars as pl

from ..textkernels import decode, text_bytes, utf8_spans


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
    text is then more than its content)."""
    counts = messages.list.len().fill_null(0).to_numpy().astype(np.int64)
    # the turns in order, row after row (without the rows that have none: what explode
    # makes of an empty or null list is not the turn it holds)
    flat = (messages if counts.all() else messages.filter(pl.Series(counts > 0))).explode()
    if flat.len() != counts.sum():  # the layout assumed above: no kernel reads past it
        raise RuntimeError("polars exploded the turns into an unexpected layout")
    if flat.struct.field("tool_calls").null_count() != flat.len():
        return None
    content = flat.struct.field("content")
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    addresses, lengths, owner = utf8_spans(content)
    out = np.zeros(len(counts), dtype=np.bool_)
    if len(counts):
        _blank_rows(addresses, lengths, content.is_not_null().to_numpy(), starts, counts, out)
    del owner  # the bytes read above belong to it
    return pl.Series(out)

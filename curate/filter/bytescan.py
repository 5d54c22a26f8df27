"""Compiled byte scans over the Arrow buffers of a text column.

(A compiled pass building every field text from the ``messages`` buffers was tried and
dropped: importing each produced text column back into polars copies it, which on long
real records cost more than the list joins it replaced.)
"""
from __future__ import annotations

import numba as nb
import numpy as np
import polars as pl

from ..textkernels import text_bytes, utf8_spans


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

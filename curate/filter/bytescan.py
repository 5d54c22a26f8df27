"""Compiled byte scans over the Arrow buffers of a text column.

(A compiled pass building every field text from the ``messages`` buffers was tried and
dropped: importing each produced text column back into polars copies it, which on long
real records cost more than the list joins it replaced.)
"""
from __future__ import annotations

import numba as nb
import numpy as np
import polars as pl
import pyarrow as pa


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    arr = arr.cast(pa.large_string()) if arr.type != pa.large_string() else arr
    _, offsets, data = arr.buffers()
    off = np.frombuffer(offsets, dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(1, np.uint8)
    return off, raw


@nb.njit(cache=True, nogil=True)
def _control(off, data, out):
    # control characters are ASCII, and UTF-8 never uses bytes < 0x80 inside a longer
    # character, so a byte scan is exact
    for r in range(off.shape[0] - 1):
        for i in range(off[r], off[r + 1]):
            c = data[i]
            if c < 32 and c != 9 and c != 10 and c != 13 or c == 127:
                out[r] = True
                break


def control_mask(texts: pl.Series) -> np.ndarray:
    """True where a text holds a control character other than tab, newline, return."""
    arr = texts.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    off, data = _string_buffers(arr)
    out = np.zeros(len(texts), dtype=np.bool_)
    if len(texts):
        _control(off, data, out)
    return out

"""Every turn of a conversation column, row after row: the layout the kernels that read
turns in place take (the filter's byte scans, the MinHash dedup's signing)."""
from __future__ import annotations

import numpy as np
import polars as pl


def flat_turns(messages: pl.Series) -> tuple[pl.Series, np.ndarray] | None:
    """Every turn of ``messages`` in order, row after row, and each row's offsets into them
    (``len(messages) + 1``): what the kernels that read turns in place take. None where
    polars' explode does not give that layout (never seen: the caller takes its plain path)."""
    counts = messages.list.len().fill_null(0).to_numpy().astype(np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    # without the rows that have none: what explode makes of an empty or null list is a
    # row that is no turn (explode's options for that need polars >= 1.36)
    flat = (messages if counts.all() else messages.filter(pl.Series(counts > 0))).explode()
    return (flat, offsets) if flat.len() == offsets[-1] else None

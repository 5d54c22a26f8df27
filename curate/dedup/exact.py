"""Exact duplicates: a stable 128-bit hash of the normalised text."""
from __future__ import annotations

import hashlib

import numpy as np

from .text import normalise


def digest(text: str, strip_punct: bool = False) -> bytes:
    """What exact dedup compares (the Ray engine groups on it too)."""
    return hashlib.blake2b(normalise(text, strip_punct).encode("utf-8"), digest_size=16).digest()


def exact_groups(texts: list[str], strip_punct: bool = False) -> np.ndarray:
    """A label per text: the index of the first text with the same normalised content."""
    first: dict[bytes, int] = {}
    labels = np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        labels[i] = first.setdefault(digest(t, strip_punct), i)
    return labels

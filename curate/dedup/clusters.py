"""From duplicate pairs to clusters, one kept member each, and the stage outputs."""
from __future__ import annotations

import numpy as np
import polars as pl


def components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Union-find over pairs: a label per item, the smallest member index of its cluster
    (so labels do not depend on pair order)."""
    from .kernels import union_find

    labels = np.arange(n, dtype=np.int64)
    if len(left):
        union_find(labels, np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64))
    return labels


def representatives(labels: np.ndarray, scores: np.ndarray | None) -> np.ndarray:
    """Index of the kept member for each item: highest score, ties and unscored records
    by input order (the first). Labels are member indices (0..n-1)."""
    n = len(labels)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.arange(n)
    if scores is None:
        keys = np.lexsort((order, labels))
    else:
        s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
        keys = np.lexsort((order, -s, labels))  # by label, then score desc, then position
    sorted_labels = labels[keys]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    rep_of_label = np.empty(n, dtype=np.int64)
    rep_of_label[sorted_labels[starts]] = keys[starts]
    return rep_of_label[labels]


def star_clusters(n: int, left: np.ndarray, right: np.ndarray, sim: np.ndarray,
                  scores: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy clustering without chaining: in keep order (highest score, then input
    order) each record not yet taken is kept and takes every untaken neighbour above the
    threshold. Every removed record is then itself similar to the record it names
    (union-find would chain a~b~c and name an a that c does not resemble).
    Returns (representative index, similarity to it) per record."""
    order = np.arange(n)
    if scores is not None:
        s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
        order = np.lexsort((order, -s))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    neighbours: dict[int, list[tuple[int, float]]] = {}
    for a, b, v in zip(left.tolist(), right.tolist(), sim.tolist()):
        neighbours.setdefault(a, []).append((b, v))
        neighbours.setdefault(b, []).append((a, v))
    rep = np.full(n, -1, dtype=np.int64)
    best = np.ones(n, dtype=np.float64)
    for i in order.tolist():
        if rep[i] != -1:
            continue
        rep[i] = i
        for j, v in sorted(neighbours.get(i, []), key=lambda jv: rank[jv[0]]):
            if rep[j] == -1:
                rep[j], best[j] = i, v
    return rep, best


def cluster_numbers(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The records whose cluster has another member (ascending), and each one's cluster,
    numbered by first appearance."""
    sizes = np.bincount(labels, minlength=len(labels))
    idx = np.flatnonzero(sizes[labels] > 1)
    _, first, inverse = np.unique(labels[idx], return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return idx, rank[inverse]


def _strings(values) -> pl.Series:
    return values if isinstance(values, pl.Series) else pl.Series(values, dtype=pl.String)


def cluster_table(ids, labels: np.ndarray, kept: np.ndarray, similarity: np.ndarray,
                  method: str, keys=None) -> pl.DataFrame:
    """One row per record that has a duplicate; clusters numbered by first appearance.
    ``keys``: each record's unique key (its source); ``id`` is shared by exact copies, so
    ``source`` and ``kept_source`` say which member a row is and which one was kept.
    ``ids`` and ``keys``: lists of str or String columns (gathered, not looped over)."""
    ids = _strings(ids)
    keys = ids if keys is None else _strings(keys)
    idx, cluster = cluster_numbers(labels)
    rep = np.asarray(kept, dtype=np.int64)[idx]
    return pl.DataFrame({
        "id": ids.gather(idx),
        "source": keys.gather(idx),
        "cluster": pl.Series(cluster, dtype=pl.Int64),
        "kept_id": ids.gather(rep),
        "kept_source": keys.gather(rep),
        "method": pl.repeat(method, len(idx), dtype=pl.String, eager=True),
        "similarity": pl.Series(similarity[idx].round(6), dtype=pl.Float64),
    }, schema={"id": pl.String, "source": pl.String, "cluster": pl.Int64, "kept_id": pl.String,
               "kept_source": pl.String, "method": pl.String, "similarity": pl.Float64})

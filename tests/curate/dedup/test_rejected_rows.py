"""The rejected rows' reasons and clusters, built column-wise, equal the per-record
formulas they replaced: f-strings over Python lists and a dict from the cluster table
(where keys are unique; where they repeat, each row's own cluster: hostile6 B7)."""
import numpy as np
import polars as pl
import pytest

from curate.dedup import DedupConfig, _clusters_of, _reasons, run
from curate.dedup.clusters import cluster_table, components, representatives
from tests.helpers import convo, frame


def _old_reasons(method, dup_idx, reps, similarity, ids, keys):
    measure = {"minhash": "jaccard", "semantic": "cosine"}.get(method)
    return [f"duplicate of {keys[reps[i]]} (id {ids[reps[i]]}, "
            + (f"{measure} {similarity[i]:.3f}" if measure else "exact match") + ")" for i in dup_idx]


def _old_clusters(clusters, dup_idx, keys):
    cluster_of = dict(zip(clusters["source"].to_list(), clusters["cluster"].to_list())) if clusters.height else {}
    return [cluster_of[keys[i]] for i in dup_idx]


def _own_clusters(labels, dup_idx):
    """Each row's cluster, per record: clusters of two or more numbered by first appearance."""
    sizes = {}
    for label in labels.tolist():
        sizes[label] = sizes.get(label, 0) + 1
    number = {}
    for label in labels.tolist():
        if sizes[label] > 1:
            number.setdefault(label, len(number))
    return [number[labels[i]] for i in dup_idx]


def _case(n, seed, repeat_keys, nulls):
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, n, size=(n // 3, 2)) if n else np.zeros((0, 2), dtype=np.int64)
    labels = components(n, pairs[:, 0], pairs[:, 1])
    reps = representatives(labels, None)
    # similarities as the methods make them: few distinct ratios, 1.0, values at a .xxx5 edge, -0.0
    similarity = rng.choice([1.0, 0.8125, 0.0005, 0.9995, 2 / 3, 0.1234567, -0.0, 0.85], size=n)
    ids = [f"id{i % max(n // 4, 1)}" for i in range(n)]  # exact copies share an id
    keys = [f"file.jsonl:{i % max(n // 2, 1) if repeat_keys else i}" for i in range(n)]
    if nulls and n:
        ids[0], keys[min(1, n - 1)] = None, None
    return labels, reps, similarity, ids, keys


@pytest.mark.parametrize("method", ["exact", "minhash", "semantic"])
@pytest.mark.parametrize("repeat_keys,nulls", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("n", [0, 1, 7, 3000])
def test_reasons_and_clusters_equal_the_per_record_formulas(method, repeat_keys, nulls, n):
    labels, reps, similarity, ids, keys = _case(n, n + 3, repeat_keys, nulls)
    id_col, key_col = pl.Series(ids, dtype=pl.String), pl.Series(keys, dtype=pl.String)
    clusters = cluster_table(id_col, labels, reps, similarity, method, key_col)
    dup_idx = np.flatnonzero(reps != np.arange(n))
    assert _reasons(method, reps[dup_idx], similarity[dup_idx], id_col, key_col).to_list() == \
        _old_reasons(method, dup_idx, reps, similarity, ids, keys)
    got = _clusters_of(dup_idx, labels, clusters).to_list()
    assert got == _own_clusters(labels, dup_idx)
    if not repeat_keys:  # unique keys: what the dict from the table gave
        assert got == _old_clusters(clusters, dup_idx, keys)
    if n == 3000:
        assert len(dup_idx) > 100 and len(set(_old_clusters(clusters, dup_idx, keys))) > 50


def test_a_frame_without_sources_names_ids():
    """Without a source column the key is the id, shared by exact copies: the dict's rule."""
    records = frame(*(convo("same question here", "same answer here") for _ in range(3)),
                    convo("other question", "other answer")).drop("source")
    result = run(records, DedupConfig(methods=["exact"]))
    ids = records["id"].to_list()
    assert result.rejected["reason"].to_list() == [f"duplicate of {ids[0]} (id {ids[0]}, exact match)"] * 2
    assert result.rejected["cluster"].to_list() == [0, 0]
    assert result.extra["clusters"]["source"].to_list() == ids[:3]

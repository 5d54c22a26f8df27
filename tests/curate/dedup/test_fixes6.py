"""Fixes of the dedup-side bugs hostile6 found (B3, B4, B7, B11, B13, B14): the edges next to
each one that its xfail test does not reach."""
from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

from curate.config import ConfigError

from .test_store import CountingEmbedder

TEXTS = [f"text number {i} " + "padding " * 30 for i in range(2000)]


def _damaged_store(path):
    """A store of 2,000 vectors with one page in the middle overwritten: the one-row probe passes."""
    CountingEmbedder(path).embed(TEXTS)
    data = bytearray(path.read_bytes())
    page = 4096 * (len(data) // 4096 // 2)
    data[page:page + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))


# ---- B3, B14: the embedding store -------------------------------------------------------------

def test_a_damaged_read_only_store_is_one_line_and_left_as_it_was(tmp_path):
    store = tmp_path / "v.sqlite"
    _damaged_store(store)
    before = store.read_bytes()
    with pytest.raises(ConfigError, match=f"{store}: not a readable embedding store"):
        CountingEmbedder(store, readonly=True).embed(TEXTS)
    assert store.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["v.sqlite"]


def test_a_path_sqlite_cannot_create_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot create the embedding store's folder"):
        CountingEmbedder(tmp_path / "file" / "v.sqlite").embed(["x"])
    with pytest.raises(ConfigError, match="/proc/curate-x.sqlite: cannot open the embedding store"):
        CountingEmbedder("/proc/curate-x.sqlite").embed(["x"])


@pytest.mark.parametrize("value", ["x'00'", "'text'", "7", "x'0000803f'"])  # 1 byte, TEXT, INTEGER, 1 float
def test_a_stored_value_of_another_type_or_length_is_computed_again(tmp_path, value):
    """SQLite columns take any value: a vector that is not 4 x dim bytes was a ValueError from
    np.frombuffer (1 byte) or a TypeError (text, integer) instead of being computed again."""
    store = tmp_path / "v.sqlite"
    texts = ["one", "two"]
    vectors = CountingEmbedder(store).embed(texts)
    con = sqlite3.connect(store)
    con.execute(f"UPDATE vectors SET vector = {value}")
    con.commit()
    con.close()
    emb = CountingEmbedder(store)
    assert np.array_equal(emb.embed(texts), vectors) and emb.seen == texts


# ---- B13: --calibrate PAIRS.jsonl ---------------------------------------------------------------

GOOD = b'{"a": "x", "b": "y", "duplicate": true}\n'


@pytest.mark.parametrize("content, says", [
    (GOOD + GOOD + b'{"a": "\xe9", "b": "y", "duplicate": true}\n', "line 3: not UTF-8 \\(byte 8\\)"),
    (GOOD + b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b', "b": "y", "duplicate": true}\n', "line 2: nested too deeply"),
])
def test_an_unreadable_calibration_line_is_named(tmp_path, content, says):
    from curate.dedup.calibrate import read_pairs

    (tmp_path / "pairs.jsonl").write_bytes(content)
    with pytest.raises(ConfigError, match=f"{tmp_path / 'pairs.jsonl'}, {says}"):
        read_pairs(tmp_path / "pairs.jsonl")


def test_a_calibration_file_with_a_bom_and_a_line_separator_in_a_string_is_read(tmp_path):
    from curate.dedup.calibrate import read_pairs

    (tmp_path / "pairs.jsonl").write_bytes(b"\xef\xbb\xbf" + GOOD + '{"a": "one\u2028two", "b": "y", "duplicate": false}\n'
                                           .encode())
    assert read_pairs(tmp_path / "pairs.jsonl") == [(("x", ""), ("y", ""), True), (("one\u2028two", ""), ("y", ""), False)]


# ---- B4: a score column that is not numbers -----------------------------------------------------

def _scored(scores):
    import polars as pl

    from tests.helpers import convo, frame

    return frame(*[convo("How do I reset my password today?", "Use the link.")] * len(scores)).with_columns(
        pl.Series("score", scores))


@pytest.mark.parametrize("scores, dtype", [(["1.5", "high", None, "2"], "String"), ([[1.0], [2.0], None, [3.0]],
                                           "List\\(Float64\\)"), ([True, False, None, True], "Boolean")])
def test_a_score_column_of_another_type_is_one_line_naming_it(tmp_path, scores, dtype):
    from click.testing import CliRunner

    from curate.cli import main

    _scored(scores).write_parquet(tmp_path / "t.parquet")
    r = CliRunner().invoke(main, ["dedup", str(tmp_path / "t.parquet"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert "column 'score' is " in r.output and not (tmp_path / "out" / "kept.parquet").exists()
    import re

    assert re.search(f"column 'score' is {dtype}, expected numbers", r.output), r.output


@pytest.mark.parametrize("scores", [[None, None, None], [1, 3, None], [0.5, 2.5, float("nan")]])
def test_numbers_and_nulls_still_rank_the_members(scores):
    from decimal import Decimal

    import polars as pl

    from curate.dedup import DedupConfig, run

    df = _scored(scores)
    kept = run(df, DedupConfig(methods=["exact"])).kept["source"].to_list()
    best = 1 if scores[1] is not None else 0
    assert kept == [df["source"][best]]
    if scores[1] is not None:  # a Decimal column ranks as its numbers do
        dec = df.with_columns(pl.Series("score", [None if v is None or math.isnan(v) else Decimal(str(v)) for v in scores],
                                        dtype=pl.Decimal(10, 2)))
        assert run(dec, DedupConfig(methods=["exact"])).kept["source"].to_list() == kept


# ---- B7: repeated source keys ---------------------------------------------------------------

LONG = ("the quick brown fox jumps over the lazy dog and then keeps running far away from the farm "
        "house until the sun goes down behind the hills")


@pytest.mark.parametrize("methods", [["exact"], ["minhash"], ["exact", "minhash"]])
def test_every_duplicate_names_its_own_cluster_whatever_the_keys(methods):
    """All rows share one source ("X"): the rejected rows' clusters are the clusters table's
    rows for the same rows (by position), and each cluster's duplicates name its kept row."""
    import polars as pl

    from curate.dedup import DedupConfig, run
    from curate.record import record_id, records_frame
    from tests.helpers import convo

    topics = ["alpha", "beta", "gamma"]
    words = LONG.split()
    text = {t: " ".join(words[i:] + words[:i]) for i, t in zip((0, 9, 18), topics)}  # far apart for MinHash
    # per topic: two exact copies and one near copy (a word more)
    rows = [convo(f"{t} question here", text[t] + (" again" if k == 2 else "")) for k in range(3) for t in topics]
    df = records_frame([{"id": record_id(m), "messages": m, "source": "X", "meta": "{}"} for m in rows])
    df = df.with_row_index("row")
    result = run(df, DedupConfig(methods=methods, threshold=0.7 if "minhash" in methods else None))
    clusters = result.extra["clusters"]
    assert result.kept.height == (6 if methods == ["exact"] else 3)
    assert result.rejected.group_by("rule").agg(pl.col("cluster").n_unique())["cluster"].to_list() == [3] * len(methods)
    # the rows of a cluster share a topic: a duplicate's cluster is the one of its own kept row
    topic_of = {r: topics[r % 3] for r in range(9)}
    for rule, group in result.rejected.group_by("rule"):
        method = rule[0].removeprefix("dedup.")
        table = clusters.filter(pl.col("method") == method)
        by_cluster = {}
        for row, cluster in group.select("row", "cluster").iter_rows():
            by_cluster.setdefault(cluster, set()).add(topic_of[row])
        assert all(len(t) == 1 for t in by_cluster.values()), by_cluster
        assert set(group["cluster"].to_list()) <= set(table["cluster"].to_list())


# ---- B11: the Ray reducers on an empty shuffle partition --------------------------------------

def test_every_ray_reducer_takes_an_empty_partition():
    """A partition no key hashed into: each reducer gives an empty table (was an IndexError
    from np.r_[True, ...], one True for no rows, in the exact, band and star reducers)."""
    pa = pytest.importorskip("pyarrow")
    from curate.engine.ray_shuffle import ROW, _bucket_part, _exact_part, _large_star, _small_star

    i64, u64 = pa.array([], pa.int64()), pa.array([], pa.uint64())
    assert _exact_part(pa.table({ROW: i64, "h1": u64, "h2": u64})).num_rows == 0
    assert _bucket_part(pa.table({ROW: i64, "band": pa.array([], pa.int16()), "key": u64}), n=5).num_rows == 0
    edges = pa.table({"key": i64, "val": i64})
    large, broken = _large_star(edges)
    assert large.num_rows == 0 and broken == 0
    assert _small_star(edges).num_rows == 0


def test_the_ray_exact_reducer_still_groups_as_the_local_engine():
    pa = pytest.importorskip("pyarrow")
    from curate.dedup.exact import exact_groups
    from curate.engine.ray_shuffle import ROW, _exact_keys, _exact_part

    texts = ["a", "b", "a", "c", "b", "a", "d"]
    table = _exact_keys(pa.table({ROW: pa.array(range(len(texts)), pa.int64()), "text": texts}), False, parts=1)
    labels = np.arange(len(texts))
    for shift in (0, 3):  # rows in order, and not
        t = _exact_part(table.take(np.roll(np.arange(len(texts)), shift)))
        labels[t.column(ROW).to_numpy()] = t.column("label").to_numpy()
        assert labels.tolist() == exact_groups(texts, False).tolist() == [0, 1, 0, 3, 1, 0, 6]
        assert _exact_part(table.slice(6, 1)).num_rows == 0  # a partition of one row: no group


def test_unique_shingles_per_document_of_no_hashes():
    from curate.dedup.minhash import _unique_per_doc

    h, offsets = _unique_per_doc(np.zeros(0, np.uint64), np.zeros(3, np.int64))
    assert len(h) == 0 and offsets.tolist() == [0, 0, 0]


@pytest.mark.parametrize("name", ["a?b.sqlite", "c#d.sqlite", "e%20f.sqlite", "g h.sqlite"])
def test_a_read_only_store_whose_name_has_uri_characters_is_read(tmp_path, name):
    """The read-only store is opened by URI: a '?' or '#' in its path cut the URI, so SQLite
    opened (and created) the file named by the part before it, and replayed nothing."""
    CountingEmbedder(tmp_path / name).embed(["one", "two"])
    ro = CountingEmbedder(tmp_path / name, readonly=True)
    ro.embed(["one", "two"])
    assert ro.seen == [] and ro.replayed == 2
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [name]

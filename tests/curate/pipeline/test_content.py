"""Table digests: the same rows hash the same whatever wrote them; one changed value does not."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.pipeline.content import digest_arrow, table_digest, values_within


def _table() -> pl.DataFrame:
    return pl.DataFrame({
        "id": ["a", "b", None, "d"],
        "messages": [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], [], None,
                     [{"role": "user", "content": None}]],
        "score": [1.5, None, float("nan"), -0.0],
        "n": [1, 2, 3, None],
        "reason": ["duplicate of a (cosine 0.923)", None, "x", ""],
    })


def test_the_same_rows_hash_the_same_from_any_writer(tmp_path):
    df = _table()
    df.write_parquet(tmp_path / "polars-zstd.parquet", compression="zstd")
    pl.concat([df[:1], df[1:3], df[3:]], rechunk=False).write_parquet(
        tmp_path / "chunks-snappy.parquet", compression="snappy", row_group_size=1)
    pq.write_table(df.to_arrow(), tmp_path / "pyarrow-gzip.parquet", compression="gzip", use_dictionary=True)
    arrow = df.to_arrow()  # other physical types: 32-bit offsets, int32, float32 where exact
    narrow = pa.table({"id": arrow["id"].cast(pa.string()), "messages": arrow["messages"], "score": arrow["score"],
                       "n": arrow["n"].cast(pa.int32()), "reason": arrow["reason"].cast(pa.string())})
    pq.write_table(narrow, tmp_path / "narrow.parquet")
    df.select(sorted(df.columns, reverse=True)).write_parquet(tmp_path / "columns-reordered.parquet")
    digests = {p.name: table_digest(p) for p in tmp_path.iterdir()}
    assert len({(d["content"], d["decisions"]) for d in digests.values()}) == 1, digests
    # ...while the files themselves differ
    assert len({p.read_bytes() for p in tmp_path.iterdir()}) == len(digests)


def test_one_changed_value_changes_the_content_hash():
    base = digest_arrow(_table().to_arrow())
    changes = [
        _table().with_columns(pl.Series("id", ["a", "b", None, "e"])),
        _table().with_columns(pl.Series("id", ["a", "b", "", "d"])),  # null is not ""
        _table().with_columns(pl.Series("n", [1, 2, 3, 0])),  # null is not 0
        _table().with_columns(pl.Series("score", [1.5, None, float("nan"), 1e-300])),
        _table()[[0, 1, 3, 2]],  # row order matters
        _table().with_columns(pl.Series("messages", [[{"role": "user", "content": "hih"}, {"role": "assistant", "content": "ello"}],
                                                    [], None, [{"role": "user", "content": None}]])),  # boundaries
        _table().rename({"n": "m"}),
    ]
    for changed in changes:
        assert digest_arrow(changed.to_arrow())["content"] != base["content"]


def test_decisions_ignore_float_values_and_numbers_in_reasons():
    base = digest_arrow(_table().to_arrow())
    moved = _table().with_columns(pl.Series("score", [1.5000001, None, float("nan"), 0.0]),
                                  pl.Series("reason", ["duplicate of a (cosine 0.924)", None, "x", ""]))
    d = digest_arrow(moved.to_arrow())
    assert d["content"] != base["content"] and d["decisions"] == base["decisions"]
    assert values_within(base["values"], d["values"])[0]
    other_id = _table().with_columns(pl.Series("reason", ["duplicate of b (cosine 0.923)", None, "x", ""]))
    assert digest_arrow(other_id.to_arrow())["decisions"] != base["decisions"]
    far = _table().with_columns(pl.Series("score", [1.6, None, float("nan"), 0.0]))
    assert not values_within(base["values"], digest_arrow(far.to_arrow())["values"])[0]


def test_large_float_columns_are_summarised():
    from curate.pipeline import content

    n = content.VALUES_LISTED + 1
    a = digest_arrow(pa.table({"x": [i / 7 for i in range(n)]}))["values"]["x"]
    assert "values" not in a and a["n"] == n and a["min"] == 0.0
    b = digest_arrow(pa.table({"x": [i / 7 + 1e-9 for i in range(n)]}))["values"]
    assert values_within({"x": a}, b)[0]
    c = digest_arrow(pa.table({"x": [i / 7 + 1e-3 for i in range(n)]}))["values"]
    assert not values_within({"x": a}, c)[0]


def test_curate_run_with_any_compression_writes_the_same_lock(tmp_path, monkeypatch):
    """The same rows through the real `curate run`, written with four codecs: other bytes,
    the same lock (content hashes), so a build's lock does not depend on how it was written."""
    from click.testing import CliRunner

    from curate.cli import main

    from .conftest import records, write_pipeline

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw.jsonl").write_text("\n".join(records()) + "\n")
    pipe = write_pipeline(tmp_path, [{"filter": {"rules": "rules/default.yaml"}},
                                     {"dedup": {"method": ["exact", "minhash"], "threshold": 0.7}}])
    locks, kept = {}, {}
    for value in (None, "none", "lz4", "zstd:9"):
        pipe.with_suffix(".lock").unlink(missing_ok=True)  # each run writes its own (one within tolerance stays)
        res = CliRunner().invoke(main, ["run", str(pipe)] + (["--compression", value] if value else []))
        assert res.exit_code == 0, res.output
        locks[value] = pipe.with_suffix(".lock").read_text()
        kept[value] = Path("build/p/02-dedup/kept.parquet").read_bytes()
        meta = pq.ParquetFile("build/p/02-dedup/kept.parquet").metadata
        assert meta.row_group(0).column(0).compression == {None: "ZSTD", "none": "UNCOMPRESSED", "lz4": "LZ4",
                                                           "zstd:9": "ZSTD"}[value]
    assert len(set(locks.values())) == 1 and len(set(kept.values())) == 4

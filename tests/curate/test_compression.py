"""--compression: every Parquet file a command writes uses the codec asked for, with the same
table content; the default stays zstd level 1; a bad value is one line."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate import api
from curate.cli import main
from curate.compression import parse, polars_options
from curate.config import ConfigError
from curate.pipeline.content import table_digest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "demo" / "sample.jsonl"

# value -> (pyarrow's name of the codec, the zstd/gzip/brotli level written or None)
VALUES = {"zstd": ("ZSTD", 1), "zstd:9": ("ZSTD", 9), "lz4": ("LZ4", None), "snappy": ("SNAPPY", None),
          "gzip": ("GZIP", 6), "brotli:4": ("BROTLI", 4), "none": ("UNCOMPRESSED", None)}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def codecs(path: Path) -> set[str]:
    """The codec of every column chunk of every row group."""
    meta = pq.ParquetFile(path).metadata
    return {meta.row_group(g).column(c).compression for g in range(meta.num_row_groups) for c in range(meta.num_columns)}


def tables(folder: Path) -> dict[str, dict]:
    return {p.name: table_digest(p)["content"] for p in sorted(folder.glob("*.parquet"))}


@pytest.fixture(scope="module")
def default_filter(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("default") / "f"
    assert run("filter", SAMPLE, "-o", out).exit_code == 0
    return out


def test_values_and_their_canonical_form():
    assert parse(None) == parse("zstd") == parse("ZSTD:1") == "zstd:1"
    assert parse("zstd:22") == "zstd:22" and parse("gzip") == "gzip:6" and parse("brotli:0") == "brotli:0"
    assert parse("none") == parse("uncompressed") == "none" and parse("lz4") == "lz4"
    assert polars_options("none") == {"compression": "uncompressed"}
    assert polars_options(None) == {"compression": "zstd", "compression_level": 1}


@pytest.mark.parametrize("value, why", [
    ("zstdd", "'zstdd' is not one of zstd[:1-22], lz4, snappy, gzip[:0-9], brotli[:0-11], none (did you mean 'zstd'?)"),
    ("zstd:0", "'zstd:0': zstd's level is a whole number from 1 to 22"),
    ("zstd:23", "'zstd:23': zstd's level is a whole number from 1 to 22"),
    ("zstd:", "'zstd:': zstd's level is a whole number from 1 to 22"),
    ("gzip:x", "'gzip:x': gzip's level is a whole number from 0 to 9"),
    ("lz4:3", "'lz4:3': lz4 takes no level (give lz4)"),
])
def test_bad_values_are_one_line(value, why, tmp_path):
    with pytest.raises(ValueError) as e:
        parse(value)
    assert str(e.value) == why
    res = run("filter", SAMPLE, "-o", tmp_path / "f", "--compression", value)
    assert res.exit_code == 2 and res.output == f"Error: --compression {why}\n", res.output
    assert not (tmp_path / "f").exists()  # refused before anything was read or written


@pytest.mark.parametrize("value", list(VALUES))
def test_filter_writes_every_table_with_the_codec(value, tmp_path, default_filter):
    out = tmp_path / "f"
    res = run("filter", SAMPLE, "-o", out, "--compression", value)
    assert res.exit_code == 0, res.output
    codec, level = VALUES[value]
    for name in ("kept.parquet", "rejected.parquet"):
        assert codecs(out / name) == {codec}, name
    assert tables(out) == tables(default_filter)  # the same rows whatever the codec
    same_bytes = (out / "kept.parquet").read_bytes() == (default_filter / "kept.parquet").read_bytes()
    assert same_bytes == (value == "zstd")


def test_the_default_is_zstd_level_1(default_filter, tmp_path):
    assert codecs(default_filter / "kept.parquet") == {"ZSTD"}
    for level in ("1", "3"):  # pyarrow does not report the level: compare with an explicit one
        assert run("filter", SAMPLE, "-o", tmp_path / level, "--compression", f"zstd:{level}").exit_code == 0
    kept = (default_filter / "kept.parquet").read_bytes()
    assert kept == (tmp_path / "1" / "kept.parquet").read_bytes() != (tmp_path / "3" / "kept.parquet").read_bytes()


def test_dedup_writes_its_clusters_with_the_codec(tmp_path):
    out = tmp_path / "d"
    res = run("dedup", SAMPLE, "-o", out, "--method", "exact,minhash", "--compression", "snappy")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.glob("*.parquet"))
    assert names == ["clusters.parquet", "kept.parquet", "rejected.parquet"]
    assert all(codecs(out / n) == {"SNAPPY"} for n in names)


def test_format_writes_train_and_eval_parquet_with_the_codec(tmp_path):
    out = tmp_path / "fmt"
    res = run("format", SAMPLE, "-o", out, "--tokenizer", "smollm2-135m-instruct", "--eval-fraction", "0.2",
              "--compression", "none")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.glob("*.parquet"))
    assert {"train.parquet", "eval.parquet", "kept.parquet", "rejected.parquet"} <= set(names)
    written = {n: codecs(out / n) for n in names}  # an empty table (rejected here) has no column chunks
    assert written["train.parquet"] == written["eval.parquet"] == written["kept.parquet"] == {"UNCOMPRESSED"}
    assert all(c in ({"UNCOMPRESSED"}, set()) for c in written.values()), written


def test_a_registered_stage_command_takes_it(tmp_path):
    from curate import stages
    from tests.curate import toystage

    stages.register(toystage.STAGE)  # a command made from the registry (curate.cli._stage_cmd)
    try:
        res = run("parity", SAMPLE, "-o", tmp_path / "t", "--compression", "lz4")
    finally:
        stages.unregister("parity")
    assert res.exit_code == 0, res.output
    assert codecs(tmp_path / "t" / "kept.parquet") == codecs(tmp_path / "t" / "rejected.parquet") == {"LZ4"}


def test_the_api_takes_it_and_checks_it(tmp_path, default_filter):
    stats = api.filter_inputs([SAMPLE], tmp_path / "a", compression="brotli:4")
    assert stats["kept"] == json.loads((default_filter / "stats.json").read_text())["kept"]
    assert codecs(tmp_path / "a" / "kept.parquet") == {"BROTLI"}
    assert tables(tmp_path / "a") == tables(default_filter)
    api.dedup_inputs([SAMPLE], tmp_path / "b", {"methods": ["exact"]})  # None: the default
    assert codecs(tmp_path / "b" / "kept.parquet") == {"ZSTD"}
    with pytest.raises(ConfigError, match=r"^compression 'zip' is not one of .* \(did you mean 'gzip'\?\)$"):
        api.filter_inputs([SAMPLE], tmp_path / "c", compression="zip")
    assert not (tmp_path / "c").exists()

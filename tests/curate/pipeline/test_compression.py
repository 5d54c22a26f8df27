"""A pipeline's ``compression:`` (and `curate run/verify --compression`): every step's
Parquet files use it, a step cached with another codec is written again, and the lock and
`curate verify`'s verdict never depend on it."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from curate.cli import main
from curate.config import ConfigError
from curate.pipeline import build

from .conftest import records

STEPS = [{"filter": {"rules": "rules/default.yaml"}}, {"dedup": {"method": ["exact", "minhash"], "threshold": 0.7}}]
NAMES = ["01-filter", "02-dedup"]


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw.jsonl").write_text("\n".join(records()) + "\n")
    return tmp_path


def pipeline(compression=None) -> Path:
    spec = {"name": "p", "inputs": [{"path": "data/raw.jsonl"}], "steps": STEPS, "output": "build/p"}
    if compression is not None:
        spec["compression"] = compression
    path = Path("pipelines/p.yaml")
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cli(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def statuses(output: str) -> list[str]:
    return [line.split()[1] for line in output.splitlines() if line.split() and line.split()[0] in NAMES]


def codecs() -> set[str]:
    out = set()
    for name in NAMES:
        for f in Path("build/p", name).glob("*.parquet"):
            meta = pq.ParquetFile(f).metadata
            out |= {meta.row_group(g).column(c).compression
                    for g in range(meta.num_row_groups) for c in range(meta.num_columns)}
    return out


def test_the_setting_writes_every_step_with_its_codec_and_keeps_the_lock(folder):
    path = pipeline()
    assert statuses(cli("run", path)) == ["ran", "ran"] and codecs() == {"ZSTD"}
    lock = path.with_suffix(".lock").read_text()
    pipeline("snappy")
    assert statuses(cli("run", path)) == ["ran", "ran"]  # other bytes: not the cached steps
    assert codecs() == {"SNAPPY"} and path.with_suffix(".lock").read_text() == lock
    assert statuses(cli("run", path)) == ["cached", "cached"]
    step = json.loads(Path("build/p/02-dedup/step.json").read_text())
    assert step["key"]["compression"] == "snappy"


def test_run_compression_overrides_the_setting(folder):
    path = pipeline("none")
    cli("run", path)
    assert codecs() == {"UNCOMPRESSED"}
    lock = path.with_suffix(".lock").read_text()
    assert statuses(cli("run", path, "--compression", "zstd:7")) == ["ran", "ran"]
    assert codecs() == {"ZSTD"} and path.with_suffix(".lock").read_text() == lock
    # the default codec leaves the key as it was before there was a choice: such builds stay cached
    cli("run", path, "--compression", "zstd")
    assert "compression" not in json.loads(Path("build/p/01-filter/step.json").read_text())["key"]


def test_verify_of_a_build_made_with_another_codec_is_identical(folder):
    path = pipeline("lz4")
    cli("run", path)
    assert "(identical)" in cli("verify", path)  # rebuilt with lz4, as the pipeline says
    assert "(identical)" in cli("verify", path, "--compression", "none")
    pipeline()  # the lock was made with lz4; the rebuild writes zstd
    assert "(identical)" in cli("verify", path)


def test_a_bad_setting_is_one_line(folder):
    path = pipeline("zst:3")
    with pytest.raises(ConfigError) as e:
        build(path, echo=lambda *_: None)
    assert str(e.value) == ("pipelines/p.yaml: compression: 'zst:3' is not one of zstd[:1-22], lz4, snappy, "
                            "gzip[:0-9], brotli[:0-11], none (did you mean 'zstd'?)")
    with pytest.raises(ConfigError, match=r"^compression 'snapy' is not one of .* \(did you mean 'snappy'\?\)$"):
        build(pipeline(), compression="snapy", echo=lambda *_: None)  # the API's override
    res = CliRunner().invoke(main, ["run", str(pipeline()), "--compression", "lz4:1"])
    assert res.exit_code == 2 and res.output == "Error: --compression 'lz4:1': lz4 takes no level (give lz4)\n"
    assert not Path("build").exists()

"""A new stage kind is one module and one register call: tests/curate/toystage.py's `parity`
runs through the CLI (a command made from its options model), a pipeline (`curate run`,
its lock and cache) and both engines, with nothing else edited."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from curate import api, stages
from curate.cli import main
from tests.curate import toystage
from tests.helpers import output_hashes, untimed_stats

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "demo" / "sample.jsonl"


@pytest.fixture
def parity():
    stages.register(toystage.STAGE)
    yield toystage.STAGE
    stages.unregister("parity")


def _expected(reject: str, min_chars: int) -> tuple[int, int]:
    from curate.readers import read_inputs

    read = read_inputs([SAMPLE])
    lengths = [toystage.first_user_length(m) for m in read.records["messages"].to_list()]
    bad = sum(n >= min_chars and n % 2 == (1 if reject == "odd" else 0) for n in lengths)
    return read.records.height - bad, bad + read.rejected.height


def test_the_cli_has_a_command_for_it_with_its_options(parity, tmp_path):
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0 and "parity" in res.output
    res = CliRunner().invoke(main, ["parity", "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "--reject [odd|even]" in res.output and "[default: odd]" in res.output
    assert "number of characters" in res.output and "--min-chars INTEGER" in res.output

    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["parity", str(SAMPLE), "-o", str(out), "--reject", "even", "--min-chars", "40"])
    assert res.exit_code == 0, res.output
    stats = json.loads((out / "stats.json").read_text())
    kept, rejected = pl.read_parquet(out / "kept.parquet"), pl.read_parquet(out / "rejected.parquet")
    assert (kept.height, rejected.height) == _expected("even", 40)
    assert stats["stage"] == "parity" and stats["in"] == kept.height + rejected.height
    assert stats["rules"]["parity.even"] == rejected.filter(pl.col("rule") == "parity.even").height > 0

    res = CliRunner().invoke(main, ["parity", str(SAMPLE), "-o", str(out), "--reject", "evn"])
    assert res.exit_code == 2 and "Did you mean 'even'?" in res.output
    res = CliRunner().invoke(main, ["parity", str(SAMPLE), "-o", str(out), "--min-chars", "-1"])
    assert res.exit_code == 2 and "parity option min_chars" in res.output and "Traceback" not in res.output


def test_not_registered_no_command():
    assert "parity" not in stages.names()
    assert CliRunner().invoke(main, ["parity", "--help"]).exit_code == 2


def _project(root: Path, steps: list, engine: str = "local") -> Path:
    (root / "data").mkdir(parents=True)
    shutil.copy(SAMPLE, root / "data" / "raw.jsonl")
    (root / "pipelines").mkdir()
    path = root / "pipelines" / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "inputs": [{"path": "data/raw.jsonl"}], "steps": steps,
                                    "output": "build/p", "engine": engine}, sort_keys=False))
    return path


def test_a_pipeline_runs_caches_and_locks_it(parity, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path, [{"parity": {"reject": "even", "min_chars": 40}}, {"dedup": None}])
    res = CliRunner().invoke(main, ["run", "pipelines/p.yaml"])
    assert res.exit_code == 0, res.output
    lock = json.loads((tmp_path / "pipelines" / "p.lock").read_text())
    step = lock["steps"][0]
    assert step["kind"] == "parity" and step["options"] == {"reject": "even", "min_chars": 40}
    assert (step["kept"], step["rejected"]) == _expected("even", 40)
    assert (tmp_path / "build" / "p" / "01-parity" / "kept.parquet").is_file()
    again = CliRunner().invoke(main, ["run", "pipelines/p.yaml"])
    assert "01-parity  cached" in again.output and "02-dedup   cached" in again.output

    # another option value is another cache key
    _write_steps(tmp_path, [{"parity": {"reject": "odd"}}, {"dedup": None}])
    res = CliRunner().invoke(main, ["run", "pipelines/p.yaml"])
    assert "01-parity  ran" in res.output, res.output
    assert json.loads((tmp_path / "pipelines" / "p.lock").read_text())["steps"][0]["rejected"] == _expected("odd", 0)[1]


def _write_steps(root: Path, steps: list) -> None:
    path = root / "pipelines" / "p.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["steps"] = steps
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def test_a_pipeline_checks_its_keys(parity, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path, [{"parity": {"rejct": "odd"}}])
    res = CliRunner().invoke(main, ["run", "pipelines/p.yaml"])
    assert res.exit_code == 2
    assert "pipelines/p.yaml: steps[0].parity: unknown key 'rejct' (did you mean 'reject'?)" in res.output
    _write_steps(tmp_path, [{"parity": None, "filter": None}])
    res = CliRunner().invoke(main, ["run", "pipelines/p.yaml"])
    assert "a step is exactly one of filter, dedup, score, format, parity" in res.output


def test_the_ray_engine_runs_it_in_blocks_to_the_same_bytes(parity, tmp_path, monkeypatch):
    """On a real local Ray instance, blocks of 23 rows: the same files as the local engine, and a
    pipeline built locally verifies on Ray."""
    ray = pytest.importorskip("ray")
    from curate.engine.ray_engine import connect

    for k, v in {"CURATE_RAY_CPUS": "2", "CURATE_RAY_BLOCK_ROWS": "23"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    started = not ray.is_initialized()
    connect()
    ray.cloudpickle.register_pickle_by_value(toystage)  # the workers need not find the test's module
    try:
        options = {"reject": "odd", "min_chars": 30}
        for engine in ("local", "ray"):
            api.stage_inputs("parity", [SAMPLE], tmp_path / engine, options, engine=engine)
        assert output_hashes(tmp_path / "local") == output_hashes(tmp_path / "ray")
        local, distributed = (untimed_stats(tmp_path / e) for e in ("local", "ray"))
        assert local == distributed and local["rejected"] > 0

        monkeypatch.chdir(tmp_path)
        _project(tmp_path / "proj", [{"parity": options}])
        monkeypatch.chdir(tmp_path / "proj")
        assert CliRunner().invoke(main, ["run", "pipelines/p.yaml"]).exit_code == 0
        res = CliRunner().invoke(main, ["verify", "pipelines/p.yaml", "--engine", "ray"])
        assert res.exit_code == 0 and "(identical)" in res.output, res.output
    finally:
        ray.cloudpickle.unregister_pickle_by_value(toystage)
        if started:
            ray.shutdown()


def test_the_base_pipeline_and_step_models_validate_against_the_registry():
    from curate.pipeline.spec import Pipeline, Step

    p = Pipeline.model_validate({"name": "x", "inputs": [{"path": "a.jsonl"}], "steps": [{"dedup": None}, {"filter": {}}],
                                 "output": "build/x"})
    assert [s.kind for s in p.steps] == ["dedup", "filter"]
    assert Step.model_validate({"dedup": {"method": "minhash"}}).options.methods == ["minhash"]

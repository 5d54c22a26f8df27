"""The output folder of `curate run` (#21): the user's files in it are never deleted, two
builds into it take turns, a full disk is one line, and an input written to while it is read
is refused."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from curate.config import ConfigError
from curate.pipeline import build

from .conftest import REPO, records

PIPE = Path("pipelines/p.yaml")


@pytest.fixture
def small(tmp_path, monkeypatch):
    """A project with two cheap steps (no judge, no tokenizer)."""
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "data" / "raw.jsonl").write_text("\n".join(records()) + "\n")
    (root / "pipelines").mkdir()
    (root / PIPE).write_text(yaml.safe_dump({"name": "p", "inputs": [{"path": "data/raw.jsonl"}],
                                             "steps": [{"dedup": {"method": "exact"}},
                                                       {"dedup": {"method": "minhash", "threshold": 0.7}}],
                                             "output": "build/p"}, sort_keys=False))
    monkeypatch.chdir(root)
    return root


def quiet(_line):
    pass


# ---- item 25: never delete what the toolkit did not create ---------------------------------

def test_a_foreign_non_empty_output_folder_is_refused_and_left_alone(small):
    Path("build/p/02-dedup").mkdir(parents=True)
    Path("build/p/02-dedup/notes.txt").write_text("mine")
    Path("build/p/.draft.tmp").write_text("mine too")
    with pytest.raises(ConfigError, match=r"build/p: output folder is not empty and was not made by `curate run`"):
        build(PIPE, echo=quiet)
    assert Path("build/p/02-dedup/notes.txt").read_text() == "mine"
    assert Path("build/p/.draft.tmp").read_text() == "mine too"
    Path("other").mkdir()
    Path("other/manifest.json").write_text("{}")  # anyone's file name: the folder is not taken for a build
    with pytest.raises(ConfigError, match=r"other: output folder is not empty"):
        build(PIPE, echo=quiet, output=Path("other"))
    assert Path("other/manifest.json").read_text() == "{}"


def test_a_build_from_before_the_marks_is_still_a_build(small):
    build(PIPE, echo=quiet)
    for mark in Path("build/p").rglob(".curate-*"):
        mark.unlink()
    lines = []
    build(PIPE, echo=lines.append, force=True)
    assert [ln.split()[1] for ln in lines if ln.startswith("0")] == ["ran", "ran"]
    assert Path("build/p/.curate-build").is_file() and Path("build/p/01-dedup/.curate-step").is_file()


def test_a_users_folder_named_like_a_step_inside_a_build_is_refused_not_replaced(small):
    build(PIPE, echo=quiet)
    for name in ("03-score", ".03-score.tmp"):  # a step no longer in the pipeline, a temporary
        Path("build/p", name).mkdir()
        Path("build/p", name, "notes.txt").write_text("mine")
    build(PIPE, echo=quiet, force=True)
    assert Path("build/p/03-score/notes.txt").read_text() == "mine"
    assert Path("build/p/.03-score.tmp/notes.txt").read_text() == "mine"
    # a user's folder where a step of the pipeline goes: refused before anything runs
    import shutil
    shutil.rmtree("build/p/02-dedup")
    Path("build/p/02-dedup").mkdir()
    Path("build/p/02-dedup/notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"build/p/02-dedup: not written by `curate run`"):
        build(PIPE, echo=quiet, force=True)
    assert Path("build/p/02-dedup/notes.txt").read_text() == "mine"


def test_the_toolkits_own_leftovers_are_still_cleaned(small):
    build(PIPE, echo=quiet)
    Path("build/p/.02-dedup.tmp").mkdir()  # killed before it was marked: empty
    Path("build/p/.01-dedup.tmp").mkdir()
    Path("build/p/.01-dedup.tmp/.curate-step").write_text("")
    Path("build/p/.01-dedup.tmp/kept.parquet").write_text("half")
    build(PIPE, echo=quiet)
    assert not Path("build/p/.02-dedup.tmp").exists() and not Path("build/p/.01-dedup.tmp").exists()


# ---- item 26: concurrent builds into one folder ---------------------------------------------

def test_four_concurrent_forced_runs_take_turns(small):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "curate.cli", "run", "--force", str(PIPE)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1][-2000:] for o in outs]
    assert all("Traceback" not in err for _, err in outs)
    waited = [out for out, _ in outs if "waiting for the build by pid" in out]
    assert waited  # at least one run saw another holding the folder, and said who
    manifest = json.loads(Path("build/p/manifest.json").read_text())
    assert manifest["final"] == "02-dedup"
    assert pl.read_parquet("build/p/02-dedup/kept.parquet").height == manifest["steps"][-1]["kept"]


def test_a_run_gives_up_after_the_timeout_in_one_line(small, monkeypatch):
    import fcntl

    Path("build/p").mkdir(parents=True)
    fd = os.open("build/p/.curate-build", os.O_RDWR | os.O_CREAT)
    os.write(fd, json.dumps({"pid": 4242, "host": "elsewhere", "since": "2026-01-01T00:00:00+00:00"}).encode())
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        monkeypatch.setenv("CURATE_LOCK_TIMEOUT", "0.5")
        lines = []
        with pytest.raises(ConfigError, match=r"build/p: another `curate run` is building into this folder "
                                              r"\(pid 4242 on elsewhere, since 2026-01-01T00:00:00\+00:00\); gave up"):
            build(PIPE, echo=lines.append)
        assert any("waiting for the build by pid 4242" in ln for ln in lines)
    finally:
        os.close(fd)


# ---- item 7: a full disk ------------------------------------------------------------------

def test_a_full_disk_is_one_line_naming_the_folder_and_no_partial_step_is_trusted(small, monkeypatch):
    build(PIPE, echo=quiet)
    real = pl.DataFrame.write_parquet
    calls = {"n": 0}

    def full_disk(self, path, **kw):  # polars itself, writing where the disk is full (step 2, first table)
        calls["n"] += 1
        return real(self, "/dev/full", **kw) if calls["n"] == 4 else real(self, path, **kw)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full_disk)
    with pytest.raises(ConfigError) as e:
        build(PIPE, echo=quiet, force=True)
    message = str(e.value)
    assert "\n" not in message and message.startswith("build/p: cannot write step 02-dedup: no space left on device")
    assert not Path("build/p/.02-dedup.tmp").exists() and not Path("build/p/manifest.json").exists()
    monkeypatch.setattr(pl.DataFrame, "write_parquet", real)
    lines = []
    build(PIPE, echo=lines.append)
    # the complete 02-dedup of the first build was never touched: still valid, so cached
    assert [ln.split()[1] for ln in lines if ln.startswith("0")] == ["cached", "cached"]


def test_the_cli_says_it_in_one_line(small, monkeypatch):
    from click.testing import CliRunner

    from curate.cli import main

    monkeypatch.setattr(pl.DataFrame, "write_parquet", lambda self, path, **kw: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))))
    result = CliRunner().invoke(main, ["run", str(PIPE)])
    assert result.exit_code == 2 and result.exception is not None and isinstance(result.exception, SystemExit)
    assert "build/p: cannot write step 01-dedup: no space left on device" in result.output


# ---- item 13: an input appended to while it is read -----------------------------------------

def test_an_input_written_to_while_it_is_read_is_refused(small, monkeypatch):
    import importlib

    build_module = importlib.import_module("curate.pipeline.build")

    real = build_module.read_entries

    def read_then_append(inputs, sources):
        with open("data/raw.jsonl", "a") as fh:  # another process appends as we read
            fh.write(json.dumps({"prompt": "phantom", "completion": "a record no hash pinned"}) + "\n")
        return real(inputs, sources)

    monkeypatch.setattr(build_module, "read_entries", read_then_append)
    with pytest.raises(ConfigError, match=r"pipelines/p.yaml: inputs\[0\].path: data/raw.jsonl: changed while it was read"):
        build(PIPE, echo=quiet)
    assert not Path("build/p/01-dedup").exists() and not Path("build/p/manifest.json").exists()
    monkeypatch.setattr(build_module, "read_entries", real)
    lock = build(PIPE, echo=quiet)  # nothing writes now: built, and the lock pins what was read
    assert lock["inputs"][0]["records"] == len(Path("data/raw.jsonl").read_text().splitlines())

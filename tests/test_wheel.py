"""The toolkit as `pip install` gives it: a wheel built from the tracked files, installed into a
fresh virtual environment with no source tree beside it, run from an unrelated folder.

The new environment sees this one's third-party packages through a path file (so nothing is
downloaded), but not the editable install of this checkout: every `curate` and `train`
module and every shipped file (rules, keyword lists, templates, rubrics, juries, training
configs) comes from the wheel."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin folder of a venv holding only the wheel."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        rel = Path(name.decode())
        target = src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / rel).is_symlink():
            os.symlink(os.readlink(REPO / rel), target)
        elif (REPO / rel).is_file():
            shutil.copy2(REPO / rel, target)
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(src)], check=True, capture_output=True)
    wheel = next(dist.glob("sft_curate-*.whl"))
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    # this environment's packages, as plain path entries: their .pth files (the editable
    # install of this checkout among them) are not run
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # without PYTHONPATH: a checkout on it (with its egg-info) reads as sft-curate already installed
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True, env=clean)
    return env_dir / "bin"


def _run(bin_dir: Path, cwd: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(bin_dir / args[0]), *map(str, args[1:])], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_wheel_carries_its_data_and_runs_from_any_folder(installed, tmp_path, tiny_model):
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run(installed, work, "python", "-c", "import curate, train; print(curate.__file__, train.__file__)")
    assert where.returncode == 0, where.stderr
    assert str(REPO) not in where.stdout and "site-packages" in where.stdout  # not this checkout

    r = _run(installed, work, "curate", "validate", "rules/default.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    r = _run(installed, work, "curate", "validate", "rules/juries/offline.yaml")
    assert r.returncode == 0, r.stdout + r.stderr

    rows = [{"prompt": "Name three primary colors.", "completion": "Red, yellow and blue."},
            {"prompt": "What is 2 + 2?", "completion": "I'm sorry, but as an AI language model I cannot answer."},
            {"prompt": "Say hi.", "completion": "Hi!"}]
    (work / "raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = _run(installed, work, "curate", "filter", "raw.jsonl", "-o", "filtered")
    assert r.returncode == 0, r.stdout + r.stderr
    stats = json.loads((work / "filtered" / "stats.json").read_text())
    assert stats["in"] == 3 and stats["rules"].get("output.refusal") == 1  # the shipped default rules ran

    r = _run(installed, work, "curate", "format", "filtered", "-o", "formatted", "--tokenizer", tiny_model,
             "--template", "chatml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (work / "formatted" / "train.jsonl").is_file()

    r = _run(installed, work, "train", "sft", "train/configs/smollm2_lora.yaml", "--dry-run",
             "--set", f"model={tiny_model}", "--set", "data=formatted", "--set", "output_dir=run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (work / "rules").exists() and not (work / "train").exists()

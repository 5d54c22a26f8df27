"""`curate run`: steps, caching, the lock, resuming a killed build, detecting corruption."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from curate.config import ConfigError
from curate.pipeline import build, lock_path

from .conftest import default_steps, write_pipeline

PIPE = Path("pipelines/p.yaml")
NAMES = ["01-dedup", "02-filter", "03-dedup", "04-score", "05-format"]


def run(**kw) -> tuple[dict, list[str]]:
    lines: list[str] = []
    lock = build(PIPE, echo=lines.append, **kw)
    return lock, lines


def statuses(lines: list[str]) -> dict[str, str]:
    return {ln.split()[0]: ln.split()[1] for ln in lines if re.match(r"\d\d-[a-z]+ ", ln)}


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("stats.json", "step.json", "manifest.json")}


def test_run_builds_every_step_and_loses_nothing(project):
    lock, lines = run()
    out = Path("build/p")
    assert sorted(p.name for p in out.iterdir()) == [".curate-build", *NAMES, "manifest.json"]  # the mark: a build folder
    assert statuses(lines) == dict.fromkeys(NAMES, "ran")
    assert lock["inputs"][0]["records"] == 40 and lock["inputs"][0]["path"] == "data/raw.jsonl"
    previous_kept = 40
    for step, name in zip(lock["steps"], NAMES):
        kept = pl.read_parquet(out / name / "kept.parquet")
        rejected = pl.read_parquet(out / name / "rejected.parquet")
        assert step["in"] == previous_kept == kept.height + rejected.height  # nothing dropped between steps
        assert (step["kept"], step["rejected"]) == (kept.height, rejected.height)
        assert sum(step["rules"].values()) == rejected.height
        previous_kept = step["kept"]
    rules = {k: v for s in lock["steps"] for k, v in s["rules"].items() if v}
    assert rules["dedup.exact"] == 3 and rules["read.parse_error"] == 1 and rules["output.refusal"] == 1
    assert rules["dedup.minhash"] >= 1 and rules.get("score.below_threshold", 0) >= 1
    # the lock names every config file a step read, by its bytes
    assert set(lock["steps"][1]["files"]) == {"rules/default.yaml", "rules/lists/refusals.txt"}
    assert set(lock["steps"][3]["files"]) == {"rules/jury.yaml", "rules/rubrics/sft_quality.j2"}
    assert set(lock["outputs"]) >= {"05-format/train.jsonl", "05-format/eval.jsonl", "05-format/kept.parquet"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["final"] == "05-format" and manifest["steps"] == lock["steps"]
    assert lock_path(PIPE).read_text() == json.dumps(lock, indent=2, sort_keys=True) + "\n"


def test_second_run_reuses_every_step_and_calls_no_judge(project, judge_server):
    first, _ = run()
    before = folder_bytes(Path("build/p"))
    calls = judge_server.stats()["calls"]
    second, lines = run()
    assert statuses(lines) == dict.fromkeys(NAMES, "cached")
    assert judge_server.stats()["calls"] == calls
    assert second == first and folder_bytes(Path("build/p")) == before


def test_two_checkouts_build_identical_locks(project, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(project, other)
    a, _ = run()
    monkeypatch.chdir(other)
    b, _ = run()
    assert lock_path(PIPE).read_text() == (project / "pipelines" / "p.lock").read_text()
    assert a == b


def test_forced_rebuild_is_byte_identical(project):
    run()
    before = folder_bytes(Path("build/p"))
    _, lines = run(force=True)
    assert statuses(lines) == dict.fromkeys(NAMES, "ran")
    assert folder_bytes(Path("build/p")) == before


def test_editing_a_rule_file_reruns_that_step_and_the_later_ones_only(project):
    first, _ = run()
    rules = Path("rules/default.yaml")
    rules.write_text(rules.read_text() + "\n  - name: length.custom\n    kind: length\n    field: last_assistant\n"
                     "    min_words: 14\n")
    second, lines = run()
    assert statuses(lines) == {"01-dedup": "cached", "02-filter": "ran", "03-dedup": "ran", "04-score": "ran",
                               "05-format": "ran"}
    assert second["steps"][0] == first["steps"][0]
    assert second["steps"][1]["files"]["rules/default.yaml"] != first["steps"][1]["files"]["rules/default.yaml"]
    assert second["steps"][1]["rules"]["length.custom"] > 0


def test_a_keyword_list_is_part_of_the_filter_config(project):
    first, _ = run()
    Path("rules/lists/refusals.txt").write_text(Path("rules/lists/refusals.txt").read_text() + "\nplease\n")
    second, lines = run()
    assert statuses(lines)["01-dedup"] == "cached" and statuses(lines)["02-filter"] == "ran"
    assert second["steps"][1]["config_hash"] != first["steps"][1]["config_hash"]


def test_from_step_reruns_from_there(project):
    run()
    _, lines = run(from_step="03-dedup")
    assert statuses(lines) == {"01-dedup": "cached", "02-filter": "cached", "03-dedup": "ran", "04-score": "ran",
                               "05-format": "ran"}
    _, lines = run(from_step="4")
    assert statuses(lines)["03-dedup"] == "cached" and statuses(lines)["04-score"] == "ran"
    with pytest.raises(ConfigError, match="--from dedup: is used by several steps.*01-dedup, 02-filter"):
        run(from_step="dedup")


def test_a_corrupted_cached_output_is_detected_and_rebuilt(project):
    first, _ = run()
    target = Path("build/p/03-dedup/kept.parquet")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    second, lines = run()
    assert any("03-dedup: cached output altered (kept.parquet): rebuilding" in ln for ln in lines)
    assert statuses(lines) == {"01-dedup": "cached", "02-filter": "cached", "03-dedup": "ran", "04-score": "ran",
                               "05-format": "ran"}
    assert second == first
    (Path("build/p/05-format/train.jsonl")).unlink()  # a missing file is the same as a changed one
    _, lines = run()
    assert statuses(lines)["05-format"] == "ran" and Path("build/p/05-format/train.jsonl").is_file()


def test_a_killed_build_resumes_and_ends_identical(project, judge_server, tmp_path):
    # an uninterrupted build elsewhere is the reference
    reference, _ = run(output=tmp_path / "reference")
    shutil.rmtree(".curate")  # no judge cache: the killed build must really call the judges
    judge_server.latency_s = 0.1  # ~3 s of judging, one request at a time
    jury = yaml.safe_load(Path("rules/jury.yaml").read_text())
    jury["concurrency"] = 1
    Path("rules/jury.yaml").write_text(yaml.safe_dump(jury, sort_keys=False))
    reference, _ = run(output=tmp_path / "reference", force=True)
    shutil.rmtree(".curate")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "run", str(PIPE)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tmp_step = Path("build/p/.04-score.tmp")
    deadline = time.monotonic() + 60
    while not tmp_step.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert tmp_step.exists(), proc.stderr.read().decode() if proc.poll() is not None else "step 4 never started"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = Path("build/p")
    assert not (out / "04-score").exists() and not (out / "manifest.json").exists()
    assert (out / "03-dedup" / "step.json").is_file()
    judge_server.latency_s = 0.0
    resumed, lines = run()
    assert statuses(lines) == {"01-dedup": "cached", "02-filter": "cached", "03-dedup": "cached", "04-score": "ran",
                               "05-format": "ran"}
    assert not tmp_step.exists()
    assert resumed == reference
    assert folder_bytes(out) == folder_bytes(tmp_path / "reference")


def test_a_removed_step_leaves_no_stale_folder(project, tiny_model):
    run()
    steps = default_steps(tiny_model)
    write_pipeline(project, [steps[0], steps[1], steps[4]])
    lock, lines = run()
    assert sorted(p.name for p in Path("build/p").iterdir() if p.name != ".curate-build") == [
        "01-dedup", "02-filter", "03-format", "manifest.json"]
    assert statuses(lines) == {"01-dedup": "cached", "02-filter": "cached", "03-format": "ran"}


def test_secrets_never_reach_the_lock(project, monkeypatch, judge_server):
    monkeypatch.setenv("JUDGE_KEY", "sk-very-secret-0123456789")
    jury = yaml.safe_load(Path("rules/jury.yaml").read_text())
    for j in jury["judges"]:
        j["api_key_env"] = "JUDGE_KEY"
    Path("rules/jury.yaml").write_text(yaml.safe_dump(jury, sort_keys=False))
    run()
    texts = [lock_path(PIPE).read_text()] + [p.read_text(errors="replace") for p in Path("build/p").rglob("*.json")]
    assert not any("sk-very-secret" in t for t in texts)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s[0].update({"dedup": {"methd": "exact"}}),
     "pipelines/p.yaml: steps[0].dedup: unknown key 'methd' (did you mean 'method'?)"),
    (lambda s: s[1].update({"filter": {"rules": "rules/nope.yaml"}}),
     "pipelines/p.yaml: steps[1] (filter): rules/nope.yaml: no such file"),
    (lambda s: s[2].update({"dedup": {"method": "minhash", "threshold": 1.5}}),
     "pipelines/p.yaml: steps[2].dedup: threshold for minhash must be in (0, 1], got 1.5"),
    (lambda s: s.append({"filter": {}, "dedup": {}}),
     "pipelines/p.yaml: steps[5]: a step is exactly one of filter, dedup, score, format; got filter, dedup"),
    (lambda s: s.append({"sort": {}}), "pipelines/p.yaml: steps[5]: unknown key 'sort'"),
])
def test_bad_pipelines_are_one_line_errors_naming_file_and_key(project, tiny_model, edit, message):
    steps = default_steps(tiny_model)
    edit(steps)
    write_pipeline(project, steps)
    with pytest.raises(ConfigError) as e:
        run()
    assert str(e.value).startswith(message), str(e.value)
    assert not Path("build/p").exists()  # nothing ran


def test_a_missing_input_is_named(project):
    Path("data/raw.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"pipelines/p.yaml: inputs\[0\].path: data/raw.jsonl: no such file"):
        run()


def test_several_inputs_each_with_its_own_format_and_mapping(project):
    Path("data/qa.csv").write_text("query,reply\nWhat is the capital of France?,Paris is the capital of France.\n"
                                   "Name a prime number.,Seven is a prime number.\n")
    pipe = {"name": "p", "inputs": [{"path": "data/raw.jsonl"},
                                    {"path": "data/qa.csv", "format": "qa", "map": {"question": "query", "answer": "reply"}}],
            "steps": [{"dedup": {"method": "exact"}}], "output": "build/p"}
    PIPE.write_text(yaml.safe_dump(pipe, sort_keys=False))
    lock, _ = run()
    assert [(i["path"], i["records"], i.get("format"), i.get("map")) for i in lock["inputs"]] == [
        ("data/raw.jsonl", 40, None, None), ("data/qa.csv", 2, "qa", {"answer": "reply", "question": "query"})]
    kept = pl.read_parquet("build/p/01-dedup/kept.parquet")
    assert kept.height == 36 + 2 and kept["source"].to_list()[-2:] == ["data/qa.csv:1", "data/qa.csv:2"]
    # the mapping is part of the input's identity: changing it reruns the build
    pipe["inputs"][1]["map"] = {"question": "reply", "answer": "query"}
    PIPE.write_text(yaml.safe_dump(pipe, sort_keys=False))
    _, lines = run()
    assert statuses(lines) == {"01-dedup": "ran"}


def test_a_format_step_takes_a_template_by_family_name_and_names_it_the_same_everywhere(project, tiny_model):
    """`template: gemma3`-style names work in pipelines as on the command line, and the lock names
    TRL's file by its place in the package, not by this machine's site-packages path."""
    pytest.importorskip("trl")
    from curate.pipeline.steps import prepare
    from curate.pipeline.spec import Step

    step = Step.model_validate({"format": {"tokenizer": str(tiny_model), "template": "qwen2_5"}})
    prep = prepare(step, "01-format")
    trl_files = [f for f in prep.files if f.startswith("trl/")]
    assert trl_files == ["trl/chat_templates/qwen2_5_training.jinja"], prep.files  # its marked copy
    with pytest.raises(ConfigError, match="nor a chat template TRL ships"):
        prepare(Step.model_validate({"format": {"tokenizer": str(tiny_model), "template": "no_such_family"}}), "01-format")

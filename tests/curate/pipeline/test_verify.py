"""`curate verify` and the `run` / `verify` / `validate` commands."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from curate.cli import main
from curate.pipeline import build, diff, verify

PIPE = Path("pipelines/p.yaml")


def quiet(*_):
    pass


def test_verify_passes_on_an_unchanged_build_and_leaves_the_build_alone(project):
    build(PIPE, echo=quiet)
    stamp = {p: p.stat().st_mtime_ns for p in Path("build/p").rglob("*")}
    assert verify(PIPE, echo=quiet).kind == "identical"
    assert {p: p.stat().st_mtime_ns for p in Path("build/p").rglob("*")} == stamp


def test_verify_names_a_changed_input_byte_and_the_first_step(project):
    build(PIPE, echo=quiet)
    raw = Path("data/raw.jsonl")
    raw.write_text(raw.read_text().replace("case 7 is 17", "case 7 is 18", 1))
    differences = verify(PIPE, echo=quiet).lines
    assert differences[0].startswith("input data/raw.jsonl: sha256 ")
    assert differences[1] == "first step that differs: 01-dedup"
    assert any("its input differs" in d for d in differences) and any("output hash" in d for d in differences)


def test_verify_names_a_changed_config_file_and_counts(project):
    build(PIPE, echo=quiet)
    jury = Path("rules/jury.yaml")
    jury.write_text(jury.read_text().replace("quorum: 1", "quorum: 2"))
    differences = verify(PIPE, echo=quiet).lines
    assert differences[0] == "first step that differs: 04-score"
    assert differences[1].startswith("  config file rules/jury.yaml: changed (")


def test_diff_reads_counts_and_rules():
    step = {"step": "02-filter", "kind": "filter", "files": {}, "options": {"rules": "a.yaml"}, "config_hash": "c",
            "input_hash": "i", "output_hash": "o1", "in": 10, "kept": 8, "rejected": 2, "rules": {"x.y": 2}}
    other = {**step, "options": {"rules": "b.yaml"}, "output_hash": "o2", "kept": 7, "rejected": 3,
             "rules": {"x.y": 2, "z.w": 1}, "config_hash": "d"}
    lines = diff({"lock_format": 2, "steps": [step]}, {"lock_format": 2, "steps": [other]})
    assert lines == ["first step that differs: 02-filter", '  option rules: "a.yaml" -> "b.yaml"',
                     "  kept 8 -> 7", "  rejected 2 -> 3", "  rejected by z.w: 0 -> 1", "  output hash o1 -> o2"]
    assert diff({"lock_format": 2, "steps": [step]}, {"lock_format": 2, "steps": [step]}) == []


def test_cli_run_verify_and_validate(project):
    runner = CliRunner()
    r = runner.invoke(main, ["run", str(PIPE)])
    assert r.exit_code == 0, r.output
    assert "01-dedup   ran" in r.output and "40 records in" in r.output and "wrote pipelines/p.lock" in r.output
    r = runner.invoke(main, ["run", str(PIPE)])
    assert "05-format  cached" in r.output
    r = runner.invoke(main, ["verify", str(PIPE)])
    assert r.exit_code == 0 and "ok: the rebuild matches pipelines/p.lock" in r.output
    r = runner.invoke(main, ["validate", str(PIPE)])
    assert r.exit_code == 0 and "pipeline p, 5 steps (dedup, filter, dedup, score, format)" in r.output
    Path("data/raw.jsonl").write_text(Path("data/raw.jsonl").read_text() + '{"prompt": "one more", "completion": "ok"}\n')
    r = runner.invoke(main, ["verify", str(PIPE)])
    assert r.exit_code == 1
    assert "pipelines/p.lock: the rebuild differs from the lock:" in r.output
    assert "records 40 -> 41" in r.output and "first step that differs: 01-dedup" in r.output


def test_cli_errors_are_one_line(project):
    runner = CliRunner()
    r = runner.invoke(main, ["verify", str(PIPE)])
    assert r.exit_code == 2 and r.output.strip() == "Error: pipelines/p.lock: no lock file; `curate run pipelines/p.yaml` writes it"
    r = runner.invoke(main, ["run", "pipelines/nope.yaml"])
    assert r.exit_code == 2 and r.output.strip() == "Error: pipelines/nope.yaml: no such file"

"""#21 item 11: a JSON file the toolkit reads back (a Hugging Face dataset_dict.json, a lock,
a manifest, stats.json, step.json) that is broken is one line naming the file, never a
traceback; a cached step whose record is broken is rebuilt."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.config import ConfigError
from curate.readers import InputError, read_inputs

BROKEN = ["{not json", "[1, 2]", '{"splits": "train"}', '{"splits": [3]}', '{"splits": ["../.."]}',
          '{"splits": ["nope"]}', "\xff"]


@pytest.mark.parametrize("text", BROKEN)
def test_a_broken_dataset_dict_is_one_line_naming_it(tmp_path, text):
    folder = tmp_path / "dd"
    (folder / "train").mkdir(parents=True)
    (folder / "dataset_dict.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(InputError) as e:
        read_inputs([folder])
    assert str(e.value).startswith(f"{folder}/dataset_dict.json: ") and "\n" not in str(e.value), str(e.value)


def _build(tmp_path, monkeypatch) -> Path:
    """A one-step build of a few records (no judge, no tokenizer)."""
    import yaml

    from curate.pipeline import build

    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "data" / "raw.jsonl").write_text("".join(json.dumps({"prompt": f"q{i} what?", "completion": f"a{i}."}) + "\n"
                                                     for i in range(5)))
    (root / "pipelines").mkdir()
    (root / "pipelines" / "p.yaml").write_text(yaml.safe_dump(
        {"name": "p", "inputs": [{"path": "data/raw.jsonl"}], "steps": [{"dedup": {"method": "exact"}}],
         "output": "build/p"}))
    monkeypatch.chdir(root)
    build(Path("pipelines/p.yaml"), echo=lambda _: None)
    return root


BROKEN_STRUCTURES = ["{", "[]", '{"steps": 3}', '{"steps": [1]}', '{"steps": [{"kind": "dedup"}]}',
                     '{"steps": [{"step": "01-dedup", "rules": []}]}']


@pytest.mark.parametrize("text", BROKEN_STRUCTURES)
def test_a_broken_lock_is_one_line_naming_it(tmp_path, monkeypatch, text):
    from curate.pipeline import verify

    _build(tmp_path, monkeypatch)
    Path("pipelines/p.lock").write_text(text)
    with pytest.raises(ConfigError) as e:
        verify(Path("pipelines/p.yaml"), echo=lambda _: None)
    assert str(e.value).startswith("pipelines/p.lock: not a lock file") and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("text", ["{", "[]", '{"pipeline": "p", "inputs": [], "steps": [{"step": "01-dedup"}]}',
                                  '{"pipeline": "p", "inputs": {}, "steps": []}'])
def test_a_broken_manifest_is_one_line_in_the_report(tmp_path, monkeypatch, text):
    from curate.report.collect import collect

    _build(tmp_path, monkeypatch)
    Path("build/p/manifest.json").write_text(text)
    with pytest.raises(ConfigError) as e:
        collect(Path("build/p"))
    assert str(e.value).startswith("build/p/manifest.json: not a `curate run` manifest"), str(e.value)


@pytest.mark.parametrize("text", ["{", "[]", None])
def test_a_broken_stats_json_is_one_line_in_the_report(tmp_path, monkeypatch, text):
    from curate.report.collect import collect

    _build(tmp_path, monkeypatch)
    stats = Path("build/p/01-dedup/stats.json")
    stats.unlink() if text is None else stats.write_text(text)
    with pytest.raises(ConfigError) as e:
        collect(Path("build/p"))
    assert str(e.value).startswith("build/p/01-dedup/stats.json: "), str(e.value)


@pytest.mark.parametrize("text", ["{", "[]", '{"final": 3}'])
def test_train_names_a_broken_manifest(tmp_path, text):
    from train.data import format_folder

    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ConfigError) as e:
        format_folder(tmp_path, "data")
    assert str(e.value).startswith(f"data {tmp_path}: {tmp_path}/manifest.json: not a `curate run` manifest"), str(e.value)


def test_provenance_ignores_a_broken_manifest(tmp_path):
    from train.provenance import dataset_identity

    (tmp_path / "train.jsonl").write_text("{}\n")
    (tmp_path / "manifest.json").write_text('["not", "a", "manifest"]')
    assert dataset_identity({"train": tmp_path / "train.jsonl"})["source"] == "sha256 of the files trained on"


@pytest.mark.parametrize("text", ["[]", '{"key": 1}', '{"key": {}, "files": [], "counts": {}}'])
def test_a_broken_step_record_means_the_step_runs_again(tmp_path, monkeypatch, text):
    from curate.pipeline import build

    _build(tmp_path, monkeypatch)
    Path("build/p/01-dedup/step.json").write_text(text)
    lines = []
    build(Path("pipelines/p.yaml"), echo=lines.append)
    assert lines[0].split()[:2] == ["01-dedup", "ran"]

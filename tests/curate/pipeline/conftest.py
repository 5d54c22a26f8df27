"""A small project folder (data, rules, jury, pipeline) that `curate run` builds in tests."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]


def records() -> list[str]:
    """40 lines: distinct answers, exact and near duplicates, a refusal, a bad JSON line."""
    lines = []
    for i in range(30):
        q = f"What is {i} plus {i + 3}? Explain the steps for case number {i}."
        a = f"Add the two numbers: {i} + {i + 3} = {2 * i + 3}. The answer for case {i} is {2 * i + 3}."
        lines.append(json.dumps({"instruction": q, "output": a}))
    lines += [lines[0], lines[1], lines[2]]  # exact duplicates
    lines.append(json.dumps({"instruction": "What is 5 plus 8? Explain the steps for case number 5.",
                             "output": "Add the two numbers: 5 + 8 = 13. The answer for case 5 is 13!"}))  # near duplicate
    lines.append(json.dumps({"instruction": "Tell me a joke about cats.",
                             "output": "As an AI language model, I cannot tell jokes."}))
    lines.append('{"instruction": "broken line"')
    lines += [json.dumps({"prompt": f"Name a colour, please ({k}).", "completion": f"Colour {k}: blue."}) for k in range(4)]
    return lines


def write_pipeline(root: Path, steps: list[dict], name: str = "p", output: str = "build/p") -> Path:
    path = root / "pipelines" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"name": name, "inputs": [{"path": "data/raw.jsonl"}], "steps": steps,
                                    "output": output}, sort_keys=False))
    return path


def default_steps(tokenizer: Path) -> list[dict]:
    return [
        {"dedup": {"method": "exact"}},
        {"filter": {"rules": "rules/default.yaml"}},
        {"dedup": {"method": "minhash", "threshold": 0.7}},
        {"score": {"jury": "rules/jury.yaml", "min_score": 2}},
        {"format": {"tokenizer": str(tokenizer), "max_tokens": 512, "eval_fraction": 0.2}},
    ]


@pytest.fixture
def project(tmp_path, tiny_model, judge_server, monkeypatch):
    """A project folder with data, a copy of the default rules, a jury on the fake judge
    server and pipelines/p.yaml; the test runs inside it."""
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "data" / "raw.jsonl").write_text("\n".join(records()) + "\n")
    shutil.copytree(REPO / "rules", root / "rules", ignore=shutil.ignore_patterns("juries"))
    jury = {"judges": [{"name": "a", "backend": "openai", "model": "judge-a", "base_url": judge_server.base_url},
                       {"name": "b", "backend": "openai", "model": "judge-b", "base_url": judge_server.base_url}],
            "rubric": "rubrics/sft_quality.j2", "cache": ".curate/judges.sqlite", "backoff_s": 0.01,
            "timeout_s": 5.0, "quorum": 1}
    (root / "rules" / "jury.yaml").write_text(yaml.safe_dump(jury, sort_keys=False))
    write_pipeline(root, default_steps(tiny_model))
    monkeypatch.chdir(root)
    return root

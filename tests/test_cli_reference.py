"""docs/cli.md is the commands' own --help: regenerate it when an option changes."""
from __future__ import annotations

import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_cli_reference_is_the_commands_help():
    gen = runpy.run_path(str(REPO / "docs" / "make_cli_reference.py"))
    text = gen["render"]()
    assert "## `curate dedup`" in text and "## `train sft`" in text and "--embeddings" in text
    assert (REPO / "docs" / "cli.md").read_text(encoding="utf-8") == text, \
        "docs/cli.md is out of date: python docs/make_cli_reference.py"


def test_the_step_reference_is_the_stages_options_models():
    gen = runpy.run_path(str(REPO / "docs" / "make_step_reference.py"))
    text = gen["render"]()
    assert "## `dedup`" in text and "| `max_tokens` | int |" in text
    assert (REPO / "docs" / "steps.md").read_text(encoding="utf-8") == text, \
        "docs/steps.md is out of date: python docs/make_cli_reference.py"

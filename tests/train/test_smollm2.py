"""The shipped smollm2_lora.yaml on the real offline model, a few steps (slow)."""
import json

import pytest


@pytest.mark.slow
def test_shipped_smollm2_config_trains(repo, tmp_path):
    from curate.api import format_inputs
    from train.config import load
    from train.evaluate import generate
    from train.sft import sft

    from .conftest import arithmetic, write_jsonl

    raw = write_jsonl(tmp_path / "raw.jsonl", arithmetic(40))
    format_inputs([raw], tmp_path / "fmt", {"tokenizer": "smollm2-135m-instruct", "eval_fraction": 0.2})
    cfg = load(repo / "train/configs/smollm2_lora.yaml",
               [f"data={tmp_path / 'fmt'}", f"output_dir={tmp_path / 'run'}", "max_steps=3", "eval_every=3",
                "report_to=none"])
    result = sft(cfg, echo=lambda *_: None)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert result["global_step"] == 3 and evals[-1] < evals[0]
    assert generate(str(tmp_path / "run"), "What is 2 plus 3?", max_new_tokens=8)

"""train sft / merge / generate through the CLI."""
import yaml
from click.testing import CliRunner

from train.cli import main


def write_cfg(tmp_path, base_cfg, **over):
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump({**base_cfg, **over}))
    return p


def test_dry_run_prints_the_plan_and_trains_nothing(base_cfg, tmp_path):
    r = CliRunner().invoke(main, ["sft", str(write_cfg(tmp_path, base_cfg)), "--dry-run", "--set", "batch_size=4"])
    assert r.exit_code == 0, r.output
    assert "train 48 records" in r.output and "12 steps/epoch, 12 steps" in r.output
    assert "lora: 16.4K of 116.0K parameters trainable (14.12%)" in r.output
    assert "memory plan (lora, fp32, batch 4 x " in r.output and "fits this machine" in r.output
    assert not (tmp_path / "run").exists()


def test_sft_then_generate_then_merge(base_cfg, tmp_path):
    cfg = write_cfg(tmp_path, base_cfg)
    r = CliRunner().invoke(main, ["sft", str(cfg), "--set", "max_steps=2", "--set", "eval_every=2"])
    assert r.exit_code == 0, r.output
    assert "done: 2 steps" in r.output
    r = CliRunner().invoke(main, ["generate", str(tmp_path / "run"), "--prompt", "What is 2 plus 3?",
                                  "--max-new-tokens", "4"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["merge", str(tmp_path / "run"), "-o", str(tmp_path / "merged")])
    assert r.exit_code == 0 and (tmp_path / "merged" / "model.safetensors").is_file()


def test_errors_are_one_line_exit_2(base_cfg, tmp_path, monkeypatch):
    from .test_packing import drop_position_ids

    drop_position_ids(monkeypatch)  # a model whose attention cannot keep packed samples apart
    r = CliRunner().invoke(main, ["sft", str(write_cfg(tmp_path, base_cfg, packing=True))])
    # refused once the model is loaded (the check runs on it), after the run's plan lines
    error = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert r.exit_code == 2 and len(error) == 1 and r.output.endswith(error[0] + "\n")
    assert error[0].startswith("Error: packing: true is refused: with attention 'segment_sdpa'")
    r = CliRunner().invoke(main, ["sft", str(tmp_path / "none.yaml")])
    assert r.exit_code == 2 and "no such file" in r.output
    r = CliRunner().invoke(main, ["merge", str(tmp_path), "-o", str(tmp_path / "m")])
    assert r.exit_code == 2 and "not a LoRA adapter folder" in r.output
    r = CliRunner().invoke(main, ["sft", str(write_cfg(tmp_path, base_cfg, model=str(tmp_path / "no-model"))), "--dry-run"])
    # (#25 item 7: a model that does not exist is refused by name before any loading is tried)
    assert r.exit_code == 2 and r.output.startswith(f"Error: model {tmp_path / 'no-model'}: no such model: it does not exist")
    assert r.output.count("\n") == 1

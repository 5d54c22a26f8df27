"""From raw file to a trained model without surprises (issue #25, the train items): eval caps,
the build's token budget, TRL-style key names, the schema as help and docs, shipped configs as
templates, and one-line errors."""
import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from train.cli import main

from .conftest import arithmetic, write_jsonl

REPO = Path(__file__).resolve().parents[2]


def write_cfg(tmp_path, base_cfg, drop=(), **over):
    p = tmp_path / "cfg.yaml"
    cfg = {k: v for k, v in {**base_cfg, **over}.items() if k not in drop}
    p.write_text(yaml.safe_dump(cfg))
    return p


def error_line(r):
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert r.exit_code == 2 and len(errors) == 1 and "Traceback" not in r.output, r.output
    return errors[0]


def dry(args):
    r = CliRunner().invoke(main, ["sft", *args, "--dry-run"])
    assert r.exit_code == 0, r.output
    return r.output


# ------------------------------------------------------------------ item 2: eval records capped
def test_eval_records_are_capped_by_default_for_a_short_run(base_cfg, tmp_path, data_dir):
    write_jsonl(data_dir / "eval.jsonl", arithmetic(100, offset=100))
    cfg = write_cfg(tmp_path, base_cfg, max_steps=5, batch_size=4)
    out = dry([str(cfg)])
    # 5 steps x 4 records, 2 eval passes (start, end): the floor of 32 records
    assert "eval 32 of 100 records" in out and "eval_records" in out, out
    assert "eval 10 of 100 records" in dry([str(cfg), "--set", "eval_records=10"])
    out = dry([str(cfg), "--set", "eval_records=all"])
    assert "eval 100 records" in out and " of 100" not in out


def test_the_default_cap_follows_the_runs_length():
    from train.config import default_eval_records

    assert default_eval_records(records_trained=20, passes=2) == 32      # a smoke run: the floor
    assert default_eval_records(records_trained=1200, passes=3) == 300   # eval: at most ~a quarter of the compute
    assert default_eval_records(records_trained=10**6, passes=10) == 512  # the ceiling


# ------------------------------------------------------------------ item 3: the build's token budget
@pytest.fixture
def build(tmp_path, tiny_model):
    """A real `curate format` folder with a 40-token budget (its stats.json records it)."""
    from curate.api import format_inputs

    raw = write_jsonl(tmp_path / "raw.jsonl", arithmetic(40))
    format_inputs([raw], tmp_path / "fmt", {"tokenizer": str(tiny_model), "max_tokens": 40, "eval_fraction": 0.2})
    stats = json.loads((tmp_path / "fmt" / "stats.json").read_text())
    assert stats["max_tokens"] == 40
    return tmp_path / "fmt", stats["tokens"]["n_tokens"]["max"]


def test_train_takes_the_builds_budget_as_max_length(base_cfg, tmp_path, build):
    from train.config import SFTConfig
    from train.sft import sft

    fmt, _ = build
    cfg = {k: v for k, v in base_cfg.items() if k != "max_length"}
    lines = []
    plan = sft(SFTConfig(**{**cfg, "data": str(fmt)}), dry_run=True, echo=lines.append)
    assert plan["max_length"] == 40, lines
    assert any("max_length 40" in line and "budget" in line for line in lines), lines


def test_a_max_length_below_the_builds_records_stops_before_loading_anything(base_cfg, tmp_path, build, monkeypatch):
    import transformers

    fmt, longest = build
    cfg = write_cfg(tmp_path, base_cfg, data=str(fmt), max_length=longest - 1)
    with monkeypatch.context() as m:  # the budget check must come before any tokenizer or model loads
        m.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **kw: 1 / 0)
        r = CliRunner().invoke(main, ["sft", str(cfg), "--dry-run"])
    error = error_line(r)
    assert f"max_length {longest - 1}" in error and "40" in error and "curate format" in error, error
    # below the budget but every record fits: a note, and the run goes on
    cfg = write_cfg(tmp_path, base_cfg, data=str(fmt), max_length=longest)
    out = dry([str(cfg)])
    assert f"max_length {longest} is below the data's budget of 40" in out, out


# ------------------------------------------------------------------ item 4: TRL names, schema, help, docs, one-liner
TRL_NAMES = {"learning_rate": ("lr", 1e-3), "per_device_train_batch_size": ("batch_size", 2),
             "gradient_accumulation_steps": ("grad_accum", 3), "num_train_epochs": ("epochs", 2.0),
             "eval_steps": ("eval_every", 4), "lr_scheduler_type": ("scheduler", "linear"),
             "save_steps": ("save_every", 5), "max_seq_length": ("max_length", 60),
             "max_eval_samples": ("eval_records", 7)}


def test_trl_and_transformers_names_are_read_with_a_notice(base_cfg, tmp_path):
    from train.config import load

    drop = [canonical for canonical, _ in TRL_NAMES.values()] + ["max_steps", "lora"]
    cfg_path = write_cfg(tmp_path, base_cfg, drop=drop, **{k: v for k, (_, v) in TRL_NAMES.items()}, lora_r=4)
    notices = []
    cfg = load(cfg_path, notices=notices)
    for alias, (canonical, value) in TRL_NAMES.items():
        assert getattr(cfg, canonical) == value, canonical
        assert any(alias in n and f"'{canonical}'" in n for n in notices), (alias, notices)
    assert cfg.lora.r == 4
    r = CliRunner().invoke(main, ["sft", str(cfg_path), "--dry-run", "--set", "weight_decay=0.1"])
    assert "note: learning_rate is read as 'lr'" in r.output, r.output
    # an override in either spelling replaces the file's value, whichever spelling the file uses
    notices = []
    cfg = load(write_cfg(tmp_path, base_cfg), ["learning_rate=0.01", "lora_r=2"], notices=notices)
    assert cfg.lr == 0.01 and cfg.lora.r == 2 and len(notices) == 2
    # both spellings at once in one file: one line naming both
    error = error_line(CliRunner().invoke(main, ["sft", str(write_cfg(tmp_path, base_cfg, learning_rate=0.1)),
                                                  "--dry-run"]))
    assert "lr" in error and "learning_rate" in error and "not both" in error
    # a typo of an alias gets a did-you-mean too
    error = error_line(CliRunner().invoke(main, ["sft", str(write_cfg(tmp_path, base_cfg)), "--dry-run",
                                                  "--set", "gradient_accumulation_step=2"]))
    assert "did you mean 'gradient_accumulation_steps'" in error, error


def test_every_key_has_a_description_and_train_config_lists_them():
    from train.config import SFTConfig, keys

    rows = keys()
    names = {row["key"] for row in rows}
    assert {"lr", "batch_size", "lora.r", "init.adapter", "eval_records", "max_length"} <= names
    assert all(row["description"] for row in rows), [row["key"] for row in rows if not row["description"]]
    assert len([n for n in names if "." not in n]) == len(SFTConfig.model_fields)
    r = CliRunner().invoke(main, ["config"])
    assert r.exit_code == 0, r.output
    for row in rows:
        assert row["key"] in r.output
    lr = next(line for line in r.output.splitlines() if line.startswith("lr "))
    assert "float" in lr and "0.0002" in lr and "learning_rate" in lr
    assert "train config" in CliRunner().invoke(main, ["sft", "--help"]).output


def test_the_docs_key_table_is_the_models():
    from train.config import markdown_table

    doc = (REPO / "docs" / "train-config.md").read_text()
    m = re.search(r"<!-- keys:start.*?-->\n(.*?)<!-- keys:end -->", doc, re.S)
    assert m, "docs/train-config.md has no generated key table"
    assert m.group(1) == markdown_table(), "docs/train-config.md drifted: python docs/make_cli_reference.py"


def test_one_line_training_without_a_yaml(tiny_model, data_dir, tmp_path):
    out = dry(["--model", str(tiny_model), "--data", str(data_dir), "-o", str(tmp_path / "run"),
               "--set", "max_steps=2", "--set", "max_length=64"])
    assert "train 48 records" in out and "2 steps" in out
    error = error_line(CliRunner().invoke(main, ["sft", "--model", str(tiny_model), "-o", str(tmp_path / "r")]))
    assert "data" in error and "--data" in error


# ------------------------------------------------------------------ item 5: shipped configs are templates
def test_shipped_configs_take_data_and_output_dir_from_the_command_line(tiny_model, tmp_path, build):
    for path in sorted((REPO / "train" / "configs").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        assert "data" not in cfg and "output_dir" not in cfg, path.name
    error = error_line(CliRunner().invoke(main, ["sft", "train/configs/smollm2_lora.yaml", "--dry-run"]))
    assert "--data" in error
    fmt, _ = build
    out = dry(["train/configs/smollm2_lora.yaml", "--model", str(tiny_model), "--data", str(fmt),
               "-o", str(tmp_path / "run")])
    assert "max_length 40" in out
    make = (REPO / "Makefile").read_text()
    assert "train sft train/configs/smollm2_lora.yaml --data build/demo -o build/demo/train" in make


# ------------------------------------------------------------------ item 7: one-line errors, --version
def test_generate_a_model_that_does_not_exist_is_one_line(tmp_path):
    error = error_line(CliRunner().invoke(main, ["generate", "nope", "--prompt", "hi"]))
    assert "nope" in error and "does not exist" in error and "internet" not in error, error
    error = error_line(CliRunner().invoke(main, ["eval", "nope", "--data", str(tmp_path)]))
    assert "nope: no such model" in error and "does not exist" in error, error
    error = error_line(CliRunner().invoke(main, ["sft", "--model", "nope", "--data", str(tmp_path), "-o", "x"]))
    assert error.startswith("Error: model nope: no such model") and "internet" not in error, error


def test_train_version_and_enum_typos():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and re.search(r"\d+\.\d+", r.output), r.output
    r = CliRunner().invoke(main, ["eval", "m", "--data", "d", "--metric", "exact_macth"])
    assert r.exit_code == 2 and "Did you mean 'exact_match'?" in r.output, r.output


def test_a_typo_in_an_enum_value_gets_a_did_you_mean(base_cfg, tmp_path):
    for setting, hint in (("method=lorra", "lora"), ("scheduler=cosin", "cosine"), ("precision=bf61", "bf16")):
        error = error_line(CliRunner().invoke(main, ["sft", str(write_cfg(tmp_path, base_cfg)), "--dry-run",
                                                      "--set", setting]))
        assert f"did you mean '{hint}'" in error, error


# ------------------------------------------------------------------ item 9: exact_match that does not apply
def test_exact_match_says_when_no_reference_has_an_answer(tiny_model, data_dir, tmp_path):
    r = CliRunner().invoke(main, ["eval", str(tiny_model), "--data", str(data_dir), "--metric", "exact_match",
                                  "--max-new-tokens", "2", "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    assert "exact_match does not apply" in r.output and "0 of 8 references" in r.output, r.output
    assert "0.0%" not in r.output
    row = json.loads((tmp_path / "r.json").read_text())["rows"][0]
    assert row["exact_match"] is None and row["exact_match_references"] == 0
    r = CliRunner().invoke(main, ["eval", str(tiny_model), "--data", str(data_dir), "--metric", "exact_match",
                                  "--extract", "last_number", "--max-new-tokens", "2"])
    assert r.exit_code == 0 and "8 of 8 references" in r.output, r.output


def test_curate_format_without_a_budget_says_what_train_sft_will_take(tmp_path, tiny_model):
    from curate.cli import main as curate

    raw = write_jsonl(tmp_path / "raw.jsonl", arithmetic(10))
    r = CliRunner().invoke(curate, ["format", str(raw), "-o", str(tmp_path / "f"), "--tokenizer", str(tiny_model)])
    assert r.exit_code == 0, r.output
    assert "no token budget recorded; train sft will take max_length 2048" in r.output, r.output
    r = CliRunner().invoke(curate, ["format", str(raw), "-o", str(tmp_path / "g"), "--tokenizer", str(tiny_model),
                                    "--max-tokens", "64"])
    assert r.exit_code == 0 and "no token budget" not in r.output, r.output


# ------------------------------------------------------------------ #25 item 8: noise that is not ours
def test_generate_merge_eval_print_no_library_noise(tiny_model, data_dir, tmp_path):
    import warnings

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = tmp_path / "adapter"
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"]))
    lora.save_pretrained(str(adapter))
    AutoTokenizer.from_pretrained(str(tiny_model)).save_pretrained(str(adapter))
    conf = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**conf, "base_model_name_or_path": str(tiny_model)}))
    for args in (["generate", str(adapter), "--prompt", "hi", "--max-new-tokens", "2"],
                 ["merge", str(adapter), "-o", str(tmp_path / "merged")],
                 ["eval", str(adapter), "--data", str(data_dir), "--metric", "length", "--max-new-tokens", "2"]):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        assert "Loading weights" not in r.output and "Writing model shards" not in r.output, r.output
        assert not [w for w in seen if "is_gradient_checkpointing" in str(w.message)], args[0]


# ------------------------------------------------------------------ #25 item 1: progress, readable lines
def test_train_sft_prints_readable_step_lines_not_dicts(base_cfg, tmp_path, monkeypatch):
    import curate.progress

    cfg = write_cfg(tmp_path, base_cfg, max_steps=4, eval_every=2, logging_steps=2)
    r = CliRunner().invoke(main, ["sft", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "{'loss'" not in r.output and "{'eval_loss'" not in r.output, r.output
    line = r"^step 2/4  loss \d+\.\d{3}  lr 5\.0e-03  grad_norm \S+  [\d.]+ tok/s  ETA \S+$"
    assert re.search(line, r.output, re.M), r.output
    assert re.search(r"^step 2/4  eval_loss \d+\.\d{3}", r.output, re.M), r.output
    assert "it/s]" not in r.output and "examples/s]" not in r.output  # not a terminal: no bars
    monkeypatch.setattr(curate.progress, "is_tty", lambda stream: True)
    r = CliRunner().invoke(main, ["sft", str(cfg), "-o", str(tmp_path / "run2")])
    assert r.exit_code == 0, r.output
    assert "it/s]" in r.output and re.search(r"^step 4/4  loss ", r.output, re.M), r.output  # the bar, and our lines


def test_train_eval_shows_generation_progress_on_a_terminal(tiny_model, data_dir, monkeypatch):
    import curate.progress

    args = ["eval", str(tiny_model), "--data", str(data_dir), "--metric", "length", "--max-new-tokens", "2"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "\rgenerating" not in r.output, r.output
    monkeypatch.setattr(curate.progress, "is_tty", lambda stream: True)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "\rgenerating  8/8 answers  100%" in r.output, r.output
    assert "generating: 8 answers in " in r.output

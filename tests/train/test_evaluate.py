"""`train eval` on tiny models: perplexity by hand, and the comparison table of two runs."""
import json
import math

import pytest
import torch
from click.testing import CliRunner

from train.cli import main
from train.config import SFTConfig
from train.evaluate import evaluate, load, loss, table
from train.data import encode
from train.sft import sft

from .conftest import arithmetic, write_jsonl


def test_perplexity_is_the_exponentiated_mean_loss_over_assistant_tokens(tiny_model):
    model, tok, template, identity = load(str(tiny_model))
    assert identity == {"dataset": None, "source": None}
    conversations = arithmetic(5)
    sources = [f"x:{i}" for i in range(5)]
    got = loss(model, tok, template, conversations, sources, batch_size=2)
    total = count = 0
    for row in encode(conversations, sources, template, tok, 4096, "eval"):  # one at a time, no padding
        ids = torch.tensor([row["input_ids"]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
        for t in range(len(row["labels"]) - 1):
            target = row["labels"][t + 1]
            if target != -100:
                total -= float(logp[t, target])
                count += 1
    assert got["tokens"] == count
    assert got["loss"] == pytest.approx(total / count, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)


@pytest.fixture
def two_runs(base_cfg, tmp_path, data_dir):
    other = tmp_path / "other"
    other.mkdir()
    write_jsonl(other / "train.jsonl", arithmetic(48, offset=500))
    for name, data in (("run_a", data_dir), ("run_b", other)):
        sft(SFTConfig(**{**base_cfg, "max_steps": 3, "eval_every": None, "early_stopping_patience": None,
                         "data": str(data), "output_dir": str(tmp_path / name)}), echo=lambda *_: None)
    return tmp_path / "run_a", tmp_path / "run_b"


def test_a_comparison_table_from_two_runs(two_runs, data_dir, tiny_model, tmp_path):
    a, b = two_runs
    result = evaluate([str(tiny_model), str(a), str(b)], str(data_dir), ["loss", "exact_match", "length"],
                      "last_number", max_new_tokens=6, echo=lambda *_: None)
    assert result["data"].endswith("eval.jsonl") and result["records"] == 8
    base, ra, rb = result["rows"]
    prov = [json.loads((r / "provenance.json").read_text())["dataset"]["hash"] for r in (a, b)]
    assert (ra["dataset"], rb["dataset"]) == tuple(prov) and prov[0] != prov[1] and base["dataset"] is None
    assert ra["loss"] < base["loss"]  # three steps at lr 5e-3 already move the tiny model
    assert all(0 <= r["exact_match"] <= 1 and 0 < r["mean_length"] <= 6 for r in result["rows"])
    lines = table(result)
    assert lines[0].split() == ["model", "dataset", "loss", "ppl", "exact", "length", "at_limit"]
    assert lines[2].split()[1] == prov[0][:12] and lines[1].split()[1] == "-"
    r = CliRunner().invoke(main, ["eval", str(a), str(b), "--data", str(data_dir / "eval.jsonl"), "--metric", "loss",
                                  "--json", str(tmp_path / "cmp.json")])
    assert r.exit_code == 0, r.output
    assert "8 records from" in r.output and json.loads((tmp_path / "cmp.json").read_text())["rows"][1]["dataset"] == prov[1]


def test_eval_errors_are_one_line(tmp_path, tiny_model):
    r = CliRunner().invoke(main, ["eval", str(tiny_model), "--data", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "--data" in r.output and "no such file or folder" in r.output
    (tmp_path / "fmt").mkdir()
    r = CliRunner().invoke(main, ["eval", str(tiny_model), "--data", str(tmp_path / "fmt")])
    assert r.exit_code == 2 and "no eval.jsonl with records there" in r.output

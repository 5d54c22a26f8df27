"""prompt_loss_weight: the weighted loss against the model's own loss and a hand computation."""
from __future__ import annotations

import json

import pytest
import torch

from train.config import SFTConfig
from train.loss import weighted_loss, weighted_rows
from train.data import encode
from train.sft import sft

CONVERSATIONS = [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 plus 3?"},
     {"role": "assistant", "content": "The answer is 5."}],
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
     {"role": "user", "content": "Another one, please?"}, {"role": "assistant", "content": "Green."}],
]


@pytest.fixture(scope="module")
def batch(tiny_model):
    """A padded batch of two conversations, with the model's logits for it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model)).eval()
    rows = encode(CONVERSATIONS, ["a:1", "a:2"], tok.chat_template, tok, 128, "train")
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((2, width), tok.pad_token_id or 0)
    masked = torch.full((2, width), -100)
    full = torch.full((2, width), -100)
    roles = torch.zeros((2, width), dtype=torch.long)
    attention = torch.zeros((2, width), dtype=torch.long)
    for i, (r, w) in enumerate(zip(rows, weighted_rows(rows))):
        n = len(r["input_ids"])
        ids[i, :n], masked[i, :n], full[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), torch.tensor(w["labels"])
        roles[i, :n], attention[i, :n] = torch.tensor(w["token_role"]), 1
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=attention)
        assistant_only = model(input_ids=ids, attention_mask=attention, labels=masked).loss
        everything = model(input_ids=ids, attention_mask=attention, labels=full).loss
    return {"logits": out.logits, "masked": masked, "full": full, "roles": roles,
            "assistant_only": assistant_only, "everything": everything}


def test_weight_zero_is_assistant_only_loss(batch):
    loss, parts = weighted_loss(batch["logits"], batch["full"], batch["roles"], 0.0)
    assert torch.allclose(loss, batch["assistant_only"], atol=1e-5)
    assert parts["assistant"][1] == int((batch["masked"][:, 1:] != -100).sum())


def test_weight_one_is_plain_language_model_loss(batch):
    loss, parts = weighted_loss(batch["logits"], batch["full"], batch["roles"], 1.0)
    assert torch.allclose(loss, batch["everything"], atol=1e-5)
    assert parts["prompt"][1] + parts["assistant"][1] == int((batch["full"][:, 1:] != -100).sum())


def test_intermediate_weight_is_the_weighted_mean(batch):
    w = 0.3
    logp = torch.log_softmax(batch["logits"][:, :-1].float(), dim=-1)
    a_sum = p_sum = 0.0
    a_n = p_n = 0
    for b in range(2):
        for t in range(batch["full"].shape[1] - 1):
            target = int(batch["full"][b, t + 1])
            if target == -100:
                continue
            nll = -float(logp[b, t, target])
            if int(batch["roles"][b, t + 1]) == 1:
                a_sum, a_n = a_sum + nll, a_n + 1
            else:
                p_sum, p_n = p_sum + nll, p_n + 1
    by_hand = (a_sum + w * p_sum) / (a_n + w * p_n)
    loss, parts = weighted_loss(batch["logits"], batch["full"], batch["roles"], w)
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)
    assert parts["assistant"][0] / parts["assistant"][1] == pytest.approx(a_sum / a_n, rel=1e-5)
    assert parts["prompt"][0] / parts["prompt"][1] == pytest.approx(p_sum / p_n, rel=1e-5)
    assert a_n > 0 and p_n > a_n  # prompts (with the template's scaffolding) are most tokens here


def test_a_run_logs_prompt_and_assistant_losses_apart(base_cfg, tmp_path):
    sft(SFTConfig(**{**base_cfg, "max_steps": 4, "eval_every": 2, "logging_steps": 1, "prompt_loss_weight": 0.1}),
        echo=lambda *_: None)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    train = [h for h in history if "loss" in h]
    evals = [h for h in history if "eval_loss" in h]
    assert len(train) == 4 and all(h["prompt_loss"] > 0 and h["assistant_loss"] > 0 for h in train)
    assert len(evals) == 3 and all("eval_prompt_loss" in h and "eval_assistant_loss" in h for h in evals)
    # the logged loss is the 0.1-weighted mean of the two, so it lies between them
    for h in train:
        lo, hi = sorted((h["prompt_loss"], h["assistant_loss"]))
        assert lo - 1e-3 <= h["loss"] <= hi + 1e-3


def test_bad_weights_are_refused(base_cfg):
    with pytest.raises(ValueError, match="less than or equal to 1"):
        SFTConfig(**{**base_cfg, "prompt_loss_weight": 1.5})
    with pytest.raises(ValueError, match="prompt_loss_weight with packing is not supported"):
        SFTConfig(**{**base_cfg, "prompt_loss_weight": 0.1, "packing": True})

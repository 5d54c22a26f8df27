"""Packing on CPU: whole samples per row, block-diagonal attention from restarting position ids,
the same logits, loss and gradients as unpacked, and a refusal where attention would cross."""
import json
import random

import pytest
import torch

from curate.config import ConfigError
from train import packing
from train.config import SFTConfig
from train.data import encode
from train.sft import sft
from train.trainers import PackedCollator

from .conftest import arithmetic


def rows_of(lengths):
    return [{"input_ids": list(range(1, n + 1)), "labels": [-100] + list(range(2, n + 1))} for n in lengths]


def test_pack_keeps_every_sample_whole_within_max_length():
    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(300)]
    rows = rows_of(lengths)
    packed = packing.pack(rows, 128)
    assert all(len(r["input_ids"]) <= 128 for r in packed)
    assert all(sum(r["seq_lengths"]) == len(r["input_ids"]) == len(r["labels"]) for r in packed)
    assert sorted(n for r in packed for n in r["seq_lengths"]) == sorted(lengths)
    pieces = sorted(tuple(r["input_ids"][s:s + n]) for r in packed
                    for s, n in zip([0] + list(__import__("itertools").accumulate(r["seq_lengths"]))[:-1], r["seq_lengths"]))
    assert pieces == sorted(tuple(r["input_ids"]) for r in rows)
    assert len(packed) < len(rows) / 3 and packing.fill(packed) > 0.95


def tiny(tiny_model, attention="sdpa"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    if attention == packing.SEGMENT_ATTENTION:
        packing.use_segment_attention(model)
    rows = encode(arithmetic(24), [f"x:{i}" for i in range(24)], tok.chat_template, tok, 64, "train")
    return model, tok, rows


def drop_position_ids(monkeypatch):
    """An attention whose layers do not get the position ids: it attends across the row."""
    inner = packing.segment_attention
    monkeypatch.setattr(packing, "segment_attention", lambda *a, position_ids=None, **kw: inner(*a, **kw))


# sdpa: transformers' block-diagonal mask from the position ids; segment_sdpa: train sft's per-sample SDPA
ATTENTIONS = ["sdpa", packing.SEGMENT_ATTENTION]


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_packed_batch_gives_each_sample_its_own_logits(tiny_model, attention):
    model, tok, rows = tiny(tiny_model, attention)
    packed = packing.pack(rows[:10], 80)
    batch = PackedCollator(tok.pad_token_id)(packed)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == len(packed) > 1
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        seen = 0
        for i, row in enumerate(packed):
            start = 0
            for n in row["seq_lengths"]:
                ids = torch.tensor([row["input_ids"][start:start + n]])
                alone = model(input_ids=ids, use_cache=False).logits[0]
                assert torch.allclose(logits[i, start:start + n], alone, atol=1e-5)
                start, seen = start + n, seen + 1
    assert seen == 10


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_packed_loss_and_gradients_equal_unpacked(tiny_model, attention):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model, tok, rows = tiny(tiny_model, attention)
    sample = rows[:12]
    plain = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)(sample)
    packed = PackedCollator(tok.pad_token_id)(packing.pack(sample, 96))
    assert int((plain["labels"] != -100).sum()) == int((packed["labels"] != -100).sum())

    def loss_and_grad(batch):
        model.zero_grad()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        return loss.item(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()

    l1, g1 = loss_and_grad(plain if attention == "sdpa" else {k: v for k, v in plain.items() if k != "attention_mask"})
    l2, g2 = loss_and_grad(packed)
    assert l1 == pytest.approx(l2, abs=1e-5)
    assert torch.allclose(g1, g2, atol=1e-5)


def test_isolation_check_measures_the_leak(tiny_model, monkeypatch):
    import transformers.masking_utils

    model, _, _ = tiny(tiny_model)
    assert packing.check_isolation(model, "sdpa") < 1e-5
    # transformers before packed-sequence masks: SDPA over the whole row
    monkeypatch.setattr(transformers.masking_utils, "find_packed_sequence_indices", lambda position_ids: None)
    with pytest.raises(ConfigError, match=r"^packing: true is refused: with attention 'sdpa' this model lets packed "
                                          r"samples attend to each other \(checked: .*moved 100% "):
        packing.check_isolation(model, "sdpa")


def test_sft_refuses_packing_where_attention_crosses_samples(base_cfg, monkeypatch):
    drop_position_ids(monkeypatch)
    with pytest.raises(ConfigError, match=r"^packing: true is refused: with attention 'segment_sdpa'"):
        sft(SFTConfig(**{**base_cfg, "packing": True}), echo=lambda *_: None)


def test_sft_with_packing_on_cpu(base_cfg, tmp_path):
    cfg = SFTConfig(**{**base_cfg, "packing": True, "max_length": 96, "batch_size": 4})
    r = sft(cfg, echo=lambda *_: None)
    assert r["train_records"] == 48 and r["packed_rows"] < 24 and r["packed_fill"] > 0.8
    assert r["steps_per_epoch"] == -(-r["packed_rows"] // 4) and r["global_step"] == 12
    assert r["packing_leak"] < 1e-5
    # the saved model loads with the default attention (segment_sdpa is registered only by train sft)
    assert "segment" not in (tmp_path / "run" / "adapter_config.json").read_text()
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert evals[-1] < evals[0] - 0.3, evals
    last = [h for h in history if "loss" in h][-1]
    # TRL's padded-token count covers every row of the batch (it counted one row's width)
    assert last["num_tokens"] >= last["num_input_tokens_seen"] > 0


def test_sliding_window_and_softcap_are_refused_not_ignored(tiny_model):
    model, _, _ = tiny(tiny_model)
    model.config.sliding_window, model.config.layer_types = 32, ["sliding_attention"] * 2
    with pytest.raises(ConfigError, match=r"sliding window \(32 tokens\) to samples of up to max_length 64"):
        packing.use_segment_attention(model, 64)
    assert packing.use_segment_attention(model, 32) == packing.SEGMENT_ATTENTION
    q = torch.zeros(1, 4, 8, 16)
    with pytest.raises(ConfigError, match=r"attention uses softcap"):
        packing.segment_attention(None, q, q, q, None, softcap=30.0)
    with pytest.raises(ConfigError, match=r"sliding window \(4 tokens\) to a longer sample"):
        packing.segment_attention(None, q, q, q, None, sliding_window=4)

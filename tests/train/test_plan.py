"""The memory plan's arithmetic, against numbers computed by hand for Llama-3-8B's shapes."""
from __future__ import annotations

import pytest

from train.plan import CUDA_OVERHEAD, GIB, NF4_BYTES, PeakMemory, architecture, count, describe, memory_plan

# Llama-3-8B: hidden 4096, 32 layers, MLP 14336, 32 heads / 8 KV heads of 128, vocab 128256
H, L, I, KV, V = 4096, 32, 14336, 8 * 128, 128256
BASE = 8_030_261_248  # the published parameter count
LORA_16 = L * 16 * ((H + H) + (H + KV) + (H + KV) + (H + H) + 3 * (H + I))  # r x (in + out), 7 projections
DECODER_LINEAR = L * (2 * H * H + 2 * H * KV + 3 * H * I)


@pytest.fixture(scope="module")
def llama8b():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(hidden_size=H, num_hidden_layers=L, intermediate_size=I, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=V, tie_word_embeddings=False)
    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(config)
    full = count(base)
    lora = count(get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")))
    return config, full, lora


def test_parameter_counts(llama8b):
    _, full, lora = llama8b
    assert full == {"total": BASE, "trainable": BASE, "quantisable": DECODER_LINEAR}
    assert LORA_16 == 41_943_040
    assert lora == {"total": BASE + LORA_16, "trainable": LORA_16, "quantisable": DECODER_LINEAR}
    assert f"{lora['trainable'] / lora['total']:.2%}" == "0.52%"  # "42M of 8.0B, 0.52%"


def test_full_fine_tuning_is_16_bytes_a_parameter_plus_activations(llama8b):
    config, full, _ = llama8b
    plan = memory_plan(architecture(config), full, "full", "bf16", "cuda", batch_size=1, seq_len=2048)
    assert (plan["weights"], plan["gradients"], plan["optimizer"]) == (4 * BASE, 4 * BASE, 8 * BASE)
    assert plan["bytes_per_param"] == 16.0
    per_token_layer = 6 * H + 2 * KV + 4 * I  # elements autograd keeps per token and layer
    assert per_token_layer == 83_968
    activations = 2048 * L * per_token_layer * 2 + 2048 * V * (2 + 8)
    assert plan["activations"] == activations == 11_005_853_696 + 2_626_682_880
    assert plan["total"] == 16 * BASE + activations + CUDA_OVERHEAD
    assert round(plan["total"] / GIB, 1) == 133.4


def test_lora_and_qlora(llama8b):
    config, _, lora = llama8b
    arch = architecture(config)
    plan = memory_plan(arch, lora, "lora", "bf16", "cuda", batch_size=4, seq_len=1024, lora_dropout=0.05)
    assert plan["weights"] == 2 * BASE + 4 * LORA_16
    assert (plan["gradients"], plan["optimizer"]) == (4 * LORA_16, 8 * LORA_16)
    per_token_layer = 83_968 + 6 * H + I  # dropout keeps each adapted projection's input
    assert plan["activations"] == 4096 * L * per_token_layer * 2 + 4096 * V * 10
    q = memory_plan(arch, lora, "qlora", "bf16", "cuda", batch_size=4, seq_len=1024, lora_dropout=0.05)
    rest = BASE - DECODER_LINEAR  # embeddings, LM head, norms stay 16-bit
    assert rest == 2 * V * H + (2 * L + 1) * H
    assert q["weights"] == int(NF4_BYTES * DECODER_LINEAR + 2 * rest + 4 * LORA_16)
    assert NF4_BYTES == pytest.approx(0.5159, abs=1e-4)
    assert round(q["weights"] / GIB, 2) == 5.47  # vs 15.0 GiB of bf16 weights


def test_gradient_checkpointing_keeps_layer_inputs_only(llama8b):
    config, full, _ = llama8b
    arch = architecture(config)
    plain = memory_plan(arch, full, "full", "fp32", "cpu", batch_size=2, seq_len=512)
    ckpt = memory_plan(arch, full, "full", "fp32", "cpu", batch_size=2, seq_len=512, gradient_checkpointing=True)
    logits = 1024 * V * (4 + 8)
    assert plain["activations"] == 1024 * L * 83_968 * 4 + logits
    assert ckpt["activations"] == 1024 * (L * H + 83_968) * 4 + logits
    assert plain["overhead"] == 0 and plain["weights"] == 4 * BASE  # fp32 on CPU


def test_describe_says_whether_it_fits():
    plan = {"weights": 10 * GIB, "gradients": GIB, "optimizer": 2 * GIB, "activations": 3 * GIB,
            "overhead": GIB, "total": 17 * GIB}
    line = describe(plan, "lora", "bf16", 4, 1024, "the visible GPU (H100)", 80 * GIB)
    assert line == ("memory plan (lora, bf16, batch 4 x 1024 tokens): weights 10.0 GiB, gradients 1.0 GiB, "
                    "optimizer 2.0 GiB, activations 3.0 GiB, CUDA overhead 1.0 GiB = 17.0 GiB; fits the visible "
                    "GPU (H100) (80.0 GiB)")
    assert "does NOT fit the visible GPU (H100) (16.0 GiB)" in describe(plan, "lora", "bf16", 4, 1024,
                                                                          "the visible GPU (H100)", 16 * GIB)


def test_dry_run_prints_the_plan_from_the_data(base_cfg):
    from train.config import SFTConfig
    from train.sft import sft

    lines = []
    plan = sft(SFTConfig(**base_cfg), dry_run=True, echo=lines.append)
    assert lines[1].startswith("lora: ") and lines[2].startswith("memory plan (lora, fp32, batch 8 x ")
    mem = plan["memory"]
    assert mem["gradients"] == 4 * plan["trainable"] and mem["optimizer"] == 8 * plan["trainable"]
    assert mem["total"] == sum(mem[k] for k in ("weights", "gradients", "optimizer", "activations", "overhead"))


def test_peak_memory_is_measured_once_at_its_step():
    from types import SimpleNamespace

    lines = []
    cb = PeakMemory(2 * GIB, "cpu", lines.append, at_step=2)
    cb.on_step_end(None, SimpleNamespace(global_step=1), None)
    assert cb.measured is None and lines == []
    cb.on_step_end(None, SimpleNamespace(global_step=2), None)
    assert cb.measured > 100 * 2**20 and lines[0].startswith("measured after 2 steps: peak process RSS")
    assert lines[0].endswith("estimated 2.00 GiB (" + f"{cb.measured / (2 * GIB):.2f}x)")


def test_planning_leaves_the_random_state_alone(base_cfg):
    import torch

    from train.config import SFTConfig
    from train.plan import meta_model
    from train.sft import lora_config

    cfg = SFTConfig(**base_cfg)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    meta_model(cfg, lora_config(cfg))
    assert torch.equal(torch.get_rng_state(), before)  # so a run initialises exactly as without a plan

"""The memory plan: its arithmetic against numbers computed by hand for Llama-3-8B's shapes, and its
activation count against what autograd keeps on real forward passes."""
from __future__ import annotations

import pytest

from train.plan import (
    CUDA_OVERHEAD,
    GIB,
    NF4_BYTES,
    architecture,
    count,
    describe,
    memory_plan,
)

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
    assert full == {"total": BASE, "trainable": BASE, "quantisable": DECODER_LINEAR,
                    "adapter_inputs": 0, "adapter_inputs_shared": 0, "adapter_ranks": 0}
    assert LORA_16 == 41_943_040
    assert lora == {"total": BASE + LORA_16, "trainable": LORA_16, "quantisable": DECODER_LINEAR,
                    "adapter_inputs": L * (6 * H + I), "adapter_inputs_shared": L * (2 * H + I),
                    "adapter_ranks": L * 7 * 16}
    assert f"{lora['trainable'] / lora['total']:.2%}" == "0.52%"  # "42M of 8.0B, 0.52%"


def test_full_fine_tuning_is_16_bytes_a_parameter_plus_weight_copies_and_activations(llama8b):
    config, full, _ = llama8b
    plan = memory_plan(architecture(config), full, "full", "bf16", "cuda", batch_size=1, seq_len=2048)
    assert (plan["weights"], plan["gradients"], plan["optimizer"]) == (4 * BASE, 4 * BASE, 8 * BASE)
    assert plan["bytes_per_param"] == 16.0
    assert plan["weight_casts"] == 2 * (DECODER_LINEAR + V * H)  # autocast's bf16 copies, LM head included
    # bytes per token and layer under bf16 autocast over fp32 weights:
    norms = 2 * (4 * H + 4 + 4 * H)  # fp32 input, rsqrt, normalised x (the norm weight trains)
    attention = (2 * H + 2 * KV) * 2 + 4 * 32  # q, k, v, output in bf16; fp32 log-sum-exp per head
    mlp = 3 * I * 2  # gate, SiLU(gate), up
    inputs = (5 * H + I) * 2  # bf16 copies for q, k, v, gate, up; down reads the bf16 product
    assert norms + attention + mlp + inputs == 241_800
    activations = 2048 * (L * 241_800 + V * (2 + 8))
    assert plan["activations"] == activations == 18_473_287_680
    assert plan["total"] == 16 * BASE + plan["weight_casts"] + activations + CUDA_OVERHEAD
    assert round(plan["total"] / GIB, 1) == 151.8


def test_lora_and_qlora(llama8b):
    config, _, lora = llama8b
    arch = architecture(config)
    plan = memory_plan(arch, lora, "lora", "bf16", "cuda", batch_size=4, seq_len=1024, lora_dropout=0.05)
    assert plan["weights"] == 2 * BASE + 4 * LORA_16
    assert (plan["gradients"], plan["optimizer"]) == (4 * LORA_16, 8 * LORA_16)
    assert plan["weight_casts"] == 2 * LORA_16  # only the fp32 adapters are cast
    layer = 2 * (4 * H + 4) + (2 * H + 2 * KV) * 2 + 4 * 32 + 3 * I * 2  # frozen norm weights keep no output
    adapters = L * (6 * H + I) * (2 + 1) + L * 7 * 16 * 2  # bf16 copy of the dropped input, bool mask; rank-r
    assert plan["activations"] == 4096 * (L * layer + adapters + V * 10) == 38_854_983_680
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
    layer = 2 * (8 * H + 4) + (2 * H + 2 * KV) * 4 + 4 * 32 + 3 * I * 4 + (2 * H + I) * 4  # all fp32
    assert plain["activations"] == 1024 * (L * layer + V * (4 + 8))
    assert ckpt["activations"] == 1024 * (L * H * 4 + layer + V * (4 + 8))
    assert plain["weight_casts"] == 0  # no autocast
    assert plain["overhead"] == 0 and plain["weights"] == 4 * BASE  # fp32 on CPU


def test_describe_says_whether_it_fits():
    plan = {"weights": 10 * GIB, "gradients": GIB, "optimizer": 2 * GIB, "activations": 3 * GIB,
            "overhead": GIB, "total": 17 * GIB}
    line = describe(plan, "lora", "bf16", 4, 1024, "the visible GPU (H100)", 80 * GIB)
    assert line == ("memory plan (lora, bf16, batch 4 x 1024 tokens): weights 10.0 GiB, gradients 1.0 GiB, "
                    "optimizer 2.0 GiB, activations 3.0 GiB, CUDA overhead 1.0 GiB = 17.0 GiB; fits the visible "
                    "GPU (H100) (80.0 GiB)")
    full = describe({**plan, "weight_casts": 2 * GIB}, "full", "bf16", 4, 1024, "the visible GPU (H100)", 80 * GIB)
    assert ", activations 3.0 GiB, autocast weight copies 2.0 GiB, CUDA" in full
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
    assert mem["total"] == sum(mem[k] for k in ("weights", "weight_casts", "gradients", "optimizer", "activations",
                                             "overhead"))


def test_peak_memory_is_measured_once_at_its_step():
    from types import SimpleNamespace

    from train.trainers import PeakMemory

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
    from train.model import lora_config

    cfg = SFTConfig(**base_cfg)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    meta_model(cfg, lora_config(cfg))
    assert torch.equal(torch.get_rng_state(), before)  # so a run initialises exactly as without a plan


def _saved(layers: int, seq: int, method: str, weights, autocast: bool, dropout: float) -> tuple[int, dict, dict]:
    """Bytes autograd keeps for backward (parameters themselves excluded), one forward of a
    random Llama, as `saved_tensors_hooks` sees them; each storage counted once."""
    import contextlib

    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(hidden_size=128, num_hidden_layers=layers, intermediate_size=352, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=512)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=weights)
    if method == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear"))
    model.train()
    storages = {}

    def keep(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
        return t

    ids = torch.randint(0, 512, (2, seq))
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with cast, torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(input_ids=ids, labels=ids)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in params), architecture(config), count(model)


# the paths train sft runs, on this CPU: fp32; bf16 autocast over fp32 weights (CPU, and full
# fine-tuning on CUDA); bf16 autocast over a bf16 LoRA base (CUDA, planned with device "cuda":
# without dropout, whose mask is the one thing that differs there)
PATHS = [("full", "fp32", "cpu", 0.0), ("full", "bf16", "cpu", 0.0),
         ("lora", "fp32", "cpu", 0.0), ("lora", "fp32", "cpu", 0.05),
         ("lora", "bf16", "cpu", 0.0), ("lora", "bf16", "cpu", 0.05), ("lora", "bf16", "cuda", 0.0)]


@pytest.mark.parametrize("method,precision,device,dropout", PATHS)
def test_the_plan_counts_what_autograd_keeps(method, precision, device, dropout):
    """Two depths and two lengths: the differences isolate bytes per token and layer, and bytes
    per layer that do not grow with tokens (autocast's weight copies), whatever else is fixed."""
    import torch

    weights = torch.bfloat16 if device == "cuda" else torch.float32
    autocast = precision == "bf16"
    (a, arch2, p2), (b, arch4, p4) = (_saved(n, 32, method, weights, autocast, dropout) for n in (2, 4))
    (c, _, _), (d, _, _) = (_saved(n, 64, method, weights, autocast, dropout) for n in (2, 4))
    per_token_layer = ((d - c) - (b - a)) / 2 / (2 * 32)
    per_layer_fixed = (b - a) / 2 - per_token_layer * 2 * 32

    plan = {n: memory_plan(arch, p, method, precision, device, batch_size=2, seq_len=32, lora_dropout=dropout)
            for n, arch, p in ((2, arch2, p2), (4, arch4, p4))}
    assert per_token_layer == pytest.approx((plan[4]["activations"] - plan[2]["activations"]) / 2 / 64, rel=0.03)
    assert per_layer_fixed == pytest.approx((plan[4]["weight_casts"] - plan[2]["weight_casts"]) / 2, abs=64)
    if method == "full" and autocast:
        assert per_layer_fixed > 300_000  # a bf16 copy of each weight, kept for the backward pass


def test_adapter_inputs_count_shared_tensors_once():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig
    config = LlamaConfig(hidden_size=64, num_hidden_layers=3, intermediate_size=160, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=100)
    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(config)
    every = count(get_peft_model(base, LoraConfig(r=4, target_modules="all-linear")))
    assert every["adapter_inputs"] == 3 * (6 * 64 + 160) and every["adapter_ranks"] == 3 * 7 * 4
    assert every["adapter_inputs_shared"] == 3 * (64 + 64 + 160)  # q/k/v, gate/up, down; o reads attention's output
    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(config)
    some = count(get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])))
    assert (some["adapter_inputs"], some["adapter_inputs_shared"], some["adapter_ranks"]) == (3 * 128, 3 * 64, 3 * 8)

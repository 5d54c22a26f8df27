"""A memory plan before any GPU time: parameters, and bytes for weights, gradients, optimizer
states and activations for the chosen method and precision.

The byte counts follow what `train sft` actually runs:
- full: fp32 master weights (computed under bf16/fp16 autocast on CUDA), fp32 gradients,
  AdamW's two fp32 moments: 4 + 4 + 8 = 16 bytes per parameter.
- lora: frozen base weights in the compute dtype (2 bytes in bf16/fp16, 4 in fp32), plus
  adapters kept in fp32 by PEFT with fp32 gradients and moments (16 bytes per adapter param).
- qlora: the decoder's linear weights in 4-bit NF4 with double-quantised block scales
  (4 + 8/64 + 32/(64*256) bits = 0.516 bytes per parameter); embeddings, norms and the LM head
  stay 16-bit; adapters as in lora.
- activations: what autograd keeps for the backward pass of a Llama-style decoder, term by
  term as `activation_bytes` lists them (checked against `torch.autograd.graph.saved_tensors_hooks`
  on real forward passes in tests/train/test_plan.py). Per token and layer: each RMSNorm keeps
  its fp32-upcast input (and, when its weight trains, its normalised output); attention keeps
  q, k, v, its output and the log-sum-exp; the MLP keeps gate, SiLU(gate) and up; linear layers
  with trainable weights keep their inputs (under autocast, a 16-bit copy per projection).
  LoRA adapters, kept in fp32 by PEFT, keep their inputs (a cast copy per adapted projection
  unless the base is fp32 without autocast, where q/k/v and gate/up share one), dropout's
  output and mask when lora_dropout > 0, and the rank-r projection. With gradient
  checkpointing only each layer's input is kept, plus one layer's worth during recomputation.
  The logits cost vocab * (activation bytes + 8) per token (the logits, the fp32 log-softmax
  the loss keeps, its gradient). Attention scores are not stored (SDPA / flash attention).
- autocast (bf16/fp16) caches a 16-bit copy of every fp32 linear weight it multiplies and keeps
  it for the backward pass: 2 bytes per parameter of the fp32 master weights of full
  fine-tuning, of a LoRA base kept fp32 (on CPU), and of the fp32 adapters; listed apart.
- CUDA: 1 GiB for the context, kernels and allocator slack.
It is an estimate: transient tensors, the allocator's caching and fragmentation, and framework
buffers come on top, which is why every run prints the measured peak beside it.
"""
from __future__ import annotations

import contextlib
import os
import warnings

GIB = 2**30
NF4_BYTES = (4 + 8 / 64 + 32 / (64 * 256)) / 8
CUDA_OVERHEAD = 1 * GIB


def architecture(config) -> dict:
    """The sizes that set activation memory, from a transformers config."""
    text = getattr(config, "text_config", None) or config
    h = text.hidden_size
    heads = text.num_attention_heads
    kv = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or h // heads
    return {"hidden": h, "layers": text.num_hidden_layers, "intermediate": getattr(text, "intermediate_size", 4 * h),
            "kv_dim": kv * head_dim, "heads": heads, "vocab": text.vocab_size}


def count(model) -> dict:
    """Total, trainable, and 4-bit-quantisable (decoder linear) parameters of a model (real or on
    the meta device; a PEFT model counts its adapters in the total), and what its LoRA adapters
    read per token: the sum of their input widths, the same with inputs shared between
    projections counted once, and the sum of their ranks."""
    import re

    import torch

    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    quantisable = 0
    inputs = ranks = 0
    shared = {}
    for name, module in model.named_modules():
        base = getattr(module, "base_layer", None)  # a LoRA-wrapped linear: count its base once
        if isinstance(module, torch.nn.Linear) and "lora_" not in name and "lm_head" not in name and base is None:
            quantisable += module.weight.numel()
        if base is not None and hasattr(module, "lora_A"):
            width = getattr(module, "in_features", 0)
            inputs += width
            ranks += sum(module.r.values())
            layer = re.search(r"layers\.(\d+)\.", name)
            source = SHARED_INPUTS.get(name.rsplit(".", 1)[-1], name)
            shared[(layer.group(1) if layer else name, source)] = 0 if source == "attention output" else width
    return {"total": total, "trainable": trainable, "quantisable": quantisable,
            "adapter_inputs": inputs, "adapter_inputs_shared": sum(shared.values()), "adapter_ranks": ranks}


# Llama-style projections that read the same tensor: without a cast, their adapters keep it once
SHARED_INPUTS = {"q_proj": "attention input", "k_proj": "attention input", "v_proj": "attention input",
                 "gate_proj": "mlp input", "up_proj": "mlp input", "o_proj": "attention output"}


def memory_plan(arch: dict, params: dict, method: str, precision: str, device: str, batch_size: int,
                seq_len: int, gradient_checkpointing: bool = False, lora_dropout: float = 0.0) -> dict:
    """Bytes per part and in total (see the module docstring for where each number comes from)."""
    autocast = precision in ("bf16", "fp16")
    # full fine-tuning keeps fp32 master weights; a frozen LoRA base is 16-bit on CUDA, fp32 on CPU
    wb = 4 if method == "full" or device == "cpu" or not autocast else 2
    total, trainable = params["total"], params["trainable"]
    if method == "full":
        weights = 4 * total
    elif method == "lora":
        weights = wb * (total - trainable) + 4 * trainable
    else:  # qlora
        q = params["quantisable"]
        weights = NF4_BYTES * q + 2 * (total - trainable - q) + 4 * trainable
    gradients = 4 * trainable
    optimizer = 8 * trainable
    weight_casts = 0
    if autocast:  # a 16-bit copy of every fp32 linear weight, cached for the backward pass
        weight_casts = 2 * (params["quantisable"] + arch["vocab"] * arch["hidden"]) if wb == 4 else 0
        weight_casts += 2 * trainable if method != "full" else 0  # the fp32 adapters
    tokens = batch_size * seq_len
    per_token = activation_bytes(arch, params, method, wb, autocast, lora_dropout, device, gradient_checkpointing)
    activations = tokens * per_token
    overhead = CUDA_OVERHEAD if device == "cuda" else 0
    parts = {"weights": weights, "weight_casts": weight_casts, "gradients": gradients, "optimizer": optimizer,
             "activations": activations, "overhead": overhead}
    return {**{k: int(v) for k, v in parts.items()}, "total": int(sum(parts.values())), "tokens_per_batch": tokens,
            "bytes_per_param": round((weights + gradients + optimizer) / max(total, 1), 2)}


def activation_bytes(arch: dict, params: dict, method: str, weight_bytes: int, autocast: bool, lora_dropout: float,
                     device: str, gradient_checkpointing: bool = False) -> int:
    """Bytes autograd keeps per token for the backward pass (logits included)."""
    h, layers, i, kv, heads, vocab = (arch[k] for k in ("hidden", "layers", "intermediate", "kv_dim", "heads", "vocab"))
    a = 2 if autocast else weight_bytes  # the dtype matmuls produce
    full = method == "full"
    norms = 2 * (4 * h + 4 + (weight_bytes * h if full else 0))  # fp32 input and rsqrt; normalised x if w trains
    attention = (2 * h + 2 * kv) * a + 4 * heads  # q, k, v, output; fp32 log-sum-exp per head
    mlp = 3 * i * a  # gate, SiLU(gate), up
    inputs = 0
    if full:  # trainable linear weights keep their inputs; autocast casts q/k/v and gate/up apart
        inputs = (5 * h + i) * 2 if autocast else (2 * h + i) * weight_bytes
    layer = norms + attention + mlp + inputs
    adapters = 0
    if not full and params.get("adapter_inputs"):
        n, shared, ranks = params["adapter_inputs"], params["adapter_inputs_shared"], params["adapter_ranks"]
        mask = 1 if device == "cuda" else 4  # dropout's mask: bool on CUDA, the input's dtype on CPU
        if lora_dropout > 0:
            adapters = n * (a + mask) if autocast else n * (4 + mask)
        elif autocast or weight_bytes != 4:
            adapters = n * (2 if autocast else 4)  # each projection's input cast for its adapter
        else:
            adapters = shared * 4
        adapters += ranks * (2 if autocast else 4)
    if gradient_checkpointing:  # each layer's input, plus one layer recomputed at a time
        kept = layers * h * weight_bytes + layer + adapters / layers
    else:
        kept = layers * layer + adapters
    return int(kept + vocab * (a + 8))


def available(device: str) -> tuple[str, int | None]:
    """What the plan has to fit in: the visible GPU, or this machine's RAM."""
    if device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        return f"the visible GPU ({props.name})", int(props.total_memory)
    try:
        return "this machine's RAM", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "this machine's RAM", None


def describe(plan: dict, method: str, precision: str, batch_size: int, seq_len: int, where: str,
             capacity: int | None) -> str:
    gib = lambda n: f"{n / GIB:.1f} GiB"  # noqa: E731
    parts = ", ".join(f"{k} {gib(plan[k])}" for k in ("weights", "gradients", "optimizer", "activations"))
    if plan.get("weight_casts"):
        parts += f", autocast weight copies {gib(plan['weight_casts'])}"
    if plan["overhead"]:
        parts += f", CUDA overhead {gib(plan['overhead'])}"
    verdict = ""
    if capacity:
        fits = plan["total"] <= 0.95 * capacity
        verdict = f"; {'fits' if fits else 'does NOT fit'} {where} ({gib(capacity)})"
    return (f"memory plan ({method}, {precision}, batch {batch_size} x {seq_len} tokens): {parts} = "
            f"{gib(plan['total'])}{verdict}")


def meta_model(cfg, lora_config=None):
    """The model built on the meta device: its exact shapes, no weights read, no memory used."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from curate.config import ConfigError
    from curate.models import model_folder

    source = cfg.init.model or cfg.model
    try:
        config = AutoConfig.from_pretrained(str(model_folder(source)))
    except (OSError, ValueError) as e:
        raise ConfigError(f"model {source}: cannot read its config: {(str(e).splitlines() or [''])[0]}") from None
    # building (and LoRA-wrapping) a model draws from the global RNG even on the meta device:
    # fork it, so planning leaves the real run's initialisation exactly as without a plan
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        if lora_config is not None:
            from peft import get_peft_model

            with quiet_peft():
                model = get_peft_model(model, lora_config)
    return model, config


@contextlib.contextmanager
def quiet_peft():
    """peft 0.21 reads transformers 5's deprecated ``is_gradient_checkpointing``: not the user's to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`is_gradient_checkpointing` is deprecated", FutureWarning)
        yield

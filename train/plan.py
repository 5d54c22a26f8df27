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
- activations, per token and layer of a Llama-style decoder, what autograd keeps for the
  backward pass: the two norm inputs, the attention input, q/k/v, the attention output, the
  MLP input and four intermediate-size tensors (gate, up, SiLU(gate), their product):
  6*hidden + 2*kv_dim + 4*intermediate elements; LoRA with dropout keeps the dropped inputs of
  the adapted projections too (~6*hidden + intermediate). With gradient checkpointing only each
  layer's input is kept, plus one layer's worth during recomputation. The logits cost
  vocab * (dtype + 8) bytes per token (the logits, their fp32 upcast for the loss and its
  gradient). Attention scores are not stored (SDPA / flash attention).
- CUDA: 1 GiB for the context, kernels and allocator slack.
It is an estimate: the allocator's fragmentation and framework buffers come on top, which is
why a run on CUDA prints the measured peak beside it.
"""
from __future__ import annotations

import os

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
            "kv_dim": kv * head_dim, "vocab": text.vocab_size}


def count(model) -> dict:
    """Total, trainable, and 4-bit-quantisable (decoder linear) parameters of a model (real or on
    the meta device; a PEFT model counts its adapters in the total)."""
    import torch

    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    quantisable = 0
    for name, module in model.named_modules():
        base = getattr(module, "base_layer", None)  # a LoRA-wrapped linear: count its base once
        if isinstance(module, torch.nn.Linear) and "lora_" not in name and "lm_head" not in name and base is None:
            quantisable += module.weight.numel()
    return {"total": total, "trainable": trainable, "quantisable": quantisable}


def memory_plan(arch: dict, params: dict, method: str, precision: str, device: str, batch_size: int,
                seq_len: int, gradient_checkpointing: bool = False, lora_dropout: float = 0.0) -> dict:
    """Bytes per part and in total (see the module docstring for where each number comes from)."""
    c = 4 if precision == "fp32" else 2
    total, trainable = params["total"], params["trainable"]
    if method == "full":
        weights = 4 * total
    elif method == "lora":
        weights = c * (total - trainable) + 4 * trainable
    else:  # qlora
        q = params["quantisable"]
        weights = NF4_BYTES * q + 2 * (total - trainable - q) + 4 * trainable
    gradients = 4 * trainable
    optimizer = 8 * trainable
    h, layers, i, kv, vocab = arch["hidden"], arch["layers"], arch["intermediate"], arch["kv_dim"], arch["vocab"]
    per_layer = 6 * h + 2 * kv + 4 * i
    if method != "full" and lora_dropout > 0:
        per_layer += 6 * h + i
    kept = layers * h + per_layer if gradient_checkpointing else layers * per_layer
    tokens = batch_size * seq_len
    activations = tokens * kept * c + tokens * vocab * (c + 8)
    overhead = CUDA_OVERHEAD if device == "cuda" else 0
    parts = {"weights": weights, "gradients": gradients, "optimizer": optimizer, "activations": activations,
             "overhead": overhead}
    return {**{k: int(v) for k, v in parts.items()}, "total": int(sum(parts.values())), "tokens_per_batch": tokens,
            "bytes_per_param": round((weights + gradients + optimizer) / max(total, 1), 2)}


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

            model = get_peft_model(model, lora_config)
    return model, config


def PeakMemory(plan_total: int, device: str, echo, at_step: int = 2):  # noqa: N802 (transformers imported on demand)
    """After ``at_step`` optimizer steps, print the measured peak beside the estimate."""
    from transformers import TrainerCallback

    class PeakMemoryCallback(TrainerCallback):
        def __init__(self):
            self.measured = None

        def on_step_end(self, args, state, control, **kw):
            if state.global_step != at_step or self.measured is not None:
                return
            if device == "cuda":
                import torch

                self.measured = torch.cuda.max_memory_allocated()
                what = "peak GPU memory allocated"
                estimate = plan_total - CUDA_OVERHEAD
            else:
                import resource

                self.measured = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                what = "peak process RSS (with Python and the libraries, ~1 GiB)"
                estimate = plan_total
            echo(f"measured after {at_step} steps: {what} {self.measured / GIB:.2f} GiB; estimated "
                 f"{estimate / GIB:.2f} GiB ({self.measured / max(estimate, 1):.2f}x)")

    return PeakMemoryCallback()

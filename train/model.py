"""The model side of `train sft`: the hardware and precision, the tokenizer, the model to train
(LoRA / QLoRA / full, or continuing an earlier run), and reading a trained run back (merge,
inference)."""
from __future__ import annotations

from pathlib import Path

from curate.config import ConfigError

from .config import SFTConfig
from .failure import refuse_failed


def hardware(precision: str = "auto") -> dict:
    """Device and precision: ``auto`` is bf16 where supported, fp16 on other CUDA, fp32 on CPU.
    bf16 on a CPU is autocast over fp32 weights (faster where the CPU has bf16 units)."""
    import os

    import torch

    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        chosen = ("bf16" if bf16 else "fp16") if precision == "auto" else precision
        if chosen == "bf16" and not bf16:
            raise ConfigError(f"precision: bf16 is not supported by {torch.cuda.get_device_name(0)}; use fp16 or auto")
        return {"device": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                "precision": chosen, "dtype": {"bf16": torch.bfloat16, "fp16": torch.float16}.get(chosen, torch.float32)}
    chosen = "fp32" if precision == "auto" else precision
    if chosen == "fp16":
        raise ConfigError("precision: fp16 needs a CUDA GPU; on CPU use fp32 or bf16 (autocast)")
    # weights stay fp32 on CPU: bf16 runs as autocast, so frozen and trained weights keep full precision
    return {"device": "cpu", "name": f"{os.cpu_count()} CPU cores", "count": 0, "precision": chosen, "dtype": torch.float32}


def load_tokenizer(source: str):
    """The tokenizer of ``source`` (padding with its end-of-sequence token when it has no pad token)."""
    from transformers import AutoTokenizer

    from curate.models import tokenizer_folder

    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer_folder(source)))
    except (OSError, ValueError) as e:  # not downloaded, offline, not a model folder: one line
        raise ConfigError(f"model {source}: cannot load its tokenizer: {(str(e).splitlines() or [''])[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def lora_config(cfg: SFTConfig):
    """The adapter to train: the config's, or the one being continued (None for full). Checks
    init.adapter, from the config alone, so before any weight is read."""
    if cfg.method == "full":
        if cfg.init.adapter:
            raise ConfigError("init.adapter continues a LoRA adapter; for method: full, merge it first "
                              "(train merge ADAPTER -o DIR) and use init.model: DIR")
        return None
    from peft import LoraConfig

    if cfg.init.adapter:
        if not (Path(cfg.init.adapter) / "adapter_config.json").is_file():
            raise ConfigError(f"init.adapter {cfg.init.adapter}: no adapter_config.json there")
        adapter = LoraConfig.from_pretrained(cfg.init.adapter)
        adapter.inference_mode = False  # saved adapters say True; continuing one trains it
        return adapter
    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, use_rslora=cfg.lora.rslora,
                      use_dora=cfg.lora.dora, task_type="CAUSAL_LM")


def load_model(cfg: SFTConfig, hw: dict, adapter, attention: str | None = None):
    """(model, warnings): the base (or init.model) on the run's device, wrapped with ``adapter``
    (``lora_config(cfg)``, which has checked init.adapter; None for full fine-tuning)."""
    from transformers import AutoModelForCausalLM

    from curate.models import model_folder

    import torch

    # full fine-tuning keeps fp32 master weights (bf16/fp16 only under autocast): updates smaller
    # than a bf16 weight's resolution would otherwise vanish; frozen LoRA bases can be 16-bit
    kwargs = {"dtype": torch.float32 if cfg.method == "full" else hw["dtype"]}
    if cfg.method == "qlora":  # sft.prepare() has refused it already where there is no CUDA
        kwargs["quantization_config"] = _four_bit(hw["dtype"])
    if attention == "flash_attention_2":
        kwargs["attn_implementation"] = attention
    source = cfg.init.model or cfg.model
    try:
        model = AutoModelForCausalLM.from_pretrained(model_folder(source), **kwargs)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model {source}: cannot load it: {(str(e).splitlines() or [''])[0]}") from None
    if hw["device"] == "cuda" and cfg.method != "qlora":
        model.to("cuda")
    if adapter is None:
        return model, []
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    from .plan import quiet_peft

    warnings = []
    if cfg.init.model:
        warnings.append(f"LoRA on top of the full fine-tune {cfg.init.model}: serving needs that checkpoint "
                        "and this adapter together (or train merge)")
    if cfg.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    with quiet_peft():
        if cfg.init.adapter:
            return PeftModel.from_pretrained(model, cfg.init.adapter, is_trainable=True), warnings
        return get_peft_model(model, adapter), warnings


def _four_bit(compute_dtype):
    """QLoRA's base: NF4 with double quantization, computing in the run's precision."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError("method: qlora needs bitsandbytes: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def packing_attention(cfg: SFTConfig, hw: dict) -> str | None:
    """The attention packed rows train on (None without packing): flash-attention 2 on CUDA
    where it is installed (varlen kernels, the batch flattened into one row), otherwise
    packing.segment_attention (causal SDPA per sample). Either is checked on the loaded model
    before training (packing.check_isolation)."""
    if not cfg.packing:
        return None
    if hw["device"] == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    from .packing import SEGMENT_ATTENTION

    return SEGMENT_ATTENTION


def _adapter_on_base(adapter: str, base: str | None = None):
    """A LoRA adapter on its (unquantized, fp32) base: the one the adapter names, or ``base``."""
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    from curate.models import model_folder

    base = base or PeftConfig.from_pretrained(adapter).base_model_name_or_path
    model = AutoModelForCausalLM.from_pretrained(model_folder(base), dtype=torch.float32)
    return PeftModel.from_pretrained(model, adapter)


def merge(adapter: str, out: str, base: str | None = None) -> Path:
    """Adapter + base -> a full model folder (with the adapter's tokenizer and template)."""
    from transformers import AutoTokenizer

    refuse_failed(adapter)
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise ConfigError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    _adapter_on_base(adapter, base).merge_and_unload().save_pretrained(out)
    AutoTokenizer.from_pretrained(adapter).save_pretrained(out)
    return Path(out)


def load_for_inference(path: str):
    """(model, tokenizer) from a run folder (adapter or full) or any model folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.models import model_folder

    refuse_failed(path)
    if (Path(path) / "adapter_config.json").is_file():
        model, tok = _adapter_on_base(path), AutoTokenizer.from_pretrained(path)
    else:
        where = model_folder(path)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(where)
    return model.eval(), tok

"""The training config: YAML validated by pydantic, ``--set key=value`` overrides, errors naming the key."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curate.config import ConfigError, load_config
from curate.shipped import resolve

CONFIGS = Path(__file__).resolve().parent / "configs"  # shipped as package data


class Strict(BaseModel):
    # no inf or nan in any number: `lr: .inf` would otherwise pass `gt=0` and train to NaN
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Lora(Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"
    rslora: bool = False   # scale by alpha/sqrt(r): keeps updates stable at high rank
    dora: bool = False     # weight-decomposed LoRA: closer to full fine-tuning, ~2x slower


class Init(Strict):
    adapter: str | None = None   # a LoRA adapter folder: loaded trainable, training continues on it
    model: str | None = None     # a full fine-tuned checkpoint to start from instead of `model`

    @model_validator(mode="after")
    def _one(self):
        if self.adapter and self.model:
            raise ValueError("give init.adapter or init.model, not both")
        return self


class SFTConfig(Strict):
    model: str
    data: str
    method: Literal["lora", "qlora", "full"] = "lora"
    lora: Lora = Lora()
    init: Init = Init()
    template: str | None = None          # default: the data folder's template.jinja, else the tokenizer's
    max_length: int = Field(2048, ge=16)
    packing: bool = False
    epochs: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, ge=1)
    lr: float = Field(2e-4, gt=0)
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 42
    eval_every: int | None = Field(None, ge=1)   # steps; default: once per epoch, or at the end
    early_stopping_patience: int | None = Field(None, ge=1)
    gradient_checkpointing: bool = False
    save_every: int | None = Field(None, ge=1)   # checkpoint steps (default: with each eval)
    save_total_limit: int = Field(2, ge=1)
    output_dir: str
    report_to: Literal["tensorboard", "wandb", "mlflow", "none"] = "tensorboard"
    merge: bool = False
    resume: Literal["auto"] | str | None = None
    logging_steps: int = Field(5, ge=1)
    # auto: bf16 (or fp16) on CUDA, fp32 on CPU; bf16 on a CPU is autocast, faster where it has bf16 units
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # weight of prompt tokens (system, user) in the loss, assistant tokens weighing 1: 0 = assistant-only
    # loss (but computed here, with both losses logged), 1 = plain LM loss; unset = TRL's assistant-only loss
    prompt_loss_weight: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self):
        if self.epochs is None and self.max_steps is None:
            self.epochs = 1.0
        if self.prompt_loss_weight is not None and self.packing:
            raise ValueError("prompt_loss_weight with packing is not supported yet: set packing: false")
        if self.early_stopping_patience and not self.eval_every:
            raise ValueError("early_stopping_patience needs eval_every (steps between evaluations)")
        return self


def _coerce(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str], source: str) -> dict:
    """``key=value`` / ``a.b=value`` pairs over the YAML mapping; values are read as YAML."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{p}' is not a mapping in {source}")
        node[parts[-1]] = _coerce(value)
    return data


def load(path: str | Path, overrides: list[str] | None = None) -> SFTConfig:
    def edit(data):
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a training config is a mapping of keys (model, data, method, ...)")
        return apply_overrides(data, overrides or [], str(path))

    # `train/configs/...` not found here names the shipped config (a pip-installed toolkit)
    return load_config(resolve(path, "train/configs", CONFIGS), SFTConfig, edit=edit)

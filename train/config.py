"""The training config: YAML validated by pydantic, ``--set key=value`` overrides, errors naming the key.

The pydantic model is the schema: every key's type, default and ``description`` here are what
``train config`` prints and what docs/train-config.md's key table is generated from
(``train config --markdown``; a test fails when the doc drifts). Keys have one canonical,
short spelling (``lr``, ``batch_size``, ...); the TRL / transformers names users arrive with
(``learning_rate``, ``per_device_train_batch_size``, ...) are accepted as aliases, each with a
notice line naming the canonical key.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from curate.config import ConfigError, load_config
from curate.shipped import resolve

CONFIGS = Path(__file__).resolve().parent / "configs"  # shipped as package data

DEFAULT_MAX_LENGTH = 2048
# the default eval cap (eval_records unset): an eval record costs about a third of a trained one
# (a forward pass, no backward), so evaluation stays at about a quarter of the run's compute,
# within these bounds
EVAL_FLOOR, EVAL_CEILING, EVAL_SHARE = 32, 512, 0.25


def default_eval_records(records_trained: int, passes: int) -> int:
    """The default cap on eval records: evaluation costs at most ~EVAL_SHARE of the training
    compute (``passes`` evaluations of records costing ~1/3 of a trained record each), at least
    EVAL_FLOOR and at most EVAL_CEILING records."""
    budget = math.floor(3 * EVAL_SHARE * records_trained / max(passes, 1))
    return max(EVAL_FLOOR, min(EVAL_CEILING, budget))


def _names(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Strict(BaseModel):
    # no inf or nan in any number: `lr: .inf` would otherwise pass `gt=0` and train to NaN
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Lora(Strict):
    r: int = Field(16, ge=1, validation_alias=_names("r", "lora_r"),
                   description="Adapter rank: capacity vs. adapter size; 8-64 is the usual range.")
    alpha: int = Field(32, ge=1, validation_alias=_names("alpha", "lora_alpha"),
                       description="Update scale alpha/r; keep alpha = 2r when changing r.")
    dropout: float = Field(0.05, ge=0, lt=1, validation_alias=_names("dropout", "lora_dropout"),
                           description="Dropout on the adapter's input.")
    target_modules: str | list[str] = Field(
        "all-linear", validation_alias=_names("target_modules", "lora_target_modules"),
        description="Layers that get an adapter: all-linear, or a list of module names (q_proj, v_proj, ...).")
    rslora: bool = Field(False, validation_alias=_names("rslora", "use_rslora"),
                         description="Scale by alpha/sqrt(r): keeps updates stable at high rank.")
    dora: bool = Field(False, validation_alias=_names("dora", "use_dora"),
                       description="Weight-decomposed LoRA: closer to full fine-tuning, ~2x slower.")


class Init(Strict):
    adapter: str | None = Field(None, description="A LoRA adapter folder: loaded trainable, training continues on it.")
    model: str | None = Field(None, description="A full fine-tuned checkpoint to start from instead of `model`.")

    @model_validator(mode="after")
    def _one(self):
        if self.adapter and self.model:
            raise ValueError("give init.adapter or init.model, not both")
        return self


# TRL's ModelConfig spells LoRA settings as top-level keys: they are read into `lora`
NESTED_ALIASES = {"lora_r": "lora.r", "lora_alpha": "lora.alpha", "lora_dropout": "lora.dropout",
                  "lora_target_modules": "lora.target_modules", "use_rslora": "lora.rslora", "use_dora": "lora.dora"}


class SFTConfig(Strict):
    model: str = Field(validation_alias=_names("model", "model_name_or_path"),
                       description="Base model: a folder, a hub name (in the local hub cache when offline) or "
                                   "smollm2-135m-instruct. Command line: --model.")
    data: str = Field(validation_alias=_names("data", "dataset_name"),
                      description="A `curate run` build (its last step), a `curate format` folder, or a .jsonl. "
                                  "Command line: --data.")
    method: Literal["lora", "qlora", "full"] = Field(
        "lora", description="lora: train an adapter; qlora: on a 4-bit base (CUDA); full: every weight.")
    lora: Lora = Field(Lora(), description="The adapter (method lora or qlora); see lora.* below.")
    init: Init = Field(Init(), description="Start from an earlier run instead of the base model; see init.* below.")
    template: str | None = Field(None, description="Chat template: chatml, llama3, mistral, alpaca or a .jinja file "
                                                   "(default: the data folder's template.jinja, else the tokenizer's).")
    max_length: int | None = Field(
        None, ge=16, validation_alias=_names("max_length", "max_seq_length"),
        description=f"Token budget per record (per packed row with packing). Default: the budget the data's "
                    f"`curate format` step recorded (stats.json max_tokens), else the larger of {DEFAULT_MAX_LENGTH} "
                    f"and the build's longest record. Given below the build's longest record, the run stops before "
                    f"anything loads; records are refused, never cut.")
    packing: bool = Field(False, description="Whole samples packed into rows of max_length (no padding); "
                                             "batch_size then counts rows.")
    epochs: float | None = Field(None, gt=0, validation_alias=_names("epochs", "num_train_epochs"),
                                 description="Passes over the training data (default 1 when max_steps is unset).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; overrides epochs.")
    lr: float = Field(2e-4, gt=0, validation_alias=_names("lr", "learning_rate"),
                      description="Peak learning rate (LoRA tolerates ~10x the full fine-tuning rate).")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr"] = Field(
        "cosine", validation_alias=_names("scheduler", "lr_scheduler_type"), description="Learning-rate schedule.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of the steps spent warming the learning rate up.")
    batch_size: int = Field(4, ge=1, validation_alias=_names("batch_size", "per_device_train_batch_size"),
                            description="Records (rows with packing) per device per forward pass; also the eval batch.")
    grad_accum: int = Field(1, ge=1, validation_alias=_names("grad_accum", "gradient_accumulation_steps"),
                            description="Forward passes per optimizer step: effective batch = batch_size x grad_accum "
                                        "x GPUs.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    seed: int = Field(42, description="Seed of weights init, dropout and data order.")
    eval_every: int | None = Field(
        None, ge=1, validation_alias=_names("eval_every", "eval_steps"),
        description="Steps between eval-loss passes over the eval split (default: once per epoch); one pass also "
                    "runs at the start.")
    eval_records: int | Literal["all"] | None = Field(
        None, validation_alias=_names("eval_records", "max_eval_samples"),
        description=f"Eval records used (the first N of the eval split), or all. Default: sized to the run, "
                    f"evaluation at most ~{EVAL_SHARE:.0%} of the training compute (an eval record costs ~1/3 of "
                    f"a trained one): 3 x {EVAL_SHARE} x records trained / eval passes, at least {EVAL_FLOOR}, at "
                    f"most {EVAL_CEILING}. The plan line states the cap.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without a lower eval loss (needs eval_every); "
                                "the best checkpoint is kept.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: ~30% slower, far less activation memory.")
    save_every: int | None = Field(None, ge=1, validation_alias=_names("save_every", "save_steps"),
                                   description="Steps between checkpoints (default: with each eval, else each epoch).")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept in output_dir.")
    output_dir: str = Field(description="Run folder: model or adapter, tokenizer, config.yaml, provenance.json, "
                                        "README.md, loss.png, checkpoints. Command line: -o.")
    report_to: Literal["tensorboard", "wandb", "mlflow", "none"] = Field(
        "tensorboard", description="Where training logs go besides history.json.")
    merge: bool = Field(False, description="Also write merged/: the adapter folded into the base (no peft to serve).")
    resume: Literal["auto"] | str | None = Field(
        None, validation_alias=_names("resume", "resume_from_checkpoint"),
        description="auto: continue from output_dir's last checkpoint, if any; or a checkpoint folder.")
    logging_steps: int = Field(5, ge=1, description="Steps between logged train losses.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 (or fp16) on CUDA, fp32 on CPU; bf16 on a CPU is autocast, faster where it "
                            "has bf16 units.")
    prompt_loss_weight: float | None = Field(
        None, ge=0, le=1, description="Weight of prompt tokens (system, user) in the loss, assistant tokens weighing "
                                      "1: 0 = assistant-only (both losses logged), 1 = plain LM loss; unset = TRL's "
                                      "assistant-only loss.")

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data):
        if isinstance(data, dict):
            data = canonical(data)[0]
        return data

    @model_validator(mode="after")
    def _check(self):
        if isinstance(self.eval_records, int) and self.eval_records < 1:
            raise ValueError("eval_records must be at least 1, or all")
        if self.epochs is None and self.max_steps is None:
            self.epochs = 1.0
        if self.prompt_loss_weight is not None and self.packing:
            raise ValueError("prompt_loss_weight with packing is not supported yet: set packing: false")
        if self.early_stopping_patience and not self.eval_every:
            raise ValueError("early_stopping_patience needs eval_every (steps between evaluations)")
        return self


def _aliases_of(model: type[BaseModel]) -> dict[str, str]:
    """alias -> canonical field name, from the fields' validation_alias."""
    out = {}
    for name, f in model.model_fields.items():
        if isinstance(f.validation_alias, AliasChoices):
            out.update({a: name for a in f.validation_alias.choices if isinstance(a, str) and a != name})
    return out


def canonical(data: dict, where: str = "") -> tuple[dict, list[str]]:
    """``data`` with alias keys renamed to their canonical key (nested ones moved into their
    section), and one notice per alias; two spellings of one key are refused."""
    data, notes = dict(data), []

    def rename(node: dict, aliases: dict[str, str], prefix: str) -> dict:
        node = dict(node)
        for alias, name in aliases.items():
            if alias not in node:
                continue
            if name in node:
                raise ConfigError(f"{where}{prefix}{name} and {alias} (its alias) are both given: keep one, not both")
            node[name] = node.pop(alias)
            notes.append(f"{alias} is read as '{prefix}{name}' (the canonical key)")
        return node

    data = rename(data, _aliases_of(SFTConfig), "")
    for alias, target in NESTED_ALIASES.items():
        if alias not in data:
            continue
        section, key = target.split(".")
        node = data.get(section) if data.get(section) is not None else {}
        if not isinstance(node, dict):
            continue  # the model reports the section's type
        if key in node:
            raise ConfigError(f"{where}{target} and {alias} (its alias) are both given: keep one, not both")
        data[section] = {**node, key: data.pop(alias)}
        notes.append(f"{alias} is read as '{target}' (the canonical key)")
    if isinstance(data.get("lora"), dict):
        data["lora"] = rename(data["lora"], _aliases_of(Lora), "lora.")
    return data, notes


def canonical_key(key: str) -> tuple[str, str | None]:
    """A dotted ``--set`` key with an alias replaced by its canonical key, and the notice (None
    when it was canonical): an override replaces the config's value whichever spelling each uses."""
    if key in NESTED_ALIASES:
        return NESTED_ALIASES[key], f"{key} is read as '{NESTED_ALIASES[key]}' (the canonical key)"
    head, dot, rest = key.partition(".")
    name = _aliases_of(SFTConfig).get(head, head)
    if head == "lora" and rest:
        rest = _aliases_of(Lora).get(rest, rest)
    out = name + dot + rest
    return out, (f"{key} is read as '{out}' (the canonical key)" if out != key else None)


# ------------------------------------------------------------------ the schema as help and docs
def _type_name(annotation) -> str:
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args if a is not type(None))
    if origin is list:
        return f"list[{_type_name(args[0])}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def keys() -> list[dict]:
    """Every config key (sections' keys as ``lora.r``): type, default, aliases, description."""
    nested = {}
    for alias, target in NESTED_ALIASES.items():
        nested.setdefault(target, []).append(alias)
    rows = []

    def add(model: type[BaseModel], prefix: str):
        for name, f in model.model_fields.items():
            key = prefix + name
            aliases = [a for a in (f.validation_alias.choices if isinstance(f.validation_alias, AliasChoices) else ())
                       if isinstance(a, str) and a != name]
            aliases += [a for a in nested.get(key, []) if a not in aliases]
            rows.append({"key": key, "type": _type_name(f.annotation), "default": _default(f), "aliases": aliases,
                         "description": f.description or ""})
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
                add(f.annotation, key + ".")

    add(SFTConfig, "")
    return rows


def text_table(width: int = 100) -> list[str]:
    import textwrap

    out = []
    for row in keys():
        alias = f"  (also: {', '.join(row['aliases'])})" if row["aliases"] else ""
        out.append(f"{row['key']}  {row['type']}  default {row['default']}{alias}")
        out.extend(textwrap.wrap(row["description"], width, initial_indent="    ", subsequent_indent="    "))
    return out


def markdown_table() -> str:
    """docs/train-config.md's key table (``train config --markdown``)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| key | type | default | also accepted | meaning |", "|---|---|---|---|---|"]
    for row in keys():
        aliases = ", ".join(f"`{a}`" for a in row["aliases"])
        lines.append(f"| `{row['key']}` | {cell(row['type'])} | {cell(row['default'])} | {aliases} | "
                     f"{cell(row['description'])} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ reading a config
def _coerce(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str], source: str, notes: list | None = None) -> dict:
    """``key=value`` / ``a.b=value`` pairs over the YAML mapping; values are read as YAML; an
    alias key sets its canonical key (a notice in ``notes``)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        key, note = canonical_key(key.strip())
        if note and notes is not None and note not in notes:
            notes.append(note)
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{p}' is not a mapping in {source}")
        node[parts[-1]] = _coerce(value)
    return data


# the keys a config may leave to the command line (shipped configs are templates without data and output_dir)
COMMAND_LINE = {"model": "--model M (a folder, a hub name, or smollm2-135m-instruct)",
                "data": "--data BUILD (a `curate run` build, a `curate format` folder, or a .jsonl)",
                "output_dir": "-o OUT (the run folder)"}


def load(path: str | Path | None = None, overrides: list[str] | None = None, values: dict | None = None,
         notices: list | None = None) -> SFTConfig:
    """The config in ``path`` (none: defaults only), then ``--set`` overrides, then ``values``
    (the command line's --model / --data / -o, taken as plain strings). Alias keys are renamed,
    one notice each appended to ``notices``."""
    source = str(path) if path is not None else "command line"

    def edit(data):
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a training config is a mapping of keys (model, data, method, ...)")
        data, notes = canonical(data, f"{source}: ")  # the file's own aliases (a key given twice is refused)
        data = apply_overrides(data, overrides or [], source, notes)  # overrides win, whichever the spelling
        data.update({k: str(v) for k, v in (values or {}).items() if v is not None})
        if notices is not None:
            notices.extend(notes)
        for key, flag in COMMAND_LINE.items():
            if data.get(key) in (None, ""):
                raise ConfigError(f"{source}: {key} is not set: give {flag}, or {key}: in the config")
        return data

    if path is None:
        from pydantic import ValidationError

        from curate.config import format_validation_error

        data = edit({})
        try:
            return SFTConfig.model_validate(data)
        except ValidationError as e:
            raise ConfigError(format_validation_error(Path(source), data, e, SFTConfig)) from None
    # `train/configs/...` not found here names the shipped config (a pip-installed toolkit)
    return load_config(resolve(path, "train/configs", CONFIGS), SFTConfig, edit=edit)

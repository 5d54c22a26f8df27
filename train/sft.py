"""``train sft``: supervised fine-tuning on a curated dataset, top to bottom.

    load config -> pick hardware and precision -> read data and template -> tokenize and
    check every loss mask -> build the model (LoRA / QLoRA / full, or continue an earlier
    run) -> train with TRL's SFTTrainer -> save model, tokenizer, config, provenance, card,
    loss curve (and merged/).

Every refusal here is a ConfigError: one line, before any training time is spent.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from curate.config import ConfigError

from .config import SFTConfig

FAILED = "FAILED"  # written in the output folder by a run that ended without a usable model


class TrainingFailed(ConfigError):
    """Training ran but gave no usable model (the loss diverged, memory ran out): one line, exit
    non-zero, no final model saved, and a FAILED marker in the output folder saying why."""


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


# ---------------------------------------------------------------------------------- data
def format_folder(src: Path, what: str) -> Path:
    """``src`` itself, or, for a `curate run` build, its last step, which must be a format step."""
    if not (src / "manifest.json").is_file():
        return src
    from curate.jsonfile import read_json

    try:
        final = read_json(src / "manifest.json", "`curate run` manifest", {"final": str})["final"]
    except ConfigError as e:
        raise ConfigError(f"{what} {src}: {e}") from None
    if not final.endswith("-format"):
        raise ConfigError(f"{what} {src}: the build ends with {final}, not a format step; add "
                          "`- format: {tokenizer: ...}` to the pipeline")
    return src / final


def data_files(cfg: SFTConfig) -> dict[str, Path]:
    """train / eval / template files: a `curate format` folder or a `curate run` build (its last
    step), or one JSONL (no eval)."""
    from curate.storage import mirror

    src = format_folder(mirror(cfg.data), "data")  # an s3:// (fsspec) URL is fetched to a local cache
    if src.is_dir():
        train = src / "train.jsonl"
        if not train.is_file():
            raise ConfigError(f"data {src}: no train.jsonl (a `curate format` output folder, or a .jsonl file)")
        files = {"train": train}
        if (src / "eval.jsonl").is_file() and (src / "eval.jsonl").stat().st_size:
            files["eval"] = src / "eval.jsonl"
        if (src / "template.jinja").is_file():
            files["template"] = src / "template.jinja"
        return files
    if src.is_file():
        return {"train": src}
    raise ConfigError(f"data {src}: no such file or folder")


def read_conversations(path: Path) -> tuple[list[list[dict]], list[str]]:
    from curate.readers import read_inputs

    read = read_inputs([path])
    if read.rejected.height:
        first = read.rejected.row(0, named=True)
        raise ConfigError(f"data {path}: {read.rejected.height} records cannot be read "
                          f"(first: {first['source']}: {first['rule']}: {first['reason']})")
    from curate import turns

    # the turns as train.jsonl has them: weight (which encode leaves untrained), name, tool calls
    conversations = [[turns.plain(m) for m in c] for c in read.records["messages"].to_list()]
    return conversations, read.records["source"].to_list()


def encode(conversations, sources, template: str, tok, max_length: int, split: str) -> list[dict]:
    """input_ids and labels (-100 where no loss) per conversation, cut to max_length; stops the
    run, naming the records, when one has nothing to train on or a turn whose end is not trained."""
    from curate.format import encode_many
    from curate.format.template import closing_tokens

    eot_ids = set(tok.convert_tokens_to_ids(closing_tokens(template, tok, conversations[:20])))
    rows, empty, open_end, refused = [], [], [], []
    for (ids, mask), src in zip(encode_many(template, conversations, tok), sources):
        if ids is None:
            refused.append(f"{src} ({mask})")
            continue
        ids, mask = ids[:max_length], mask[:max_length]
        if not any(mask):
            empty.append(src)
            continue
        # every trained span must end on an end-of-turn token, or the model never learns to stop
        ends = [i for i in range(len(mask)) if mask[i] and (i + 1 == len(mask) or not mask[i + 1])]
        if any(ids[i] not in eot_ids for i in ends):
            open_end.append(src)
        rows.append({"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]})
    for bad, what in ((refused, "the chat template refuses"), (empty, "no trained tokens"),
                      (open_end, "an assistant turn whose end-of-turn token is not trained")):
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            hint = (f" (cut at max_length {max_length}? raise it or run curate format --max-tokens)"
                    if bad is open_end else "")
            raise ConfigError(f"{split} data: {len(bad)} records with {what}: {', '.join(bad[:3])}{more}{hint}")
    return rows


# --------------------------------------------------------------------------------- model
def load_model(cfg: SFTConfig, hw: dict, attention: str | None = None):
    from transformers import AutoModelForCausalLM

    from curate.models import model_folder

    import torch

    # full fine-tuning keeps fp32 master weights (bf16/fp16 only under autocast): updates smaller
    # than a bf16 weight's resolution would otherwise vanish; frozen LoRA bases can be 16-bit
    kwargs = {"dtype": torch.float32 if cfg.method == "full" else hw["dtype"]}
    if cfg.method == "qlora":  # sft() has refused it already where there is no CUDA
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ConfigError("method: qlora needs bitsandbytes: pip install bitsandbytes") from None
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=hw["dtype"])
    if attention == "flash_attention_2":
        kwargs["attn_implementation"] = attention
    source = cfg.init.model or cfg.model
    try:
        model = AutoModelForCausalLM.from_pretrained(model_folder(source), **kwargs)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model {source}: cannot load it: {(str(e).splitlines() or [''])[0]}") from None
    if hw["device"] == "cuda" and cfg.method != "qlora":
        model.to("cuda")
    if cfg.method == "full":
        if cfg.init.adapter:
            raise ConfigError("init.adapter continues a LoRA adapter; for method: full, merge it first "
                              "(train merge ADAPTER -o DIR) and use init.model: DIR")
        return model, []
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    from .plan import quiet_peft

    warnings = []
    if cfg.init.model:
        warnings.append(f"LoRA on top of the full fine-tune {cfg.init.model}: serving needs that checkpoint "
                        "and this adapter together (or train merge)")
    if cfg.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    if cfg.init.adapter and not (Path(cfg.init.adapter) / "adapter_config.json").is_file():
        raise ConfigError(f"init.adapter {cfg.init.adapter}: no adapter_config.json there")
    with quiet_peft():
        if cfg.init.adapter:
            return PeftModel.from_pretrained(model, cfg.init.adapter, is_trainable=True), warnings
        return get_peft_model(model, lora_config(cfg)), warnings


def lora_config(cfg: SFTConfig):
    """The adapter to train: the config's, or the one being continued (None for full)."""
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


# ---------------------------------------------------------------------------------- run
def sft(cfg: SFTConfig, dry_run: bool = False, echo=print, callbacks=()) -> dict:
    import math

    from transformers import AutoTokenizer, set_seed

    from curate.format.template import choose
    from curate.models import tokenizer_folder

    hw = hardware(cfg.precision)
    attention = packing_attention(cfg, hw)
    if cfg.method == "qlora" and hw["device"] != "cuda":
        raise ConfigError("method: qlora needs a CUDA GPU (4-bit NF4 via bitsandbytes); use method: lora on this machine")
    set_seed(cfg.seed)

    # data and template: the format folder's template.jinja unless the config names one
    files = data_files(cfg)
    from .budget import eval_cap, token_budget

    cfg = token_budget(cfg, files, echo)  # before anything loads: max_length from the build's budget
    source = cfg.init.model or cfg.model
    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer_folder(source)))
    except (OSError, ValueError) as e:  # not downloaded, offline, not a model folder: one line
        raise ConfigError(f"model {source}: cannot load its tokenizer: {(str(e).splitlines() or [''])[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    template_spec = cfg.template or (str(files["template"]) if "template" in files else None)
    _, template, _ = choose(template_spec, tok)
    train_conv, train_src = read_conversations(files["train"])
    if not train_conv:
        raise ConfigError(f"data {files['train']}: no records to train on (an empty file, or an empty train split)")
    train_rows = encode(train_conv, train_src, template, tok, cfg.max_length, "train")
    eval_rows = []
    if "eval" in files:
        eval_conv, eval_src = read_conversations(files["eval"])
        eval_rows = encode(eval_conv, eval_src, template, tok, cfg.max_length, "eval")
    per_step = cfg.batch_size * cfg.grad_accum * max(1, hw["count"])
    tokens = sum(len(r["input_ids"]) for r in train_rows)
    trained = sum(sum(t != -100 for t in r["labels"]) for r in train_rows)
    plan = {"device": hw["device"], "hardware": hw["name"], "precision": hw["precision"],
            "train_records": len(train_rows), "max_length": cfg.max_length, "train_tokens": tokens,
            "trained_tokens": trained}
    if cfg.packing:  # whole samples, best-fit decreasing, into rows of at most max_length
        from . import packing

        records = len(train_rows)
        train_rows = packing.pack(train_rows, cfg.max_length)
        plan.update(packed_rows=len(train_rows), packed_fill=round(packing.fill(train_rows), 4))
        echo(f"packing: {records} records in {len(train_rows)} rows of at most {cfg.max_length} tokens "
             f"({plan['packed_fill']:.0%} filled)")
    steps_per_epoch = math.ceil(len(train_rows) / per_step)
    total_steps = cfg.max_steps or math.ceil(steps_per_epoch * cfg.epochs)
    plan.update(steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    # the first N eval records, N from the steps the run really takes: short runs are not mostly eval
    keep, eval_text = eval_cap(cfg, len(eval_rows), steps_per_epoch, total_steps, per_step)
    eval_available, eval_rows = len(eval_rows), eval_rows[:keep]
    plan.update(eval_records=len(eval_rows), eval_available=eval_available)
    if cfg.packing:
        eval_rows = packing.pack(eval_rows, cfg.max_length)
    echo(f"{hw['name']} ({hw['precision']}); train {plan['train_records']} records, {tokens} tokens "
         f"({trained / max(tokens, 1):.0%} trained), eval {eval_text}; {steps_per_epoch} steps/epoch, "
         f"{total_steps} steps")

    # the plan, from the model's shapes on the meta device: no weights read, no memory used
    from . import plan as planning

    adapter = lora_config(cfg)
    meta, model_config = planning.meta_model(cfg, adapter)
    if cfg.packing:  # what the config alone decides is refused before any weight is read (and in --dry-run)
        from .packing import SEGMENT_ATTENTION, check_window

        if attention == SEGMENT_ATTENTION:
            check_window(model_config, cfg.max_length)
    params = planning.count(meta)
    seq_len = max(len(r["input_ids"]) for r in train_rows + eval_rows)  # the widest batch, as padded
    memory = planning.memory_plan(planning.architecture(model_config), params, cfg.method, hw["precision"],
                                  hw["device"], cfg.batch_size, seq_len, cfg.gradient_checkpointing,
                                  adapter.lora_dropout if adapter is not None else 0.0)
    del meta
    where, capacity = planning.available(hw["device"])
    total, trainable = params["total"], params["trainable"]
    plan.update(parameters=total, trainable=trainable, memory=memory, memory_capacity=capacity)
    echo(f"{cfg.method}: {_human(trainable)} of {_human(total)} parameters trainable ({trainable / total:.2%})")
    echo(planning.describe(memory, cfg.method, hw["precision"], cfg.batch_size, seq_len, where, capacity))
    if dry_run:
        return plan

    out = Path(cfg.output_dir)
    with _out_of_memory(cfg, memory["total"], seq_len, out) as oom:
        return _train(cfg, hw, attention, files, template, tok, train_rows, eval_rows, plan, memory, out, echo,
                      callbacks, oom)


def _train(cfg, hw, attention, files, template, tok, train_rows, eval_rows, plan, memory, out, echo, callbacks, oom):
    from . import plan as planning
    from . import progress as progress_lines

    model, warnings = load_model(cfg, hw, attention)
    oom.loaded = True
    for w in warnings:
        echo(f"warning: {w}")
    if cfg.packing:
        from . import packing

        if attention != "flash_attention_2":
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            attention = packing.use_segment_attention(base, cfg.max_length)
        plan["packing_leak"] = packing.check_isolation(model, attention)
        echo(f"packing: attention '{attention}' keeps packed samples apart (checked on this model)")

    from datasets import Dataset
    from transformers import EarlyStoppingCallback
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    out.mkdir(parents=True, exist_ok=True)
    evaluate = bool(eval_rows)
    if cfg.early_stopping_patience and not evaluate:
        echo(f"warning: early_stopping_patience {cfg.early_stopping_patience} is ignored: no eval records (the "
             f"data has no eval split, or it came out empty); training runs all {plan['total_steps']} steps")
    flat = attention == "flash_attention_2"
    eval_strategy = ("steps" if cfg.eval_every else "epoch") if evaluate else "no"
    save_strategy = "steps" if (cfg.save_every or cfg.eval_every) else "epoch"
    args = TRLConfig(
        output_dir=str(out), seed=cfg.seed, data_seed=cfg.seed,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        num_train_epochs=cfg.epochs or 1, max_steps=cfg.max_steps or -1,
        eval_strategy=eval_strategy, eval_steps=cfg.eval_every,
        save_strategy=save_strategy, save_steps=cfg.save_every or cfg.eval_every, save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=evaluate and cfg.early_stopping_patience is not None,
        metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=cfg.logging_steps, logging_first_step=True,
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        bf16=hw["precision"] == "bf16", fp16=hw["precision"] == "fp16", use_cpu=hw["device"] == "cpu",
        # TRL's configs default gradient checkpointing to on (~20-30% slower steps): always say which
        **checkpointing_arg(TRLConfig, cfg.gradient_checkpointing),
        eval_on_start=evaluate,  # the starting loss: where a continued run picks up, and the baseline
        # rows arrive packed (above); flash-attention takes TRL's padding-free collator (one row per
        # batch, lengths already within max_length), SDPA/eager our row-keeping PackedCollator
        max_length=None if flat else cfg.max_length, packing=False, padding_free=flat,
        assistant_only_loss=False,  # the labels already carry the assistant-only mask, checked above
        dataloader_num_workers=0, include_num_input_tokens_seen="non_padding",
        # a nan/inf loss is logged as such (the default logs the running mean instead, hiding it),
        # so that FiniteGuard sees it and stops the run
        logging_nan_inf_filter=False,
        disable_tqdm=not progress_lines.live(),  # a bar in a log file is a wall of carriage returns
    )
    weighted = cfg.prompt_loss_weight is not None
    if weighted:  # every token a target, each with its role; the loss weighs prompt tokens by W
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        from .loss import WeightedCollator, weighted_rows, weighted_trainer_class

        train_rows, eval_rows = weighted_rows(train_rows), weighted_rows(eval_rows)
        args.remove_unused_columns = False  # keep the token_role column for the collator
    peak = planning.PeakMemory(memory["total"], hw["device"], echo)
    # fp16's loss scaler meets inf gradients by design (it skips that step and lowers the scale)
    guard = FiniteGuard(grad_norm=hw["precision"] != "fp16")
    extra = [guard, TokensPerSecond(), peak]
    if cfg.early_stopping_patience and evaluate:
        extra.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    common = dict(model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list(train_rows),
                  eval_dataset=Dataset.from_list(eval_rows) if evaluate else None, callbacks=extra + list(callbacks))
    if weighted:
        trainer = weighted_trainer_class()(
            **common, prompt_loss_weight=cfg.prompt_loss_weight,
            data_collator=WeightedCollator(DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)))
    elif cfg.packing and not flat:
        trainer = packing.packed_trainer_class()(**common, data_collator=packing.PackedCollator(tok.pad_token_id))
    else:
        trainer = SFTTrainer(**common)
    progress_lines.readable_logs(trainer, echo)  # one readable line per logging step, not raw dicts

    resume = _resume_point(cfg, out)
    if resume:
        echo(f"resuming from {resume}")
    # TRL writes its own model card (README.md) into the output folder with every checkpoint: a failed
    # run puts back what was there before it
    card = out / "README.md"
    card_before = card.read_bytes() if card.is_file() else None
    t0 = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=resume)
    except BaseException:
        _restore(card, card_before)
        raise
    seconds = time.perf_counter() - t0
    if guard.failure is None:
        guard.check_weights(trainer.model, trainer.state.global_step)
    if guard.failure is not None:
        _restore(card, card_before)
        (out / "history.json").write_text(json.dumps(trainer.state.log_history, indent=1) + "\n")
        raise guard.fail(out, cfg)

    # save: the trained weights (adapter or full), the tokenizer with the template it was trained with
    (out / FAILED).unlink(missing_ok=True)  # an earlier failed run's marker: this run's model replaces it
    trainer.save_model(str(out))
    tok.chat_template = template
    tok.save_pretrained(str(out))
    (out / "template.jinja").write_text(template, encoding="utf-8")
    history = trainer.state.log_history
    result = {**plan, "seconds": round(seconds, 2), "global_step": trainer.state.global_step,
              "best_checkpoint": trainer.state.best_model_checkpoint,
              "train_loss": _last(history, "loss"), "eval_loss": _last(history, "eval_loss"),
              "memory_measured": peak.measured}
    (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    plot_losses(history, out / "loss.png")
    if cfg.merge and cfg.method != "full":
        merge(str(out), str(out / "merged"))
    from .provenance import write_outputs

    write_outputs(cfg, files, out, result, hw)
    echo(f"saved {out}: {'adapter' if cfg.method != 'full' else 'model'}, tokenizer, config.yaml, provenance.json, "
         f"README.md, loss.png" + (", merged/" if cfg.merge and cfg.method != "full" else ""))
    return result


_OOM = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def is_out_of_memory(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.OutOfMemoryError) or (
        isinstance(e, (RuntimeError, MemoryError)) and any(k in str(e).lower() for k in _OOM))


class _out_of_memory:
    """Out-of-memory while loading or training: one line naming what to turn down, a FAILED
    marker in the output folder (when the run had made it), no traceback."""

    def __init__(self, cfg: SFTConfig, planned: int, seq_len: int, out: Path):
        self.cfg, self.planned, self.seq_len, self.out = cfg, planned, seq_len, out
        self.loaded = False  # the model is loaded: what runs out now is the batch's activations

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if e is None or not is_out_of_memory(e):
            return False
        cfg = self.cfg
        what = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        checkpointing = ("gradient_checkpointing is already on" if cfg.gradient_checkpointing
                         else "set gradient_checkpointing: true")
        if not self.loaded:
            msg = (f"out of memory loading the model ({what}): its weights do not fit; use method: lora (or qlora on "
                   "a GPU) rather than full, or a smaller model")
        else:
            msg = (f"out of memory ({what}); the plan was {self.planned / 2**30:.1f} GiB for batch {cfg.batch_size} x "
                   f"{self.seq_len} tokens: lower batch_size (raise grad_accum to keep the effective batch), lower "
                   f"max_length, or {checkpointing}")
        if self.out.is_dir():
            _write_failed(self.out, msg)
        raise TrainingFailed(msg) from None


def _restore(path: Path, before: bytes | None) -> None:
    """Put back a file as it was before this run (remove it if this run created it)."""
    if before is None:
        path.unlink(missing_ok=True)
    elif not path.is_file() or path.read_bytes() != before:
        path.write_bytes(before)


def _write_failed(out: Path, msg: str, extra: str = "") -> None:
    (out / FAILED).write_text(f"train sft failed: {msg}\n{extra}No model of that run was saved here; files from "
                              "earlier runs (if any) are not its result.\n", encoding="utf-8")


def refuse_failed(path) -> None:
    """A folder whose last `train sft` run failed is not a model to load."""
    marker = Path(path) / FAILED
    if marker.is_file():
        first = (marker.read_text(encoding="utf-8", errors="replace").splitlines() or [""])[0]
        raise ConfigError(f"{path}: the last training run into this folder failed and saved no model "
                          f"({marker}: {first[:200]})")


def FiniteGuard(grad_norm: bool = True):  # noqa: N802 (a class made on demand: transformers is imported only when training)
    """Stops the run at the first logged loss, grad norm (unless ``grad_norm`` is False: fp16's
    loss scaler skips the steps whose gradients overflow) or eval loss that is nan or inf, and
    remembers which checkpoints this run wrote and which of them a finite loss vouches for."""
    import math

    from transformers import TrainerCallback

    class FiniteGuard(TrainerCallback):
        KEYS = ("loss", "eval_loss", "train_loss") + (("grad_norm",) if grad_norm else ())

        def __init__(self):
            self.failure = None     # (step, key, value)
            self.trusted = -1       # checkpoints up to this step had weights that gave a finite loss
            self.saved = []         # (step, folder) of every checkpoint this run wrote

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or self.failure is not None:
                return
            for key in self.KEYS:
                v = logs.get(key)
                if isinstance(v, (int, float)) and not math.isfinite(v):
                    self.failure = (state.global_step, key, v)
                    control.should_training_stop = True
                    control.should_save = control.should_evaluate = False
                    return
            # a finite train loss at step s: the forward passes up to s, so the weights after
            # s - 1 updates; a finite eval loss: the weights after s updates
            if "eval_loss" in logs:
                self.trusted = max(self.trusted, state.global_step)
            elif "loss" in logs:
                self.trusted = max(self.trusted, state.global_step - 1)

        def on_save(self, args, state, control, **kw):
            self.saved.append((state.global_step, Path(args.output_dir) / f"checkpoint-{state.global_step}"))

        def check_weights(self, model, step):
            import torch

            with torch.no_grad():
                bad = next((n for n, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()),
                           None)
            if bad is not None:
                self.failure = (step, f"weight {bad}", float("nan"))

        def fail(self, out: Path, cfg) -> TrainingFailed:
            import shutil

            step, key, value = self.failure
            removed = []
            for at, folder in self.saved:  # only checkpoints this run wrote, and only the untrusted ones
                if at > self.trusted and folder.is_dir():
                    shutil.rmtree(folder)
                    removed.append(folder.name)
            msg = (f"training stopped at step {step}: {key} is {value}, not finite; no model saved (lower lr, now "
                   f"{cfg.lr:g}; keep max_grad_norm finite, now {cfg.max_grad_norm:g}; or try precision: fp32)")
            extra = f"Removed this run's checkpoints taken after the loss went bad: {', '.join(removed)}.\n" if removed else ""
            _write_failed(out, msg, extra)
            return TrainingFailed(f"{msg}; see {out / FAILED}")

    return FiniteGuard()


def checkpointing_arg(trl_config, on: bool) -> dict:
    """transformers 5 renamed gradient_checkpointing to activation_checkpointing; TRL sets the old one."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(trl_config)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": on}


def _resume_point(cfg: SFTConfig, out: Path) -> str | None:
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        from transformers.trainer_utils import get_last_checkpoint

        return get_last_checkpoint(str(out)) if out.is_dir() else None
    if not Path(cfg.resume).is_dir():
        raise ConfigError(f"resume {cfg.resume}: no such checkpoint folder")
    return cfg.resume


def _last(history: list[dict], key: str):
    return next((h[key] for h in reversed(history) if key in h), None)


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def TokensPerSecond():  # noqa: N802 (a class made on demand: transformers is imported only when training)
    from transformers import TrainerCallback

    class TokensPerSecond(TrainerCallback):
        """Adds tokens/s (input tokens, padding excluded) to every log line."""

        def __init__(self):
            self.last = None

        def on_log(self, args, state, control, logs=None, **kw):
            if logs is None or "loss" not in logs:
                return
            now, seen = time.perf_counter(), state.num_input_tokens_seen
            if self.last is not None and now > self.last[0]:
                logs["tokens_per_s"] = round((seen - self.last[1]) / (now - self.last[0]), 1)
            self.last = (now, seen)

    return TokensPerSecond()


def plot_losses(history: list[dict], path: Path, title: str = "loss") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="train")
    if evals:
        ax.plot(*zip(*evals), marker="o", label="eval")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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


def prompt_ids(tok, messages: list[dict], template: str | None = None) -> list[int]:
    """Token ids of ``messages`` and the assistant's turn opening, with special-token text inside
    the messages kept as plain text (transformers' sanitize_control_tokens), as `curate format`
    and training tokenize it: a prompt cannot forge a turn."""
    kw = dict(chat_template=template, add_generation_prompt=True, tokenize=True, return_dict=True)
    try:
        return list(tok.apply_chat_template(messages, sanitize_control_tokens=True, **kw)["input_ids"])
    except (TypeError, NotImplementedError, ValueError):  # an older transformers, or a template it cannot do
        return list(tok.apply_chat_template(messages, **kw)["input_ids"])

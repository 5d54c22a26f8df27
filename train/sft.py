"""``train sft``: supervised fine-tuning on a curated dataset, top to bottom.

    prepare  hardware and precision, data and template, rows with every loss mask checked,
             steps and the eval cap, the memory plan from the model's shapes (no weight read)
    build    the model: LoRA / QLoRA / full, or continuing an earlier run; packing's attention checked
    train    TRL's SFTTrainer (or its packed / weighted-loss variant), stopped at a non-finite loss
    save     model or adapter, tokenizer and template, history, loss curve, config, provenance,
             model card (and merged/)

``--dry-run`` is ``prepare`` alone. Every refusal is a ConfigError: one line, before any
training time is spent. The parts live beside this file: data.py (reading and encoding),
model.py (hardware, loading, merging), budget.py and plan.py (max_length, eval cap, memory),
trainers.py (what plugs into the Trainer), failure.py (runs that give no model).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from curate.config import ConfigError

from . import failure
from .budget import eval_cap, token_budget
from .config import SFTConfig
from .data import data_files, encode_splits
from .model import hardware, load_model, load_tokenizer, lora_config, merge, packing_attention


@dataclass
class Run:
    """What ``prepare`` settles before any weight is read, for the steps after it."""
    cfg: SFTConfig
    hw: dict                   # model.hardware(): device, its name and count, precision, dtype
    attention: str | None      # packed rows' attention (None without packing)
    files: dict[str, Path]     # train / eval / template files of the data
    template: str              # the chat template the rows were encoded with
    tok: object                # the tokenizer
    train_rows: list[dict]
    eval_rows: list[dict]
    adapter: object = None     # the LoRA config to train (None for full fine-tuning)
    plan: dict = field(default_factory=dict)  # what --dry-run returns; the run's result extends it
    memory: dict = field(default_factory=dict)
    seq_len: int = 0           # the widest batch, as padded


def sft(cfg: SFTConfig, dry_run: bool = False, echo=print, callbacks=()) -> dict:
    """Fine-tune as ``cfg`` says, print the plan and progress through ``echo``, and return the
    plan (``dry_run``: nothing loaded, nothing trained) or, after training, the plan with the
    run's steps, seconds, losses and measured memory. ``callbacks``: extra TrainerCallbacks."""
    run = prepare(cfg, echo)
    if dry_run:
        return run.plan
    out = Path(run.cfg.output_dir)
    # out of memory, loading or training: one line naming what to turn down, FAILED in `out`
    with failure.OutOfMemory(run.cfg, run.memory["total"], run.seq_len, out) as oom:
        model = build(run, echo)
        oom.loaded = True
        trainer, guard, peak = make_trainer(run, model, out, echo, callbacks)
        seconds = train(trainer, guard, run.cfg, out, echo)
        return save(run, trainer, peak, out, seconds, echo)


# ------------------------------------------------------------------------------- prepare
def prepare(cfg: SFTConfig, echo) -> Run:
    """Everything settled before a weight is read: what ``--dry-run`` runs and prints."""
    from transformers import set_seed

    from curate.format.template import choose

    hw = hardware(cfg.precision)
    attention = packing_attention(cfg, hw)
    if cfg.method == "qlora" and hw["device"] != "cuda":
        raise ConfigError("method: qlora needs a CUDA GPU (4-bit NF4 via bitsandbytes); use method: lora on this machine")
    set_seed(cfg.seed)
    files = data_files(cfg)
    cfg = token_budget(cfg, files, echo)  # before anything loads: max_length from the build's budget
    tok = load_tokenizer(cfg.init.model or cfg.model)
    # the config's template, else the format folder's template.jinja, else the tokenizer's
    _, template, _ = choose(cfg.template or (str(files["template"]) if "template" in files else None), tok)
    train_rows, eval_rows = encode_splits(cfg, files, template, tok)
    run = Run(cfg, hw, attention, files, template, tok, train_rows, eval_rows)
    schedule(run, echo)
    plan_memory(run, echo)
    return run


def schedule(run: Run, echo) -> None:
    """Token counts, packing, steps per epoch and in all, and the eval records the run uses."""
    cfg, hw = run.cfg, run.hw
    per_step = cfg.batch_size * cfg.grad_accum * max(1, hw["count"])
    tokens = sum(len(r["input_ids"]) for r in run.train_rows)
    trained = sum(sum(t != -100 for t in r["labels"]) for r in run.train_rows)
    run.plan.update(device=hw["device"], hardware=hw["name"], precision=hw["precision"],
                    train_records=len(run.train_rows), max_length=cfg.max_length, train_tokens=tokens,
                    trained_tokens=trained)
    if cfg.packing:  # whole samples, best-fit decreasing, into rows of at most max_length
        from . import packing

        run.train_rows = packing.pack(run.train_rows, cfg.max_length)
        run.plan.update(packed_rows=len(run.train_rows), packed_fill=round(packing.fill(run.train_rows), 4))
        echo(f"packing: {run.plan['train_records']} records in {len(run.train_rows)} rows of at most "
             f"{cfg.max_length} tokens ({run.plan['packed_fill']:.0%} filled)")
    steps_per_epoch = math.ceil(len(run.train_rows) / per_step)
    total_steps = cfg.max_steps or math.ceil(steps_per_epoch * cfg.epochs)
    # the first N eval records, N from the steps the run really takes: short runs are not mostly eval
    keep, eval_text = eval_cap(cfg, len(run.eval_rows), steps_per_epoch, total_steps, per_step)
    run.plan.update(steps_per_epoch=steps_per_epoch, total_steps=total_steps, eval_records=min(keep, len(run.eval_rows)),
                    eval_available=len(run.eval_rows))
    run.eval_rows = run.eval_rows[:keep]
    if cfg.packing:
        run.eval_rows = packing.pack(run.eval_rows, cfg.max_length)
    echo(f"{hw['name']} ({hw['precision']}); train {run.plan['train_records']} records, {tokens} tokens "
         f"({trained / max(tokens, 1):.0%} trained), eval {eval_text}; {steps_per_epoch} steps/epoch, "
         f"{total_steps} steps")


def plan_memory(run: Run, echo) -> None:
    """Parameters and the memory plan, from the model's shapes on the meta device: no weight
    read, no memory used; packing's attention window refused here, from the config alone."""
    from . import plan as planning

    cfg, hw = run.cfg, run.hw
    run.adapter = lora_config(cfg)  # the adapter (init.adapter checked) from the config alone
    meta, model_config = planning.meta_model(cfg, run.adapter)
    if cfg.packing:
        from .packing import SEGMENT_ATTENTION, check_window

        if run.attention == SEGMENT_ATTENTION:
            check_window(model_config, cfg.max_length)
    params = planning.count(meta)
    del meta
    run.seq_len = max(len(r["input_ids"]) for r in run.train_rows + run.eval_rows)
    run.memory = planning.memory_plan(planning.architecture(model_config), params, cfg.method, hw["precision"],
                                      hw["device"], cfg.batch_size, run.seq_len, cfg.gradient_checkpointing,
                                      run.adapter.lora_dropout if run.adapter is not None else 0.0)
    where, capacity = planning.available(hw["device"])
    total, trainable = params["total"], params["trainable"]
    run.plan.update(parameters=total, trainable=trainable, memory=run.memory, memory_capacity=capacity)
    echo(f"{cfg.method}: {_human(trainable)} of {_human(total)} parameters trainable ({trainable / total:.2%})")
    echo(planning.describe(run.memory, cfg.method, hw["precision"], cfg.batch_size, run.seq_len, where, capacity))


# --------------------------------------------------------------------------------- build
def build(run: Run, echo):
    """The model to train, on the run's device; with packing, its attention checked to keep
    packed samples apart."""
    model, warnings = load_model(run.cfg, run.hw, run.adapter, run.attention)
    for w in warnings:
        echo(f"warning: {w}")
    if run.cfg.packing:
        from . import packing

        if run.attention != "flash_attention_2":
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            run.attention = packing.use_segment_attention(base, run.cfg.max_length)
        run.plan["packing_leak"] = packing.check_isolation(model, run.attention)
        echo(f"packing: attention '{run.attention}' keeps packed samples apart (checked on this model)")
    return model


# --------------------------------------------------------------------------------- train
def trainer_args(cfg: SFTConfig, hw: dict, out: Path, evaluate: bool, flat: bool):
    """TRL's SFTConfig for the run (``flat``: flash-attention's padding-free batches)."""
    from trl import SFTConfig as TRLConfig

    from . import progress as progress_lines

    return TRLConfig(
        output_dir=str(out), seed=cfg.seed, data_seed=cfg.seed,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, lr_scheduler_type=cfg.scheduler,
        weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, **warmup_arg(TRLConfig, cfg.warmup_ratio),
        num_train_epochs=cfg.epochs or 1, max_steps=cfg.max_steps or -1,
        eval_strategy=("steps" if cfg.eval_every else "epoch") if evaluate else "no", eval_steps=cfg.eval_every,
        save_strategy="steps" if (cfg.save_every or cfg.eval_every) else "epoch",
        save_steps=cfg.save_every or cfg.eval_every, save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=evaluate and cfg.early_stopping_patience is not None,
        metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=cfg.logging_steps, logging_first_step=True,
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        bf16=hw["precision"] == "bf16", fp16=hw["precision"] == "fp16", use_cpu=hw["device"] == "cpu",
        # TRL's configs default gradient checkpointing to on (~20-30% slower steps): always say which
        **checkpointing_arg(TRLConfig, cfg.gradient_checkpointing),
        eval_on_start=evaluate,  # the starting loss: where a continued run picks up, and the baseline
        # rows arrive packed (prepare); flash-attention takes TRL's padding-free collator (one row per
        # batch, lengths already within max_length), SDPA/eager our row-keeping PackedCollator
        max_length=None if flat else cfg.max_length, packing=False, padding_free=flat,
        assistant_only_loss=False,  # the labels already carry the assistant-only mask, checked in prepare
        dataloader_num_workers=0, include_num_input_tokens_seen="non_padding",
        # a nan/inf loss is logged as such (the default logs the running mean instead, hiding it),
        # so that FiniteGuard sees it and stops the run
        logging_nan_inf_filter=False,
        disable_tqdm=not progress_lines.live(),  # a bar in a log file is a wall of carriage returns
    )


def make_trainer(run: Run, model, out: Path, echo, callbacks=()):
    """(trainer, guard, peak): the SFTTrainer for the run's rows (packed or with a weighted
    prompt loss: its variant), with the callbacks that stop a diverging run and measure memory."""
    from datasets import Dataset
    from transformers import EarlyStoppingCallback
    from trl import SFTTrainer

    from . import progress as progress_lines
    from . import trainers

    cfg, tok = run.cfg, run.tok
    out.mkdir(parents=True, exist_ok=True)
    evaluate, flat = bool(run.eval_rows), run.attention == "flash_attention_2"
    if cfg.early_stopping_patience and not evaluate:
        echo(f"warning: early_stopping_patience {cfg.early_stopping_patience} is ignored: no eval records (the "
             f"data has no eval split, or it came out empty); training runs all {run.plan['total_steps']} steps")
    args = trainer_args(cfg, run.hw, out, evaluate, flat)
    train_rows, eval_rows, kind, extra = run.train_rows, run.eval_rows, SFTTrainer, {}
    if cfg.prompt_loss_weight is not None:  # every token a target, each with its role; prompt tokens weigh W
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        from .loss import weighted_rows

        train_rows, eval_rows = weighted_rows(train_rows), weighted_rows(eval_rows)
        args.remove_unused_columns = False  # keep the token_role column for the collator
        kind, extra = trainers.WeightedSFTTrainer, dict(
            prompt_loss_weight=cfg.prompt_loss_weight,
            data_collator=trainers.WeightedCollator(DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)))
    elif cfg.packing and not flat:
        kind, extra = trainers.PackedSFTTrainer, dict(data_collator=trainers.PackedCollator(tok.pad_token_id))
    peak = trainers.PeakMemory(run.memory["total"], run.hw["device"], echo)
    # fp16's loss scaler meets inf gradients by design (it skips that step and lowers the scale)
    guard = trainers.FiniteGuard(grad_norm=run.hw["precision"] != "fp16")
    watch = [guard, trainers.TokensPerSecond(), peak]
    if cfg.early_stopping_patience and evaluate:
        watch.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = kind(model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list(train_rows),
                   eval_dataset=Dataset.from_list(eval_rows) if evaluate else None,
                   callbacks=watch + list(callbacks), **extra)
    progress_lines.readable_logs(trainer, echo)  # one readable line per logging step, not raw dicts
    return trainer, guard, peak


def train(trainer, guard, cfg: SFTConfig, out: Path, echo) -> float:
    """Train (from a checkpoint when ``resume`` says so); the seconds it took. A non-finite loss
    or weight stops the run: its history kept, its bad checkpoints removed, FAILED written."""
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
    return seconds


# ---------------------------------------------------------------------------------- save
def save(run: Run, trainer, peak, out: Path, seconds: float, echo) -> dict:
    """The trained weights (adapter or full), the tokenizer with the template it was trained
    with, history and loss curve, config, provenance and model card (and merged/); the result."""
    from .provenance import write_outputs

    cfg, tok = run.cfg, run.tok
    (out / failure.FAILED).unlink(missing_ok=True)  # an earlier failed run's marker: this run's model replaces it
    trainer.save_model(str(out))
    tok.chat_template = run.template
    tok.save_pretrained(str(out))
    (out / "template.jinja").write_text(run.template, encoding="utf-8")
    history = trainer.state.log_history
    result = {**run.plan, "seconds": round(seconds, 2), "global_step": trainer.state.global_step,
              "best_checkpoint": trainer.state.best_model_checkpoint,
              "train_loss": _last(history, "loss"), "eval_loss": _last(history, "eval_loss"),
              "memory_measured": peak.measured}
    (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    plot_losses(history, out / "loss.png")
    merged = cfg.merge and cfg.method != "full"
    if merged:
        merge(str(out), str(out / "merged"))
    write_outputs(cfg, run.files, out, result, run.hw)
    echo(f"saved {out}: {'adapter' if cfg.method != 'full' else 'model'}, tokenizer, config.yaml, provenance.json, "
         f"README.md, loss.png" + (", merged/" if merged else ""))
    return result


# ------------------------------------------------------------------------------- helpers
def checkpointing_arg(trl_config, on: bool) -> dict:
    """transformers 5 renamed gradient_checkpointing to activation_checkpointing; TRL sets the old one."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(trl_config)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": on}


def warmup_arg(trl_config, ratio: float) -> dict:
    """The warmup as a share of the steps, in the spelling this transformers takes: 5.x reads a
    ``warmup_steps`` below 1 as that share (and has no ``warmup_ratio``); 4.x has ``warmup_ratio``
    and refuses a ``warmup_steps`` that is not a whole count."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(trl_config)}
    takes_share = "float" in str(fields["warmup_steps"].type) if "warmup_steps" in fields else False
    return {"warmup_ratio": ratio} if "warmup_ratio" in fields and not takes_share else {"warmup_steps": ratio}


def _resume_point(cfg: SFTConfig, out: Path) -> str | None:
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        from transformers.trainer_utils import get_last_checkpoint

        return get_last_checkpoint(str(out)) if out.is_dir() else None
    if not Path(cfg.resume).is_dir():
        raise ConfigError(f"resume {cfg.resume}: no such checkpoint folder")
    return cfg.resume


def _restore(path: Path, before: bytes | None) -> None:
    """Put back a file as it was before this run (remove it if this run created it)."""
    if before is None:
        path.unlink(missing_ok=True)
    elif not path.is_file() or path.read_bytes() != before:
        path.write_bytes(before)


def _last(history: list[dict], key: str):
    return next((h[key] for h in reversed(history) if key in h), None)


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


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

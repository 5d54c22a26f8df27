"""What plugs into TRL's SFTTrainer for `train sft`: the trainers for packed rows and for a
weighted prompt loss with their collators, and the callbacks that watch a run (finite losses,
tokens per second, measured peak memory).

This module imports torch, transformers' Trainer and TRL at the top (seconds): only a run that
trains imports it (sft.make_trainer), so `train --help`, `--dry-run` and `train eval` do not.
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl import SFTTrainer

from .failure import FAILED, TrainingFailed, write_failed
from .loss import ROLE_COLUMN, weighted_loss
from .packing import position_ids
from .plan import CUDA_OVERHEAD, GIB


# ------------------------------------------------------------------------------ packed rows
class PackedCollator:
    """A batch of packed rows, each row kept apart and right-padded to the longest. No
    attention mask (its presence turns off transformers' packed-sequence detection): the
    padding is a segment of its own (positions restart at 0) with no loss. The first token of
    each sample is never a target: it would be predicted from the sample before it."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        width = max(len(ex["input_ids"]) for ex in examples)
        n = len(examples)
        ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((n, width), -100, dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        for i, ex in enumerate(examples):
            lengths = ex.get("seq_lengths") or [len(ex["input_ids"])]
            k = len(ex["input_ids"])
            ids[i, :k] = torch.tensor(ex["input_ids"])
            labels[i, :k] = torch.tensor(ex["labels"])
            pos[i, :k] = torch.tensor(position_ids(lengths))
            pos[i, k:] = torch.arange(width - k)
        labels[pos == 0] = -100
        return {"input_ids": ids, "labels": labels, "position_ids": pos}


class PackedSFTTrainer(SFTTrainer):
    """SFTTrainer for PackedCollator batches. TRL counts the tokens of a batch without an
    attention mask as the width of its position ids: right for its own one-row padding-free
    batches, one row short per extra row here, so its logged ``num_tokens`` is topped up."""

    def compute_loss(self, model, inputs, *args, **kwargs):
        if self.model.training and hasattr(self, "_total_train_tokens"):
            pos = inputs["position_ids"]
            self._total_train_tokens += pos.numel() - pos.size(1)
        return super().compute_loss(model, inputs, *args, **kwargs)


# ------------------------------------------------------------------------ weighted prompt loss
class WeightedCollator:
    """TRL's collator plus the token roles, padded like the labels (padding weighs nothing)."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, examples: list[dict]) -> dict:
        roles = [ex[ROLE_COLUMN] for ex in examples]
        batch = self.inner([{k: v for k, v in ex.items() if k != ROLE_COLUMN} for ex in examples])
        width = batch["labels"].shape[1]
        padded = torch.zeros((len(roles), width), dtype=torch.long)
        for i, r in enumerate(roles):
            padded[i, :len(r)] = torch.tensor(r[:width])
        batch[ROLE_COLUMN] = padded
        return batch


class WeightedSFTTrainer(SFTTrainer):
    """SFTTrainer whose loss weighs prompt tokens by ``prompt_loss_weight`` (train/loss.py), and
    logs the prompt-token and assistant-token losses apart."""

    def __init__(self, *args, prompt_loss_weight: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.prompt_loss_weight = prompt_loss_weight
        self.model_accepts_loss_kwargs = False  # our loss is a per-batch mean: let Trainer scale accumulation
        self._sums = {"train": {}, "eval": {}}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        roles = inputs.pop(ROLE_COLUMN)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss, parts = weighted_loss(outputs.logits, labels, roles, self.prompt_loss_weight)
        acc = self._sums["train" if model.training else "eval"]
        for name, (total, n) in parts.items():
            s, c = acc.get(name, (0.0, 0))
            acc[name] = (s + total, c + n)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs, *args, **kwargs):
        for split, prefix, key in (("train", "", "loss"), ("eval", "eval_", "eval_loss")):
            if key in logs and self._sums[split]:
                for name, (s, c) in self._sums[split].items():
                    if c:
                        logs[f"{prefix}{name}_loss"] = round(s / c, 4)
                self._sums[split] = {}
        return super().log(logs, *args, **kwargs)


# ---------------------------------------------------------------------------------- callbacks
class FiniteGuard(TrainerCallback):
    """Stops the run at the first logged loss, grad norm (unless ``grad_norm`` is False: fp16's
    loss scaler skips the steps whose gradients overflow) or eval loss that is nan or inf, and
    remembers which checkpoints this run wrote and which of them a finite loss vouches for."""

    def __init__(self, grad_norm: bool = True):
        self.keys = ("loss", "eval_loss", "train_loss") + (("grad_norm",) if grad_norm else ())
        self.failure = None     # (step, key, value)
        self.trusted = -1       # checkpoints up to this step had weights that gave a finite loss
        self.saved = []         # (step, folder) of every checkpoint this run wrote

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs or self.failure is not None:
            return
        for key in self.keys:
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
        with torch.no_grad():
            bad = next((n for n, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()),
                       None)
        if bad is not None:
            self.failure = (step, f"weight {bad}", float("nan"))

    def fail(self, out: Path, cfg) -> TrainingFailed:
        step, key, value = self.failure
        removed = []
        for at, folder in self.saved:  # only checkpoints this run wrote, and only the untrusted ones
            if at > self.trusted and folder.is_dir():
                shutil.rmtree(folder)
                removed.append(folder.name)
        msg = (f"training stopped at step {step}: {key} is {value}, not finite; no model saved (lower lr, now "
               f"{cfg.lr:g}; keep max_grad_norm finite, now {cfg.max_grad_norm:g}; or try precision: fp32)")
        extra = f"Removed this run's checkpoints taken after the loss went bad: {', '.join(removed)}.\n" if removed else ""
        write_failed(out, msg, extra)
        return TrainingFailed(f"{msg}; see {out / FAILED}")


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


class PeakMemory(TrainerCallback):
    """After ``at_step`` optimizer steps, print the measured peak beside the plan's estimate."""

    def __init__(self, plan_total: int, device: str, echo, at_step: int = 2):
        self.plan_total, self.device, self.echo, self.at_step = plan_total, device, echo, at_step
        self.measured = None

    def on_step_end(self, args, state, control, **kw):
        if state.global_step != self.at_step or self.measured is not None:
            return
        if self.device == "cuda":
            self.measured = torch.cuda.max_memory_allocated()
            what = "peak GPU memory allocated"
            estimate = self.plan_total - CUDA_OVERHEAD
        else:
            import resource

            self.measured = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            what = "peak process RSS (Python and the libraries included)"
            estimate = self.plan_total
        self.echo(f"measured after {self.at_step} steps: {what} {self.measured / GIB:.2f} GiB; estimated "
                  f"{estimate / GIB:.2f} GiB ({self.measured / max(estimate, 1):.2f}x)")

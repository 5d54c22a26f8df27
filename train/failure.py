"""A `train sft` run that gives no usable model: one line, exit non-zero, and a FAILED marker in
the output folder saying why (loaders refuse a folder carrying one)."""
from __future__ import annotations

from pathlib import Path

from curate.config import ConfigError

from .config import SFTConfig

FAILED = "FAILED"  # written in the output folder by a run that ended without a usable model


class TrainingFailed(ConfigError):
    """Training ran but gave no usable model (the loss diverged, memory ran out): one line, exit
    non-zero, no final model saved, and a FAILED marker in the output folder saying why."""


def write_failed(out: Path, msg: str, extra: str = "") -> None:
    (out / FAILED).write_text(f"train sft failed: {msg}\n{extra}No model of that run was saved here; files from "
                              "earlier runs (if any) are not its result.\n", encoding="utf-8")


def refuse_failed(path) -> None:
    """A folder whose last `train sft` run failed is not a model to load."""
    marker = Path(path) / FAILED
    if marker.is_file():
        first = (marker.read_text(encoding="utf-8", errors="replace").splitlines() or [""])[0]
        raise ConfigError(f"{path}: the last training run into this folder failed and saved no model "
                          f"({marker}: {first[:200]})")


_OOM = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def is_out_of_memory(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.OutOfMemoryError) or (
        isinstance(e, (RuntimeError, MemoryError)) and any(k in str(e).lower() for k in _OOM))


class OutOfMemory:
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
            write_failed(self.out, msg)
        raise TrainingFailed(msg) from None

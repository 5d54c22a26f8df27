"""`train sft`'s log lines: one readable line per logging step instead of transformers' raw
dicts, e.g. ``step 10/20  loss 0.870  lr 1.9e-04  eval_loss 0.400  12.5 tok/s  ETA 2m10s``;
transformers' own progress bar only on a terminal (in a log it is a wall of carriage returns)."""
from __future__ import annotations

import sys
import time

from curate import progress as _progress
from curate.progress import duration, is_quiet


def live() -> bool:
    """Show transformers' progress bar: on a terminal, unless --quiet."""
    return _progress.is_tty(sys.stderr) and not is_quiet()


def _num(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def log_line(logs: dict, step: int, total: int, elapsed: float | None, first_step: int = 0) -> str | None:
    """The line for one on_log call; None for the end-of-training summary (the command prints its own)."""
    if "train_loss" in logs:  # the end-of-training summary
        return None
    parts = [f"step {step}/{total}" if total else f"step {step}"]
    if "loss" in logs:
        parts.append(f"loss {_num(logs['loss'])}")
    if "learning_rate" in logs:
        parts.append(f"lr {logs['learning_rate']:.1e}")
    if "grad_norm" in logs:
        parts.append(f"grad_norm {_num(logs['grad_norm'])}")
    if "eval_loss" in logs:
        parts.append(f"eval_loss {_num(logs['eval_loss'])}")
    if "tokens_per_s" in logs:
        parts.append(f"{logs['tokens_per_s']:.1f} tok/s")
    done = step - first_step
    if elapsed and done > 0 and total and step < total:
        parts.append(f"ETA {duration(elapsed / done * (total - step))}")
    return "  ".join(parts) if len(parts) > 1 else None


def readable_logs(trainer, echo) -> None:
    """Replace the trainer's dict printer (PrinterCallback, or ProgressCallback's log writes) by
    our lines: through the bar's own write on a terminal, so that the bar stays whole, else echo."""
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback

    class Lines(TrainerCallback):
        def __init__(self):
            self.t0, self.first = None, 0

        def on_train_begin(self, args, state, control, **kw):
            self.t0, self.first = time.perf_counter(), state.global_step  # a resumed run starts further on

        def on_log(self, args, state, control, logs=None, **kw):
            if is_quiet() or not logs:
                return
            elapsed = time.perf_counter() - self.t0 if self.t0 is not None else None
            line = log_line(logs, state.global_step, state.max_steps, elapsed, self.first)
            if line is None:
                return
            bar = getattr(progress, "training_bar", None) if progress else None
            if bar is not None:
                bar.write(line)
            else:
                echo(line)

    class Bar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            pass  # the raw dict: Lines writes the readable one

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    progress = Bar() if live() else None
    if progress:
        trainer.add_callback(progress)
    trainer.add_callback(Lines())

"""Progress for long work: a line that redraws on a terminal, silence in logs and CI.

    with progress(len(texts), "embedding", unit="texts") as bar:
        for batch in batches:
            ...
            bar.update(len(batch))

On a terminal (the stream is a tty) the line shows done/total, rate and time left, redrawn
at most a few times a second; elsewhere (a log file, CI, a pipe) nothing is written while the
work runs. Either way one summary line ends it ("embedding: 500 texts in 12.5s, 40.0/s"),
unless quiet, or (off a terminal) the work took under a second. ``set_quiet(True)`` (the
commands' --quiet) silences the summaries too.
"""
from __future__ import annotations

import sys
import time

_quiet = False


def set_quiet(value: bool = True) -> None:
    global _quiet
    _quiet = bool(value)


def is_quiet() -> bool:
    return _quiet


def is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed, or not a file at all
        return False


def duration(seconds: float) -> str:
    """12.5s, 2m10s, 1h03m: short enough for a progress line."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class Progress:
    """See the module docstring. ``stream`` defaults to the stderr of the moment (so that click's
    test runner, which swaps sys.stderr, sees it); ``interval`` is the least time between redraws."""

    def __init__(self, total: int | None, label: str, unit: str = "records", stream=None, quiet: bool | None = None,
                 interval: float = 0.25, clock=time.monotonic, min_seconds: float = 1.0):
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = _quiet if quiet is None else quiet
        self.live = is_tty(self.stream) and not self.quiet
        self.interval, self.clock = interval, clock
        self.min_seconds = min_seconds  # quicker work (all cached, a tiny input) ends without a summary
        self.done = 0
        self.start = self.last = clock()
        self.width = 0  # of the line on screen, to blank it out
        self.extra = ""

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            self.close()
        elif self.live:  # an error follows: leave the line as it is, on a line of its own
            self.stream.write("\n")
            self.stream.flush()

    def update(self, n: int = 1, extra: str = "") -> None:
        """``n`` more done; ``extra``: a few words to show after the counts (e.g. a loss)."""
        self.done += n
        if extra:
            self.extra = extra
        if not self.live:
            return
        now = self.clock()
        if now - self.last >= self.interval or (self.total is not None and self.done >= self.total):
            self.last = now
            self._draw(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = (self.clock() if now is None else now) - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [self.label, f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}"]
        if self.total:
            parts.append(f"{100 * self.done / self.total:.0f}%")
        if rate:
            parts.append(f"{rate:.1f}/s")
            if self.total and self.done < self.total:
                parts.append(f"ETA {duration((self.total - self.done) / rate)}")
        if self.extra:
            parts.append(self.extra)
        return "  ".join(parts)

    def _draw(self, text: str) -> None:
        self.stream.write("\r" + text + " " * max(self.width - len(text), 0))
        self.stream.flush()
        self.width = len(text)

    def summary(self) -> str:
        elapsed = self.clock() - self.start
        rate = f", {self.done / elapsed:.1f}/s" if elapsed > 0 and self.done else ""
        return f"{self.label}: {self.done} {self.unit} in {duration(elapsed)}{rate}"

    def close(self) -> None:
        if self.quiet or (not self.live and self.clock() - self.start < self.min_seconds):
            return
        if self.live:
            self._draw("")
            self.stream.write("\r")
        self.stream.write(self.summary() + "\n")
        self.stream.flush()


def progress(total: int | None, label: str, unit: str = "records", **kwargs) -> Progress:
    return Progress(total, label, unit, **kwargs)

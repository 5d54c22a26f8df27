"""curate.progress: a redrawn line on a terminal, only the summary elsewhere, nothing when quiet."""
import io

from curate.progress import duration, progress


class Tty(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _work(stream, **kw):
    clock = Clock()
    with progress(100, "embedding", unit="texts", stream=stream, clock=clock, **kw) as bar:
        for _ in range(10):
            clock.t += 1.0
            bar.update(10)
    return stream.getvalue()


def test_not_a_tty_prints_only_the_summary():
    out = _work(io.StringIO())
    assert out == "embedding: 100 texts in 10.0s, 10.0/s\n"


def test_a_tty_shows_done_rate_and_time_left():
    out = _work(Tty())
    assert "\rembedding  50/100 texts  50%  10.0/s  ETA 5.0s" in out
    assert out.count("\r") >= 10 and out.endswith("embedding: 100 texts in 10.0s, 10.0/s\n")


def test_redraws_at_most_a_few_times_a_second():
    stream, clock = Tty(), Clock()
    with progress(1000, "x", stream=stream, clock=clock) as bar:
        for _ in range(999):
            clock.t += 0.001  # ~1 s of work in 999 steps
            bar.update()
    assert stream.getvalue().count("\r") <= 8


def test_quiet_prints_nothing():
    assert _work(Tty(), quiet=True) == ""
    assert _work(io.StringIO(), quiet=True) == ""


def test_duration():
    assert [duration(s) for s in (5, 130, 3725)] == ["5.0s", "2m10s", "1h02m"]


def test_quick_work_off_a_terminal_prints_nothing():
    stream = io.StringIO()
    with progress(3, "x", stream=stream) as bar:
        bar.update(3)
    assert stream.getvalue() == ""

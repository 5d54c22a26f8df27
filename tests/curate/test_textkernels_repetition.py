"""The repetition kernel says what its definition says, computed with Python strings:
exact spans and words, no hashing, no shortcuts (newline scan, stripping from a line's
edges, the word-count bound, the n-gram bound, pairwise or sorted duplicate counts)."""
import random
from collections import Counter

import numpy as np
import polars as pl
import pytest

from curate import textkernels as tk

# every character str.split() splits on, and some it does not (ZWSP, U+180E, NEL-like controls)
SPACES = [" ", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2000", "\u200a", "\u2028",
          "\u2029", "\u202f", "\u205f", "\u3000"]
NOT_SPACES = ["\u200b", "\u180e", "\x00", "\x1b", "\x7f", "é", "日本", "🙂", "a"]
LINES = ["same line", "Same line", "same  line", "x", "the cat sat on the mat", "日本語 テキスト", "🙂 🙂", "é"]


def _dup(items: list[str]) -> float:
    return 0.0 if len(items) < 2 else (len(items) - len(set(items))) / len(items)


def reference(text: str, lines_limit, paras_limit, grams: dict[int, float], min_words: int):
    """(kind, value, n) by the kernel's definition."""
    raw = text.split("\n")
    if lines_limit is not None:
        f = _dup([x.strip() for x in raw if x.strip()])
        if f > lines_limit:
            return 1, f, 0
    if paras_limit is not None:
        paras, run = [], []
        for x in raw + [""]:
            if x.strip():
                run.append(x)
            elif run:
                paras.append("\n".join(run).strip())
                run = []
        f = _dup(paras)
        if f > paras_limit:
            return 2, f, 0
    words = text.split()
    if not grams or len(words) < min_words:
        return 0, 0.0, 0
    for n, limit in sorted(grams.items()):
        counts = Counter(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))
        if not counts:
            continue
        c, length = max((c, len(g)) for g, c in counts.items())
        f = c * length / len(text)
        if c > 1 and f > limit:
            return 3, f, n
    return 0, 0.0, 0


def _piece(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:
        return rng.choice(LINES)
    if r < 0.7:
        return rng.choice(SPACES)
    if r < 0.8:
        return rng.choice(NOT_SPACES)
    return rng.choice(["\n", "\n\n", "\n \n", "\n\u3000\n", " \n"])


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = ["", "\n", " \n \n", "a", "a\na", "a\n\na", " a \n\ta\r\n", "\u3000a\u3000\na", "\xa0\n\xa0",
           "one\ntwo  \n\n   one\ntwo\n \t \none\ntwo\n\nthree", "x\n" * 20 + "y", "\n".join(str(i) for i in range(40)),
           " ".join(["the cat sat"] * 30 + [f"w{i}" for i in range(70)]), "日本 " * 120, "w\u2028" * 150]
    for _ in range(n):
        parts = [_piece(rng) for _ in range(rng.randint(0, 400 if rng.random() < 0.2 else 40))]
        out.append("".join(parts))
    return out


def _kernel(texts, lines_limit, paras_limit, grams, min_words, serial=True):
    column = pl.Series(texts, dtype=pl.String)
    n = len(texts)
    kind, value, which = np.zeros(n, np.int8), np.zeros(n, np.float64), np.zeros(n, np.int64)
    items = sorted(grams.items())
    addresses, lengths, owner = tk.utf8_spans(column)
    (tk.repetition_serial if serial else tk.repetition)(
        addresses, lengths, min(n, 4), lines_limit is not None, lines_limit or 0.0, paras_limit is not None,
        paras_limit or 0.0, np.array([g for g, _ in items], np.int64), np.array([f for _, f in items], np.float64),
        min_words, kind, value, which)
    del owner
    return list(zip(kind.tolist(), value.tolist(), which.tolist()))


SETTINGS = [(0.3, 0.3, {2: 0.2, 3: 0.18, 4: 0.16}, 100), (None, 0.1, {2: 0.05, 5: 0.05}, 5),
            (0.0, None, {}, 1), (None, None, {2: 0.0, 3: 0.0}, 1), (0.5, 0.0, {10: 0.01}, 12)]


@pytest.mark.parametrize("setting", SETTINGS, ids=[str(i) for i in range(len(SETTINGS))])
def test_repetition_kernel_is_its_definition(setting):
    texts = _texts(1500, seed=len(str(setting)))
    got = _kernel(texts, *setting)
    want = [reference(t, *setting) for t in texts]
    bad = [(t, g, w) for t, g, w in zip(texts, got, want) if g[0] != w[0] or g[2] != w[2] or abs(g[1] - w[1]) > 1e-12]
    assert not bad, bad[:3]
    assert len({k for k, _, _ in got}) > 1  # the data exercises more than one outcome


def test_parallel_twin_agrees():
    texts = _texts(400, seed=11)
    setting = SETTINGS[1]
    assert _kernel(texts, *setting, serial=False) == _kernel(texts, *setting)


def test_word_bound_holds():
    for t in _texts(800, seed=3):
        data = np.frombuffer(t.encode(), np.uint8)
        assert tk._most_words(data, len(data)) >= len(t.split())

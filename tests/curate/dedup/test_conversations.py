"""MinHash word shingles read from the turns in place (text.Conversations,
minhash.sign_conversations) sign exactly what the joined conversation text signs."""
import random

import numpy as np
import polars as pl
import pytest

from curate.dedup import minhash as mh
from curate.dedup.text import Conversations, select_column
from curate.record import MESSAGE_TYPE

# every ASCII white space str.split() knows (\x1c-\x1f too), TRIM's four at the edges,
# controls that are not white space, NUL, capitals; and non-ASCII white space and letters
ASCII = ["a", "B", "zz", "Q~", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x00",
         "\x01", "\x7f", "w1", "W1", "{\"f\": 1}"]
NON_ASCII = ["\x85", "\u00a0", "é", "É", "straße", "日本", "\u2028", "ǅ"]


def _text(rng: random.Random, non_ascii: bool, longest: int = 40) -> str:
    pool = ASCII + (NON_ASCII if non_ascii else [])
    return "".join(rng.choice(pool) for _ in range(rng.randint(0, longest)))


def _turn(rng: random.Random, non_ascii: bool):
    roll = rng.random()
    if roll < 0.04:
        return None  # a null turn
    content = None if roll < 0.12 else _text(rng, non_ascii)
    calls = _text(rng, non_ascii, 20) if rng.random() < 0.3 else None
    return {"role": rng.choice(["system", "user", "assistant", "tool"]), "content": content,
            "weight": None, "name": rng.choice([None, "fn"]), "tool_calls": calls}


def conversations(n: int, seed: int, calls: bool = True) -> pl.Series:
    """Hostile conversations: 0-12 turns, null and empty lists, null turns and contents,
    tool calls (with and without content), every white space class; a fifth with a
    non-ASCII byte somewhere."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.03:
            rows.append(None)
        elif roll < 0.06:
            rows.append([])
        else:
            non_ascii = rng.random() < 0.2
            turns = [_turn(rng, non_ascii) for _ in range(rng.randint(1, 12))]
            if not calls:
                turns = [t if t is None else {**t, "tool_calls": None} for t in turns]
            rows.append(turns)
    rows += [[{"role": "user", "content": "x" * 300}], [{"role": "user", "content": " ".join(["w"] * 200)}],
             [{"role": "user", "content": "  a  "}, {"role": "assistant", "content": "\n\nb\n\n"}]]
    return pl.Series("messages", rows, dtype=MESSAGE_TYPE)


def _joined(messages: pl.Series) -> pl.Series:
    return select_column(pl.DataFrame([messages]), "conversation")


@pytest.mark.parametrize("signature", ["oph", "kperm"])
@pytest.mark.parametrize("calls", [True, False])
@pytest.mark.parametrize("threads", [1, 2])  # the serial kernel and the parallel one
def test_turns_sign_what_the_joined_text_signs(signature, calls, threads, monkeypatch):
    import curate.textkernels

    monkeypatch.setattr(curate.textkernels, "threads", lambda: threads)
    messages = conversations(1500, seed=11, calls=calls)
    joined = _joined(messages)
    ascii = (joined.str.len_bytes() == joined.str.len_chars()).to_numpy()
    assert 0.6 < ascii.mean() < 0.95  # both paths run
    for ngram in (1, 2, 5):
        want = mh.shingle_and_sign(joined, 32, ngram, signature=signature).signatures
        got = mh.shingle_and_sign(Conversations(messages), 32, ngram, signature=signature).signatures
        assert np.array_equal(got, want), ngram


def test_sliced_and_chunked_columns():
    """A slice (non-zero Arrow offsets) and a column of several chunks read the right turns."""
    messages = conversations(600, seed=4)
    chunked = pl.concat([messages.slice(0, 250), messages.slice(250)], rechunk=False)
    assert chunked.n_chunks() == 2
    for column in (messages.slice(37, 400), chunked):
        want = mh.shingle_and_sign(_joined(column), 64, 5, signature="oph").signatures
        assert np.array_equal(mh.shingle_and_sign(Conversations(column), 64, 5, signature="oph").signatures, want)


def test_tool_calls_count_only_on_turns_with_content():
    """turn_text: a turn's tool calls are part of its text, unless its content is null.
    (A kernel that dropped the calls, or read them on a null-content turn, fails here.)"""
    def sign(turns):
        col = pl.Series("messages", [turns], dtype=MESSAGE_TYPE)
        return mh.shingle_and_sign(Conversations(col), 32, 2, signature="oph").signatures[0]

    plain = sign([{"role": "user", "content": "get the weather"}])
    called = sign([{"role": "user", "content": "get the weather", "tool_calls": "[{\"name\": \"w\"}]"}])
    assert not np.array_equal(plain, called)
    assert np.array_equal(plain, sign([{"role": "user", "content": "get the weather"},
                                       {"role": "assistant", "content": None, "tool_calls": "[1 2 3]"}]))


def test_other_options_take_the_joined_text():
    """Character shingles, punctuation stripping and exact verification read the joined text."""
    messages = conversations(300, seed=7)
    joined, conv = _joined(messages), Conversations(messages)
    for kw in ({"shingle": "char"}, {"strip_punct": True}, {"keep_sets": True}):
        want = mh.shingle_and_sign(joined, 32, 3, signature="oph", **kw)
        got = mh.shingle_and_sign(conv, 32, 3, signature="oph", **kw)
        assert np.array_equal(got.signatures, want.signatures), kw
    assert conv.to_list() == joined.to_list()

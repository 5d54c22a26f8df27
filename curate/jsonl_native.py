"""JSON Lines in the common chat/instruction layouts, read natively: a compiled scan
(:func:`curate.jsonl_native_kernel.scan`, numba) over the file's bytes (read whole: a memory
map would kill the process if another program truncated the file meanwhile) finds the lines and writes, for
every line it can *prove* it reads exactly as the per-line path would, the role codes, the
decoded contents, the ``meta`` JSON and :func:`curate.record.record_id`'s canonical JSON
straight into flat buffers. It runs a chunk at a time: the canonical JSON goes to one reused
4 MB buffer that Python hashes between calls (one sha256 loop over its slices), so it is
never all in memory. Python then builds the record table from the buffers (Arrow, no
per-record object). Runs of plain bytes are checked and copied 8 at a time. Every other line
goes on by number to the msgspec tier (:mod:`curate.jsonl_fast`), whose leftovers go to the
per-line path, so the three tiers give the per-line path's table byte for byte
(tests/curate/test_readers_native.py).

What the scan proves, and punts on (punting is always safe):

- the line: one JSON object, nothing after it but JSON white space; valid (strict) UTF-8;
  no raw control character in a string; escapes \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX with
  surrogate pairs (a lone surrogate: punted); keys without escapes, no duplicate key;
  values strings, true/false/null, integers of up to 18 digits (not ``-0``), and the one
  turns list. Floats, big integers, lists or objects elsewhere: punted (the msgspec tier
  reads most of them).
- the format: the given one, or the first :data:`curate.layouts.read.SIGNATURE` key
  present. OpenAI/ShareGPT: a non-empty list of turns of exactly the role and text keys,
  both strings, the role ASCII and known after ``strip().lower()``. The flat formats as
  their converters in :mod:`curate.layouts.read` build them (system turn, Alpaca's input).
- text: blank by Python's ``str.strip()`` only when certain from ASCII (any non-ASCII
  character in a text whose blankness matters: punted); a conversation with no text is a
  rejection, so punted. NFC: a text is taken only when none of its code points is flagged
  in a table built once from Python's own ``unicodedata`` (:func:`nfc_table`).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np
import polars as pl

from .jsonl_fast import arrow_series, record_table
from .layouts.read import FORMATS, OPENAI_ROLES, SHAREGPT_ROLES, SIGNATURE
from .record import id_of

# the names the kernel knows by index (jsonl_native_kernel: MESSAGES=0 ... ANSWER=13)
NAMES = ("messages", "conversations", "instruction", "prompt", "question", "role", "content", "from", "value",
         "input", "output", "system", "completion", "answer")
ROLE_NAMES = ("system", "user", "assistant")  # role codes 0, 1, 2
NFC_LIMIT = 0x20000  # code points from here on are not in the table: punted (rare: CJK extensions)
# second halves of Hangul syllables (V and T jamo): they compose with what precedes them
# algorithmically, so unicodedata.decomposition does not list them
HANGUL_VT = (range(0x1161, 0x1176), range(0x11A8, 0x11C3))


@dataclass
class NativeRead:
    records: pl.DataFrame  # id, messages, source, meta, _line (the line number), in line order
    punted: list[tuple[int, bytes]]  # (line number, line) of the lines for the next tier


def _packed(words) -> tuple[np.ndarray, np.ndarray]:
    data = [w.encode("utf-8") for w in words]
    off = np.zeros(len(data) + 1, np.int64)
    off[1:] = np.cumsum([len(d) for d in data])
    return np.frombuffer(b"".join(data), np.uint8), off


@lru_cache(maxsize=1)
def _tables() -> tuple:
    """The kernel's fixed inputs: key names, role tables, the signature order."""
    from . import jsonl_native_kernel as k

    assert FORMATS.index("openai") == k.OPENAI and FORMATS.index("sharegpt") == k.SHAREGPT
    assert FORMATS.index("alpaca") == k.ALPACA and FORMATS.index("qa") == k.PAIR_QA
    assert FORMATS.index("prompt_completion") == k.PAIR_PC and NAMES.index("answer") == k.ANSWER
    names, noff = _packed(NAMES)
    pairs = [(n, r, 0) for n, r in OPENAI_ROLES.items()] + [(n, r, 1) for n, r in SHAREGPT_ROLES.items()]
    assert all(n.isascii() and n == n.strip().lower() for n, _, _ in pairs)
    rnames, roff = _packed([n for n, _, _ in pairs])
    rcode = np.array([ROLE_NAMES.index(r) for _, r, _ in pairs], np.int64)
    rfmt = np.array([f for _, _, f in pairs], np.int64)
    sig_key = np.array([NAMES.index(key) for key, _ in SIGNATURE], np.int64)
    sig_fmt = np.array([FORMATS.index(f) for _, f in SIGNATURE], np.int64)
    words = np.frombuffer(b"truefalsenull", np.uint8)
    rolenames, rolenoff = _packed(ROLE_NAMES)
    return names, noff, rnames, roff, rcode, rfmt, sig_key, sig_fmt, words, rolenames, rolenoff


@lru_cache(maxsize=1)
def nfc_table() -> np.ndarray:
    """1 for each code point below :data:`NFC_LIMIT` that may change a text under NFC:
    a non-zero canonical combining class, not NFC on its own, or the second half of a
    canonical pair (it composes with what precedes it: NFC quick check "Maybe"). A text with
    none of them is NFC (the quick-check rule). Built from Python's own ``unicodedata``
    (the per-line path's NFC), once a run (~15 ms)."""
    flags = np.zeros(NFC_LIMIT, np.uint8)
    for cp in range(0x80, NFC_LIMIT):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        if unicodedata.combining(ch) or not unicodedata.is_normalized("NFC", ch):
            flags[cp] = 1
        d = unicodedata.decomposition(ch)
        if d and not d.startswith("<"):
            parts = d.split()
            if len(parts) == 2:
                second = int(parts[1], 16)
                if second < NFC_LIMIT:
                    flags[second] = 1
    for r in HANGUL_VT:
        flags[r.start:r.stop] = 1
    return flags


def read_native(data, label: str, fmt: str | None) -> NativeRead:
    """Records for the lines of ``data`` (a JSON Lines file's bytes) the scan proves it
    reads exactly; the other non-blank lines in ``punted``."""
    from . import jsonl_native_kernel as k

    buf = np.frombuffer(data, np.uint8)
    # built even for an ASCII file (15 ms): a \u escape can hold any character, and
    # searching for one costs more (about 1 ms a MB where backslashes are common)
    args = (buf, -1 if fmt is None else FORMATS.index(fmt), *_tables()[:8], nfc_table(), *_tables()[8:])
    at, out, ids = np.zeros(8, np.int64), k.buffers(len(buf)), []
    while at[k.AT_START] <= len(buf):  # a chunk of records a call: their canonical JSON hashed
        out = k.scan(*args, at, out)
        ids += _ids(out[9], out[8][:at[k.AT_CHUNK] + 1])
    lines, rec_turns, roles, toff, content, meta_off, meta, punt = out[:8]
    nrec, nturns = at[k.AT_REC], at[k.AT_TURN]
    punted = [(line, data[s:e]) for line, s, e in punt[:at[k.AT_PUNT]].tolist()]
    table = _table(label, lines[:nrec], ids, rec_turns[:nrec + 1], roles[:nturns], toff[:nturns + 1],
                   content[:at[k.AT_CONTENT]], meta_off[:nrec + 1], meta[:at[k.AT_META]])
    return NativeRead(table, punted)


def _ids(canon: np.ndarray, off: np.ndarray) -> list[str]:
    """record.id_of of each canonical slice (hashlib uses the CPU's SHA instructions where
    it has them; one call a record, on a view: no copy)."""
    mv = memoryview(canon)
    return [id_of(mv[a:b]) for a, b in pairwise(off.tolist())]


def _table(label, lines, ids, rec_turns, roles, toff, content, meta_off, meta) -> pl.DataFrame:
    """The record table straight from the scan's buffers (Arrow arrays over them). No
    ``pa.array`` of Python objects: it imports pandas (~0.2 s a run)."""
    import pyarrow as pa

    def strings(n, offsets, data):
        return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))

    n, nt = len(lines), len(roles)
    offsets = pa.Array.from_buffers(pa.int64(), n + 1, [None, pa.py_buffer(rec_turns)])
    return record_table(strings(nt, *_role_strings(roles)), strings(nt, toff, content), offsets, ids,
                        arrow_series(strings(n, meta_off, meta)), lines, label)


def _role_strings(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and UTF-8 bytes of the role names for role codes (vectorised)."""
    names, off = _packed(ROLE_NAMES)
    lengths = np.diff(off)[codes]
    out_off = np.zeros(len(codes) + 1, np.int64)
    np.cumsum(lengths, out=out_off[1:])
    at = np.repeat(off[:-1][codes] - out_off[:-1], lengths) + np.arange(out_off[-1])
    return out_off, names[at]

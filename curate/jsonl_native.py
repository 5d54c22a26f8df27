"""JSON Lines in the common chat/instruction layouts, read natively: a compiled scan
(:func:`curate.jsonl_native_kernel.scan`, numba) over the file's bytes, read 16 MB at a time
into one reused buffer (complete lines a chunk; not a memory map, which would kill the
process if another program truncated the file meanwhile), finds the lines and writes, for
every line it can *prove* it reads exactly as the per-line path would, the role codes, the
decoded contents, the ``meta`` JSON and :func:`curate.record.record_id`'s canonical JSON
straight into flat buffers. It runs a chunk at a time: the canonical JSON goes to one reused
4 MB buffer, never all in memory, which the scan hashes at the end of each call by calling
libcrypto's ``SHA256`` (the library hashlib uses, :func:`sha256_address`) and writes the ids
as hex digits into one buffer (where that library cannot be found, Python hashes the chunk
with :func:`curate.record.id_of` between calls into the same buffer). Python then builds the
record table from the buffers (Arrow, no per-record object; the strings, ids included, as
``string_view`` arrays, which polars takes without a copy). Runs of plain bytes are checked
and copied 8 at a time. Every other line goes on by number, its bytes copied out of the
chunk, to the msgspec tier
(:mod:`curate.jsonl_fast`), whose leftovers go to the per-line path, so the three tiers give
the per-line path's table byte for byte (tests/curate/test_readers_native.py,
tests/curate/test_readers_chunks.py).

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

import ctypes
import hashlib
import io
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
CHUNK = 16 << 20  # the file is read this many bytes at a time, into one reused buffer
# the most bytes a data buffer of a string_view array spans (Arrow C++ reads its offsets and
# lengths as signed 32-bit integers)
VIEW_LIMIT = (1 << 31) - 1
# the scan hashes the ids itself (libcrypto's SHA256 from compiled code); False: Python does, a
# chunk at a time (tests compare the two)
NATIVE_SHA = True
# inputs sha256_address checks libcrypto's SHA256 on against hashlib (empty, one block, the
# padding's edges, several blocks)
SHA_PROBES = (b"", b"abc", b"x" * 55, b"y" * 56, b"z" * 64, bytes(range(256)) * 5)


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


@lru_cache(maxsize=1)
def sha256_address() -> int:
    """The address of the one-shot ``SHA256(data, size, digest)`` of the libcrypto that
    hashlib's OpenSSL module loaded (found in /proc/self/maps: Linux), for the scan to call
    per record; 0 where there is none, or where it does not give hashlib's digests (then
    Python hashes the ids, with :func:`curate.record.id_of`). Either way the ids are the
    same: sha256 is sha256, and the probes check this library against hashlib."""
    try:
        import _hashlib  # noqa: F401  (hashlib's OpenSSL module: it maps libcrypto)

        with open("/proc/self/maps") as fh:
            paths = sorted({parts[5].strip() for line in fh
                            if len(parts := line.split(maxsplit=5)) == 6 and "/libcrypto" in parts[5]})
    except (ImportError, OSError):
        return 0
    for path in paths:
        try:
            fn = ctypes.CDLL(path).SHA256  # already loaded: the same library, no second copy
        except (OSError, AttributeError):
            continue
        fn.restype, fn.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p]
        digest = ctypes.create_string_buffer(32)
        if all(fn(p, len(p), digest) and digest.raw == hashlib.sha256(p).digest() for p in SHA_PROBES):
            return ctypes.cast(fn, ctypes.c_void_p).value or 0
    return 0


def read_native(source, label: str, fmt: str | None, size: int | None = None) -> NativeRead:
    """Records for the lines of ``source`` (a JSON Lines file opened for binary reading, or
    its bytes; ``size``: the file's size, to size the buffers) the scan proves it reads
    exactly; the other non-blank lines in ``punted``."""
    from . import jsonl_native_kernel as k

    if isinstance(source, (bytes, bytearray)):
        source, size = io.BytesIO(source), len(source)
    # built even for an ASCII file (15 ms): a \u escape can hold any character, and
    # searching for one costs more (about 1 ms a MB where backslashes are common)
    sha = sha256_address() if NATIVE_SHA else 0
    tables = (-1 if fmt is None else FORMATS.index(fmt), *_tables()[:8], nfc_table(), *_tables()[8:], sha)
    at, out, punted = np.zeros(11, np.int64), k.buffers(size or 0), []
    at[k.AT_LIMIT] = VIEW_LIMIT
    for buf, final in _chunks(source, size or 0):
        at[k.AT_START], n = 0, len(buf)
        while at[k.AT_START] < n or final and at[k.AT_START] == n:  # a call per 2 MB of canonical JSON
            out = k.scan(buf, final, *tables, at, out)
            if not sha:
                _ids(out[9], out[8][:at[k.AT_CHUNK] + 1], out[16], at[k.AT_REC] - at[k.AT_CHUNK])
        # the chunk's buffer is reused: the punted lines' bytes are copied out, each with its
        # newline where it has one, as a file's lines iterate (the per-line path parses them)
        punted += [(line, buf[s:min(e + 1, n)].tobytes()) for line, s, e in out[7][:at[k.AT_PUNT]].tolist()]
        at[k.AT_PUNT] = 0
    lines, rec_turns, roles, toff, content, meta_off, meta = out[:7]
    nrec, nturns = at[k.AT_REC], at[k.AT_TURN]
    contents = _strings(toff[:nturns + 1], content[:at[k.AT_CONTENT]], out[12], out[13], at[k.AT_CBUF])
    metas = _strings(meta_off[:nrec + 1], meta[:at[k.AT_META]], out[14], out[15], at[k.AT_MBUF])
    ids = _id_strings(out[16][:k.ID_HEX * nrec], nrec)
    return NativeRead(_table(label, lines[:nrec], ids, rec_turns[:nrec + 1], roles[:nturns], contents, metas), punted)


def _chunks(fh, size: int):
    """The file's bytes a buffer at a time, as (chunk, final): each chunk its complete lines
    (it ends just after a newline; the partial line after it goes on to the next), the last
    one (``final``) all that is left. One buffer, reused (so its pages are faulted in once,
    not the file's size of them): a chunk is valid until the next is asked for. Read into,
    not memory-mapped: a map of a file another program truncates meanwhile kills the
    process (SIGBUS inside the scan). A line longer than the buffer doubles it."""
    buf, fill = bytearray(max(1, min(CHUNK, size + 1))), 0
    while True:
        fill, end_of_file = _fill(fh, buf, fill)
        if end_of_file:
            yield np.frombuffer(buf, np.uint8, fill), True
            return
        end = buf.rfind(b"\n", 0, fill) + 1
        if end == 0:
            bigger = bytearray(2 * len(buf))  # a new one: the last chunk may still be held
            bigger[:fill] = buf
            buf = bigger
            continue
        yield np.frombuffer(buf, np.uint8, end), False
        rest = fill - end
        buf[:rest] = buf[end:fill]
        fill = rest


def _fill(fh, buf: bytearray, fill: int) -> tuple[int, bool]:
    """Read into buf[fill:] until it is full or the file ends: (bytes in buf, whether the
    file ended)."""
    with memoryview(buf) as view:
        while fill < len(buf):
            got = fh.readinto(view[fill:])
            if not got:
                return fill, True
            fill += got
    return fill, False


def _ids(canon: np.ndarray, off: np.ndarray, ids: np.ndarray, r0: int) -> None:
    """What the scan's :func:`~curate.jsonl_native_kernel.hash_ids` writes, where it cannot
    call libcrypto: record.id_of of each canonical slice canon[off[i]:off[i + 1]] (one
    hashlib call a record, on a view: no copy), as hex digits one after another at
    ids[ID_HEX * r0] on."""
    from .jsonl_native_kernel import ID_HEX

    mv = memoryview(canon)
    digits = "".join([id_of(mv[a:b]) for a, b in pairwise(off.tolist())]).encode("ascii")
    ids[ID_HEX * r0:ID_HEX * r0 + len(digits)] = np.frombuffer(digits, np.uint8)


def _id_strings(digits: np.ndarray, n: int):
    """n ids of ID_HEX hex digits each, one after another in ``digits``, as a ``string_view``
    array over that buffer (views built by numpy: length, first 4 bytes, buffer index,
    offset; a new data buffer every VIEW_LIMIT bytes), which polars takes without a copy (a
    list of Python strings cost ~0.04 CPU-s and ~4.7k fresh pages per 200k ids)."""
    import pyarrow as pa

    from .jsonl_native_kernel import ID_HEX

    per = max(1, VIEW_LIMIT // ID_HEX)  # ids a data buffer (at least one: tests set tiny limits)
    views = np.empty((n, 4), np.uint32)
    views[:, 0] = ID_HEX
    views[:, 1] = digits.view(np.uint32)[::ID_HEX // 4]
    index = np.arange(n, dtype=np.int64)
    views[:, 2] = index // per
    views[:, 3] = index % per * ID_HEX
    data = [pa.py_buffer(digits[a:a + ID_HEX * per]) for a in range(0, ID_HEX * n, ID_HEX * per)]
    return pa.Array.from_buffers(pa.string_view(), n, [None, pa.py_buffer(views)] + data)


def _table(label, lines, ids, rec_turns, roles, contents, metas) -> pl.DataFrame:
    """The record table straight from the scan's buffers: Arrow arrays over them. No
    ``pa.array`` of Python objects: it imports pandas (~0.2 s a run)."""
    import pyarrow as pa

    n = len(lines)
    offsets = pa.Array.from_buffers(pa.int64(), n + 1, [None, pa.py_buffer(rec_turns)])
    return record_table(_role_views(roles), contents, offsets, arrow_series(ids), arrow_series(metas), lines, label)


def _strings(offsets: np.ndarray, data: np.ndarray, views: np.ndarray, bounds: np.ndarray, nbuf: int):
    """The strings data[offsets[i]:offsets[i + 1]] as an Arrow ``string_view`` array, polars'
    own string layout, which it takes as it is (a ``large_string`` array it copies into
    views: ~0.07 CPU-s and as many fresh pages per 150 MB): the scan's views
    (:func:`curate.jsonl_native_kernel._views`) over ``nbuf`` data buffers, spans of data
    (``bounds``); where a string is too long for a view (nbuf -1), ``large_string``."""
    import pyarrow as pa

    n = len(offsets) - 1
    if nbuf < 0:
        return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
    spans = bounds[:2 * nbuf].reshape(-1, 2).tolist()
    return pa.Array.from_buffers(pa.string_view(), n, [None, pa.py_buffer(views[:16 * n])]
                                 + [pa.py_buffer(data[a:b]) for a, b in spans])


def _role_views(codes: np.ndarray):
    """The role names of role codes as a ``string_view`` array (each name held in its view)."""
    import pyarrow as pa

    table = np.zeros((len(ROLE_NAMES), 16), np.uint8)
    for code, name in enumerate(ROLE_NAMES):
        raw = name.encode()
        assert len(raw) <= 12  # held in the view
        table[code, :4] = np.frombuffer(len(raw).to_bytes(4, "little"), np.uint8)
        table[code, 4:4 + len(raw)] = np.frombuffer(raw, np.uint8)
    return pa.Array.from_buffers(pa.string_view(), len(codes), [None, pa.py_buffer(table[codes])])

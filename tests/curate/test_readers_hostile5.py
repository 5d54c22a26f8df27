"""Hostile tests of the native JSON Lines tier's chunked, zero-copy read (issue #23, session
5): the file read a chunk at a time into one reused buffer (curate.jsonl_native._chunks,
CHUNK: 16 MB, made small here), the strings handed to polars as Arrow string_view arrays
over the scan's own buffers (VIEW_LIMIT: where a data buffer is split, made small here).
Tokens, lines and punted lines straddling a chunk's end (small chunks, and the real 16 MB
one), views of 12 and 13 bytes, split data buffers, the table used after the scan's frame
is gone, files changing between chunks, odd files, the CLI end to end. Every table is
compared with the per-line path's (readers._FAST_JSONL False).

A long hunt (20 reads of a 200k-record file with bad lines: RSS and descriptors watched;
a 40 MB line; dedup on a >16 MB file) is off by default:
``CURATE_HOSTILE_LONG=1 pytest tests/curate/test_readers_hostile5.py`` (under
``flock /tmp/cpu.lock``)."""
from __future__ import annotations

import gc
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import jsonl_native, readers
from curate import jsonl_native_kernel as kernel
from curate.jsonl_native import read_native
from curate.readers import read_inputs
from tests.curate.test_readers_chunks import captured_strings
from tests.curate.test_readers_hostile4 import assert_same, read_both

LONG = os.environ.get("CURATE_HOSTILE_LONG") == "1"
ROOT = Path(__file__).resolve().parents[2]
REAL_CHUNK = jsonl_native.CHUNK


@pytest.fixture(autouse=True)
def native_for_small_files(monkeypatch):
    monkeypatch.setattr(readers, "_NATIVE_MIN_BYTES", 0)


def pc(p, c, **k) -> bytes:
    return json.dumps({"prompt": p, "completion": c, **k}, ensure_ascii=False).encode()


def pc_of(size: int, fill: bytes = b"a") -> bytes:
    """A prompt/completion line of exactly ``size`` bytes (no newline)."""
    body = size - len(pc("", "c"))
    assert body >= 0 and body % len(fill) == 0
    return pc((fill * (body // len(fill))).decode(), "c")


def same_as_per_line(tmp_path, monkeypatch, raw: bytes, fmt=None, name="h.jsonl"):
    """Read ``raw`` both ways (the same table, the same rejected rows) and chunked against one
    buffer (the same records, the same punted lines); the native-first read."""
    path = tmp_path / name
    path.write_bytes(raw)
    fast, slow, native = read_both(path, monkeypatch, fmt)
    assert_same(fast, slow)
    chunked = read_native(raw, "x", fmt)
    with monkeypatch.context() as m:
        m.setattr(jsonl_native, "CHUNK", 1 << 30)
        whole = read_native(raw, "x", fmt)
    assert chunked.records.equals(whole.records) and chunked.punted == whole.punted
    return fast, native


def read_lines(result) -> list[int]:
    return sorted(int(s.rsplit(":", 1)[1]) for s in result.rejected["source"])


# ---------------------------------------------------------------- chunk edges (small chunks)

SMALL = 128
HEAD = b'{"prompt": "p", "completion": "'
# (name, bytes that land on the chunk's end, what follows them to close the line)
TOKENS = [
    ("utf8_2", "\u00e9".encode(), b'"}'), ("utf8_3", "\u2028".encode(), b'"}'), ("utf8_4", "\U0001F600".encode(), b'"}'),
    ("nfd", "e\u0301".encode(), b'"}'), ("escape_u", b"\\u00e9", b'"}'), ("escape_pair", b"\\ud83d\\ude00", b'"}'),
    ("escape_quote", b'\\"', b'"}'), ("escape_backslash", b"\\\\", b'"}'), ("escape_r", b"\\r\\n", b'"}'),
    ("crlf", b'"}\r\n', b""), ("blank_lines", b'"}\n\n \r\n\t\n', b""), ("bom_line", b'"}\n\xef\xbb\xbf' + pc("b", "o"), b""),
    ("invalid_utf8", b"\xff\xfe", b'"}'), ("cut_utf8", b"\xe2\x82", b'"}'), ("lone_surrogate", b"\\ud800", b'"}'),
    ("control", b"\x01", b'"}'), ("float", b'", "completion": 1.5', b"}"), ("parse_error", b'"', b""),
]


def straddling(token: bytes, tail: bytes, at: int) -> bytes:
    """A file whose ``token`` starts at byte ``at`` (of the first line, after a pad line), then
    a good line, a bad one, a good one without a final newline."""
    pad = pc_of(40) + b"\n"
    line = HEAD + b"x" * (at - len(pad) - len(HEAD)) + token + tail
    return pad + line + b"\n" + pc("after", "c") + b'\n{"bad\n' + pc("last", "c")


@pytest.mark.parametrize("name,token,tail", TOKENS, ids=[t[0] for t in TOKENS])
def test_a_token_at_every_offset_around_a_small_chunk_end(tmp_path, monkeypatch, name, token, tail):
    """The token starts 14 bytes before the chunk's end to 4 after it (so every cut through
    it is made, and the line ends before, at and after the chunk's end)."""
    monkeypatch.setattr(jsonl_native, "CHUNK", SMALL)
    for at in range(SMALL - 14, SMALL + 5):
        raw = straddling(token, tail, at)
        assert raw[at:at + len(token)] == token
        fast, _ = same_as_per_line(tmp_path, monkeypatch, raw)
        assert fast.records.height >= 3


@pytest.mark.parametrize("size", [SMALL - 2, SMALL - 1, SMALL, SMALL + 1, 2 * SMALL - 1, 2 * SMALL, 5 * SMALL + 3])
def test_lines_of_about_the_chunk_size(tmp_path, monkeypatch, size):
    """A line (newline excluded) of about the buffer's size: it fits, its newline is the
    buffer's last byte, its newline is one past it, it needs the buffer doubled (once, twice);
    first, between small ones, last without a newline, and alone."""
    monkeypatch.setattr(jsonl_native, "CHUNK", SMALL)
    big, small = pc_of(size), pc("s", "c")
    for raw in (big + b"\n" + small, small + b"\n" + big + b"\n" + small, small + b"\n" + big, big, big + b"\n",
                big + b"\r\n" + big + b"\r\n", b'{"bad\n' + big + b'\n{"bad\n' + big):
        fast, native = same_as_per_line(tmp_path, monkeypatch, raw)
        assert native == fast.records.height > 0


@pytest.mark.parametrize("size", [SMALL - 1, SMALL, SMALL + 1])
def test_a_file_ending_at_the_chunk_end(tmp_path, monkeypatch, size):
    """The file's size about the buffer's: its last line without a newline ends at the
    buffer's end, one before, one after; and a size stated too small or unknown (0)."""
    monkeypatch.setattr(jsonl_native, "CHUNK", SMALL)
    first = pc("f", "c") + b"\n"
    raw = first + pc_of(size - len(first))
    assert len(raw) == size
    fast, native = same_as_per_line(tmp_path, monkeypatch, raw)
    assert native == 2
    for stated in (0, 1, size - 1, size, size + 1):
        got = read_native(io_of(raw), "x", None, stated)
        assert got.records.equals(read_native(raw, "x", None).records) and not got.punted


def io_of(raw: bytes):
    return io.BytesIO(raw)


def test_one_huge_line_then_many_small_ones_with_bad_lines(tmp_path, monkeypatch):
    """The buffer doubles for the first line (~64 chunks long) and stays big; the small lines
    after it, a bad one every 13, are read with their own numbers and bytes."""
    monkeypatch.setattr(jsonl_native, "CHUNK", 4096)
    lines = [pc_of(64 * 4096 + 7)] + [pc("s%d" % i, "c\u00e9") if i % 13 else b'{"bad %d' % i for i in range(1, 3000)]
    fast, native = same_as_per_line(tmp_path, monkeypatch, b"\n".join(lines))
    bad = [n for n, line in enumerate(lines, 1) if line.startswith(b'{"bad')]
    assert read_lines(fast) == bad and native == len(lines) - len(bad)
    raws = [json.loads(m)["raw"] for m in fast.rejected["meta"]]
    assert raws == [lines[n - 1].decode() for n in bad]


BAD_LINES = [b'{"bad', b'{"prompt": "a\xffb", "completion": "c"}', b'{"prompt": "a\\ud800", "completion": "c"}',
             b'{"prompt": "p", "completion": 1.5}', b'{"prompt": "p", "completion": "c"} x', b"[1, 2]",
             b'{"prompt": " ", "completion": "\\t"}', b'\xef\xbb\xbf{"bad']


@pytest.mark.parametrize("chunk", [16, SMALL, 100])
def test_punted_lines_on_both_sides_of_every_chunk_end(tmp_path, monkeypatch, chunk):
    """Bad lines of every kind (the native tier punts them: the msgspec tier or the per-line
    path reads them from the bytes copied out of the reused buffer) around many chunk ends:
    each a rejected row naming its own line, with its own bytes."""
    monkeypatch.setattr(jsonl_native, "CHUNK", chunk)
    lines = []
    for i in range(400):
        lines.append(BAD_LINES[i % len(BAD_LINES)] if i % 3 else pc("g%d" % i + "x" * (i % 37), "c"))
    raw = b"\r\n".join(lines[:200]) + b"\n" + b"\n".join(lines[200:])
    fast, _ = same_as_per_line(tmp_path, monkeypatch, raw)
    rejected = [n for n, line in enumerate(lines, 1) if line in BAD_LINES]
    assert read_lines(fast) == rejected
    assert fast.records.height + fast.rejected.height == len(lines)


# ---------------------------------------------------------------- the real 16 MB chunk

def real_boundary_file(token: bytes, cut: int, rest: bytes) -> bytes:
    """A pad line, then a line whose ``token`` is cut by the real chunk's end before its byte
    ``cut``, bad lines just before and after it."""
    pad = pc_of(REAL_CHUNK - 200) + b"\n"
    head = pad + b'{"bad before\n' + HEAD
    line = head + b"y" * (REAL_CHUNK - cut - len(head)) + token + rest
    assert line[REAL_CHUNK - cut:REAL_CHUNK - cut + len(token)] == token
    return line + b'\n{"prompt": "bad \xff after", "completion": "c"}\r\n' + pc("end", "c")


REAL_CUTS = [("\U0001F600".encode(), 1, b'", "m": "\xf0\x9f\x98\x80"}'), (b"\\ud83d\\ude00", 3, b'"}'),
             (b'"}\r', 2, b""), (b'"}', 1, b"")]


@pytest.mark.parametrize("token,cut,rest", REAL_CUTS, ids=["utf8_4", "pair", "crlf", "end_brace"])
def test_the_real_chunk_end(tmp_path, monkeypatch, token, cut, rest):
    """The real 16 MB buffer (a file just over it): the token cut by the chunk's end, a bad
    line on either side of it, named by their own line numbers."""
    raw = real_boundary_file(token, cut, rest)
    assert len(raw) > REAL_CHUNK
    fast, native = same_as_per_line(tmp_path, monkeypatch, raw, name="real.jsonl")
    assert read_lines(fast) == [2, 4] and native == 3


@pytest.mark.parametrize("shape", ["newline_last_byte", "one_over", "no_newline_at_the_end"])
def test_a_line_of_the_real_chunk_size(tmp_path, monkeypatch, shape):
    if shape == "newline_last_byte":
        raw = pc_of(REAL_CHUNK - 1) + b"\n" + b'{"bad\n' + pc("x", "y")
    elif shape == "one_over":
        raw = pc_of(REAL_CHUNK) + b"\n" + b'{"bad\n' + pc("x", "y")
    else:
        raw = pc("x", "y") + b"\n" + pc_of(REAL_CHUNK - len(pc("x", "y")) - 1)
        assert len(raw) == REAL_CHUNK
    fast, native = same_as_per_line(tmp_path, monkeypatch, raw, name="line.jsonl")
    assert native == 2


@pytest.mark.skipif(not LONG, reason="long hunt: CURATE_HOSTILE_LONG=1")
def test_a_forty_megabyte_line_then_small_ones(tmp_path, monkeypatch):
    lines = [pc_of((40 << 20) + 1, "\u00e9".encode())] + [pc("s%d" % i, "c") if i % 13 else b'{"bad %d' % i
                                                      for i in range(1, 20000)]
    fast, native = same_as_per_line(tmp_path, monkeypatch, b"\n".join(lines), name="forty.jsonl")
    assert native == fast.records.height > 18000


# ---------------------------------------------------------------- string views

# texts of 0, 11-14 bytes (inline up to 12), ASCII and two-byte characters, and metas whose
# JSON is about 12 bytes ({"m":"12345"} is 13)
SHORT = ["", "a", "x" * 11, "x" * 12, "x" * 13, "x" * 14, "\u00e9" * 6, "\u00e9" * 6 + "a", "\u00e9" * 5 + "a",
         "\U0001F600" * 3, "\U0001F600" * 3 + "a", " " * 12, "a\nb\tc\\d\"e/f"]


def short_lines() -> list[bytes]:
    lines = []
    for i, p in enumerate(SHORT):
        for j, c in enumerate(SHORT):
            if not (p + c).strip():
                continue
            extra = {} if (i + j) % 3 == 0 else {"m": "x" * ((i + j) % 9)} if (i + j) % 3 == 1 else {"m": None}
            lines.append(pc(p, c, **extra))
            lines.append(json.dumps({"messages": [{"role": "system", "content": c}, {"role": "user", "content": p}]},
                                    ensure_ascii=False).encode())
    return lines


@pytest.mark.parametrize("limit", [13, 20, (1 << 31) - 1])
def test_strings_of_twelve_and_thirteen_bytes(tmp_path, monkeypatch, limit):
    """Inline (<= 12 bytes) and out-of-line views side by side, empty strings: valid Arrow,
    the per-line table, and polars' comparisons (which read the inline bytes) agree."""
    monkeypatch.setattr(jsonl_native, "CHUNK", 97)
    monkeypatch.setattr(jsonl_native, "VIEW_LIMIT", limit)
    arrays = captured_strings(monkeypatch)
    path = tmp_path / "short.jsonl"
    path.write_bytes(b"\n".join(short_lines()))
    fast, slow, native = read_both(path, monkeypatch)
    assert_same(fast, slow)
    assert native > 300
    for array in arrays:
        array.validate(full=True)
    assert arrays[0].type == (pa.string_view() if limit > 13 else pa.large_string())
    contents = [pl.col("messages").list.get(k).struct.field("content") for k in (0, -1)]
    for text in SHORT:
        for col in contents:
            assert fast.records.filter(col == text).to_dicts() == slow.records.filter(col == text).to_dicts()
            assert fast.records.filter(col.str.starts_with(text[:5])).height == \
                slow.records.filter(col.str.starts_with(text[:5])).height
    key = [*contents, "meta"]
    assert fast.records.sort(key).to_dicts() == slow.records.sort(key).to_dicts()
    assert fast.records.unique(["meta"]).height == slow.records.unique(["meta"]).height


@pytest.mark.parametrize("size", [31, 32, 33])
def test_a_string_of_the_view_limit(tmp_path, monkeypatch, size):
    """VIEW_LIMIT 32: a string of 32 bytes has a view (a data buffer of its own), one of 33
    makes the column large_string; around it, buffers split, strings before and after."""
    monkeypatch.setattr(jsonl_native, "VIEW_LIMIT", 32)
    arrays = captured_strings(monkeypatch)
    lines = [pc("p%d" % i + "q" * (i % 20), "c" * (i % 15)) for i in range(60)]
    lines.insert(30, pc("z" * size, "c"))
    path = tmp_path / "limit.jsonl"
    path.write_bytes(b"\n".join(lines))
    fast, slow, _ = read_both(path, monkeypatch)
    assert_same(fast, slow)
    contents = arrays[0]
    contents.validate(full=True)
    assert contents.type == (pa.large_string() if size > 32 else pa.string_view())
    if size <= 32:
        assert all(b.size <= 32 for b in contents.buffers()[2:]) and len(contents.buffers()) > 3


def test_chunks_views_and_growth_at_once(tmp_path, monkeypatch):
    """A tiny chunk, a tiny view limit, buffers sized for nothing (a size of 0): every
    buffer grows, strings split over many data buffers, many chunks; the same table."""
    monkeypatch.setattr(jsonl_native, "CHUNK", 7)
    monkeypatch.setattr(jsonl_native, "VIEW_LIMIT", 48)  # longer than any string here
    arrays = captured_strings(monkeypatch)
    lines = short_lines() + [pc("w%d " % i + "\u00e9" * (i % 15), "v" * (i % 40), m="q" * (i % 30)) for i in range(600)]
    raw = b"\n".join(lines)
    grown = read_native(io_of(raw), "x", None, 0)
    for array in arrays:
        array.validate(full=True)
        assert array.type == pa.string_view()
    assert len(arrays[0].buffers()) > 50
    with monkeypatch.context() as m:
        m.setattr(jsonl_native, "CHUNK", 1 << 30)
        m.setattr(jsonl_native, "VIEW_LIMIT", (1 << 31) - 1)
        whole = read_native(raw, "x", None)
    assert grown.records.equals(whole.records) and grown.punted == whole.punted
    same_as_per_line(tmp_path, monkeypatch, raw)


TURN_FIELDS = [
    {"messages": [{"role": "user", "content": "q", "name": "bob"}, {"role": "assistant", "content": "a", "weight": 0}]},
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None,
                                                    "tool_calls": [{"id": "1", "type": "function"}]}]},
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 1}]},
    {"prompt": "p", "completion": "c", "system": None}, {"instruction": "i", "input": None, "output": "o"},
    {"instruction": "i", "output": "o", "extra": {"nested": [1, None]}}, {"question": "q", "answer": "a", "id": None},
]


def test_turn_fields_and_nulls_beside_native_records(tmp_path, monkeypatch):
    """Turns with name / weight / tool_calls and null fields (other tiers) among native
    records of the same file, cut by small chunks: one table, the per-line path's."""
    monkeypatch.setattr(jsonl_native, "CHUNK", 50)
    lines = []
    for i in range(300):
        lines.append(json.dumps(TURN_FIELDS[i % len(TURN_FIELDS)] if i % 2 else
                                {"messages": [{"role": "user", "content": "n%d" % i}, {"role": "assistant",
                                                                                        "content": "x" * (i % 17)}]}).encode())
    fast, native = same_as_per_line(tmp_path, monkeypatch, b"\n".join(lines))
    assert 0 < native < fast.records.height
    turns = fast.records["messages"].explode().struct.unnest()
    assert turns["name"].drop_nulls().len() and turns["weight"].drop_nulls().len() and turns["tool_calls"].drop_nulls().len()


# ---------------------------------------------------------------- the table after the read

def several_inputs(tmp_path: Path) -> list[Path]:
    """Two native files (one with bad lines), a JSON array file, a record-table Parquet."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.ndjson"
    a.write_bytes(b"\n".join(short_lines()))
    b.write_bytes(b"\n".join(pc("b%d " % i + "r" * (i % 29), "\u00e9" * (i % 14), k=i) if i % 11 else BAD_LINES[i % 8]
                            for i in range(2000)))
    c = tmp_path / "c.json"
    c.write_text(json.dumps([json.loads(pc("j%d" % i, "c")) for i in range(30)]))
    d = tmp_path / "d.parquet"
    read_inputs([b]).records.write_parquet(d)
    return [a, b, c, d, a]


def test_a_table_of_several_files_sliced_gathered_and_written(tmp_path, monkeypatch):
    """Native tables of several files concatenated with other tiers' (and a file given
    twice); sliced, reversed, gathered, filtered, sorted, exploded, grouped, written to
    Parquet and read back, exported to Arrow (fully validated), after the scans' frames are
    gone and their memory churned: the per-line path's values throughout."""
    monkeypatch.setattr(jsonl_native, "CHUNK", 333)
    paths = several_inputs(tmp_path)
    fast = read_inputs(paths)
    gc.collect()
    churn = [bytearray(os.urandom(64)) * 64 for _ in range(2000)]
    del churn
    monkeypatch.setattr(readers, "_FAST_JSONL", False)
    slow = read_inputs(paths)
    assert_same(fast, slow)
    f, s = fast.records, slow.records
    content = pl.col("messages").list.get(0).struct.field("content")
    ops = [lambda d: d[::-1], lambda d: d.slice(100, 333), lambda d: d[[7, 3, 3, 1500, 0, 20]],
           lambda d: d.filter(content.str.len_bytes().is_between(11, 14)), lambda d: d.sort("id"),
           lambda d: d.select(pl.col("messages").explode().struct.field("content")),
           lambda d: d.group_by(content.alias("c")).len().sort("c"), lambda d: pl.concat([d, d.head(5)]).rechunk(),
           lambda d: d.with_columns(content.str.slice(1, 13).alias("cut")).sort("cut"),
           lambda d: d.select("id", "meta").join(d.select("id", "source"), on="id").sort("source")]
    for op in ops:
        assert op(f).to_dicts() == op(s).to_dicts()
    assert f.hash_rows().to_list() == s.hash_rows().to_list()  # hashes read the views' inline bytes
    table = f.to_arrow()
    table.validate(full=True)
    f.write_parquet(tmp_path / "out.parquet")
    pq.write_table(table, tmp_path / "pa.parquet")
    for back in (pl.read_parquet(tmp_path / "out.parquet"), pl.read_parquet(tmp_path / "pa.parquet")):
        assert back.to_dicts() == s.to_dicts()


AFTER_FREE = textwrap.dedent("""
    import gc, json, os, sys
    import polars as pl
    from curate import readers, jsonl_native
    readers._NATIVE_MIN_BYTES = 0
    jsonl_native.CHUNK, jsonl_native.VIEW_LIMIT = 4096, 5000
    paths = sys.argv[1:]
    tables = [readers.read_inputs([p]).records for p in paths]
    assert readers.TIER_LINES["native"] > 1000
    gc.collect()
    churn = [os.urandom(n) for n in range(1, 40000, 7)] + [bytearray(1 << 22) for _ in range(40)]  # reuse freed memory
    del churn
    gc.collect()
    got = [t.to_dicts() for t in tables] + [pl.concat(tables, how="diagonal_relaxed")[::3].to_dicts()]
    readers._FAST_JSONL = False
    want = [readers.read_inputs([p]).records for p in paths]
    want = [t.to_dicts() for t in want] + [pl.concat(want, how="diagonal_relaxed")[::3].to_dicts()]
    print("same" if got == want else "DIFFERENT")
""")


def test_tables_outlive_the_scan_under_malloc_perturbation(tmp_path):
    """A fresh process with glibc's MALLOC_PERTURB_ (freed memory overwritten): the tables
    are read after the scan's frames are gone and their memory reused; no garbage, no crash."""
    paths = several_inputs(tmp_path)[:2]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_PERTURB_": "165"}
    done = subprocess.run([sys.executable, "-c", AFTER_FREE, *map(str, paths)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"signal {-done.returncode}" if done.returncode < 0 else done.stderr[-2000:]
    assert done.stdout.strip() == "same"


# ---------------------------------------------------------------- files changing while read

OLD = [pc("old%d " % i + "x" * 100, "c") if i % 10 else b'{"bad old %d' % i for i in range(400)]
NEW = [pc("new%d " % i + "y" * 37, "c") if i % 7 else pc("newfloat%d" % i, 1.5) for i in range(300)]


def changed_on_call(monkeypatch, n: int, change):
    """Run ``change`` just before the n-th scan call (a chunk of 4096 bytes a call here)."""
    monkeypatch.setattr(jsonl_native, "CHUNK", 4096)
    real, calls = kernel.scan, [0]

    def scan(*args):
        calls[0] += 1
        if calls[0] == n:
            change()
        return real(*args)

    monkeypatch.setattr(kernel, "scan", scan)
    return calls


def texts(lines) -> set[str]:
    return {json.loads(line)["prompt"] for line in lines if not line.startswith(b'{"bad')}


def read_or_one_line_error(path):
    """The read, or None where it said in one line that the file changed while read (the
    other answer the reader may give)."""
    try:
        return read_inputs([path])
    except readers.InputError as e:
        assert "\n" not in str(e) and path.name in str(e)
        return None


def test_appended_between_chunks_with_bad_lines(tmp_path, monkeypatch):
    """Lines (bad ones too) appended while the file is read: all of them read, in order."""
    path = tmp_path / "grow.jsonl"
    path.write_bytes(b"\n".join(OLD) + b"\n")

    def append():
        with open(path, "ab") as fh:
            fh.write(b"\n".join(NEW) + b'\n{"bad appended')

    calls = changed_on_call(monkeypatch, 3, append)
    got = read_inputs([path])
    assert calls[0] > 3
    monkeypatch.setattr(readers, "_FAST_JSONL", False)
    assert_same(got, read_inputs([path]))


@pytest.mark.parametrize("change", ["truncate_to_nothing", "truncate_mid_line", "delete"])
def test_shrunk_or_deleted_between_chunks(tmp_path, monkeypatch, change):
    """No crash: a reading of the lines that were there (the records a prefix of the old
    file's), or one clear line (an OSError the CLI prints as one line); no descriptor left."""
    path = tmp_path / "shrink.jsonl"
    path.write_bytes(b"\n".join(OLD) + b"\n")
    act = {"truncate_to_nothing": lambda: os.truncate(path, 0), "truncate_mid_line": lambda: os.truncate(path, 5000),
           "delete": lambda: os.unlink(path)}[change]
    changed_on_call(monkeypatch, 3, act)
    try:
        got = read_inputs([path])
    except (readers.InputError, OSError) as e:
        assert change == "delete" and "\n" not in str(e)
    else:
        prompts = [m[0]["content"] for m in got.records["messages"].to_list()]
        old = [json.loads(line)["prompt"] for line in OLD if not line.startswith(b'{"bad')]
        # truncated: a prefix; deleted: the open descriptor still reads the whole file (the
        # per-line path parses the bytes read, it does not open the path again)
        assert 0 < len(prompts) and prompts == old[:len(prompts)]
        assert len(prompts) == len(old) if change == "delete" else len(prompts) < len(old)
    fds = [os.path.realpath(f"/proc/self/fd/{f}") for f in os.listdir("/proc/self/fd")]
    assert str(path) not in fds and str(path) + " (deleted)" not in fds


def test_a_file_replaced_between_chunks_is_read_as_one_version(tmp_path, monkeypatch):
    """An atomic replace (write a new file, rename it over the old: how editors and most
    tools save) while the file is read. The open descriptor still reads the old file, and
    the native tier reads it whole; the result must be the old file's reading (or the new
    one's), not some of each (or one line saying the file changed while read). Found by
    this hunt: the old file's bad lines (punted by the native tier) were re-read by number
    from the new file; the per-line path now parses the bytes the fast tiers read."""
    path = tmp_path / "swap.jsonl"
    path.write_bytes(b"\n".join(OLD) + b"\n")
    monkeypatch.setattr(readers, "_FAST_JSONL", False)
    old = read_inputs([path])
    monkeypatch.setattr(readers, "_FAST_JSONL", True)

    def replace():
        (tmp_path / "swap.tmp").write_bytes(b"\n".join(NEW) + b"\n")
        os.replace(tmp_path / "swap.tmp", path)

    changed_on_call(monkeypatch, 3, replace)
    got = read_or_one_line_error(path)
    if got is not None:
        assert_same(got, old)


def test_bad_lines_seen_before_a_copytruncate_are_rejected_rows(tmp_path, monkeypatch):
    """logrotate's copytruncate (the file truncated in place, then written again) while it
    is read. Whatever the scan read before is kept as it read it: each bad line it saw is a
    rejected row with its own number and bytes (kept + rejected = the lines read), or one
    line says the file changed while read. Found by this hunt: the per-line path re-read
    those line numbers from the rewritten file (they vanished, or the new text's lines took
    their place); it now parses the bytes the scan read."""
    path = tmp_path / "rotate.jsonl"
    path.write_bytes(b"\n".join(OLD) + b"\n")

    def rotate():
        os.truncate(path, 0)
        with open(path, "ab") as fh:
            fh.write(b"\n".join(NEW[:20]) + b"\n")

    changed_on_call(monkeypatch, 3, rotate)
    got = read_or_one_line_error(path)
    if got is None:
        return
    seen = max(int(s.rsplit(":", 1)[1]) for s in got.records["source"])
    assert got.records["source"].to_list() == [f"{path}:{n}" for n in range(1, seen + 1) if n % 10 != 1]
    rows = [(int(r["source"].rsplit(":", 1)[1]), json.loads(r["meta"])["raw"]) for r in got.rejected.to_dicts()]
    if rows and rows[-1][0] > seen:  # the line the truncation cut: rejected as the bytes read of it
        n, raw = rows.pop()
        assert OLD[n - 1].decode().startswith(raw)
    assert rows == [(n, OLD[n - 1].decode()) for n in range(1, seen + 1) if n % 10 == 1]


class Generated(io.RawIOBase):
    """A JSON Lines file made as it is read (nothing on disk): line i a prompt of ``size``
    bytes that starts with its number."""

    def __init__(self, lines: int, size: int):
        self.lines, self.size, self.i, self.pending = lines, size, 0, b""

    def line(self, i: int) -> bytes:
        return b'{"prompt": "%08d' % i + b"x" * (self.size - 8) + b'", "completion": "c"}\n'

    def readable(self):
        return True

    def readinto(self, b):
        while len(self.pending) < len(b) and self.i < self.lines:
            self.pending += self.line(self.i)
            self.i += 1
        n = min(len(b), len(self.pending))
        b[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


@pytest.mark.skipif(not LONG, reason="long hunt: CURATE_HOSTILE_LONG=1 (~2.5 GB of memory)")
def test_contents_past_two_gib_split_into_data_buffers(monkeypatch):
    """The real VIEW_LIMIT: 2.1 GiB of prompts (1 MiB each) make a second data buffer; every
    string is whole and where it should be, after the scan's frame is gone."""
    size, lines = (1 << 20) - 1, 2100
    arrays = captured_strings(monkeypatch)
    got = read_native(Generated(lines, size), "x", None, lines * (size + 40)).records
    contents = arrays[0]
    assert contents.type == pa.string_view() and len(contents.buffers()) == 4  # validity, views, 2 data buffers
    del arrays, contents
    gc.collect()
    prompts = got["messages"].list.get(0).struct.field("content")
    assert (prompts.str.len_bytes() == size).all()
    assert prompts.str.slice(0, 8).to_list() == ["%08d" % i for i in range(lines)]
    assert (prompts.str.slice(8).str.strip_chars("x") == "").all()
    assert (got["messages"].list.get(1).struct.field("content") == "c").all()
    assert got["id"].n_unique() == lines


def test_a_read_error_between_chunks_names_the_file(tmp_path, monkeypatch):
    """The disk (or a network file system) fails under the third chunk: one line that says
    which of the inputs could not be read (the CLI prints an OSError's filename and
    strerror, an InputError's text)."""
    import errno

    monkeypatch.setattr(jsonl_native, "CHUNK", 4096)
    good, failing = tmp_path / "good.jsonl", tmp_path / "failing.jsonl"
    good.write_bytes(pc("p", "c"))
    failing.write_bytes(b"\n".join(OLD))
    real, calls = jsonl_native._fill, [0]

    def fill(fh, buf, fill_):
        calls[0] += 1
        if calls[0] == 4:  # good.jsonl takes one call; failing.jsonl's third chunk
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fh, buf, fill_)

    monkeypatch.setattr(jsonl_native, "_fill", fill)
    with pytest.raises((OSError, readers.InputError)) as caught:
        read_inputs([good, failing])
    said = f"{getattr(caught.value, 'filename', None) or ''}: {caught.value}"
    assert "Input/output error" in said
    assert "failing.jsonl" in said


# ---------------------------------------------------------------- odd files

def test_a_pipe_behind_a_jsonl_name_is_refused(tmp_path):
    r, w = os.pipe()
    try:
        link = tmp_path / "stdin.jsonl"
        link.symlink_to(f"/proc/self/fd/{r}")
        with pytest.raises(readers.InputError, match="not a regular file"):
            read_inputs([link])
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.skipif(not Path("/proc/version").is_file(), reason="Linux /proc")
def test_a_file_whose_stated_size_is_zero(tmp_path, monkeypatch):
    """/proc files say 0 bytes and hold text: the buffer, sized for 0, grows to it."""
    link = tmp_path / "version.jsonl"
    link.symlink_to("/proc/version")
    fast, slow, _ = read_both(link, monkeypatch)
    assert_same(fast, slow)
    assert fast.rejected.height == 1 and fast.rejected["rule"][0] == "read.parse_error"


def test_an_empty_and_a_blank_file_beside_a_good_one(tmp_path, monkeypatch):
    for name, raw in (("empty.jsonl", b""), ("blank.jsonl", b"\n\r\n \n"), ("good.jsonl", pc("p", "c"))):
        (tmp_path / name).write_bytes(raw)
    paths = [tmp_path / n for n in ("empty.jsonl", "good.jsonl", "blank.jsonl", "good.jsonl")]
    fast = read_inputs(paths)
    monkeypatch.setattr(readers, "_FAST_JSONL", False)
    assert_same(fast, read_inputs(paths))


# ---------------------------------------------------------------- memory and descriptors

def open_on(path: Path) -> int:
    return sum(os.path.realpath(f"/proc/self/fd/{f}") == str(path) for f in os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="Linux /proc")
def test_no_descriptor_left_when_a_read_raises(tmp_path, monkeypatch):
    """A read that raises in the scan (Ctrl-C between chunks), or a file of no known format (a one-line InputError): no descriptor left on the file."""
    monkeypatch.setattr(jsonl_native, "CHUNK", 4096)
    path = tmp_path / "raise.jsonl"
    path.write_bytes(b"\n".join(OLD))
    real = kernel.scan

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(kernel, "scan", interrupted)
    with pytest.raises(KeyboardInterrupt) as held:
        read_inputs([path])
    assert held.value is not None and open_on(path) == 0
    monkeypatch.setattr(kernel, "scan", real)
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_bytes(b"\n".join(json.dumps({"foo": "x" * i}).encode() for i in range(3000)))
    with pytest.raises(readers.InputError) as held:
        read_inputs([unknown])
    assert "no known format" in str(held.value) and open_on(unknown) == 0


def big_hostile_file(path: Path, n: int) -> list[int]:
    """n lines, ~5% of them bad (the other tiers): the bad lines' numbers."""
    bad = []
    with open(path, "wb") as fh:
        for i in range(1, n + 1):
            if i % 19 == 0:
                bad.append(i)
                fh.write(BAD_LINES[i % 6] + b"\n")
            else:
                fh.write(json.dumps({"messages": [{"role": "user", "content": "q%d " % i + "w" * (i % 900)},
                                                  {"role": "assistant", "content": "\u00e9" * (i % 13)}],
                                     "idx": i}, ensure_ascii=False).encode() + b"\n")
    return bad


@pytest.mark.skipif(not LONG, reason="long hunt: CURATE_HOSTILE_LONG=1")
def test_twenty_reads_of_a_hostile_200k_file(tmp_path):
    path = tmp_path / "big.jsonl"
    bad = big_hostile_file(path, 200_000)
    assert path.stat().st_size > 4 * REAL_CHUNK

    def rss_mb():
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20

    sizes = []
    for _ in range(20):
        r = read_inputs([path])
        assert r.records.height == 200_000 - len(bad) and read_lines(r) == bad
        del r
        gc.collect()
        sizes.append(rss_mb())
        assert open_on(path) == 0
    print("RSS MB", sizes)
    assert max(sizes[10:]) - min(sizes[:5]) < 100, sizes


LIMITED = textwrap.dedent("""
    import resource, runpy, sys
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # 6 GiB of address space
    sys.argv = ["curate", *sys.argv[1:]]
    runpy.run_module("curate.cli", run_name="__main__")
""")


@pytest.mark.skipif(not hasattr(os, "truncate") or sys.platform != "linux", reason="sparse files, RLIMIT_AS")
def test_a_file_bigger_than_the_memory_allowed_is_one_line(tmp_path):
    """A 12 GiB (sparse) file under a 6 GiB address-space limit: whatever the reader can or
    cannot do with it, the user gets one line and a non-zero exit, not a traceback."""
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as fh:
        fh.write(pc("p", "c") + b"\n")
        fh.truncate(12 << 30)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", LIMITED, "filter", str(path), "-o", str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode > 0, done.returncode
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr[-1500:]


# ---------------------------------------------------------------- the CLI end to end

def cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "curate.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=600)


def boundary_cli_file(path: Path) -> list[int]:
    """A file just over the real chunk (~2,800 records of ~6 KB, most of it in a field the
    stages do not read), bad lines throughout and on both sides of the chunk's end: their
    numbers."""
    lines, at, bad = [], 0, []
    i = 0
    while at < REAL_CHUNK + (1 << 20):
        i += 1
        near = abs(at - REAL_CHUNK) < 20_000
        if i % 97 == 0 or near and i % 2:
            bad.append(i)
            lines.append(BAD_LINES[i % 5])
        else:
            words = " ".join("w%d" % ((i * 7 + k) % 5000) for k in range(40))
            lines.append(json.dumps({"instruction": "task %d: " % i + words, "output": "answer \u00e9 " + words,
                                     "pad": "z" * 6000}, ensure_ascii=False).encode())
        at += len(lines[-1]) + 2
    path.write_bytes(b"\r\n".join(lines))
    return bad


def check_cli_output(out: Path, path: Path, lines: int, bad: list[int]):
    kept, rejected = pl.read_parquet(out / "kept.parquet"), pl.read_parquet(out / "rejected.parquet")
    assert kept.height + rejected.height == lines
    read_rows = rejected.filter(pl.col("rule").str.starts_with("read."))
    assert sorted(int(s.rsplit(":", 1)[1]) for s in read_rows["source"]) == bad
    assert all(s.startswith(f"{path}:") for s in pl.concat([kept["source"], rejected["source"]]))


@pytest.mark.parametrize("command", [["filter"], pytest.param(["dedup", "--method", "minhash"], marks=pytest.mark.skipif(
    not LONG, reason="long hunt: CURATE_HOSTILE_LONG=1"))], ids=["filter", "dedup"])
def test_cli_on_a_file_over_the_real_chunk(tmp_path, command):
    """kept + rejected = lines read; the bad lines (around the chunk's end too) are rejected
    rows naming file:line; exit 0. A file of no known format: exit 2, one line."""
    path = tmp_path / "in.jsonl"
    bad = boundary_cli_file(path)
    assert path.stat().st_size > REAL_CHUNK
    done = cli(*command, path, "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    lines = path.read_bytes().count(b"\n") + 1
    check_cli_output(tmp_path / "out", path, lines, bad)
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_bytes(b"\n".join(json.dumps({"foo": "x" * (1 << 20), "n": i}).encode() for i in range(20)))
    done = cli(*command, unknown, "-o", tmp_path / "out2")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "no known format" in done.stderr


KNOBS = textwrap.dedent("""
    import os, runpy, sys
    from curate import jsonl_native, readers
    readers._NATIVE_MIN_BYTES = 0
    readers._FAST_JSONL = os.environ["H5_PER_LINE"] != "1"
    jsonl_native.CHUNK, jsonl_native.VIEW_LIMIT = 1000, 100  # many chunks, many data buffers a column
    sys.argv = ["curate", *sys.argv[1:]]
    runpy.run_module("curate.cli", run_name="__main__")
""")


def mixed_cli_file(path: Path, n: int):
    """Chat, Alpaca and QA records (duplicates among them, short and long texts, non-ASCII,
    turns with name/weight), bad lines, blank lines, \\r\\n then \\n line ends."""
    import random

    rng = random.Random(5)
    words = ["alpha", "beta", "gamma", "\u00e9", "\u00df", "\u65e5\u672c", "\U0001F600", "x" * 13, "y" * 12, "the", "sure",
             "I'm sorry", "http://x.y", "def f():", "\\n"]

    def text(k):
        return " ".join(rng.choice(words) for _ in range(k))

    lines = []
    for i in range(n):
        k = i % 23
        if k == 0:
            rec = '{"bad %d' % i
        elif k == 1:
            rec = json.dumps({"prompt": text(3), "completion": 1.5})
        elif k == 2:
            rec = json.dumps({"messages": [{"role": "user", "content": text(5), "name": "n"},
                                           {"role": "assistant", "content": text(9), "weight": 1}]})
        elif k == 3:
            rec = ""
        elif k < 12:
            rec = json.dumps({"messages": [{"role": "system", "content": text(2)},
                                           {"role": "user", "content": text(rng.randrange(1, 40))},
                                           {"role": "assistant", "content": text(rng.randrange(1, 200))}], "id": i},
                             ensure_ascii=rng.random() < 0.3)
        elif k < 18:
            rec = json.dumps({"instruction": text(rng.randrange(1, 30)), "input": text(rng.randrange(0, 3)),
                              "output": text(rng.randrange(0, 150))}, ensure_ascii=False)
        elif lines and rng.random() < 0.5:
            rec = lines[rng.randrange(len(lines))]  # a duplicate
        else:
            rec = json.dumps({"question": text(4), "answer": text(rng.randrange(1, 60))}, ensure_ascii=False)
        lines.append(rec)
    half = len(lines) // 2
    path.write_text("\r\n".join(lines[:half]) + "\n" + "\n".join(lines[half:]))


ONLY_LONG = pytest.mark.skipif(not LONG, reason="long hunt: CURATE_HOSTILE_LONG=1")
FORMAT = ["format", "--tokenizer", "smollm2-135m-instruct", "--template", "chatml", "--max-tokens", "512",
          "--eval-fraction", "0.1"]


@pytest.mark.parametrize("command", [["filter"], pytest.param(["dedup", "--method", "minhash"], marks=ONLY_LONG),
                                     pytest.param(FORMAT, marks=ONLY_LONG)], ids=["filter", "dedup", "format"])
def test_cli_outputs_are_the_per_line_paths_byte_for_byte(tmp_path, command):
    """The stages read the native tables' strings in place (curate.textkernels reads the
    views and their data buffers): with many chunks and many data buffers, every output
    but stats.json (timings) is the per-line path's, byte for byte."""
    path = tmp_path / "in.jsonl"
    mixed_cli_file(path, 3000)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    outs = []
    for per_line in ("0", "1"):
        outs.append(tmp_path / f"out{per_line}")
        done = subprocess.run([sys.executable, "-c", KNOBS, "-q", *command, str(path), "-o", str(outs[-1])],
                              env={**env, "H5_PER_LINE": per_line}, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    names = sorted(p.name for p in outs[0].iterdir() if p.name != "stats.json")
    assert "kept.parquet" in names and names == sorted(p.name for p in outs[1].iterdir() if p.name != "stats.json")
    for name in names:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    assert pl.read_parquet(outs[0] / "rejected.parquet").filter(pl.col("rule") == "read.parse_error").height > 100

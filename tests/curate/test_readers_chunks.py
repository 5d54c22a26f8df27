"""The native JSON Lines tier's memory (issue #23, session 5): the file read a chunk at a
time into one reused buffer (curate.jsonl_native._chunks), the strings handed to polars as
Arrow string_view arrays over the scan's buffers (curate.jsonl_native_kernel._views), the
output buffers sized for the file and grown on demand. Every table is compared with the
per-line path's (readers._FAST_JSONL False)."""
import io
import json
import os
import random

import numpy as np
import pyarrow as pa
import pytest

from curate import jsonl_native, readers
from curate import jsonl_native_kernel as kernel
from curate.jsonl_native import read_native
from curate.readers import read_inputs
from tests.curate.test_readers_fast import EDGE_LINES, assert_same, both, hostile_lines


@pytest.fixture(autouse=True)
def native_for_small_files(monkeypatch):
    monkeypatch.setattr(readers, "_NATIVE_MIN_BYTES", 0)


def pc(p, c, **k) -> str:
    return json.dumps({"prompt": p, "completion": c, **k}, ensure_ascii=False)


def mixed_file(seed: int) -> bytes:
    """Hostile lines of every tier, long and short, blank lines, \\r\\n, a BOM mid-file,
    strings escaped around where a small chunk ends; no final newline."""
    rng = random.Random(seed)
    lines = hostile_lines(rng, 300) + EDGE_LINES + ["", " \t", "\ufeff" + pc("bom", "c")]
    lines += [pc("x" * rng.randrange(0, 300), "\\n" * rng.randrange(0, 20) + "\u00e9" * rng.randrange(0, 9))
              for _ in range(100)]
    rng.shuffle(lines)
    return "\r\n".join(lines[:150]).encode("utf-8", "surrogatepass") + b"\n" + \
        "\n".join(lines[150:]).encode("utf-8", "surrogatepass")


def split_lines(raw: bytes) -> list[tuple[int, bytes]]:
    """The non-blank lines as a file iterates them (each with its newline, where it has one):
    how the native tier hands its punted lines on."""
    return [(n, line) for n, line in enumerate(io.BytesIO(raw), 1) if line.strip()]


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 333, 4096])
def test_every_chunk_size_reads_as_the_per_line_path(tmp_path, monkeypatch, chunk):
    """Lines cut at every place by the chunk's end (and lines longer than the buffer, which
    grows) read as one buffer would: the same table as the per-line path, the same punted
    lines (their bytes copied out of the reused buffer before it is overwritten)."""
    monkeypatch.setattr(jsonl_native, "CHUNK", chunk)
    for seed in range(3):
        raw = mixed_file(seed)
        whole = read_native(raw, "x", None)
        monkeypatch.setattr(jsonl_native, "CHUNK", 1 << 30)
        one = read_native(raw, "x", None)
        monkeypatch.setattr(jsonl_native, "CHUNK", chunk)
        assert whole.punted == one.punted
        assert whole.records.equals(one.records)
        assert set(whole.punted) <= set(split_lines(raw))
        fast, slow = both(tmp_path, monkeypatch, [], raw=raw)
        assert_same(fast, slow)
        assert fast.records.height > 100


class Trickle(io.RawIOBase):
    """A file that gives at most ``most`` bytes a read (as a pipe or a network file may)."""

    def __init__(self, raw: bytes, most: int):
        self.raw, self.at, self.most = raw, 0, most

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.most, len(self.raw) - self.at)
        b[:n] = self.raw[self.at:self.at + n]
        self.at += n
        return n


@pytest.mark.parametrize("most", [1, 3, 1000])
@pytest.mark.parametrize("chunk", [5, 64, 1 << 20])
def test_chunks_are_whole_lines_and_the_whole_file(monkeypatch, most, chunk):
    """Each chunk but the last ends just after a newline and holds every line it starts;
    together they are the file, whatever the reads return at a time."""
    monkeypatch.setattr(jsonl_native, "CHUNK", chunk)
    for raw in (mixed_file(7), b"", b"\n", b"{}", b"a\nb\n", b"x" * 100 + b"\n\n" + b"y" * 70):
        got = []
        for buf, final in jsonl_native._chunks(Trickle(raw, most), len(raw)):
            got.append(buf.tobytes())
            assert final or got[-1].endswith(b"\n")
        assert b"".join(got) == raw
        assert all(b"\n" not in g[:-1] or g.endswith(b"\n") for g in got[:-1])
        # the same records as one read of the bytes
        monkeypatch.setattr(jsonl_native, "CHUNK", chunk)
        a, b = read_native(Trickle(raw, most), "x", None, len(raw)), read_native(raw, "x", None)
        assert a.records.equals(b.records) and a.punted == b.punted


def test_buffers_sized_for_nothing_grow_to_the_same_table(tmp_path):
    """A file bigger than the size given (it grew, or the size was unknown): every output
    buffer runs out and is replaced by a bigger copy, views and their data buffers too."""
    raw = mixed_file(3) + b"\n" + "\n".join(pc("p %d " % i + "y" * (i % 40), "c", n=i) for i in range(3000)).encode()
    path = tmp_path / "g.jsonl"
    path.write_bytes(raw)
    with open(path, "rb", buffering=0) as fh:
        grown = read_native(fh, "x", None, 0)
    exact = read_native(raw, "x", None)
    assert grown.records.equals(exact.records) and grown.punted == exact.punted
    assert grown.records.height > 3000


@pytest.mark.parametrize("change", ["truncate", "append"])
def test_a_file_that_changes_between_chunks(tmp_path, monkeypatch, change):
    """Another program truncates or appends to the file between two chunks: no crash, and
    every record read is one of the file's lines as they were or are."""
    monkeypatch.setattr(jsonl_native, "CHUNK", 4096)
    lines = [pc("p%d " % i + "x" * 100, "c") for i in range(400)]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n")
    real, calls = kernel.scan, [0]

    def scan(*args):
        calls[0] += 1
        if calls[0] == 3:
            if change == "truncate":
                os.truncate(path, 5000)
            else:
                with open(path, "a") as fh:
                    fh.write("\n".join(pc("late %d" % i, "c") for i in range(50)) + "\n")
        return real(*args)

    monkeypatch.setattr(kernel, "scan", scan)
    read = read_inputs([path])
    monkeypatch.setattr(kernel, "scan", real)
    assert calls[0] > 3
    texts = {json.loads(line)["prompt"] for line in lines} | {"late %d" % i for i in range(50)}
    got = [m[0]["content"] for m in read.records["messages"].to_list()]
    assert got and all(t in texts for t in got)
    if change == "append":
        assert read.records.height == 450
    else:
        assert read.records.height < 400


def captured(monkeypatch, name: str) -> list:
    """What jsonl_native's builder ``name`` returns while read_native runs, as built."""
    arrays, real = [], getattr(jsonl_native, name)

    def spy(*args):
        arrays.append(real(*args))
        return arrays[-1]

    monkeypatch.setattr(jsonl_native, name, spy)
    return arrays


def captured_strings(monkeypatch) -> list:
    """The Arrow arrays read_native builds its contents and metas from, as built."""
    return captured(monkeypatch, "_strings")


def view_bytes(array) -> np.ndarray:
    return np.frombuffer(array.buffers()[1], np.uint8)[16 * array.offset:16 * (array.offset + len(array))].reshape(-1, 16)


def test_strings_are_views_over_the_scan_buffers(tmp_path, monkeypatch):
    """Contents and metas reach polars as string_view arrays (taken without a copy) that
    Arrow's full validation accepts: lengths, inline strings (up to 12 bytes, zero-padded),
    prefixes, buffer indices and offsets in range, UTF-8."""
    arrays = captured_strings(monkeypatch)
    raw = mixed_file(11)
    fast, slow = both(tmp_path, monkeypatch, [], raw=raw)
    assert_same(fast, slow)
    assert len(arrays) == 2
    for array in arrays:
        assert array.type == pa.string_view()
        array.validate(full=True)
        views, strings = view_bytes(array), array.to_pylist()
        for view, s in zip(views, strings):
            b = s.encode()
            assert int.from_bytes(view[:4].tobytes(), "little") == len(b)
            if len(b) <= kernel.INLINE:
                assert view[4:].tobytes() == b + bytes(12 - len(b))
            else:
                assert view[4:8].tobytes() == b[:4]
    lengths = [len(s.encode()) for s in arrays[0].to_pylist()]
    assert min(lengths) <= kernel.INLINE < max(lengths)


@pytest.mark.parametrize("limit", [40, 100, 100000])
def test_data_buffers_split_at_the_limit(tmp_path, monkeypatch, limit):
    """No string of a view array ends more than VIEW_LIMIT bytes from its data buffer's
    start (Arrow's 32-bit offsets): a small limit makes many buffers, the same table."""
    monkeypatch.setattr(jsonl_native, "VIEW_LIMIT", limit)
    arrays = captured_strings(monkeypatch)
    lines = [pc("p%d " % i + "z" * (i % 30), "c" * (i % 17), m="q" * (i % 25)) for i in range(500)]
    fast, slow = both(tmp_path, monkeypatch, lines)
    assert_same(fast, slow)
    contents = arrays[0]
    assert contents.type == pa.string_view()
    contents.validate(full=True)
    data = contents.buffers()[2:]
    assert all(b.size <= limit for b in data)
    assert len(data) > 1 if limit < 1000 else len(data) == 1


def test_a_string_longer_than_the_limit_takes_large_string(tmp_path, monkeypatch):
    """A string a view cannot hold (longer than VIEW_LIMIT: in practice 2 GiB) makes its
    column a large_string array (polars copies it into views itself); the table is the same."""
    monkeypatch.setattr(jsonl_native, "VIEW_LIMIT", 20)
    arrays = captured_strings(monkeypatch)
    lines = [pc("short %d" % i, "c", m="m") for i in range(50)] + [pc("a long prompt of many bytes", "c")]
    fast, slow = both(tmp_path, monkeypatch, lines + lines[:5])
    assert_same(fast, slow)
    assert arrays[0].type == pa.large_string()  # the contents: one is too long
    assert arrays[1].type == pa.string_view()  # the metas: all short


@pytest.mark.parametrize("chunk", [61, 4099])
def test_fuzz_files_read_in_small_chunks(tmp_path, monkeypatch, chunk):
    """The native fuzz's files (tests/curate/test_readers_native_fuzz.py), read a few bytes
    at a time: every line boundary falls at some chunk's end. CURATE_FUZZ_SEEDS=N: N more
    seeds each (a long hunt)."""
    from tests.curate.test_readers_native_fuzz import check_seed

    monkeypatch.setattr(jsonl_native, "CHUNK", chunk)
    extra = int(os.environ.get("CURATE_FUZZ_SEEDS", "0"))
    native = sum(check_seed(tmp_path, monkeypatch, s, 300) for s in [chunk, chunk + 1, chunk + 2] + [7000 + chunk + k for k in range(extra)])
    assert native > 5

"""Hostile tests of the native JSON Lines tier's memory-mapped, chunked scan (issue #23,
curate.jsonl_native + curate.jsonl_native_kernel): files of odd shapes, escapes at every
offset of an 8-byte word, strings cut at the mapping's end, records around the 4 MB
canonical-JSON chunk, the mapping's lifetime, a file truncated while read, the CLI end to
end. Every table is compared with the per-line path's (readers._FAST_JSONL False).

A long hunt (20 reads of a 200k-record file, RSS and mappings watched; 10 MB lines) is off
by default: ``CURATE_HOSTILE_LONG=1 pytest tests/curate/test_readers_hostile4.py`` (under
``flock /tmp/cpu.lock``)."""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import polars as pl
import pytest

from curate import jsonl_native_kernel as kernel
from curate import readers
from curate.readers import read_inputs

LONG = os.environ.get("CURATE_HOSTILE_LONG") == "1"
NATIVE_MIN = readers._NATIVE_MIN_BYTES  # the real threshold (the fixture below sets it to 0)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def native_for_small_files(monkeypatch):
    monkeypatch.setattr(readers, "_NATIVE_MIN_BYTES", 0)


def read_both(path, monkeypatch, fmt=None):
    """(native-first read, per-line read, lines the native tier took)."""
    before = readers.TIER_LINES["native"]
    fast = read_inputs([path], fmt)
    native = readers.TIER_LINES["native"] - before
    monkeypatch.setattr(readers, "_FAST_JSONL", False)
    slow = read_inputs([path], fmt)
    monkeypatch.setattr(readers, "_FAST_JSONL", True)
    return fast, slow, native


def assert_same(fast, slow):
    assert fast.records.schema == slow.records.schema
    assert fast.records.to_dicts() == slow.records.to_dicts()
    assert fast.rejected.to_dicts() == slow.rejected.to_dicts()
    assert fast.notices == slow.notices


def same_as_per_line(tmp_path, monkeypatch, raw: bytes, fmt=None, name="h.jsonl") -> int:
    path = tmp_path / name
    path.write_bytes(raw)
    fast, slow, native = read_both(path, monkeypatch, fmt)
    assert_same(fast, slow)
    return native


def pc(p, c, **k) -> bytes:
    return json.dumps({"prompt": p, "completion": c, **k}, ensure_ascii=False).encode()


def chat(c, **k) -> bytes:
    turns = [{"role": "user", "content": c}, {"role": "assistant", "content": "a"}]
    return json.dumps({"messages": turns, **k}, ensure_ascii=False).encode()


GOOD = pc("p", "c")
# (name, bytes, whether the native tier must read at least one line itself)
EDGE_FILES = [
    ("empty", b"", False), ("one_byte", b"{", False), ("one_newline", b"\n", False),
    ("no_final_newline", GOOD + b"\n" + GOOD, True), ("crlf", GOOD + b"\r\n" + GOOD + b"\r\n", True),
    ("lone_cr_is_no_line_end", GOOD + b"\r" + GOOD + b"\r", False), ("cr_at_the_end", GOOD + b"\r", True),
    ("blank_lines_only", b"\n\n  \n\t\r\n\x0b\x0c\n", False),
    ("nul_bytes", GOOD + b"\n\x00\n" + GOOD + b"\x00\n" + b'{"prompt": "a\x00b", "completion": "c"}', True),
    ("bom_first", b"\xef\xbb\xbf" + GOOD + b"\n" + GOOD, True),
    ("bom_mid", GOOD + b"\n\xef\xbb\xbf" + GOOD, True), ("bom_then_blank", b"\xef\xbb\xbf\n" + GOOD, True),
    ("bom_only", b"\xef\xbb\xbf", False),
    ("u2028_raw", chat("a\u2028b\u2029c"), True),
    ("u2028_escaped", b'{"prompt": "a\\u2028b", "completion": "\\u2029"}', True),
    ("u0000", b'{"prompt": "a\\u0000b", "completion": "c", "m": "\\u0000"}', True),
    ("overlong", b'{"prompt": "a\xc0\xafb", "completion": "c"}\n' + GOOD, True),
    ("raw_surrogate", b'{"prompt": "a\xed\xa0\x80b", "completion": "c"}\n' + GOOD, True),
    ("lone_high_escape", b'{"prompt": "a\\ud800", "completion": "c"}\n' + GOOD, True),
    ("lone_high_at_the_end", b'{"prompt": "p", "completion": "c\\ud83d"}', False),
    ("cut_utf8_at_the_end", b'{"prompt": "p", "completion": "c\xe2\x82', False),
    ("cut_string_at_the_end", b'{"prompt": "p", "completion": "abcdefghijklmnop', False),
    ("cut_escape_at_the_end", b'{"prompt": "p", "completion": "abc\\', False),
    ("cut_u_escape_at_the_end", b'{"prompt": "p", "completion": "abc\\u00', False),
    ("non_ascii_keys", b'{"prompt": "p", "completion": "c", "\xc3\xa9": "x", "k\xe2\x80\xa8": 1}', True),
    ("del_byte", b'{"prompt": "p", "completion": "c", "a\x7fb": "\x7f"}', True),
    ("ints", b'{"prompt": "p", "completion": "c", "n": 999999999999999999, "m": -999999999999999999, "z": 0, "q": -1}',
     True),
    ("after_the_object", b'{"prompt": "p", "completion": "c", "n": 12}x', False),
    ("white_space_around", b" \t\r" + GOOD + b" \t\r \n\x0b" + GOOD + b"\x0c\n" + GOOD, True),
    ("meta_values", b'{"prompt": "p", "completion": "c", "t": true, "f": false, "n": null, '
                    b'"s": "a\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u0001\\u001F\\u00e9\\ud83d\\ude00"}', True),
    ("system_null", b'{"prompt": "p", "completion": "c", "system": null}', True),
    ("system_false", b'{"prompt": "p", "completion": "c", "system": false}', False),
    ("system_blank", b'{"prompt": "p", "completion": "c", "system": " \\n\\t"}', True),
    ("alpaca_input_blank", b'{"instruction": "i", "input": "  \\r\\n", "output": "o"}', True),
    ("alpaca_all_blank", b'{"instruction": " ", "input": "", "output": "\\t"}', False),
    ("strip_escapes", b'{"prompt": "\\n\\t  p \\t\\n", "completion": "\\\\n c \\\\t"}\n'
                      b'{"prompt": "p\\\\\\\\n", "completion": "c\\\\\\n"}\n'
                      b'{"prompt": "\\fp\\f", "completion": "\\u000bc\\u000b"}', True),
    ("nfc", chat("e\u0301") + b"\n" + chat("\u212b") + b"\n" + chat("\uac00\u11a8") + b"\n" + chat("ok"), True),
    ("cr_folding", b'{"prompt": "a\\r\\nb\\rc\\r", "completion": "\\r\\r\\n"}', True),
    ("roles", b'{"messages": [{"role": " USER\\u0020", "content": "q"}]}\n'
              b'{"messages": [{"role": "\\u0075ser", "content": "q"}]}\n'
              b'{"messages": [{"content": "q", "role": "User "}]}\n{"messages": [{"role": "\x1cuser\x1f", "content": "q"}]}',
     True),
]


@pytest.mark.parametrize("name,raw,native", EDGE_FILES, ids=[c[0] for c in EDGE_FILES])
def test_edge_files_read_as_the_per_line_path(tmp_path, monkeypatch, name, raw, native):
    took = same_as_per_line(tmp_path, monkeypatch, raw)
    assert (took > 0) == native  # the case reaches the tier it is meant for


@pytest.mark.parametrize("fmt", ["openai", "sharegpt", "alpaca", "prompt_completion", "qa"])
def test_edge_files_with_a_format_given(tmp_path, monkeypatch, fmt):
    raw = b"\n".join(c[1] for c in EDGE_FILES)
    same_as_per_line(tmp_path, monkeypatch, raw, fmt)


# the bytes the word tests (SWAR) must find: escapes, quotes, controls, UTF-8 leads and tails
SPECIALS = [b'\\"', b'\\\\', b'\\n', b'\\r', b'\\/', b'\\u00e9', b'\\u001F', b'\\ud83d\\ude00', b'\x01', b'\x7f',
            b'\xc3\xa9', b'\xf0\x9f\x98\x80', b'\xff', b'\x80', b'\xc3', b'\xe2\x80\xa8', b'e\xcc\x81', b'\t', b'\\t',
            b'\\b', b'"', b'\\']


@pytest.mark.parametrize("layout", ["flat", "chat"])
def test_every_special_byte_at_every_word_offset(tmp_path, monkeypatch, layout):
    """Each special at offsets 0..15 of a string whose start moves over 0..15 bytes of a word."""
    lines = []
    for pad in range(16):
        for q in range(16):
            for sp in SPECIALS:
                body = b"x" * q + sp + b"y" * ((pad * 7 + q) % 11)
                head = b'"messages": [{"role": "user", "content": "' + body + b'"}], ' if layout == "chat" else b""
                for other in (body, body[::-1]):  # reversed: a broken escape or UTF-8 sequence, mostly
                    lines.append(b'{"' + b"k" * (pad % 5 + 1) + b'": "' + b"z" * pad + b'", ' + head + b'"prompt": "'
                                 + body + b'", "completion": "' + other + b'", "m": "' + body + b'"}')
    assert same_as_per_line(tmp_path, monkeypatch, b"\n".join(lines)) > 3000


@pytest.mark.parametrize("size", [4096, 8192])
def test_strings_cut_at_the_end_of_a_page_sized_mapping(tmp_path, monkeypatch, size):
    """The last string runs to the mapping's last byte (a whole page: a read past it faults)."""
    head = b'{"prompt": "p", "completion": "'
    for i, tail in enumerate([b"abc", b"ab\\", b"a\\u00", b"\xc3", b"\xf0\x9f\x98", b'abc"}', b'a\\"', b"abcdefgh",
                              b"\\ud83d", b'"}\r']):
        raw = head + b"x" * (size - len(head) - len(tail)) + tail
        assert len(raw) == size
        same_as_per_line(tmp_path, monkeypatch, raw, name=f"cut{i}.jsonl")


def test_strings_cut_at_the_end_at_every_offset(tmp_path, monkeypatch):
    n = 0
    for q in range(10):
        for sp in SPECIALS[::3]:
            for tail in [b'"}', b'"', b""]:
                n += 1
                same_as_per_line(tmp_path, monkeypatch, b'{"prompt": "p", "completion": "' + b"a" * q + sp + tail,
                                 name=f"e{n}.jsonl")


CANON_OVERHEAD = len(b'[["user",""],["assistant",""]]')  # record_id's JSON of pc(p, c) is this + len(p + c)


def test_records_filling_canonical_chunks_exactly(tmp_path, monkeypatch):
    per = 1024
    lines = [pc("p%07d" % i + "x" * (per - CANON_OVERHEAD - 9), "c") for i in range(2 * kernel.CANON_CHUNK // per + 3)]
    assert same_as_per_line(tmp_path, monkeypatch, b"\n".join(lines)) == len(lines)


@pytest.mark.parametrize("d", [-1, 0, 1])
def test_a_record_ending_at_the_chunk_boundary(tmp_path, monkeypatch, d):
    lines = [pc("a" * (kernel.CANON_CHUNK - CANON_OVERHEAD - 1 + d), "c"), pc("b", "c"), pc("bad", 1.5), pc("q", "r")]
    assert same_as_per_line(tmp_path, monkeypatch, b"\n".join(lines)) == 3


def test_records_longer_than_the_canonical_buffer(tmp_path, monkeypatch):
    """Canonical JSON over 4 MB (the buffer grows): copied raw, decoded (\\r folded), meta."""
    big = 5 << 20 if LONG else (2 * kernel.CANON_CHUNK + 4096)
    raw = b"\n".join([pc("a" * big, "c"), pc("a\r" * (big // 2), "\u00e9" * 100), pc("b", "c"),
                      pc("p", "c", m="\x01" * (big // 2))])
    assert same_as_per_line(tmp_path, monkeypatch, raw) == 4


@pytest.mark.skipif(not LONG, reason="long hunt: CURATE_HOSTILE_LONG=1")
def test_ten_megabyte_lines(tmp_path, monkeypatch):
    turns = [{"role": "user", "content": "z" * (10 << 20)}, {"role": "assistant", "content": '"' * (1 << 20)}]
    raw = json.dumps({"messages": turns}).encode() + b"\n" + pc("x", "y") + b"\n" + pc("e\u0301" * (3 << 20), "y")
    assert same_as_per_line(tmp_path, monkeypatch, raw) == 2


def test_limits_of_keys_and_turns(tmp_path, monkeypatch):
    def turns(n):
        return json.dumps({"messages": [{"role": ["user", "assistant"][i % 2], "content": "t%d" % i}
                                        for i in range(n)]}).encode()
    raw = b"\n".join([turns(n) for n in (1, 511, 512, 513, 1000)]
                     + [pc("p", "c", **{"k%d" % i: i for i in range(n)}) for n in (61, 62, 63, 64, 100)])
    assert same_as_per_line(tmp_path, monkeypatch, raw) == 5


def test_a_folder_a_symlink_and_a_file_given_twice(tmp_path, monkeypatch):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b"\n".join([chat("q%d" % i, idx=i) for i in range(3000)] + [dict((c[0], c[1]) for c in EDGE_FILES)["meta_values"]]))
    (folder / "b.jsonl").symlink_to(folder / "a.jsonl")
    (folder / "c.jsonl").write_bytes(GOOD + b'\n{"bad')
    for paths in ([folder], [folder / "b.jsonl"], [folder / "a.jsonl", folder / "a.jsonl"]):
        fast = read_inputs(paths)
        monkeypatch.setattr(readers, "_FAST_JSONL", False)
        slow = read_inputs(paths)
        monkeypatch.setattr(readers, "_FAST_JSONL", True)
        assert_same(fast, slow)
        assert fast.records.height >= 3001


def _mappings(path: Path) -> tuple[int, int]:
    """(memory maps of path, open descriptors on path) in this process."""
    maps = sum(str(path) in line for line in Path("/proc/self/maps").read_text().splitlines())
    fds = sum(os.path.realpath(f"/proc/self/fd/{f}") == str(path) for f in os.listdir("/proc/self/fd"))
    return maps, fds


def _two_chunk_file(path: Path) -> Path:
    path.write_bytes(b"\n".join(pc("p%d " % i + "x" * 1000, "c") for i in range(2 * kernel.CANON_CHUNK // 1000 + 10)))
    return path


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="Linux /proc")
def test_no_mapping_or_descriptor_left_after_a_read(tmp_path):
    path = _two_chunk_file(tmp_path / "two.jsonl")
    before = readers.TIER_LINES["native"]
    read_inputs([path])
    assert readers.TIER_LINES["native"] > before
    assert _mappings(path) == (0, 0)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="Linux /proc")
def test_no_mapping_left_while_the_caller_holds_the_exception(tmp_path, monkeypatch):
    path = _two_chunk_file(tmp_path / "two.jsonl")
    real, calls = kernel.scan, [0]

    def scan(*args):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt  # Ctrl-C between two chunks
        return real(*args)

    monkeypatch.setattr(kernel, "scan", scan)
    with pytest.raises(KeyboardInterrupt) as caught:
        read_inputs([path])
    assert caught.value is not None
    assert _mappings(path) == (0, 0)


TRUNCATE_WHILE_READ = textwrap.dedent("""
    import json, os, sys
    from curate import readers, jsonl_native_kernel as k
    path = sys.argv[1]
    with open(path, "wb") as fh:
        fh.write(b"\\n".join(json.dumps({"prompt": "p%d " % i + "x" * 1000, "completion": "c"}).encode()
                             for i in range(2 * k.CANON_CHUNK // 1000 + 10)))
    readers._NATIVE_MIN_BYTES = 0
    real, calls = k.scan, [0]
    def scan(*args):
        calls[0] += 1
        if calls[0] == 2:
            os.truncate(path, 4096)  # another program rewrites the file between two chunks
        return real(*args)
    k.scan = scan
    try:
        r = readers.read_inputs([path])
        print("read", r.records.height, r.rejected.height)
    except readers.InputError as e:
        print("error", e)
""")


def test_a_file_truncated_while_read_is_no_crash(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", TRUNCATE_WHILE_READ, str(tmp_path / "t.jsonl")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"killed by signal {-done.returncode}" if done.returncode < 0 else done.stderr
    assert done.stdout.startswith(("read ", "error "))


def test_a_fifo_is_refused_as_an_input_error(tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(readers.InputError):
        read_inputs([fifo])


def test_reads_in_threads_at_once(tmp_path, monkeypatch):
    """The scan releases the GIL (nogil): four files read at once, each as the per-line path."""
    paths = []
    for t in range(4):
        paths.append(tmp_path / f"t{t}.jsonl")
        paths[-1].write_bytes(b"\n".join(chat("q%d" % i + "\u00e9" * t, t=t) if i % 9 else b'{"bad' for i in range(4000)))
    got = [None] * 4

    def read(i):
        got[i] = read_inputs([paths[i]])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    monkeypatch.setattr(readers, "_FAST_JSONL", False)
    for i in range(4):
        assert_same(got[i], read_inputs([paths[i]]))


THRESHOLD = textwrap.dedent("""
    import json, sys
    from curate import readers
    out = []
    for path in sys.argv[1:]:
        before = dict(readers.TIER_LINES)
        r = readers.read_inputs([path], labels=["x.jsonl"])
        out.append([r.records.to_dicts(), r.rejected.to_dicts(),
                    {k: readers.TIER_LINES[k] - before[k] for k in before}])
    print(json.dumps(out))
""")


def _hostile_lines(n: int) -> list[bytes]:
    lines = []
    for i in range(1, n + 1):
        if i % 97 == 0:
            lines.append(b'{"prompt": "broken %d' % i)
        elif i % 89 == 0:
            lines.append(b'{"prompt": "bad \xff utf8", "completion": "c"}')
        elif i % 83 == 0:
            lines.append(b'{"prompt": "lone \\ud800", "completion": "c"}')
        elif i % 79 == 0:
            lines.append(b"")
        else:
            lines.append(json.dumps({"prompt": "q%d " % i + "w" * (i % 700), "completion": "a%d \r\n" % (i % 50)
                                     + "\u00e9" * (i % 30), "id": i}, ensure_ascii=i % 2 == 0).encode())
    return lines


def test_just_below_and_at_the_native_threshold_give_one_table(tmp_path):
    """Fresh process, real threshold: 8 MiB - 1 (msgspec first) then 8 MiB (native): one table."""
    body = b"\r\n".join(_hostile_lines(25000))
    body = body[:body.rfind(b"\r\n", 0, NATIVE_MIN - 4096)]
    paths = []
    for name, size in (("below", NATIVE_MIN - 1), ("at", NATIVE_MIN)):
        paths.append(tmp_path / f"{name}.jsonl")
        paths[-1].write_bytes(body + b"\n" * (size - len(body)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", THRESHOLD, *map(str, paths)], env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    below, at = json.loads(done.stdout)
    assert below[2]["native"] == 0 and at[2]["native"] > 15000 and at[2]["msgspec"] == 0
    assert below[:2] == at[:2]
    assert len(at[1]) > 200


def test_cli_end_to_end_on_a_native_sized_file(tmp_path):
    """`curate dedup --method minhash` on a >8 MiB hostile file: kept + rejected = read, every bad
    line a rejected row naming file:line."""
    lines = _hostile_lines(25000)
    bad = [i for i, line in enumerate(lines, 1) if line.startswith(b'{"prompt": "b') or b"\\ud800" in line]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\r\n".join(lines))
    assert path.stat().st_size >= NATIVE_MIN
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "curate.cli", "dedup", "--method", "minhash", str(path), "-o", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    kept, rejected = pl.read_parquet(out / "kept.parquet"), pl.read_parquet(out / "rejected.parquet")
    nonblank = sum(1 for line in lines if line.strip())
    assert kept.height + rejected.height == nonblank
    read_rows = rejected.filter(pl.col("rule").str.starts_with("read."))
    assert sorted(int(s.rsplit(":", 1)[1]) for s in read_rows["source"]) == bad
    assert all(s.startswith(f"{path}:") for s in pl.concat([kept["source"], rejected["source"]]))


@pytest.mark.skipif(not LONG, reason="long hunt: CURATE_HOSTILE_LONG=1")
def test_twenty_reads_leak_no_memory_nor_mapping(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(chat("q%d " % i + "w" * (i % 900), idx=i) for i in range(200_000)))

    def rss_mb():
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20

    sizes = []
    for _ in range(20):
        r = read_inputs([path])
        assert r.records.height == 200_000
        del r
        gc.collect()
        sizes.append(rss_mb())
        assert _mappings(path) == (0, 0)
    assert max(sizes[10:]) - min(sizes[:5]) < 100, sizes

"""The native JSON Lines tier (curate.jsonl_native, numba) in front of the msgspec tier: the
three tiers together give exactly the per-line path's tables, lines really take the native
tier on the common layouts, and a broken rule of the native tier shows up as a difference."""
import io
import json
import random
import unicodedata

import numpy as np
import pytest

from curate import jsonl_native, readers
from curate.jsonl_native import NFC_LIMIT, nfc_table, read_native
from tests.curate.test_readers_fast import EDGE_LINES, assert_same, both, hostile_lines


@pytest.fixture(autouse=True)
def native_for_small_files(monkeypatch):
    """The native tier reads these small files too (it is skipped below 8 MiB otherwise)."""
    monkeypatch.setattr(readers, "_NATIVE_MIN_BYTES", 0)


def tiers(fn):
    """What ``fn()`` returns, and how many lines each tier read for it."""
    before = dict(readers.TIER_LINES)
    out = fn()
    return out, {k: readers.TIER_LINES[k] - before[k] for k in before}


@pytest.mark.parametrize("seed", range(6))
def test_three_tiers_equal_the_per_line_path_on_hostile_lines(tmp_path, monkeypatch, seed):
    lines = hostile_lines(random.Random(100 + seed), 1500)
    (fast, slow), used = tiers(lambda: both(tmp_path, monkeypatch, lines))
    assert_same(fast, slow)
    # every tier is exercised: the native one takes the plain lines, msgspec floats, lists
    # and non-ASCII blanks, the per-line path the rest
    assert used["native"] > 100 and used["msgspec"] > 100 and used["per_line"] > 300


@pytest.mark.parametrize("fmt", ["openai", "sharegpt", "alpaca", "prompt_completion", "qa"])
def test_three_tiers_with_a_format_given(tmp_path, monkeypatch, fmt):
    (fast, slow), used = tiers(lambda: both(tmp_path, monkeypatch, hostile_lines(random.Random(fmt + "n"), 600), fmt))
    assert_same(fast, slow)
    assert used["native"] > 0


def test_the_msgspec_tier_alone_still_equals_the_per_line_path(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_NATIVE_JSONL", False)
    (fast, slow), used = tiers(lambda: both(tmp_path, monkeypatch, hostile_lines(random.Random(7), 800)))
    assert_same(fast, slow)
    assert used["native"] == 0 and used["msgspec"] > 200


def common_records(n: int) -> list[dict]:
    """Well-formed records of every layout, with NFC non-ASCII text, emoji, quotes,
    backslashes, control characters, \\r\\n, outer blanks and meta of every simple type."""
    rng = random.Random(n)
    words = ["word", "café", "naïve", "über", "你好", "😀", "\"q\"", "C:\\path", "a/b", "\t", "\r\n", "\x01",
             "\u2028", "\x7f", "한국어", "ﬀ", "  "]
    out = []
    for i in range(n):
        def t():
            return " ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) + rng.choice([" ", "\n", ""]) + "x"
        meta = {k: v for k, v in [("id", f"r{i}"), ("n", rng.choice([0, -5, 123456789012345678])),
                                  ("ok", rng.choice([True, False, None])), ("lang", rng.choice(["en", "é", ""]))]
                if rng.random() < 0.5}
        kind = i % 5
        if kind == 0:
            turns = [{"role": r, "content": t()} for r in rng.choice([["user", "assistant"], ["system", "user", "assistant"],
                                                                       ["developer", "User", " assistant"]])]
            rec = {"messages": turns, **meta}
        elif kind == 1:
            rec = {**meta, "conversations": [{"value": t(), "from": "human"}, {"from": rng.choice(["gpt", "bard"]), "value": t()}]}
        elif kind == 2:
            rec = {"instruction": t(), "input": rng.choice(["", t(), None, " \t"]), "output": t(), **meta}
        elif kind == 3:
            rec = {"prompt": t(), "completion": t(), "system": rng.choice([None, "", "sys", "\n"]), **meta}
        else:
            rec = {"question": t(), "answer": t(), **meta}
        out.append(rec)
    return out


@pytest.mark.parametrize("style", [{}, {"ensure_ascii": False}, {"separators": (",", ":")}])
def test_common_layouts_take_the_native_tier(tmp_path, monkeypatch, style):
    lines = [json.dumps(r, **style) for r in common_records(500)]
    (fast, slow), used = tiers(lambda: both(tmp_path, monkeypatch, lines))
    assert_same(fast, slow)
    assert fast.records.height == 500 and used["native"] == 500, used


# lines the native tier must hand on (each would read differently if it took it)
PUNTED = [
    '{"prompt": "p", "completion": "c", "n": -0}', '{"prompt": "p", "completion": "c", "n": 1.0}',
    '{"prompt": "p", "completion": "c", "n": 1234567890123456789}', '{"prompt": "p", "completion": "c", "n": 1e3}',
    '{"prompt": "p", "completion": "c", "n": 01}', '{"prompt": "p", "completion": "c", "x": []}',
    '{"prompt": "p", "completion": "c", "x": {}}', '{"pr\\u006fmpt": "p", "completion": "c"}',
    '{"prompt": "p", "completion": "c", "prompt": "q"}', '{"prompt": "\\ud800", "completion": "c"}',
    '{"prompt": "\\udc00", "completion": "c"}', '{"prompt": "e\\u0301", "completion": "c"}',
    '{"prompt": "\\u1100\\u1161", "completion": "c"}', '{"prompt": "\\u212b", "completion": "c"}',
    '{"prompt": "\\ud840\\udc00", "completion": "c"}', '{"prompt": " ", "completion": "\\u0085"}',
    '{"prompt": "\\u3000", "completion": " "}', '{"prompt": "\\u001c", "completion": " "}',
    '{"instruction": "i", "input": "\\u00a0", "output": "o"}', '{"prompt": "p", "completion": "c", "system": "\\u2000"}',
    '{"messages": [{"role": "us\\u0065r", "content": "x"}]}', '{"messages": [{"role": "\\u00fcser", "content": "x"}]}',
    '{"messages": [{"role": "user", "content": "x", "name": "n"}]}', '{"messages": [{"role": "user"}]}',
    '{"messages": [{"role": "user", "content": "x", "role": "user"}]}', '{"messages": []}',
    '{"messages": [{"role": "tool", "content": "x"}]}', '{"messages": [{"role": "user", "content": 5}]}',
    '{"messages": [{"role": "user", "content": "x"}], "conversations": [{"from": "human", "value": "y"}]}',
    '{"prompt": "p", "completion": "c"} x', '{"prompt": "p", "completion": "c"}\x0c', '\ufeff{"prompt": "p", "completion": "c"}',
    '{"prompt": "p\tq", "completion": "c"}', '{"prompt": null, "completion": "c"}', '{"prompt": "p", "completion": 1}',
    '{"prompt": "p", "completion": "c", "system": 3}', '{"text": "t"}', '{"prompt": "p", "completion": "c",}',
    '{"prompt": "p", "completion": "c", "x": tru}', '{"prompt": "p", "completion": "c", "x": "\\x"}',
    '{"prompt": "", "completion": "  "}', '{"prompt": "\\r\\n", "completion": "\\t"}',
]
# lines it must take
TAKEN = [
    '{"prompt": "p", "completion": "c", "n": -12, "z": 0, "t": true, "f": false, "u": null, "s": "\\u00e9\\/\\u0001"}',
    '  {"prompt":"p","completion":"c"}  \r', '{"question": "\\ud83d\\ude00 \\"\\\\", "answer": " a\\r\\nb\\r "}',
    '{"instruction": "i\\r", "input": "\\nx", "output": "o"}', '{"instruction": "i", "input": " \\t", "output": "o"}',
    '{"instruction": "i", "input": null, "output": "o", "system": ""}', '{"prompt": "p", "completion": "c", "system": "s"}',
    '{"messages": [{"content": "x", "role": " User "}, {"role": "developer", "content": ""}]}',
    '{"conversations": [{"from": "GPT", "value": "\\u00e9\\u4f60!"}], "é": "ü", "k": ""}',
    '{"messages": [{"role": "user", "content": "q"}], "conversations": 3}',
    '{"prompt": "\\u0000\\u001f\\b\\f\\u007f\\u2028", "completion": "c"}',
]


def test_native_edge_lines(tmp_path, monkeypatch):
    taken = read_native("\n".join(PUNTED + TAKEN).encode(), "x", None)
    assert [n for n, _ in taken.punted] == list(range(1, len(PUNTED) + 1))
    assert taken.records.height == len(TAKEN)
    fast, slow = both(tmp_path, monkeypatch, PUNTED + TAKEN + EDGE_LINES)
    assert_same(fast, slow)


def test_nfc_table_is_the_quick_check_of_unicodedata():
    flags = nfc_table()
    free = np.flatnonzero(flags[:NFC_LIMIT] == 0)
    free = free[(free < 0xD800) | (free > 0xDFFF)]
    for cp in free[::7].tolist():  # unflagged: a starter, NFC on its own
        ch = chr(cp)
        assert unicodedata.combining(ch) == 0 and unicodedata.is_normalized("NFC", ch)
    # the second halves of canonical pairs (they compose with what comes before) are flagged
    assert all(flags[cp] for cp in (0x0301, 0x0308, 0x1161, 0x11A8, 0x3099, 0x0CD5, 0x0B3E, 0x102E))
    rng = random.Random(1)
    pool = [chr(c) for c in free.tolist()]
    starters = [chr(c) for c in range(0x20, 0x3400) if unicodedata.decomposition(chr(c))[:1] not in ("", "<")]
    for _ in range(3000):  # texts of unflagged characters are NFC, whatever comes before them
        s = "".join(rng.choice(pool) for _ in range(6))
        for first in rng.sample(starters, 3) + ["\u1100", "\uac00", "e", "A"]:
            assert unicodedata.is_normalized("NFC", first + s) == unicodedata.is_normalized("NFC", first)


def test_a_broken_native_rule_makes_the_tables_differ(tmp_path, monkeypatch):
    """The comparisons above have teeth: an NFC table that flags nothing, or a role table
    that reads 'tool' as a user, gives tables unlike the per-line path's."""
    lines = hostile_lines(random.Random(3), 1500)
    monkeypatch.setattr(jsonl_native, "nfc_table", lambda: np.zeros(NFC_LIMIT, np.uint8))
    fast, slow = both(tmp_path, monkeypatch, lines)
    assert fast.records.to_dicts() != slow.records.to_dicts()
    monkeypatch.undo()
    monkeypatch.setattr(readers, "_NATIVE_MIN_BYTES", 0)
    names, noff, _, _, rcode, rfmt, *rest = jsonl_native._tables()
    broken_names, broken_off = jsonl_native._packed(["tool"] * len(rcode))
    broken = (names, noff, broken_names, broken_off, np.ones_like(rcode), rfmt, *rest)
    monkeypatch.setattr(jsonl_native, "_tables", lambda: broken)
    fast, slow = both(tmp_path, monkeypatch, ['{"messages": [{"role": "tool", "content": "x"}]}'])
    assert fast.records.height == 1 and slow.records.height == 0


def test_reading_json_lines_does_not_import_pandas(tmp_path):
    """pa.array of Python objects imports pandas (~0.2 s of every run): the tiers build
    their tables from buffers instead."""
    import subprocess
    import sys

    path = tmp_path / "a.jsonl"
    path.write_text('{"prompt": "p", "completion": "c"}\n{"prompt": "p", "completion": "c", "n": 1.5}\n')
    code = ("import sys; from curate import readers; readers._NATIVE_MIN_BYTES = 0; "
            "r = readers.read_inputs([sys.argv[1]]); assert r.records.height == 2; "
            "assert readers.TIER_LINES['native'] == 1 and readers.TIER_LINES['msgspec'] == 1; "
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_small_file_skips_the_native_tier_until_it_is_loaded(tmp_path, monkeypatch):
    """Below _NATIVE_MIN_BYTES numba's start-up would cost more than the tier saves."""
    import sys

    import curate.jsonl_native_kernel  # noqa: F401

    path = tmp_path / "a.jsonl"
    path.write_text('{"prompt": "p", "completion": "c"}\n' * 3)
    monkeypatch.setattr(readers, "_NATIVE_MIN_BYTES", 1 << 20)
    _, used = tiers(lambda: readers.read_inputs([path]))
    assert used["native"] == 3  # the kernel is loaded in this process: it is used
    monkeypatch.delitem(sys.modules, "curate.jsonl_native_kernel")
    _, used = tiers(lambda: readers.read_inputs([path]))
    assert used["native"] == 0 and used["msgspec"] == 3


# JSON string bodies (as written in the file) at the edges of the canonical copy: the id's
# JSON is copied from the raw string where its escapes are json.dumps's own, so escaped and
# literal backslashes before n/t, outer blanks written as escapes, \/, \r, upper-case hex,
# \u escapes of control and non-control characters, NFC and NFD text all meet it here
COPY_EDGES = [r'abc', r' abc ', r'\n abc\t\n', r'abc\\n', r'abc\\\\n', r'abc\\\n', r'\\n', r'\\', r'\n', r' \t ',
              r'x\\t', r'a\/b', r'a\r\nb', r'a\rb\r', r'\u000a x', r'x \u001F', r'x \u001f', r'\u0000y', r'\u0041b',
              r'\b\f\"q\"', 'caf\u00e9', 'cafe\u0301', r'caf\u00e9', '\u212b x\\n', '你好\\n\\n', r'\\\"', r'x\u0008',
              r'x\u000c\n', r'\t\\t', 'z\\\\\\\\t', r'\\ ', r'q\"\n']


def test_canonical_copy_edges_in_every_layout(tmp_path, monkeypatch):
    lines = []
    for a in COPY_EDGES:
        for b in COPY_EDGES:
            lines += ['{"messages": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "%s"}]}' % (a, b),
                      '{"instruction": "%s", "input": "%s", "output": "%s", "system": "%s"}' % (a, b, a, b),
                      '{"prompt": "%s", "completion": "%s", "x": "%s"}' % (a, b, a),
                      '{"conversations": [{"from": "human", "value": "%s"}, {"from": "gpt", "value": "%s"}]}' % (a, b)]
    (fast, slow), used = tiers(lambda: both(tmp_path, monkeypatch, lines))
    assert_same(fast, slow)
    assert used["native"] > 3000  # most of them take the native tier (and so the copy)


def _special_bytes(word: bytes, escapes_only: bool = False) -> list[int]:
    return [i for i, c in enumerate(word) if c in (34, 92) or c < 32 or (c >= 0x80 and not escapes_only)]


def test_word_tests_find_the_first_special_byte():
    """The scan's 8-byte tests (curate.jsonl_native_kernel._special8/_escape8/_backslash8)
    flag the first byte that is not plain, exactly, and none in a plain word: every byte
    value at every position in a plain word, then random words with several."""
    from curate import jsonl_native_kernel as k

    def lowest(mask: int) -> int | None:
        return None if mask == 0 else ((mask & -mask).bit_length() - 1) // 8

    def check(word: bytes):
        w = np.uint64(int.from_bytes(word, "little"))
        first = _special_bytes(word)
        assert lowest(int(k._special8(w))) == (first[0] if first else None), word
        if all(c < 0x80 for c in word):  # _escape8: for valid UTF-8 text, no non-ASCII flagged
            first = _special_bytes(word, escapes_only=True)
            assert lowest(int(k._escape8(w))) == (first[0] if first else None), word
        slashes = [i for i, c in enumerate(word) if c == 92]
        assert lowest(int(k._backslash8(w))) == (slashes[0] if slashes else None), word

    for pos in range(8):
        for value in range(256):
            check(b"a" * pos + bytes([value]) + b"z" * (7 - pos))
    rng = random.Random(5)
    pool = [0, 9, 10, 31, 32, 33, 34, 35, 91, 92, 93, 97, 127, 128, 160, 162, 188, 220, 255]
    for _ in range(20000):
        check(bytes(rng.choice(pool) if rng.random() < 0.3 else rng.randrange(32, 127) for _ in range(8)))
    # _escape8 on UTF-8 text: non-ASCII bytes are not flagged, the first escape byte is
    for text in ("é\"", "你好\\", "😀a\nb", "ü" * 4, "aé\x01"):
        word = (text.encode() + b"zzzzzzzz")[:8]
        first = _special_bytes(word, escapes_only=True)
        w = np.uint64(int.from_bytes(word, "little"))
        assert lowest(int(k._escape8(w))) == (first[0] if first else None), text


def test_lines_are_found_as_bytes_split_finds_them(tmp_path, monkeypatch):
    """The scan finds line ends itself: blank lines of every white space, \\r\\n endings, a
    last line with and without its newline, a file of only blank lines, strings running
    into the newline or the end of the file (punted, sliced out whole, with the newline)."""
    ok = '{"prompt": "p %d", "completion": "c"}'
    bodies = [[ok % 1, "", " \t\x0b\x0c\r", ok % 2 + "\r", ok % 3 + " \t"], [ok % 4, '{"prompt": "open', ok % 5],
              [ok % 6, '{"prompt": "p", "completion": "never closed'], ["", "  ", "\r"], [ok % 7, "{", '"', "}"]]
    for lines in bodies:
        for end in ("", "\n", "\n\n"):
            raw = ("\n".join(lines) + end).encode()
            taken = read_native(raw, "x", None)
            # punted lines are handed on as a file iterates them: each with its newline, if any
            want = [(n, line) for n, line in enumerate(io.BytesIO(raw), 1) if line.strip() and b"never" in line
                    or line.strip() and not line.strip().endswith(b"}")]
            assert [p for p in taken.punted if p in want] == want
            fast, slow = both(tmp_path, monkeypatch, [], raw=raw)
            assert_same(fast, slow)


def test_many_chunks_and_a_line_longer_than_a_chunk(tmp_path, monkeypatch):
    """The scan stops every CANON_CHUNK bytes of canonical JSON (hashed between calls):
    records across many chunks, and one line longer than a chunk, keep their ids."""
    from curate import jsonl_native_kernel as k

    rng = random.Random(9)
    words = [f"w{i}" for i in range(50)] + ["é", "\"", "\\", "\n", "\u00e9t\u00e9", "😀"]
    lines = [json.dumps({"prompt": " ".join(rng.choices(words, k=rng.randrange(50, 600))), "completion": "c",
                         "n": i}, ensure_ascii=bool(i % 2)) for i in range(2500)]
    lines.insert(1200, json.dumps({"prompt": "long " * (k.CANON_CHUNK // 3), "completion": "end"}))
    assert sum(map(len, lines)) > 3 * k.CANON_CHUNK
    (fast, slow), used = tiers(lambda: both(tmp_path, monkeypatch, lines))
    assert_same(fast, slow)
    assert used["native"] == len(lines)


def test_each_tier_reads_its_lines_and_an_empty_file_reads(tmp_path, monkeypatch):
    lines = ['{"prompt": "p", "completion": "c"}', '{"prompt": "p", "completion": "c", "f": 1.5}', "[1]"]
    (fast, slow), used = tiers(lambda: both(tmp_path, monkeypatch, lines))
    assert_same(fast, slow)
    assert used == {"native": 1, "msgspec": 1, "per_line": 1}
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert readers.read_inputs([empty]).records.height == 0

"""Hostile differential fuzz of the native JSON Lines tier: seeded random lines of the five
layouts, serialised by hand (so every escape form, raw byte, white space between tokens,
duplicate key and number spelling can appear), read by the three tiers (native forced on
for small files) and by the per-line path: the tables and the rejected rows must be equal.

The committed test runs a few fixed seeds (a few seconds). A longer hunt, locally:
``CURATE_FUZZ_SEEDS=2000 pytest tests/curate/test_readers_native_fuzz.py -k seeds`` (under
``flock /tmp/cpu.lock``); a failing seed is reduced to its first differing line (read
alone) by :func:`check_seed`."""
from __future__ import annotations

import json
import os
import random

import numpy as np
import polars as pl
import pytest

from curate import jsonl_native, readers
from curate.jsonl_native import NFC_LIMIT, read_native
from tests.curate.test_readers_fast import assert_same, both


@pytest.fixture(autouse=True)
def native_for_small_files(monkeypatch):
    monkeypatch.setattr(readers, "_NATIVE_MIN_BYTES", 0)


# characters of every UTF-8 length and the Unicode classes the tiers treat specially
CHARS = (["a", "Z", " ", "/", '"', "\\", "\x00", "\x01", "\x08", "\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x1f", "\x7f",
          "\x80", "\x85", "\xa0", "é", "\u0301", "\u0308", "\u0327", "\u1100", "\u1161", "\u11a8", "\uac00", "\uac01",
          "\u2028", "\u2029", "\u3000", "\u200b", "\u180e", "\ufeff", "\ufffe", "\uffff", "\ufffd", "\u212b", "\u2126",
          "ﬁ", "\u0958", "\u0cd5", "\u0b3e", "\u102e", "\u3099", "你", "😀", "\U0001F3FB", "\U00020000", "\U0002F800",
          "\U0010FFFF", "\U0001D15E", "\u0344", "\u0f73", "\u1e0b\u0323"]
         + ["e\u0301", "A\u030a", "\u1100\u1161\u11a8", "n\u0303", "\u0627\u0653"])  # NFD / jamo sequences
SPACES = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0", "\u3000", "\u2028", " ", "\t", "\r", "\n",
          "\r\n", "\u200b", "\ufeff"]
ROLES = ["user", "assistant", "system", "developer", "human", "gpt", "bard", "tool", "User", "ASSISTANT", "Gpt",
         "HUMAN", "model", "us\u0065r", "", "\u212aelvin"]
NUMBERS = ["0", "-0", "7", "-12", "1.0", "-0.0", "1e5", "1E+2", "2e-3", "0.1e1", "1.50", "01", "+1", "NaN",
           "Infinity", "-Infinity", "1e400", "123456789012345678", "-123456789012345678", "999999999999999999",
           "1234567890123456789", "-1234567890123456789", "12345678901234567890", "9223372036854775807",
           "-9223372036854775808", "18446744073709551616", "1" + "0" * 40, "0.30000000000000004", "5e-324", "1.7976931348623157e308",
           "1e-7", "1.5e16", "1e16", "1e22", "-1e-400", "1E400", "123456789.123456789", "2.5E-0", "9" * 4300, "9" * 4301,
           "-" + "1" * 4300, "0e0", "-0e-0", "1.", ".5", "-", "0x10", "1_000"]
INVALID_UTF8 = [b"\xff", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80",
                b"\xf5\x80\x80\x80", b"\xe2\x82", b"\xf0\x9f\x98", b"\xc3", b"\x80", b"\xf8\x88\x80\x80\x80"]
BROKEN_ESCAPES = [b"\\ud800", b"\\udc00", b"\\ud83d\\u0041", b"\\ud83d", b"\\udfff\\ud800", b"\\x41", b"\\u12",
                  b"\\U0041", b"\\'", b"\\a", b"\\u00g0", b"\\"]
WS = [b"", b"", b"", b" ", b"  ", b"\t", b"\r", b" \t\r "]
HOSTILE_WS = [b"\x0b", b"\x0c", b"\xc2\xa0", b"\xe3\x80\x80", b"\x1c", b"\x00", b"\xef\xbb\xbf"]


class Writer:
    """JSON text of Python values, with every spelling chosen at random."""

    def __init__(self, rng: random.Random, hostile: float):
        self.rng, self.hostile = rng, hostile
        self.esc = rng.choice([0.0, 0.0, 0.03, 0.15, 0.6])  # how often a character is \u-escaped
        self.key_esc = rng.choice([0.0, 0.0, 0.0, 0.02])
        self.in_key = False

    def ws(self) -> bytes:
        if self.rng.random() < self.hostile * 0.005:
            return self.rng.choice(HOSTILE_WS)
        return self.rng.choice(WS)

    def char(self, ch: str) -> bytes:
        rng, cp = self.rng, ord(ch)
        r = rng.random()
        short = {'"': b'\\"', "\\": b"\\\\", "/": b"\\/", "\b": b"\\b", "\f": b"\\f", "\n": b"\\n", "\r": b"\\r",
                 "\t": b"\\t"}
        if ch in ('"', "\\") or (cp < 0x20 and r > self.hostile * 0.003):
            return short[ch] if ch in short and rng.random() < 0.7 else self.u(cp)
        if r < (self.key_esc if self.in_key else self.esc):
            return self.u(cp)
        if r < 0.3 and ch in short:
            return short[ch]
        return ch.encode("utf-8")

    def u(self, cp: int) -> bytes:
        fmt = "\\u%04x" if self.rng.random() < 0.5 else "\\u%04X"
        if cp >= 0x10000:
            v = cp - 0x10000
            return (fmt % (0xD800 + (v >> 10)) + fmt % (0xDC00 + (v & 0x3FF))).encode()
        return (fmt % cp).encode()

    def string(self, s: str) -> bytes:
        if isinstance(s, Key):
            return self.key(s)
        body = b"".join(self.char(c) for c in s)
        if self.rng.random() < self.hostile * 0.01:  # a broken escape or invalid UTF-8 inside
            at = self.rng.randint(0, len(body))
            while at > 0 and body[at - 1:at] == b"\\":
                at -= 1
            bad = self.rng.choice(INVALID_UTF8 + BROKEN_ESCAPES)
            body = body[:at] + bad + body[at:]
        return b'"' + body + b'"'

    def key(self, k: str) -> bytes:
        self.in_key = True
        try:
            return self.string(str(k))
        finally:
            self.in_key = False

    def value(self, v) -> bytes:
        if isinstance(v, Raw):
            return v.text
        if isinstance(v, str):
            return self.string(v)
        if v is None or isinstance(v, bool):
            return {None: b"null", True: b"true", False: b"false"}[v]
        if isinstance(v, (int, float)):
            return repr(v).encode()
        if isinstance(v, list):
            return b"[" + self.ws() + (b"," + self.ws()).join(self.value(x) + self.ws() for x in v) + b"]"
        return self.obj(list(v.items()) if isinstance(v, dict) else v)

    def obj(self, items: list[tuple[str, object]]) -> bytes:
        parts = [self.ws() + self.key(k) + self.ws() + b":" + self.ws() + self.value(x) + self.ws() for k, x in items]
        return b"{" + b",".join(parts) + (self.ws() if not parts else b"") + b"}"


class Key(str):
    """A key or a role: escaped rarely (the native tier punts an escaped one)."""


class Raw:
    """A value spelled exactly so (numbers the writer must not reformat)."""

    def __init__(self, text: str):
        self.text = text.encode()


PLAIN = [0.8]  # the share of plain texts (fuzz_file sets it per file)


def text(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.04:  # blank by one definition or another
        return "".join(rng.choice(SPACES) for _ in range(rng.randint(0, 3)))
    if r < PLAIN[0]:  # plain text: mostly taken by the native tier
        return " ".join(rng.choice(["hello", "the", "x", "é", "你好", "😀", "a/b", "C:\\d", '"q"', "\t", "\r\n"])
                        for _ in range(rng.randint(1, 6)))
    out = "".join(rng.choice(CHARS) for _ in range(rng.randint(1, 8)))
    if rng.random() < 0.2:
        out = rng.choice(SPACES) + out + rng.choice(SPACES)
    return out


def meta_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if r < 0.4:
        return text(rng)
    if r < 0.55:
        return Raw(str(rng.choice([0, 1, -1, 42, -7, 10 ** 17, -(10 ** 17) + 3])))
    if r < 0.7:
        return Raw(rng.choice(NUMBERS))
    if r < 0.85 or depth > 2:
        return rng.choice([None, True, False])
    if r < 0.92:
        return [meta_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["a", "b", "é", ""]): meta_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def role(rng: random.Random, chat: str) -> str:
    r = rng.choice(ROLES[:4] if chat == "messages" else ROLES[4:7]) if rng.random() < 0.75 else rng.choice(ROLES)
    if rng.random() < 0.15:
        r = "".join(c.upper() if rng.random() < 0.5 else c for c in r)
    if rng.random() < 0.1:
        r = rng.choice(SPACES + [" "] * 8) + r + rng.choice(SPACES + [" "] * 8)
    return Key(r)


def turn(rng: random.Random, chat: str) -> list[tuple[str, object]]:
    rk, tk = ("role", "content") if chat == "messages" else ("from", "value")
    items = [(rk, role(rng, chat)), (tk, text(rng) if rng.random() < 0.95 else meta_value(rng))]
    if rng.random() < 0.5:
        items.reverse()
    r = rng.random()
    if r < 0.04:
        items.append(rng.choice(items))  # a duplicate key in the turn
    elif r < 0.08:
        items.append((rk, role(rng, chat)))
    elif r < 0.14:
        items.append((rng.choice(["name", "weight", "tool_calls", "extra"]), meta_value(rng)))
    elif r < 0.16:
        items.pop()
    return items


LAYOUT_OF = {"openai": "messages", "sharegpt": "conversations", "alpaca": "alpaca", "prompt_completion": "pc", "qa": "qa"}


def record(rng: random.Random, fmt: str | None) -> list[tuple[str, object]]:
    layout = rng.choice(["messages", "messages", "conversations", "alpaca", "pc", "qa"])
    if fmt and rng.random() < 0.8:  # a format given: mostly lines of it
        layout = LAYOUT_OF[fmt]
    if layout in ("messages", "conversations"):
        n = rng.randint(1, 4) if rng.random() < 0.97 else rng.choice([0, 40])
        items = [(layout, [Turn(turn(rng, layout)) for _ in range(n)])]
    elif layout == "alpaca":
        items = [("instruction", text(rng)), ("output", text(rng))]
        if rng.random() < 0.7:
            items.append(("input", rng.choice(["", None, text(rng), rng.choice(SPACES)])))
    elif layout == "pc":
        items = [("prompt", text(rng)), ("completion", text(rng))]
    else:
        items = [("question", text(rng)), ("answer", text(rng))]
    if layout in ("alpaca", "pc", "qa") and rng.random() < 0.3:
        items.append(("system", rng.choice([None, "", text(rng), rng.choice(SPACES), Raw("3")])))
    for _ in range(rng.choice([0, 0, 0, 1, 2, 4])):
        items.append((rng.choice(["id", "n", "lang", "é", "a b", 'q"', "\u00e9\u0301", "x/y", "", "tags", "prompt",
                                  "messages", "system", "input"]), meta_value(rng)))
    r = rng.random()
    if r < 0.05:
        items.append(rng.choice(items))  # a duplicate top-level key
    elif r < 0.08 and len(items) > 1:
        items[rng.randrange(len(items))] = (items[0][0], meta_value(rng))
    if rng.random() < 0.3:
        rng.shuffle(items)
    return items


class Turn(list):
    """A turn's (key, value) items (kept in order, duplicates allowed)."""


class FuzzWriter(Writer):
    def value(self, v) -> bytes:
        if isinstance(v, Turn):
            return self.obj(list(v))
        return super().value(v)


MUTATE = b'"\\{}[]:,0123456789-+.eEuUdDabfnrtlsx /\t\r\x0b\x0c\x00\x1f\x7f\x80\xbf\xc2\xcc\xe2\xed\xef\xf0\xf4\xff'


def mutate(rng: random.Random, line: bytes) -> bytes:
    """One small byte-level change: the lines just beside the ones the native tier takes."""
    at = rng.randint(0, len(line))
    op = rng.random()
    if op < 0.35:
        return line[:at] + bytes([rng.choice(MUTATE)]) + line[at:]
    if op < 0.6:
        return line[:at] + line[at + rng.randint(1, 3):]
    if op < 0.85:
        return line[:at] + bytes([rng.choice(MUTATE)]) + line[at + 1:]
    b = rng.randint(at, min(len(line), at + 12))
    return line[:b] + line[at:b] + line[b:]  # a span written twice


def fuzz_line(rng: random.Random, hostile: float, fmt: str | None) -> bytes:
    r = rng.random()
    if r < 0.02:
        return rng.choice([b"", b"   ", b"\r", b"{}", b" {} ", b"[]", b"null", b"\x0c", b"{\"prompt\":\"p\"}",
                           b"\xef\xbb\xbf", b"\xef\xbb\xbf \r", b"\xef\xbb\xbf\xef\xbb\xbf{\"question\":\"q\",\"answer\":\"a\"}",
                           b"\xef\xbb\xbf{\"question\":\"q\",\"answer\":\"a\"}", b"\x00", b"\x1c", b"\xc2\x85"])
    if r < 0.02 + 0.25 * hostile:  # a plain line, mutated
        line = FuzzWriter(rng, 0.0).obj(record(rng, fmt))
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            line = mutate(rng, line)
        return line
    w = FuzzWriter(rng, hostile)
    out = w.ws() + w.obj(record(rng, fmt)) + w.ws()
    if rng.random() < 0.15 * hostile:
        m = rng.random()
        if m < 0.3:
            out = out[:rng.randint(0, len(out))]  # truncated
        elif m < 0.6:
            out += rng.choice([b"x", b",", b"}", b"{}", b" \x00", b"\xff", b"\x0b", b" //", b"\xc2\xa0", b"\xe2\x80\xa8"])
        elif m < 0.8:
            out = rng.choice([b"\xef\xbb\xbf", b"\x0c", b"\x0b", b"\xc2\x85"]) + out
        else:
            at = rng.randint(0, len(out))
            out = out[:at] + rng.choice(INVALID_UTF8) + out[at:]
    if rng.random() < 0.01:  # a very long line
        out = out[:-1] + b', "long": "' + (rng.choice(["ab", "é", "\\u00e9", "\\n"]) * 20000).encode() + b'"}'
    return out


def fuzz_file(seed: int, n: int) -> tuple[bytes, str | None]:
    rng = random.Random(seed)
    hostile = rng.choice([0.2, 1.0, 3.0])
    PLAIN[0] = rng.choice([0.5, 0.8, 0.95])
    fmt = rng.choice([None, None, None, "openai", "sharegpt", "alpaca", "prompt_completion", "qa"])
    lines = [fuzz_line(rng, hostile, fmt) for _ in range(n)]
    sep = rng.choice([b"\n", b"\n", b"\r\n"])
    return sep.join(lines) + rng.choice([b"", b"\n", b"\r\n"]), fmt


def outcome(path, fmt, fast: bool, monkeypatch):
    """What reading ``path`` gives with the three tiers (fast) or the per-line path: the
    tables, rejected rows and notices, or the error (a file of no known format)."""
    monkeypatch.setattr(readers, "_FAST_JSONL", fast)
    try:
        r = readers.read_inputs([path], fmt)
    except readers.InputError as e:
        return repr(e)
    finally:
        monkeypatch.setattr(readers, "_FAST_JSONL", True)
    return r.records.schema, r.records.to_dicts(), r.rejected.to_dicts(), r.notices


def differs(tmp_path, monkeypatch, raw: bytes, fmt) -> bool:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(raw)
    return outcome(path, fmt, True, monkeypatch) != outcome(path, fmt, False, monkeypatch)


def check_seed(tmp_path, monkeypatch, seed: int, n: int) -> int:
    """Reads a fuzz file both ways; on a difference, fails naming the first line that
    differs read alone (the reduced case)."""
    raw, fmt = fuzz_file(seed, n)
    before = readers.TIER_LINES["native"]
    if differs(tmp_path, monkeypatch, raw, fmt):
        line = next((ln for ln in raw.split(b"\n") if differs(tmp_path, monkeypatch, ln, fmt)), None)
        raise AssertionError(f"seed {seed} fmt {fmt}: first differing line {line!r}")
    return readers.TIER_LINES["native"] - before


@pytest.mark.parametrize("seed", range(8))
def test_fuzz_seeds(tmp_path, monkeypatch, seed):
    """Fixed seeds; CURATE_FUZZ_SEEDS=N runs N more per parametrised case (a long hunt),
    from seed CURATE_FUZZ_BASE (1000) on."""
    extra = int(os.environ.get("CURATE_FUZZ_SEEDS", "0"))
    base = int(os.environ.get("CURATE_FUZZ_BASE", "1000"))
    native = 0
    for s in [seed] + [base + seed + 8 * k for k in range(extra)]:
        native += check_seed(tmp_path, monkeypatch, s, 400)
    assert native > 10  # the native tier really takes lines of these files


# hand-made lines at the native tier's decisions (blankness, CR folding, NFC across escapes
# and Hangul, int limits, literals, format detection, key/turn limits); none read
# differently, they stay as regression cases
BOUNDARY = [
 b'{"prompt":"p","completion":"c","":1,"":2}',
 b'{"prompt":"p","completion":"c","k":"\\u007f\\u0080\\u009f\\u2028\\u2029"}',
 b'{"prompt":"p","completion":"c","k":"\xc2\x80\xe2\x80\xa8"}',
 b'{"prompt":"\\r","completion":"c"}', b'{"prompt":"\\r\\r\\n\\n x \\r","completion":"c"}',
 b'{"prompt":"x\\r\\n","completion":"\\n\\r"}', b'{"prompt":" \\t\\n\\r","completion":"\\u000b"}',
 b'{"prompt":"\\u000b","completion":"\\u000c"}', b'{"prompt":"\\u001c","completion":"a"}',
 b'{"prompt":"a\\u000bb","completion":"c"}', b'{"messages":[{"role":"user ","content":" x "}]}',
 b'{"messages":[{"role":"USER","content":"\\u0000"}]}', b'{"messages":[{"role":"user","content":""},{"role":"assistant","content":"\\u00a0"}]}',
 b'{"messages":[{"role":"user","content":"x"}],"messages2":[]}',
 b'{"instruction":"","input":"x","output":""}', b'{"instruction":" ","input":" ","output":" "}',
 b'{"instruction":"i","input":"\\u0009","output":"o"}', b'{"instruction":"i","input":"\\u001f","output":"o"}',
 b'{"instruction":"i","output":"o","system":"\\u001f"}', b'{"instruction":"i","output":"o","system":"x","system2":"y"}',
 b'{"question":"q","answer":"a"}\r\r', b'{"question":"q","answer":"a"}\r\n',
 b'{"question":"q","answer":"a","n":-999999999999999999}', b'{"question":"q","answer":"a","n":-1000000000000000000}',
 b'{"question":"q","answer":"a","n":0,"m":-1}', b'{"question":"q","answer":"a","n":1 }',
 b'{"question":"q","answer":"a","t":true,"f":false,"z":null}', b'{"question":"q","answer":"a","t":truefalse}',
 b'{ }', b'{"question":"q","answer":"a"}}', b'{"question":"q","answer":"a"', b'{"question":"q" "answer":"a"}',
 b'{"question":"q",,"answer":"a"}', b'{"question":"q","answer":"a",}', b'{question:"q","answer":"a"}',
 b'{"question":"\\ud83d\\ude00\\ud83d\\ude00","answer":"\\uD83D\\uDE00"}', b'{"question":"\\ud83d\\ud83d\\ude00","answer":"a"}',
 b'{"question":"\\uDBFF\\uDFFF","answer":"a"}', b'{"question":"\xf4\x8f\xbf\xbf","answer":"a"}',
 b'{"question":"\\u00C5","answer":"\\u0041\\u030a"}', b'{"question":"\\u00e9\\u0301","answer":"a"}',
 b'{"question":"\\uac00\\u11a8","answer":"a"}', b'{"question":"\\uac00\\u11a7","answer":"a"}', b'{"question":"\\u11a7","answer":"a"}',
 b'{"question":"\\u1100\\u1175","answer":"a"}', b'{"question":"\\u1100\\u1176","answer":"a"}', b'{"question":"\\uac00\\u11c2","answer":"a"}',
 b'{"question":"\\uac00\\u11c3","answer":"a"}', b'{"question":"\\u0915\\u093c","answer":"a"}',
 b'{"conversations":[{"from":"human","value":"x"},{"from":"gpt","value":"y"}],"messages":null}',
 b'{"messages":null,"conversations":[{"from":"human","value":"x"}]}',
 b'{"conversations":[{"from":"human","value":"x"}],"instruction":"i","output":"o"}',
 b'{"prompt":"p","completion":"c","question":"q"}', b'{"question":"q","answer":"a","prompt":null}',
 b'{"prompt":"p","completion":"c","system":""}', b'{"prompt":"","completion":"","system":"s"}',
 b'{"prompt":"","completion":"","system":" "}', b'{"prompt":"p","completion":"c","system":false}',
]
BOUNDARY += [json.dumps({"messages": [{"role": "user", "content": f"t{i}"} for i in range(n)]}).encode() for n in (511, 512, 513)]
BOUNDARY += [json.dumps({"prompt": "p", "completion": "c", **{f"k{i}": i for i in range(n - 2)}}).encode() for n in (63, 64, 65)]


@pytest.mark.parametrize("fmt", [None, "openai", "sharegpt", "alpaca", "prompt_completion", "qa"])
def test_boundary_lines(tmp_path, monkeypatch, fmt):
    fast, slow = both(tmp_path, monkeypatch, [], fmt, raw=b"\n".join(BOUNDARY))
    assert_same(fast, slow)
    assert read_native(b"\n".join(BOUNDARY), "x", fmt).records.height >= 3  # some are taken natively


def test_the_fuzz_has_teeth(tmp_path, monkeypatch):
    """With the NFC table flagging nothing, the fuzz finds a line that reads differently."""
    monkeypatch.setattr(jsonl_native, "nfc_table", lambda: np.zeros(NFC_LIMIT, np.uint8))
    with pytest.raises(AssertionError, match="first differing line"):
        for seed in range(8):
            check_seed(tmp_path, monkeypatch, seed, 400)


def test_the_generator_reaches_every_layout_and_the_native_tier():
    """The fuzz lines are not all punted or all rejected: every layout is taken natively."""
    taken = pl.concat([read_native(fuzz_file(s, 400)[0], "x", None).records for s in range(4)])
    first_turns = {m[0]["role"] for m in taken["messages"].to_list()}
    assert taken.height > 150 and first_turns >= {"user", "system"}


def codepoint_lines(cps) -> list[str]:
    """Lines that put each code point where the native tier decides something: text (NFC,
    composition with what precedes it), blankness (system, Alpaca input, a whole
    conversation), meta, role padding; raw and \\u-escaped."""
    out = []
    for cp in cps:
        c = chr(cp)
        for s in (c, f"\\u{cp:04x}" if cp < 0x10000 else json.dumps(c)[1:-1]):
            if cp < 0x20 and s == c or c in '"\\':
                s = json.dumps(c)[1:-1]
            out += [f'{{"prompt": "e{s}", "completion": "c", "m": "{s}"}}', f'{{"question": "{s}", "answer": "a"}}',
                    f'{{"question": "\\u1100{s}x", "answer": "{s}{s}", "system": " "}}',
                    f'{{"instruction": "i", "input": "{s}", "output": "o", "system": "{s}"}}',
                    f'{{"messages": [{{"role": "{s}user", "content": "{s}"}}, {{"role": "assistant", "content": "{s}a"}}]}}',
                    f'{{"conversations": [{{"from": "gpt{s}", "value": "x"}}]}}']
        if cp >= 0x20 and c not in '"\\':
            out.append(f'{{"prompt": "p", "completion": "c", "k{c}": "{c}"}}')
    return out


def test_every_code_point_reads_as_the_per_line_path(tmp_path, monkeypatch):
    """A stride through all of Unicode (CURATE_FUZZ_ALL_CODEPOINTS=1: every code point below
    U+20100, the NFC table's range and a little past it, then every 97th)."""
    every = bool(os.environ.get("CURATE_FUZZ_ALL_CODEPOINTS"))
    cps = list(range(0x20100)) + list(range(0x20100, 0x110000, 97)) if every else list(range(0, 0x110000, 499))
    cps = [cp for cp in cps if not 0xD800 <= cp <= 0xDFFF]
    cps += list(range(0x80)) + [0x85, 0xA0, 0x1100, 0x1161, 0x11A8, 0x2028, 0x3000, 0xFEFF, 0xFFFE, 0x1FFFF, 0x20000]
    for a in range(0, len(cps), 20000):
        lines = codepoint_lines(cps[a:a + 20000])
        fast, slow = both(tmp_path, monkeypatch, lines)
        assert_same(fast, slow)

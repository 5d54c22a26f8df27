"""The fast JSON Lines reader (curate.jsonl_fast, msgspec) gives exactly what the per-line
path gives: the same records (ids, messages, meta, sources, order) and the same rejected
rows, on a generated hostile corpus; and it does read most well-formed lines itself."""
import json
import random

import polars as pl
import pytest

from curate import readers
from curate.jsonl_fast import read_lines
from curate.readers import read_inputs

@pytest.fixture(autouse=True)
def native_for_small_files(monkeypatch):
    """The native tier reads these small files too (it is skipped below 8 MiB otherwise)."""
    monkeypatch.setattr(readers, "_NATIVE_MIN_BYTES", 0)


PIECES = ["a", "Hello", " ", "  ", "\t", "\n", "\r\n", "\r", "\x00", "\x08", "\x0c", "\x0b", "\x1c", "\x1f", "\x7f",
          '"', "\\", "/", "é", "e\u0301", "\u212b", "A\u030a", "한", "\u1100\u1161", "😀", "\u2028", "\u00a0",
          "\u3000", "\u0085", "\ufeff", "\ufffd", "ﬁ", "'", "{", "}", "[", "]", ":", ",", '\\"', '","', '": "',
          "\U0001F3FB", "\u0301", "\\u00e9", "\\n", "x" * 40]
ROLES = ["user", "assistant", "system", "User", "ASSISTANT", "developer", "tool", "bot", "Human", "gpt", "model"]


def text(rng: random.Random, blank_ok: bool = True) -> str:
    if blank_ok and rng.random() < 0.05:
        return rng.choice(["", " ", "\n", "\u3000", "\x1c", " \t\r\n", "\u00a0", "\u200b", "\x7f", "\u180e",
                           "\ufeff ", "\x0b\x0c"])
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 8)))


def value(rng: random.Random):
    """Anything JSON can hold, mostly text."""
    r = rng.random()
    if r < 0.6:
        return text(rng)
    return rng.choice([None, True, False, 0, -3, 7, 10 ** 20, 1.5, 1e5, -0.0, [], {}, ["x"], {"k": "v"}, [1, {"a": None}]])


def turn(rng: random.Random, role_key: str, text_key: str) -> dict:
    t = {role_key: rng.choice(ROLES if rng.random() < 0.3 else ROLES[:3]), text_key: text(rng)}
    if rng.random() < 0.1:
        t[text_key] = value(rng)
    if rng.random() < 0.5:
        t = dict(reversed(t.items()))
    for extra, choices in (("name", ["bob", "", None, 5, "é"]), ("weight", [0, 1, None, 1.0, True, "1"]),
                           ("tool_calls", [None, [], [{"id": "c1"}], "x"]), ("extra", [None, "x"])):
        if rng.random() < 0.12:
            t[extra] = rng.choice(choices)
    if rng.random() < 0.05:
        t = [t] if rng.random() < 0.5 else "turn"
    return t


def record(rng: random.Random):
    layout = rng.choice(["openai", "openai", "sharegpt", "alpaca", "pc", "qa", "other"])
    if layout in ("openai", "sharegpt"):
        key, rk, tk = ("messages", "role", "content") if layout == "openai" else ("conversations", "from", "value")
        rec = {key: [turn(rng, rk, tk) for _ in range(rng.randint(0 if rng.random() < 0.05 else 1, 4))]}
        if layout == "sharegpt":
            for t in rec[key]:
                if isinstance(t, dict) and t.get("from") in ROLES[:3]:
                    t["from"] = rng.choice(["human", "gpt", "system", "user", "bard"])
    elif layout == "alpaca":
        rec = {"instruction": text(rng), "input": rng.choice(["", text(rng), None, " ", "\u3000", "\u200b"]),
               "output": text(rng)}
    elif layout == "pc":
        rec = {"prompt": text(rng), "completion": text(rng)}
    elif layout == "qa":
        rec = {"question": text(rng), "answer": text(rng)}
    else:
        rec = {"text": text(rng)}
    if layout in ("alpaca", "pc", "qa") and rng.random() < 0.25:
        rec["system"] = rng.choice([text(rng), None, "", 3])
    if rng.random() < 0.1:
        rec[rng.choice(list(rec))] = value(rng)  # a field of the wrong type
    for _ in range(rng.choice([0, 0, 1, 2, 3])):  # extra fields: meta
        rec[rng.choice(["id", "source", "lang", "n", "text", "meta", "messages", "prompt", "a b", "x.y", "é", 'q"'])] = value(rng)
    if rng.random() < 0.3:
        rec = dict(rng.sample(list(rec.items()), len(rec)))
    return rec


def line(rng: random.Random, rec) -> str:
    style = rng.random()
    if style < 0.4:
        out = json.dumps(rec, ensure_ascii=False)
    elif style < 0.7:
        out = json.dumps(rec)  # \\u escapes, surrogate pairs for emoji
    elif style < 0.9:
        out = json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
    else:
        out = json.dumps(rec, indent=None, separators=(" , ", " : ")).replace("{", "{ \t", 1)
    r = rng.random()
    if r < 0.02:
        out = out[: rng.randint(0, len(out))]  # broken line
    elif r < 0.04:
        out = out.replace("\\\\", "\\", 1)  # a bad escape
    elif r < 0.05:
        out = out + " " + out  # two values
    elif r < 0.06:
        out = "\ufeff" + out
    elif r < 0.07:
        out = out + "\r"
    return out


def hostile_lines(rng: random.Random, n: int) -> list[str]:
    lines = [line(rng, record(rng)) for _ in range(n)]
    specials = [
        "", "   ", "\x0c", "[]", "null", "5", '"text"', "[" * 2000 + "]" * 2000,
        '{"messages": [{"role": "user", "content": "a\\ud800"}]}',  # a lone surrogate
        '{"messages": [{"role": "user", "content": "a\\udc00b"}]}',
        '{"messages": [{"role": "user", "content": "x", "content": "y"}]}',  # duplicate turn key
        '{"prompt": "a", "completion": "b", "prompt": "c"}',  # duplicate top-level key
        *(f'{{"prompt": "a", "completion": "b", "n": {n}}}' for n in
          ["1.0", "-0", "1E2", "1e400", "0.1e1", "-0.0", "1.50", "01", "123456789012345678901234567890", "+1", "NaN"]),
        '{"question": "\\u0041\\u00e9\\/", "answer": "\\ud83d\\ude00", "id": "\\u0000\\u001f\\b\\f"}',
        '{"m\\u0065ssages": [{"role": "user", "content": "esc key"}], "prompt": "p", "completion": "c"}',
        '{"messages": [{"role": "user", "content": "hi"}], "messages": [{"role": "user", "content": "ho"}]}',
        '{"messages": [{"role": " user ", "content": "padded role"}]}',
        '{"messages": [{"role": "user", "content": "deep"}], "x": ' + "[" * 1200 + "]" * 1200 + "}",
        '{"instruction": "i", "output": "o", "input": "\\u3000"}', '{"instruction": "i", "output": "o", "input": "\\u001c"}',
        '{"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]}]}',
        '{"messages": [{"role": "user", "content": [{"type": "text", "text": "part"}]}]}',
        "\xff".encode("latin-1").decode("latin-1"),
        # both chat keys: the one the format does not read is meta, written by json.dumps
        '{"messages": [{"role": "user", "content": "a"}], "conversations": [{"from": "human", "value": "b"}]}',
        '{"conversations":[{"from":"human","value":"b"}],"messages":[{"role":"user","content":"a"}],"n":1}',
    ]
    for s in specials:
        lines.insert(rng.randint(0, len(lines)), s)
    return lines


def both(tmp_path, monkeypatch, lines: list[str], fmt=None, raw: bytes | None = None):
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(raw if raw is not None else "\n".join(lines).encode("utf-8", "surrogatepass"))
    fast = read_inputs([path], fmt)
    monkeypatch.setattr(readers, "_FAST_JSONL", False)
    slow = read_inputs([path], fmt)
    monkeypatch.setattr(readers, "_FAST_JSONL", True)
    return fast, slow


def assert_same(fast, slow):
    assert fast.records.schema == slow.records.schema
    assert fast.records.to_dicts() == slow.records.to_dicts()
    assert fast.rejected.to_dicts() == slow.rejected.to_dicts()
    assert fast.notices == slow.notices


@pytest.mark.parametrize("seed", range(6))
def test_fast_reader_equals_per_line_reader_on_hostile_lines(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    lines = hostile_lines(rng, 1500)
    fast, slow = both(tmp_path, monkeypatch, lines)
    assert slow.records.height > 300 and slow.rejected.height > 100  # both kinds are exercised
    assert_same(fast, slow)
    # and the fast path took a good share of the lines itself
    taken = read_lines("\n".join(lines).encode("utf-8", "surrogatepass"), "x", None).records.height
    assert taken > slow.records.height * 0.4


@pytest.mark.parametrize("fmt", ["openai", "sharegpt", "alpaca", "prompt_completion", "qa"])
def test_fast_reader_equals_per_line_reader_with_a_format_given(tmp_path, monkeypatch, fmt):
    fast, slow = both(tmp_path, monkeypatch, hostile_lines(random.Random(fmt), 600), fmt)
    assert_same(fast, slow)


def test_invalid_utf8_lines_and_crlf_file(tmp_path, monkeypatch):
    good = json.dumps({"prompt": "p", "completion": "c"}).encode()
    raw = b"\r\n".join([good, b'{"prompt": "\xff", "completion": "c"}', good, b"\xef\xbb\xbf" + good, b"", good])
    fast, slow = both(tmp_path, monkeypatch, [], raw=raw)
    assert fast.rejected["rule"].to_list() == ["read.invalid_utf8"]
    assert fast.records.height == 4
    assert_same(fast, slow)


def test_invalid_utf8_at_the_very_end(tmp_path, monkeypatch):
    good = json.dumps({"prompt": "p", "completion": "c"}).encode()
    fast, slow = both(tmp_path, monkeypatch, [], raw=good + b"\n" + good[:-2] + b'\xc3"}')
    assert fast.rejected["rule"].to_list() == ["read.invalid_utf8"] and fast.records.height == 1
    assert_same(fast, slow)


def test_a_file_of_unknown_format_is_still_one_error(tmp_path, monkeypatch):
    path = tmp_path / "u.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n')
    with pytest.raises(readers.InputError, match="no known format"):
        read_inputs([path])


def test_msgspec_writes_every_character_as_json_dumps():
    """The ids' canonical JSON is written by msgspec: it must escape exactly as json.dumps."""
    import msgspec

    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    want = json.dumps(chars, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert msgspec.json.encode(chars) == want


EDGE_LINES = [
    '{"prompt": "a", "prompt": "b", "completion": "c"}',  # duplicate key: the last value wins
    '{"prompt": "a", "completion": "c", "completion": 5}',
    ('{"messages": [{"role": "user", "content": "q"}], "messages": [{"role": "user", "content": "q2"}, '
     '{"role": "assistant", "content": "a2"}]}'),
    '{"messages": [{"role": "user", "content": "q", "role": "assistant"}]}',
    '{"prompt": "p", "completion": "c", "n": 123456789012345678901234567890}',
    '{"prompt": "p", "completion": "c", "n": -123456789012345678901234567890}',
    '{"prompt": "p", "completion": "c", "n": -0}', '{"prompt": "p", "completion": "c", "n": -0.0}',
    '{"prompt": "p", "completion": "c", "n": 1e400}', '{"prompt": "p", "completion": "c", "n": NaN}',
    '{"prompt": "p", "completion": "c", "n": -Infinity}', '{"prompt": "p", "completion": "c", "n": 0.1}',
    '{"prompt": "\\ud800", "completion": "c"}', '{"prompt": "\\udc00\\ud800", "completion": "c"}',
    '{"prompt": "\\ud83d\\ude00", "completion": "c"}', '{"prompt": "p", "completion": "c", "m": "\\udfff"}',
    '{"prompt": "p", "completion": "c", "m": "\\ud83d"}', '{"prompt": "\\u0000", "completion": "\\u001f"}',
    '{"prompt": "p", "completion": "c"}\ufeff', '{"prompt": "p",\ufeff "completion": "c"}',
    '{"prompt": "p\tq", "completion": "c"}', '{"prompt": "p", "completion": "c"}\x0c',
    '\x0c{"prompt": "p", "completion": "c"}', '  {"prompt": "p", "completion": "c"}  \r',
    '{"prompt": "p", "completion": "c", "deep": ' + "[" * 500 + "]" * 500 + "}",
    '{"prompt": "p", "completion": "c", "deep": ' + "[" * 2000 + "]" * 2000 + "}",
    '{"prompt": "p", "completion": "c", "x": {"a": [1, 2.5, null]}}',
    # msgspec decodes a few levels deeper than json.loads: the lines around both limits
    *('{"prompt": "p", "completion": "c", "deep": ' + "[" * d + "]" * d + "}" for d in range(985, 1002)),
    "{}", "[]", '"text"', "5", "null", '[{"prompt": "p", "completion": "c"}]',
    '{"prompt": "p", "completion": "c"} {"prompt": "q", "completion": "c"}',
    '{"prompt": "p", "completion": "c",}', "{'prompt': 'p', 'completion': 'c'}",
    '{"Prompt": "p", "completion": "c"}', '{"prompt": "p", "completion": "\\u2028\\u0085 "}',
    '{"prompt": "e\\u0301\\r\\n", "completion": " \\u212b\\r"}',
    '{"messages": [{"role": " User ", "content": "q"}, {"role": "assistant", "content": "a"}]}',
    '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 1}]}',
    '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "name": ""}]}',
    '{"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "\\u3000"}]}',
    '{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "messages": 3}',
    '{"instruction": "i", "input": " ", "output": "o", "system": "\\n"}',
    '{"instruction": "i", "input": 3, "output": "o"}', '{"question": "q", "answer": null}',
]


def test_msgspec_edge_cases_read_as_per_line(tmp_path, monkeypatch):
    """What msgspec decodes differently from json.loads, or refuses, reads as the per-line path reads it."""
    fast, slow = both(tmp_path, monkeypatch, EDGE_LINES)
    assert slow.records.height > 10 and slow.rejected.height > 5
    assert_same(fast, slow)


def test_records_keep_line_order_across_the_two_paths(tmp_path, monkeypatch):
    lines = [json.dumps({"prompt": f"p{i}", "completion": "c"}) if i % 3 else
             json.dumps({"prompt": f"p{i}", "completion": "c", "n": 1.5}) for i in range(30)]
    fast, slow = both(tmp_path, monkeypatch, lines)
    assert [json.loads(m)["n"] if m != "{}" else None for m in fast.records["meta"]][:4] == [1.5, None, None, 1.5]
    assert_same(fast, slow)
    assert pl.Series(fast.records["source"].str.extract(r":(\d+)$").cast(int)).is_sorted()

"""The filter's fast paths say what the plain expressions they replace say, on hostile
text: every control character class (C0, DEL, C1, U+2028/9, NEL), non-ASCII, empty and
blank turns, null content, tool calls, unknown roles, several turns of a role."""
import random

import polars as pl
import pytest

from curate.filter import load_rules
from curate.filter.fields import FIELDS, build_frame, field_text, text_column, turn_text
from curate.filter.literals import FOLDS_TO_ASCII, ascii_folded_any, candidates, required
from curate.readers import MESSAGE_TYPE

CONTROL = [chr(c) for c in [*range(0, 32), 127, *range(0x80, 0xA0), 0x2028, 0x2029, 0x85, 0xA0, 0x3000]]
WORDS = ["json", "JSON", "jſon", "python", "```python", "```", "in python", "as JSON", "\u212aey", "ünï", "日本語",
         "I'm sorry, but I cannot", "I’M SORRY, BUT I CANNOT", "http://x.y", "www.a.b", "<|im_end|>", "<image>",
         "1. Instruction:", "\\b", "[[:alpha:]]", "as an AI language model", "ſorry", "print(1)", "{\"a\": 1}", ""]


def _text(rng: random.Random) -> str | None:
    if rng.random() < 0.05:
        return None
    parts = [rng.choice(WORDS + CONTROL + [" ", "\n", "\n\n", "\t", "\r\n", "  \n  "]) for _ in range(rng.randint(0, 8))]
    return "".join(parts)


def _records(n: int = 1500, seed: int = 7) -> pl.DataFrame:
    rng = random.Random(seed)
    shapes = [["user", "assistant"], ["system", "user", "assistant"], ["user", "assistant", "user", "assistant"],
              ["assistant"], [], ["user"], ["user", "user", "assistant"], ["tool", "assistant"], ["User", "assistant"],
              ["system", "system", "assistant", "assistant"]]
    rows = []
    for i in range(n):
        shape = rng.choice(shapes)
        turns = [{"role": r, "content": _text(rng), "weight": None, "name": None,
                  "tool_calls": '[{"name": "f"}]' if rng.random() < 0.03 else None} for r in shape]
        if turns and rng.random() < 0.02:
            turns[0] = None  # a null turn
        rows.append({"id": str(i), "messages": None if rng.random() < 0.01 else turns, "source": f"t:{i}", "meta": "{}"})
    return pl.DataFrame(rows, schema={"id": pl.String, "messages": MESSAGE_TYPE, "source": pl.String, "meta": pl.String})


@pytest.mark.parametrize("calls", [True, False])
def test_fields_equal_field_text(calls):
    records = _records()
    if not calls:  # no tool calls anywhere: the content-only path
        records = records.with_columns(pl.col("messages").list.eval(
            pl.element().struct.with_fields(pl.lit(None, pl.String).alias("tool_calls"))))
    frame = build_frame(records, set(FIELDS), set())
    old = records.select([field_text(f).alias(text_column(f)) for f in FIELDS])
    for f in FIELDS:
        assert frame[text_column(f)].to_list() == old[text_column(f)].to_list(), f


def test_empty_turns_as_before():
    """shape.roles' empty-turn check reads the content alone only where no turn calls a tool."""
    records = _records(seed=3)
    rules = load_rules()
    roles = next(r for r in rules.rules if r.name == "shape.roles")
    frame = build_frame(records, set(), set())
    got = roles.reasons(frame)
    # the old check: every turn's full text (content and calls), signature recomputed
    content = turn_text(pl.element()).str.strip_chars()
    letter = pl.element().struct.field("role").str.slice(0, 1)
    sig = pl.col("messages").list.eval(pl.when(content == "").then(letter.str.to_uppercase()).otherwise(letter)).list.join("")
    from curate.filter.base import evaluate

    sigs = records.select(sig.alias("sig"), sig.str.to_lowercase().alias("low"))
    want = evaluate(sigs, roles.expr())
    assert got.to_list() == want.to_list()


def test_ascii_folded_any_is_contains_any():
    rng = random.Random(1)
    alpha = "aAsSkK ſ\u212a’'ünÜ\\.*()[]{}|^$#&-~\t\nxyz"
    texts = pl.Series(["AS AN AI", "I’M SORRY", "ſ", "\u212a", None, ""]
                      + ["".join(rng.choice(alpha) for _ in range(rng.randint(0, 30))) for _ in range(5000)])
    phrases = ["as an ai", "i’m sorry", "a.b*c", "x(y)|z", "[q]{1}", "^$", "#&-~", "back\\slash", "tab\there", "ünï", "k", "s"]
    for sub in (phrases, phrases[:2], ["k"], ["s", "ſ"]):
        assert ascii_folded_any(texts, sub).to_list() == texts.str.contains_any(sub, ascii_case_insensitive=True).to_list()


def test_folds_to_ascii_is_what_rust_folds():
    """The characters outside ASCII that (?i) equates with an ASCII letter, asked of the engine."""
    cps = [c for c in range(0x80, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    chars = pl.Series([chr(c) for c in cps])
    found = {}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        for i in chars.str.contains(f"(?i)^{letter}$").arg_true().to_list():
            found[letter] = chr(cps[i])
    assert found == FOLDS_TO_ASCII


PATTERNS = [r"(?i)\bjson\b", r"(?i)(\b(in|as)\s+json\b|\bjson\s+(format|object)\b)", r"(?i)\bpython\b|```",
            r"(?i)\bkey\b", r"(?i)\bsorry\b", r"\bjson\b", r"(?i:\bab)c\b", r"(?i)\bünï\b", r"(?i)x\b[[:alpha:]]",
            r"(?i)\<json", r"\b\\b", r"(?i)\b(?-i:JSON)\b", r"(?i)\bimage|photo\b",
            *[c.matches for r in load_rules().rules for c in (r.when, r.unless) if c is not None],
            *[r.must_not_match for r in load_rules().rules if r.kind == "regex"]]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_candidates_hold_every_match(pattern):
    rng = random.Random(2)
    texts = pl.Series([_text(rng) for _ in range(4000)] + WORDS + [w.upper() for w in WORDS] + ["KEY", "\u212aey", "ſorry"])
    cand = candidates(texts, pattern)
    if cand is None:
        return
    matches = texts.str.contains(pattern).fill_null(False)
    assert not (matches & ~cand).any(), texts.filter(matches & ~cand).to_list()[:3]


def test_required_literals():
    assert required(r"(?i)(\b(in|as)\s+(a\s+)?json\b|\bjson\s+(format|object)\b)") == (["json"], True)
    assert required(r"foo|bar") == (["bar", "foo"], False)
    assert required(r"foo|b?") is None  # a branch with no literal
    assert required(r"(?i)Straße") == (["Stra"], True)  # ß has case variants: it ends the literal
    for rust_only in (r"[[:alpha:]]xyz", r"\<foo", r"\b{start}foo", r"(?x) f o o", r"a{ 2}bcd", r"[a&&b]xyz"):
        assert required(rust_only) is None, rust_only


def _reasons(records, rules):
    text_fields = set().union(*(r.text_fields() for r in rules.rules))
    turn_fields = set().union(*(r.turn_fields() for r in rules.rules))
    frame = build_frame(records, text_fields, turn_fields)
    return {r.name: r.checked_reasons(frame).to_list() for r in rules.rules}


def test_every_rule_says_what_the_plain_path_says(monkeypatch):
    """Every default rule's reason for every hostile record, with the fast paths and with
    each replaced by the plain expression it stands for."""
    import curate.filter.base as base
    import curate.filter.bytescan as bytescan
    import curate.filter.fields as fields
    import curate.filter.rules as rules_mod

    records = _records(n=3000, seed=5)
    rules = load_rules()
    fast = _reasons(records, rules)
    assert sum(x is not None for v in fast.values() for x in v) > 3000  # the rules fire on this data
    monkeypatch.setattr(base.When, "candidates", lambda self, frame: None)
    monkeypatch.setattr(rules_mod, "candidates", lambda *a, **k: None)
    monkeypatch.setattr(rules_mod.LengthRule, "may_fire", lambda self, frame: None)
    monkeypatch.setattr(bytescan, "blank_turns", lambda messages: None)
    monkeypatch.setattr(bytescan, "folded_any", lambda texts, phrases: None)
    monkeypatch.setattr(rules_mod, "ascii_folded_any", lambda t, p: t.str.contains_any(p, ascii_case_insensitive=True))
    monkeypatch.setattr(rules_mod, "turn_text_of", lambda m: turn_text(pl.element()))
    monkeypatch.setattr(fields, "turn_texts", lambda m: m.list.eval(turn_text(pl.element()).str.strip_chars(fields.TRIM)))
    monkeypatch.setattr(fields, "_field", lambda f, m, *_: pl.DataFrame({"messages": m}).select(field_text(f)).to_series())
    plain = _reasons(records, rules)
    for name in fast:
        assert fast[name] == plain[name], name


def test_control_mask_is_the_regex():
    """The byte scan finds what CONTROL_CHARS finds, at every position of short and long
    texts (inline and buffer views), around multi-byte characters."""
    from curate.filter.bytescan import control_mask
    from curate.filter.textchecks import CONTROL_CHARS

    rng = random.Random(4)
    texts = [_text(rng) for _ in range(3000)]
    for c in CONTROL:
        for n in (0, 5, 40):
            texts += ["é" * n + c, c + "x" * n, "日" * n + c + "日" * n]
    column = pl.Series(texts, dtype=pl.String)
    want = column.str.contains(CONTROL_CHARS).fill_null(False).to_list()
    assert control_mask(column).tolist() == want
    assert 0 < sum(want) < len(want)


LENGTH_BOUNDS = [{"max_chars": 0}, {"max_chars": 3}, {"min_chars": 1}, {"min_chars": 7}, {"max_words": 0},
                 {"max_words": 2}, {"max_lines": 0}, {"max_lines": 1}, {"max_lines": 3}, {"min_chars": 2, "max_chars": 5},
                 {"max_chars": 10, "max_words": 1, "max_lines": 2}, {"min_words": 1, "max_chars": 4}]


@pytest.mark.parametrize("bounds", LENGTH_BOUNDS, ids=[str(b) for b in LENGTH_BOUNDS])
def test_length_rows_from_byte_lengths(bounds):
    """A length rule evaluated only where the byte lengths allow it to fire says what it
    says on every row: 1-4 byte characters, blank and empty texts, words across lines."""
    from curate.filter.base import evaluate
    from curate.filter.rules import RuleSet

    rng = random.Random(9)
    texts = ["", " ", "\n", "a", "ab", "🙂", "🙂🙂", "🙂" * 6, "日本", "a b", "a\nb", "a\n\nb c", "\u3000x\u3000y", "a" * 40]
    texts += [_text(rng) or "" for _ in range(2000)]
    frame = pl.DataFrame({text_column("assistant"): texts})
    rule = RuleSet.model_validate({"rules": [{"name": "t", "kind": "length", "field": "assistant", **bounds}]}).rules[0]
    got = rule.reasons(frame).to_list()
    assert got == evaluate(frame, rule.expr()).to_list()
    assert 0 < sum(x is not None for x in got) < len(got)


def _blank_by_polars(messages: pl.Series) -> list:
    content = pl.element().struct.field("content").str.strip_chars()
    return messages.list.eval(content == "").list.any().fill_null(False).to_list()


def test_blank_turns_is_strip_chars():
    """shape.roles' empty-turn scan says what strip_chars() == "" says, for every code point
    (Unicode White_Space, not str.split()'s) and on hostile conversations: null, empty
    and null-turn lists, null content."""
    from curate.filter.bytescan import blank_turns

    records = _records(n=3000, seed=8).with_columns(pl.col("messages").list.eval(
        pl.element().struct.with_fields(pl.lit(None, pl.String).alias("tool_calls"))))
    got = blank_turns(records["messages"])
    assert got.to_list() == _blank_by_polars(records["messages"])
    assert 0 < got.sum() < len(got)
    cps = [c for c in range(0x3100) if not 0xD800 <= c <= 0xDFFF]
    turns = [[{"role": "user", "content": text, "weight": None, "name": None, "tool_calls": None}]
             for text in [chr(c) for c in cps] + [chr(c) + " x" for c in cps]]
    one = pl.Series(turns, dtype=MESSAGE_TYPE)
    assert blank_turns(one).to_list() == _blank_by_polars(one)
    assert blank_turns(records["messages"].slice(0, 0)).to_list() == []


def test_blank_turns_leaves_tool_calls_to_polars():
    from curate.filter.bytescan import blank_turns

    assert blank_turns(_records(n=500)["messages"]) is None  # 3% of turns call a tool


def test_folded_any_is_contains_any():
    """The compiled phrase search finds what contains_any(ascii_case_insensitive=True)
    finds: ASCII letters folded, every other byte (’, ü, the Kelvin sign) as it is, a
    phrase at a text's start and end, overlapping phrases, phrases filed together."""
    from curate.filter.bytescan import folded_any

    rng = random.Random(6)
    alpha = "aAsSkK ſ\u212a’'ünÜ\\.*()[]{}|^$#&-~\t\nxyz"
    phrases = ["as an ai", "i’m sorry", "a.b*c", "x(y)|z", "[q]{1}", "^$#&", "back\\slash", "tab\there", "ünïc",
               "sssss", "ssss", "kkkk a", "an a", "an ai"]
    texts = ["AS AN AI", "I’M SORRY", "ſſſſ", "\u212a\u212a\u212a\u212a", None, "", "SSSS", "xSsSsx", "as an a",
             "tab\tHERE", "ÜNÏC", "ünïc", "kkkk a", "KKKK A!"]
    texts += ["".join(rng.choice(alpha) for _ in range(rng.randint(0, 40))) for _ in range(6000)]
    texts += [rng.choice(phrases).upper() + "".join(rng.choice(alpha) for _ in range(5)) for _ in range(300)]
    column = pl.Series(texts, dtype=pl.String)
    for sub in (phrases, phrases[:2], ["ssss"], ["sssss", "ssss"], ["an a", "an ai", "as an ai"]):
        want = column.str.contains_any(sub, ascii_case_insensitive=True).fill_null(False).to_list()
        assert folded_any(column, sub).to_list() == want, sub
        assert 0 < sum(want) < len(want)
    assert folded_any(column, ["abc", "abcd"]) is None  # shorter than the window
    assert folded_any(column.slice(0, 0), phrases).to_list() == []


def test_default_refusal_phrases_take_the_compiled_search():
    """The shipped keyword list fits the compiled search (every phrase 4 bytes or more)."""
    from curate.filter.bytescan import folded_any

    rule = next(r for r in load_rules().rules if r.kind == "keywords")
    assert folded_any(pl.Series(["x"]), sorted({p.strip().lower() for p in rule.phrases})) is not None


@pytest.mark.parametrize("shapes, shared", [
    ([["user", "assistant"], [], ["assistant"], ["user"]], {"prompt": "user", "last_assistant": "assistant"}),
    ([["user", "assistant"], ["user", "assistant", "user", "assistant"]], {"prompt": "user"}),
    ([["user", "assistant"], ["system", "user", "assistant"]], {"last_assistant": "assistant"}),
])
def test_shared_fields_equal_field_text(shapes, shared):
    """Where every row's roles are exact and no system turn (or no second answer) tells two
    fields apart, one is built as the other: still what field_text says (null and blank
    contents, tool calls); a system turn or a second answer anywhere keeps them apart."""
    from curate.filter import fields

    rng = random.Random(11)
    rows = [{"id": str(i), "source": "t", "meta": "{}", "messages": [
        {"role": r, "content": _text(rng), "weight": None, "name": None,
         "tool_calls": '[{"name": "f"}]' if rng.random() < 0.03 else None} for r in rng.choice(shapes)]}
        for i in range(1500)]
    records = pl.DataFrame(rows, schema={"id": pl.String, "messages": MESSAGE_TYPE, "source": pl.String, "meta": pl.String})
    m = records["messages"]
    sig = fields.signature(m)
    exact = m.list.eval(pl.element().struct.field("role").is_in(fields.ROLES)).list.all()
    assert fields._shared(set(FIELDS), sig, exact) == shared
    frame = build_frame(records, set(FIELDS), set())
    old = records.select([field_text(f).alias(text_column(f)) for f in FIELDS])
    for f in FIELDS:
        assert frame[text_column(f)].to_list() == old[text_column(f)].to_list(), f


def test_trimmed_contents_is_the_strip():
    """The turns' trimmed contents as new views of their bytes: what polars' strip says, for
    null conversations, null turns and contents, empty lists, and texts whose trimmed length
    falls either side of a view's 12 inline bytes; None where a turn calls a tool."""
    from curate.filter.bytescan import trimmed_contents
    from curate.filter.fields import TRIM

    edges = [" " * a + "x" * n + "\t\r\n" * c for a in (0, 1, 5) for n in (0, 1, 11, 12, 13, 16, 40) for c in (0, 1, 7)]
    edges += ["\u00a0x\u00a0", "\x0c twelve bytes! \x0c", "\r\n日本語のテキスト\r\n", " ünïcödé wider than twelve "]
    records = _records(n=2000, seed=9).with_columns(pl.col("messages").list.eval(
        pl.element().struct.with_fields(pl.lit(None, pl.String).alias("tool_calls"))))
    extra = pl.DataFrame({"id": "e", "messages": [[{"role": "user", "content": t, "weight": None, "name": None,
                                                      "tool_calls": None} for t in edges]], "source": "e", "meta": "{}"},
                         schema=records.schema)
    m = pl.concat([records, extra])["messages"]
    got = trimmed_contents(m)
    assert got is not None
    want = m.list.eval(pl.element().struct.field("content").str.strip_chars(TRIM))
    assert got.dtype == want.dtype
    assert got.to_list() == want.to_list()
    assert trimmed_contents(_records(n=200, seed=9)["messages"]) is None  # tool calls: the plain path

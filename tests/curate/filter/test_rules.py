"""Each rule kind on tiny inline records: the rule code and the reason it gives."""
import polars as pl
import pytest

from curate.filter import run
from curate.filter.rules import RuleSet
from tests.helpers import convo, frame


def apply(rule: dict, *conversations):
    rules = RuleSet.model_validate({"rules": [{"name": "t.rule", **rule}]})
    result = run(frame(*conversations), rules)
    by_source = dict(zip(result.rejected["source"].to_list(), result.rejected["reason"].to_list()))
    return [by_source.get(f"test:{i + 1}") for i in range(len(conversations))], result


def test_length_words_and_chars():
    reasons, result = apply({"kind": "length", "field": "assistant", "min_words": 3, "max_chars": 30},
                            convo("q", "one two"), convo("q", "one two three"), convo("q", "x " * 40))
    assert reasons[0] == "assistant has 2 words, fewer than 3"
    assert reasons[1] is None
    assert reasons[2] == "assistant has 79 characters, more than 30"
    assert result.rejected["rule"].to_list() == ["t.rule", "t.rule"]


def test_length_lines_and_turns():
    long_chat = convo("a", "b", "c", "d", "e", "f")
    reasons, _ = apply({"kind": "length", "field": "conversation", "max_turns": 4, "min_lines": 2},
                       long_chat, convo("q\nmore", "a"), convo("q", "a"))
    assert reasons[0] == "conversation has 6 turns, more than 4"
    assert reasons[1] is None
    assert reasons[2] is None  # two turns joined by a blank line: 3 lines


def test_length_needs_a_bound():
    with pytest.raises(ValueError, match="at least one"):
        RuleSet.model_validate({"rules": [{"name": "x", "kind": "length"}]})


def test_regex_issue_example_must_match():
    rule = {"kind": "regex", "field": "last_assistant", "must_match": r"####\s*-?[\d,.]+\s*$"}
    reasons, _ = apply(rule, convo("q", "so 3 + 4 = 7\n#### 7"), convo("q", "the answer is seven"),
                       convo("q", "#### 1,200"))
    assert reasons == [None, r"last_assistant does not match /####\s*-?[\d,.]+\s*$/", None]


def test_regex_must_not_match_quotes_the_hit():
    reasons, _ = apply({"kind": "regex", "field": "user", "must_not_match": r"(?i)lorem\s+ipsum"},
                       convo("Some LOREM   ipsum text", "a"), convo("fine", "a"))
    assert reasons[0] == "user matches /(?i)lorem\\s+ipsum/: 'LOREM ipsum'"
    assert reasons[1] is None


def test_regex_invalid_pattern_is_a_config_error():
    with pytest.raises(ValueError, match="invalid regex"):
        RuleSet.model_validate({"rules": [{"name": "x", "kind": "regex", "must_match": "(?<=a)b"}]})


@pytest.mark.parametrize("pattern", ["(a", "a)", "(?<=a)b", r"(a)\1", "[z-a]", "a{5,2}", r"\p{Foo}", r"\w{10000}",
                                     "(?P<n>a)(?P<n>b)", "\\", r"\d{1000}{1000}", r"(?-u)\xFF",
                                     "ok", "", "a**", "[[:alpha:]]", "(?x) a # c", r"\xFF", r"(?i)\bjson\b"])
def test_check_regex_says_what_the_eager_compile_says(pattern):
    """check_regex compiles in a lazy query (so the rule's own query reuses it): it accepts
    and refuses what an eager compile does, with the eager form's message."""
    from curate.filter.base import check_regex

    try:
        pl.select(pl.lit("").str.contains(pattern))
        want = pattern
    except Exception as e:
        want = "invalid regex " + repr(pattern) + ": " + [ln for ln in str(e).splitlines() if ln.strip()][-1].strip()
    try:
        got = check_regex(pattern)
    except ValueError as e:
        got = str(e)
    assert got == want


def test_keywords_case_insensitive_and_word_bounded():
    rule = {"kind": "keywords", "field": "assistant", "phrases": ["as an AI", "<No Output>", "cat"]}
    reasons, _ = apply(rule, convo("q", "As an ai, I think so."), convo("q", "concatenate the lists"),
                       convo("q", "result: <no output>"), convo("q", "my CAT sleeps"), convo("q", "a chatbot"))
    assert reasons[0] == "assistant contains 'As an ai'"
    assert reasons[1] is None  # 'cat' inside 'concatenate' is not a word match
    assert reasons[2] == "assistant contains '<no output>'"
    assert reasons[3] == "assistant contains 'CAT'"
    assert reasons[4] is None


def test_keywords_typographic_apostrophe_and_unicode():
    rule = {"kind": "keywords", "field": "assistant", "phrases": ["I'm sorry, but I cannot", "Straße"]}
    reasons, _ = apply(rule, convo("q", "I\u2019m sorry, but I cannot help."), convo("q", "die STRASSE"),
                       convo("q", "in der Straße"))
    assert reasons[0] is not None
    assert reasons[1] is None
    assert reasons[2] == "assistant contains 'Straße'"
    # caseless non-ASCII characters (the apostrophe) keep the ASCII-folding search exact
    rule = {"kind": "keywords", "field": "assistant", "phrases": ["I'm sorry, but I cannot"]}
    reasons, _ = apply(rule, convo("q", "I\u2019M SORRY, BUT I CANNOT do that."), convo("q", "I\u2018m sorry, but I cannot"))
    assert reasons == ["assistant contains 'I\u2019M SORRY, BUT I CANNOT'", None]


def test_keywords_thousands_of_phrases():
    phrases = [f"blocked phrase {i}" for i in range(5000)]
    reasons, _ = apply({"kind": "keywords", "field": "user", "phrases": phrases},
                       convo("this has Blocked Phrase 4321 inside", "a"), convo("blocked phrase 43210x", "a"),
                       convo("nothing here", "a"))
    assert reasons[0] == "user contains 'Blocked Phrase 4321'"
    assert reasons[1] is None
    assert reasons[2] is None


def test_keywords_from_file(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "bad.txt").write_text("# comment\nforbidden word\n\n")
    (tmp_path / "r.yaml").write_text("rules:\n  - {name: kw, kind: keywords, field: user, file: bad.txt}\n")
    from curate.filter import load_rules

    rules = load_rules(tmp_path / "r.yaml")
    assert rules.rules[0].phrases[0] == "forbidden word"
    result = run(frame(convo("a forbidden word", "x"), convo("fine", "x")), rules)
    assert result.rejected["rule"].to_list() == ["kw"]


def test_roles_shape():
    rule = {"kind": "roles"}
    reasons, _ = apply(rule,
                       convo(("system", "s"), ("user", "u"), ("assistant", "a")),
                       convo(("assistant", "a"), ("user", "u"), ("assistant", "a")),
                       convo(("user", "u"), ("user", "u2"), ("assistant", "a")),
                       convo(("user", "u"), ("assistant", "a"), ("user", "u")),
                       convo(("user", "u"), ("assistant", "  ")),
                       convo(("user", "u"), ("system", "s"), ("assistant", "a")))
    assert reasons[0] is None
    assert reasons[1] == "conversation starts with assistant, not system or user"
    assert reasons[2] == "two user turns in a row"
    assert reasons[3] == "conversation ends with user, not assistant"
    assert reasons[4] == "turn 2 (assistant) is empty"
    assert reasons[5] == "system turn after the first turn"


def test_format_control_chars_even_at_the_edges():
    reasons, _ = apply({"kind": "format", "check": "control_chars"},
                       convo("q", "bell\x07"), convo("q", "\x0cform feed"), convo("q", "tab\tand\nnewline"))
    assert reasons[0] == "conversation contains control character 0x07"
    assert reasons[1] == "conversation contains control character 0x0c"
    assert reasons[2] is None


def test_format_markdown_fences():
    reasons, _ = apply({"kind": "format", "check": "markdown_fences", "field": "assistant"},
                       convo("q", "```python\nx = 1\n```"), convo("q", "```python\nx = 1\n"))
    assert reasons == [None, "assistant has an unclosed ``` fence (1 fence lines)"]


def test_format_json_only_when_asked():
    rule = {"kind": "format", "check": "json", "field": "last_assistant",
            "when": {"field": "prompt", "matches": "(?i)json"}}
    reasons, _ = apply(rule,
                       convo("Give JSON", '```json\n{"a": 1}\n```'),
                       convo("Give JSON", 'Here it is: {"a": 1, "b": [1, 2]} as requested.'),
                       convo("Give JSON", '{"a": 1,, }'),
                       convo("Give JSON", "I do not know"),
                       convo("Give prose", '{"a": 1,, }'))
    assert reasons[0] is None
    assert reasons[1] is None
    assert reasons[2].startswith("last_assistant JSON does not parse: Expecting property name")
    assert reasons[3] == "last_assistant no JSON found"
    assert reasons[4] is None  # the prompt does not ask for JSON


def test_format_python_fenced_or_bare():
    rule = {"kind": "format", "check": "python", "field": "last_assistant"}
    reasons, _ = apply(rule,
                       convo("q", "Sure:\n```python\ndef f(x):\n    return x\n```"),
                       convo("q", "Sure:\n```python\ndef f(x)\n    return x\n```"),
                       convo("q", "def f(x):\nreturn x"),
                       convo("q", "Python is a language named after Monty Python."),
                       convo("q", "```js\nconst x = ;\n```"))
    assert reasons[0] is None
    assert reasons[1].startswith("last_assistant Python code does not parse: expected ':'")
    assert reasons[2].startswith("last_assistant Python code does not parse")
    assert reasons[3] is None  # prose is not code
    assert reasons[4] is None  # another language is not checked


def test_repetition_lines_paragraphs_ngrams():
    looping = "I hope this helps.\n" * 10
    paragraphs = "\n\n".join(["Same paragraph here."] * 4 + ["Another one."])
    ngram = " ".join(["the cat sat"] * 30 + [f"w{i}" for i in range(70)])
    fine = " ".join(f"word{i}" for i in range(150))
    reasons, _ = apply({"kind": "repetition", "field": "assistant"},
                       convo("q", looping), convo("q", paragraphs), convo("q", ngram), convo("q", fine))
    assert reasons[0] == "assistant repeats 90% of its lines, more than 30%"
    assert reasons[1] == "assistant repeats 60% of its lines, more than 30%"  # lines are checked first
    assert reasons[2].startswith("assistant top 2-gram covers")
    assert reasons[3] is None


def test_repetition_paragraphs_alone():
    paragraphs = "\n\n".join(["Same paragraph here."] * 4 + ["Another one."])
    reasons, _ = apply({"kind": "repetition", "field": "assistant", "max_duplicate_line_fraction": None},
                       convo("q", paragraphs))
    assert reasons == ["assistant repeats 60% of its paragraphs, more than 30%"]


def test_repetition_spans_are_stripped_lines_and_paragraphs():
    # a line's trailing blanks are not part of it; inside a paragraph they are
    lines = "Same line.   \n  Same line.\nSame line.\t\nother"
    paras = "one\ntwo  \n\n   one\ntwo\n \t \none\ntwo\n\nthree"
    near = "one\ntwo\n\none \ntwo\n\nthree\n\nfour"  # "one \ntwo" differs from "one\ntwo"
    reasons, _ = apply({"kind": "repetition", "field": "assistant", "max_duplicate_line_fraction": 0.3,
                        "max_duplicate_paragraph_fraction": None}, convo("q", lines))
    assert reasons == ["assistant repeats 50% of its lines, more than 30%"]
    reasons, _ = apply({"kind": "repetition", "field": "assistant", "max_duplicate_line_fraction": None,
                        "max_duplicate_paragraph_fraction": 0.3}, convo("q", paras), convo("q", near))
    assert reasons == ["assistant repeats 50% of its paragraphs, more than 30%", None]


def test_repetition_ngrams_skip_short_texts():
    short = " ".join(["the cat sat"] * 10)  # 30 words, under min_words
    reasons, _ = apply({"kind": "repetition", "field": "assistant", "max_duplicate_line_fraction": None,
                        "max_duplicate_paragraph_fraction": None, "min_words": 50}, convo("q", short))
    assert reasons == [None]


def test_when_and_unless_on_any_rule():
    rule = {"kind": "keywords", "field": "assistant", "phrases": ["as an AI"],
            "unless": {"field": "prompt", "matches": "(?i)pretend"}}
    reasons, _ = apply(rule, convo("Pretend you are a robot", "As an AI I rule"), convo("hi", "As an AI I rule"))
    assert reasons == [None, "assistant contains 'As an AI'"]
    rule = {"kind": "length", "field": "assistant", "min_words": 5, "when": {"field": "user", "matches": "essay"}}
    reasons, _ = apply(rule, convo("write an essay", "short"), convo("say hi", "hi"))
    assert reasons == ["assistant has 1 words, fewer than 5", None]


def test_rule_names_are_dotted_snake_case():
    with pytest.raises(ValueError):
        RuleSet.model_validate({"rules": [{"name": "Bad Name", "kind": "roles"}]})
    with pytest.raises(ValueError, match="two rules are named"):
        RuleSet.model_validate({"rules": [{"name": "a", "kind": "roles"}, {"name": "a", "kind": "roles"}]})


# every number a rule hands to polars or to a compiled kernel is bounded at validation:
# what `curate validate` accepts, `curate filter` runs
COUNT_FIELDS = [("length", f"{s}_{b}") for s in ("min", "max") for b in ("chars", "words", "lines", "turns")] + [
    ("repetition", "min_words")]


@pytest.mark.parametrize("kind,key", COUNT_FIELDS, ids=[f"{k}.{f}" for k, f in COUNT_FIELDS])
def test_counts_are_bounded_where_validated(kind, key):
    for huge in (10 ** 23, 2 ** 63):
        with pytest.raises(ValueError, match="less than or equal to"):
            RuleSet.model_validate({"rules": [{"name": "x", "kind": kind, key: huge}]})
    from curate.filter.base import MAX_COUNT

    with pytest.raises(ValueError, match="less than or equal to"):
        RuleSet.model_validate({"rules": [{"name": "x", "kind": kind, key: MAX_COUNT + 1}]})
    # the largest accepted value runs, on the Python side and in the compiled kernel
    reasons, _ = apply({"kind": kind, "field": "assistant", key: MAX_COUNT}, convo("q", " ".join(["w"] * 120)))
    assert reasons[0] is None or "fewer than" in reasons[0]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 1.5])
def test_fractions_are_bounded(value):
    for rule in ({"max_duplicate_line_fraction": value}, {"max_duplicate_paragraph_fraction": value},
                 {"max_top_ngram_fraction": {2: value}}):
        with pytest.raises(ValueError):
            RuleSet.model_validate({"rules": [{"name": "x", "kind": "repetition", **rule}]})
    with pytest.raises(ValueError):
        RuleSet.model_validate({"rules": [{"name": "x", "kind": "repetition", "max_top_ngram_fraction": {11: 0.1}}]})


def test_keyword_files_stay_beside_or_under_the_rule_file(tmp_path):
    from curate.config import ConfigError
    from curate.filter import load_rules

    rules_dir = tmp_path / "rules"
    (rules_dir / "lists" / "more").mkdir(parents=True)
    (rules_dir / "lists" / "more" / "deep.txt").write_text("deep phrase\n")
    (rules_dir / "beside.txt").write_text("beside phrase\n")
    (tmp_path / "secret.txt").write_text("secret phrase\n")
    (rules_dir / "lists" / "link.txt").symlink_to(tmp_path / "secret.txt")
    rule = rules_dir / "r.yaml"
    for ok, phrase in [("beside.txt", "beside phrase"), ("more/deep.txt", "deep phrase"),
                       ("lists/more/deep.txt", "deep phrase"), (str(rules_dir / "beside.txt"), "beside phrase")]:
        rule.write_text(f"rules:\n  - {{name: kw, kind: keywords, file: '{ok}'}}\n")
        assert load_rules(rule).rules[0].phrases[0] == phrase
    for bad in ["/etc/passwd", "/proc/self/environ", "../secret.txt", "lists/../../secret.txt", "link.txt",
                str(tmp_path / "secret.txt")]:
        rule.write_text(f"rules:\n  - {{name: kw, kind: keywords, file: '{bad}'}}\n")
        with pytest.raises(ConfigError, match="outside") as e:
            load_rules(rule)
        assert "\n" not in str(e.value)


def test_format_json_too_deep_to_parse_is_a_reason_not_a_crash():
    # a CSV or Parquet cell holding JSON becomes an answer this check parses
    rule = {"kind": "format", "check": "json", "field": "last_assistant"}
    deep = "[" * 3000 + "]" * 3000
    reasons, _ = apply(rule, convo("Give JSON", deep), convo("Give JSON", '```json\n{"a": %s}\n```' % deep),
                       convo("Give JSON", "[[1]]"))
    assert reasons[0] == "last_assistant JSON nests too deeply to parse (more than 256 levels)"
    assert reasons[1] == reasons[0]
    assert reasons[2] is None
    reasons, _ = apply({"kind": "format", "check": "python", "field": "last_assistant"},
                       convo("q", "x = " + deep))
    assert reasons[0].startswith("last_assistant Python code does not parse")

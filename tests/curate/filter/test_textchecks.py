"""The parser checks (curate.filter.textchecks) on hostile text: a verdict, never a crash."""
import pytest

from curate.filter.textchecks import json_problem, python_problem

from .test_rules import apply
from tests.helpers import convo

DEEP = 3000  # 6 KB of brackets: deeper than any recursion limit Python's parsers run under


@pytest.mark.parametrize("text", [
    "[" * DEEP + "]" * DEEP,                                  # balanced: valid JSON, too deep to check
    "[" * DEEP + "1]",                                        # cut off: unbalanced
    '{"a": ' * DEEP + "1" + "}" * DEEP,                       # objects, not arrays
    "Here you go: " + "[{" * (DEEP // 2) + "}]" * (DEEP // 2),  # mixed, after prose
    "```json\n" + "[" * DEEP + "]" * DEEP + "\n```",          # inside a fence
    '{"ok": 1, "deep": ' + "[" * 20000 + "]" * 20000 + "}",   # deeper still, inside a valid object
])
def test_deep_json_is_a_verdict_not_a_crash(text):
    problem = json_problem(text)
    assert problem is not None and "nest" in problem


def test_shallow_nesting_still_parses():
    assert json_problem("[" * 50 + "]" * 50) is None
    assert json_problem('{"a": [[[1]]]}') is None


@pytest.mark.parametrize("text", [
    "x = " + "(" * DEEP + ")" * DEEP,
    "x = " + "[" * DEEP + "]" * DEEP,
    "x = " + "-" * 100000 + "1",
    "def f():\n    return " + "not " * 100000 + "x",
])
def test_deep_python_is_a_verdict_not_a_crash(text):
    assert python_problem(text) is not None


def test_the_format_rule_rejects_deep_json_with_a_reason():
    rule = {"kind": "format", "check": "json", "field": "last_assistant"}
    reasons, result = apply(rule, convo("Give JSON", "[" * DEEP + "]" * DEEP), convo("Give JSON", '{"a": 1}'))
    assert reasons[0].startswith("last_assistant JSON ") and "nest" in reasons[0]
    assert reasons[1] is None

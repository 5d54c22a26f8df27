"""JSON from untrusted text without a RecursionError (curate.jsonsafe)."""
import json

import pytest

from curate import jsonsafe


@pytest.mark.parametrize("text, depth", [
    ("{}", 1), ("[[1], [2, [3]]]", 3), ('{"a": "[[[[[[", "b": [1]}', 2), ('"[[[["', 0),
    ("[" * 300 + "]" * 300, 300), ('["\\"[[[" , [[1]]]', 3),
])
def test_depth_ignores_brackets_in_strings(text, depth):
    assert jsonsafe.depth(text) == depth if depth > jsonsafe.MAX_DEPTH else jsonsafe.depth(text) <= jsonsafe.MAX_DEPTH


@pytest.mark.parametrize("text", [
    "[" * 3000 + "]" * 3000, "[" * 100000, '{"a":' * 5000 + "1" + "}" * 5000,
    '{"ok": [' + "[" * 2000 + "]" * 2000 + "]}",
])
def test_too_deep_is_a_value_error_not_a_recursion_error(text):
    with pytest.raises(ValueError) as e:
        jsonsafe.loads(text)
    assert isinstance(e.value, jsonsafe.TooDeep) or isinstance(e.value, json.JSONDecodeError)


def test_the_limit_itself_parses_and_bytes_must_be_utf8():
    d = jsonsafe.MAX_DEPTH
    assert jsonsafe.loads("[" * d + "]" * d) is not None
    assert jsonsafe.loads(b'{"a": 1}') == {"a": 1}
    with pytest.raises(ValueError):
        jsonsafe.loads(b'{"a": "\xff"}')

"""Generation metrics on hand-made predictions."""
import pytest

from train.metrics import exact_match, extract, is_json, json_valid, normalise_number, refusal_rate


@pytest.mark.parametrize("text, answer", [
    ("so 3 + 4 = 7\n#### 7", "7"),
    ("#### 1,234", "1234"),
    ("#### -5", "-5"),
    ("#### −12", "-12"),          # a typographic minus
    ("#### 3.50", "3.5"),
    ("#### 0.0", "0"),
    ("#### $1,000.00", "1000"),
    ("#### 18 dollars", "18"),
    ("#### .5", "0.5"),
    ("The answer is 42.", None),  # no marker: no answer, even with a number in it
    ("####", None),
    ("", None),
])
def test_gsm8k_extractor(text, answer):
    assert extract(text) == answer


def test_other_extractors():
    assert extract("3 apples, then 7.0 more", "last_number") == "7"
    assert extract("no digits here", "last_number") is None
    assert extract("Answer: (B) because", r"Answer:\s*\(([A-D])\)") == "B"
    assert extract("Answer: 1,500 people", r"Answer:\s*([\d,]+)") == "1500"
    assert normalise_number("12e3") == "12000" and normalise_number("abc") is None


def test_exact_match_counts_missing_answers_as_wrong_and_skips_unanswerable_references():
    refs = ["... #### 10", "... #### 2,000", "... #### -3", "no marker in the reference"]
    preds = ["#### 10.0", "it is 2000", "#### -3", "#### 5"]
    assert exact_match(preds, refs) == pytest.approx(2 / 3)
    assert exact_match(["#### 1"], ["nothing"]) is None


def test_json_validity():
    assert is_json('{"a": 1}') and is_json("```json\n[1, 2]\n```") and is_json('  {"a": [1, {"b": null}]}\n')
    assert not is_json('{"a": 1,}') and not is_json("42") and not is_json("Here it is: {}") and not is_json("")
    refs = ['{"x": 1}', '{"y": 2}', "plain text"]
    assert json_valid(['{"x": 1}', "{broken", '{"z": 3}'], refs) == 0.5  # only the JSON references count
    assert json_valid(["a"], ["b"]) is None


def test_refusals_use_the_filter_rules_phrase_list():
    preds = ["As an AI language model, I cannot help with that.", "Sure! Here is the poem.",
             "I\u2019m sorry, but I can\u2019t assist with that request.", "The answer is 4."]
    assert refusal_rate(preds) == 0.5
    assert refusal_rate([]) is None

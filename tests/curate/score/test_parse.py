import math

import pytest

from curate.score.parse import BadAnswer, expected_digit, parse_json_answer

SCALE = (1, 5)


@pytest.mark.parametrize("text, score, reason", [
    ('{"score": 4, "reason": "good"}', 4.0, "good"),
    ('{"score": "3", "reason": "ok"}', 3.0, "ok"),
    ('{"score": 4.5}', 4.5, ""),
    ('```json\n{"score": 2, "reason": "thin"}\n```', 2.0, "thin"),
    ('Sure! Here is my grade: {"score": 5, "reason": "great"} Hope it helps.', 5.0, "great"),
    ('{"note": "x"} then {"score": 1, "reason": "bad"}', 1.0, "bad"),
])
def test_parses_json_answers(text, score, reason):
    assert parse_json_answer(text, SCALE) == (score, reason)


@pytest.mark.parametrize("text, kind", [
    ("", "parse_error"),
    ("I would give it a 4.", "parse_error"),           # a number in prose is never taken as the score
    ('{"reason": "no score"}', "parse_error"),
    ('{"score": "high"}', "parse_error"),
    ('{"score": true}', "parse_error"),
    ('{"score": null}', "parse_error"),
    ('{"score": 6}', "out_of_scale"),
    ('{"score": 0}', "out_of_scale"),
    ('{"score": NaN}', "out_of_scale"),
    # hostile answers: a failure of their kind, never a crash
    ('{"score": ' + "9" * 401 + "}", "out_of_scale"),        # float() of it overflows
    ('{"score": -' + "9" * 401 + "}", "out_of_scale"),
    ('{"score": "' + "9" * 401 + '"}', "out_of_scale"),
    ("[" * 3000 + "]" * 3000, "parse_error"),               # json.loads would recurse past the limit
    ('{"score": ' + "[" * 3000 + "]" * 3000 + "}", "parse_error"),
    ('prose {"score": ' + "[" * 3000 + "]" * 3000 + "} prose", "parse_error"),
    ('{"score": [4]}', "parse_error"),
    ('{"score": {"value": 4}}', "parse_error"),
])
def test_refuses_what_is_not_a_score(text, kind):
    with pytest.raises(BadAnswer) as e:
        parse_json_answer(text, SCALE)
    assert e.value.kind == kind


def test_expected_digit_is_the_expectation_over_scale_digits():
    lp = {"4": math.log(0.6), " 4": math.log(0.1), "5": math.log(0.2), "x": math.log(0.05), "9": math.log(0.05)}
    score, reason = expected_digit(lp, SCALE)
    # only 4 and 5 are on the scale: (4*0.7 + 5*0.2) / 0.9
    assert score == pytest.approx((4 * 0.7 + 5 * 0.2) / 0.9, abs=1e-4)
    assert "scale mass 0.90" in reason


def test_expected_digit_without_a_digit_fails():
    with pytest.raises(BadAnswer) as e:
        expected_digit({"the": -0.1, "7": -2.0}, SCALE)
    assert e.value.kind == "no_scale_token"


@pytest.mark.parametrize("lp", [1000.0, 0.5, 710.0])
def test_a_logprob_above_zero_is_no_probability(lp):
    with pytest.raises(BadAnswer) as e:
        expected_digit({"4": lp, "3": -1.0}, SCALE)
    assert e.value.kind == "parse_error"


def test_a_logprob_rounded_just_above_zero_still_counts():
    assert expected_digit({"4": 1e-7}, SCALE)[0] == 4.0


def test_a_reason_is_scrubbed_before_it_is_cut():
    from curate.score.parse import MAX_REASON_CHARS, clean_reason

    key = "sk-test-SECRET-0123456789abcdef"
    text = "x" * (MAX_REASON_CHARS - 10) + key + "y" * 100  # the cut would fall inside the key
    out = clean_reason(text, [key])
    assert "sk-test-SE" not in out and out.endswith("characters cut]")


def test_digit_like_tokens_that_are_not_digits_are_ignored():
    # '²'.isdigit() is True and int('²') raises: it is no scale digit, and no crash
    assert expected_digit({"\u00b2": -0.1, "4": -2.0}, SCALE)[0] == 4.0
    assert expected_digit({"\u0663": -0.1}, SCALE)[0] == 3.0  # Arabic-Indic three is a decimal 3

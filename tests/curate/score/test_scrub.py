"""Secrets out of texts from servers (curate.score.scrub)."""
import pytest

from curate.score.scrub import one_line, scrub

KEY = "sk-test-SECRET-0123456789abcdef"


@pytest.mark.parametrize("text", [
    f"Authorization: Bearer {KEY}",
    f"authorization: bearer {KEY}",
    f"your key {KEY} is wrong",
    f'{{"api_key": "{KEY}"}}',
    f"x-api-key={KEY}&model=m",
])
def test_the_key_never_survives(text):
    out = scrub(text, [KEY])
    assert KEY not in out and "0123456789abcdef" not in out and "***" in out


@pytest.mark.parametrize("text, gone", [
    ("Authorization: Bearer abc123def456ghi789", "abc123def456ghi789"),
    ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl here", "eyJhbGciOiJIUzI1NiJ9"),
    ("key sk-proj-AbCdEf0123456789AbCdEf0123456789", "AbCdEf0123456789"),
    ("key sk-ant-api03-AbCdEf0123456789AbCdEf", "AbCdEf0123456789"),
    ("hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345", "hf_AbCdEfGhIjKlMnOp"),
    ("gsk_AbCdEfGhIjKlMnOpQrStUvWxYz012345", "gsk_AbCdEfGhIjKlMnOp"),
    ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "AIzaSyA1234567890"),
    ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("http://user:hunter2pass@judge.internal/v1", "hunter2pass"),
    ("password=hunter2pass", "hunter2pass"),
])
def test_credential_shaped_strings_are_masked(text, gone):
    assert gone not in scrub(text)


@pytest.mark.parametrize("text", [
    "digit probabilities 1:0.53 2:0.11 3:0.10 4:0.16 5:0.09 (scale mass 0.09)",
    "The reply explains bearer bonds clearly and handles the API key question well.",
    "Correct: the token count is 12 and the password policy is described.",
    "See https://example.com/docs for the schema.",
])
def test_ordinary_reasons_are_left_alone(text):
    assert scrub(text, ["not-needed-but-long"]) == text


def test_a_key_url_encoded_never_survives():
    key = "Zm9v+YmFy/YmF6=0123456789"  # a base64 key: + / = are encoded in a URL
    from urllib.parse import quote

    out = scrub(f"redirected to https://x/v1?k={quote(key, safe='')}", [key])
    assert quote(key, safe="") not in out and "0123456789" not in out


def test_short_secrets_are_not_used_to_mangle_text():
    assert scrub("a b c", ["a"]) == "a b c"


def test_one_line_drops_control_characters_and_cuts():
    assert one_line("line one\nline two\x1b[31m red\r\n") == "line one line two [31m red"
    assert len(one_line("x" * 1000)) == 200

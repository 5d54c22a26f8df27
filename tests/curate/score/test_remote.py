"""Judges over HTTP, against a real OpenAI-compatible server on 127.0.0.1 (tests/conftest.py)."""
import json
import sqlite3
import time

import pytest

from curate.config import ConfigError
from curate.score import ScoreConfig, run
from tests.contract import assert_stage_contract
from tests.helpers import convo, frame

from .jurytools import api_judge, write_jury


def score(records, jury, **kw):
    return run(records, ScoreConfig(jury=str(jury), **kw))


def by_text(result):
    """{first user text: row} over kept and rejected."""
    rows = result.kept.to_dicts() + result.rejected.to_dicts()
    return {r["messages"][0]["content"]: r for r in rows}


def test_good_answers_become_scores_and_reasons(judge_server, tmp_path):
    jury = write_jury(tmp_path, [api_judge(judge_server)])
    res = score(frame(convo("a @score=4", "x"), convo("b @score=2", "y")), jury)
    assert res.kept["score"].to_list() == [4.0, 2.0]
    assert res.kept["scores"].to_list() == [{"a": 4.0}, {"a": 2.0}]
    assert res.kept["score_reasons"].to_list() == [{"a": "scored 4 by model-a"}, {"a": "scored 2 by model-a"}]
    a = res.stats["judges"]["a"]
    assert (a["calls"], a["cache_hits"], a["scored"], a["failed"], a["tokens_in"]) == (2, 0, 2, 0, 200)
    # JSON mode was asked for: this server offers it
    assert judge_server.last_request["response_format"] == {"type": "json_object"}


def test_stage_contract(judge_server, tmp_path):
    jury = write_jury(tmp_path, [api_judge(judge_server)])
    records = frame(*[convo(f"q{i} @score={1 + i % 5}", "a") for i in range(12)], convo("bad @500", "x"))
    res = assert_stage_contract(lambda df: score(df, jury, min_score=3), records, tmp_path)
    assert res.stats["rules"] == {"score.below_threshold": 6, "score.no_quorum": 1}


def test_malformed_is_retried_then_counted_never_scored(judge_server, tmp_path):
    jury = write_jury(tmp_path, [api_judge(judge_server)], retries=2)
    res = score(frame(convo("once @malformed=1 @score=3", "x"), convo("always @malformed", "y")), jury)
    rows = by_text(res)
    assert rows["once @malformed=1 @score=3"]["score"] == 3.0
    bad = rows["always @malformed"]
    assert bad["score"] is None and bad["rule"] == "score.no_quorum"
    assert bad["score_reasons"] == {"a": "error: parse_error"}
    a = res.stats["judges"]["a"]
    assert a["failures"] == {"parse_error": 1}
    assert a["calls"] == 2 + 3  # one retry for the first, 1 + 2 retries for the second
    assert a["retries"] == 3


def test_out_of_scale_is_a_failure_by_kind(judge_server, tmp_path):
    jury = write_jury(tmp_path, [api_judge(judge_server)], retries=1)
    res = score(frame(convo("@out_of_scale", "x")), jury)
    assert res.rejected["rule"].to_list() == ["score.no_quorum"]
    assert res.stats["judges"]["a"]["failures"] == {"out_of_scale": 1}


def test_429_honours_retry_after(judge_server, tmp_path):
    judge_server.retry_after = 0.4
    jury = write_jury(tmp_path, [api_judge(judge_server)], backoff_s=0.0, retries=3)
    t0 = time.perf_counter()
    res = score(frame(convo("@429=2 @score=5", "x")), jury)
    took = time.perf_counter() - t0
    assert res.kept["score"].to_list() == [5.0]
    assert took >= 0.8  # two waits of Retry-After, although our own backoff is zero
    assert judge_server.stats()["statuses"] == {"429": 2, "200": 1}
    assert res.stats["judges"]["a"]["failures"] == {}


def test_persistent_429_and_500_are_failures_by_kind(judge_server, tmp_path):
    jury = write_jury(tmp_path, [api_judge(judge_server)], retries=2)
    res = score(frame(convo("@429", "x"), convo("@500", "y"), convo("@500=1 @score=2", "z")), jury)
    a = res.stats["judges"]["a"]
    assert a["failures"] == {"rate_limited": 1, "server_error": 1}
    assert by_text(res)["@500=1 @score=2"]["score"] == 2.0
    assert judge_server.stats()["statuses"] == {"429": 3, "500": 4, "200": 1}


@pytest.mark.parametrize("directive, kind, settings", [
    ("stall", "timeout", {"timeout_s": 0.3}),
    ("broken_body", "parse_error", {}),  # a 200 whose JSON is cut off, as by a proxy dropping the connection
])
def test_a_failed_request_is_retried_then_counted_by_kind(judge_server, tmp_path, directive, kind, settings):
    jury = write_jury(tmp_path, [api_judge(judge_server)], retries=1, backoff_s=0.0, **settings)
    res = score(frame(convo(f"@{directive}=1 @score=4", "x"), convo(f"@{directive}", "y")), jury)
    rows = by_text(res)
    assert rows[f"@{directive}=1 @score=4"]["score"] == 4.0
    assert rows[f"@{directive}"]["score_reasons"] == {"a": f"error: {kind}"}
    assert res.stats["judges"]["a"]["failures"] == {kind: 1}


def test_quorum_and_each_aggregation(judge_server, tmp_path):
    judges = [api_judge(judge_server, "a"), api_judge(judge_server, "b"), api_judge(judge_server, "c")]
    text = "@model-a:score=1 @model-b:score=4 @model-c:score=5"
    records = frame(convo(text, "x"), convo("@model-c:500 @model-b:500 @score=3", "y"))
    expected = {"mean": 10 / 3, "median": 4.0, "min": 1.0, "majority": 1.0}
    for how, value in expected.items():
        jury = write_jury(tmp_path, judges, aggregate=how, quorum=2, retries=0)
        res = score(records, jury)
        assert res.kept["score"].to_list() == [pytest.approx(round(value, 4))], how
        # the second record has one answer of three: below quorum 2, whatever the aggregate
        assert res.rejected["rule"].to_list() == ["score.no_quorum"]
        assert res.rejected["scores"].to_list() == [{"a": 3.0, "b": None, "c": None}]
    jury = write_jury(tmp_path, judges, quorum=1, retries=0)
    assert score(records, jury).kept["score"].to_list() == [pytest.approx(3.3333), 3.0]


def test_concurrency_bound_is_held_and_used(judge_server, tmp_path):
    judge_server.latency_s = 0.03
    jury = write_jury(tmp_path, [api_judge(judge_server, "a"), api_judge(judge_server, "b")], concurrency=5)
    score(frame(*[convo(f"q{i}", "x") for i in range(40)]), jury)
    s = judge_server.stats()
    assert s["calls"] == 80
    assert s["max_inflight"] == 5  # never more, across both judges, and the bound is reached


def test_rerun_replays_from_the_cache_with_zero_calls(judge_server, tmp_path):
    jury = write_jury(tmp_path, [api_judge(judge_server, "a"), api_judge(judge_server, "b", mode="logprobs")])
    records = frame(*[convo(f"q{i}", "x") for i in range(10)], convo("@500", "y"))
    first = score(records, jury, min_score=2)
    calls = judge_server.stats()["calls"]
    judge_server.reset()
    second = score(records, jury, min_score=2)
    # only the failing record is asked again: failures are never cached
    assert judge_server.stats()["calls"] == (1 + 3) * 2  # one try and three retries, per judge
    assert second.kept.equals(first.kept)
    assert second.stats["judges"]["a"]["cache_hits"] == 10 and calls > 20


def test_cache_is_keyed_by_model_prompt_and_parameters(judge_server, tmp_path):
    records = frame(convo("q", "x"))
    score(records, write_jury(tmp_path, [api_judge(judge_server, "a", model="m")]))
    judge_server.reset()
    score(records, write_jury(tmp_path, [api_judge(judge_server, "renamed", model="m")]))
    assert judge_server.stats()["calls"] == 0  # a judge's name is not part of the key
    score(records, write_jury(tmp_path, [api_judge(judge_server, "a", model="m", temperature=0.7)]))
    assert judge_server.stats()["calls"] == 1
    score(records, write_jury(tmp_path, [api_judge(judge_server, "a", model="m2")]))
    assert judge_server.stats()["calls"] == 2
    rows = sqlite3.connect(tmp_path / "cache.sqlite").execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    assert rows == 3


def test_logprobs_mode_reads_top_logprobs(judge_server, tmp_path):
    jury = write_jury(tmp_path, [api_judge(judge_server, mode="logprobs")])
    res = score(frame(convo("@score=4", "x"), convo("@score=5", "y")), jury)
    # the server puts 0.8 on the score and 0.1 on each neighbour ('6' is off the scale)
    assert res.kept["score"].to_list() == [4.0, pytest.approx(round((5 * 0.8 + 4 * 0.1) / 0.9, 4))]
    req = judge_server.last_request
    assert req["logprobs"] is True and req["max_tokens"] == 1 and "response_format" not in req


def test_json_mode_falls_back_when_the_server_refuses_it(judge_server, tmp_path):
    judge_server.json_mode = False
    jury = write_jury(tmp_path, [api_judge(judge_server)], concurrency=1)
    res = score(frame(convo("@score=4", "x"), convo("@score=3", "y")), jury)
    assert res.kept["score"].to_list() == [4.0, 3.0]
    assert "response_format" not in judge_server.last_request
    assert judge_server.stats()["statuses"] == {"400": 1, "200": 2}  # refused once, then asked without it


def test_refused_key_stops_the_run_and_never_shows_the_key(judge_server, tmp_path, monkeypatch):
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("JUDGE_KEY", secret)
    jury = write_jury(tmp_path, [api_judge(judge_server, api_key_env="JUDGE_KEY")])
    with pytest.raises(ConfigError) as e:
        score(frame(convo("@401", "x")), jury)
    assert "HTTP 401" in str(e.value) and "JUDGE_KEY" in str(e.value)
    assert secret not in str(e.value)


def test_the_key_reaches_the_server_but_no_output(judge_server, tmp_path, monkeypatch):
    from curate.stage import write_stage

    secret = "sk-test-SECRET-abcdef"
    monkeypatch.setenv("JUDGE_KEY", secret)
    jury = write_jury(tmp_path, [api_judge(judge_server, api_key_env="JUDGE_KEY")])
    res = score(frame(convo("q", "x"), convo("@500", "y")), jury, min_score=1)
    write_stage(res, tmp_path / "out")
    for f in list((tmp_path / "out").iterdir()) + [tmp_path / "cache.sqlite"]:
        assert secret.encode() not in f.read_bytes(), f
    assert secret not in json.dumps(res.stats)


def test_missing_key_variable_is_one_line(judge_server, tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_KEY", raising=False)
    jury = write_jury(tmp_path, [api_judge(judge_server, api_key_env="NOPE_KEY")])
    with pytest.raises(ConfigError, match=r"judge a: environment variable NOPE_KEY is not set"):
        score(frame(convo("q", "x")), jury)


def test_limit_scores_the_head_and_rejects_the_rest_as_not_scored(judge_server, tmp_path):
    jury = write_jury(tmp_path, [api_judge(judge_server)])
    res = score(frame(*[convo(f"q{i}", "x") for i in range(5)]), jury, limit=2)
    assert res.kept.height == 2 and judge_server.stats()["calls"] == 2
    assert res.rejected["rule"].to_list() == ["score.not_scored"] * 3


# --- hostile replies (issue #21): each is a counted failure of that request, never a crash or a score


def one_hostile(judge_server, tmp_path, shape, retries=1, **kw):
    """Score a record answered with @shape=SHAPE beside a fine one; return (its row, the judge's account)."""
    jury = write_jury(tmp_path, [api_judge(judge_server, **kw)], retries=retries, backoff_s=0.0)
    res = score(frame(convo(f"@shape={shape}", "x"), convo("fine @score=3", "y")), jury)
    rows = by_text(res)
    assert rows["fine @score=3"]["score"] == 3.0  # the rest of the run is unharmed
    return rows[f"@shape={shape}"], res.stats["judges"]["a"]


@pytest.mark.parametrize("shape", [
    "score_list", "score_object", "content_deep", "content_deep_score", "reason_deep", "content_list",
    "message_string", "message_list", "message_number", "choice_string", "choices_object", "body_list",
    "body_deep", "body_deep_object", "body_deep_field", "body_not_utf8", "body_empty",
    "encoding_br", "encoding_bad_gzip",
    "usage_string", "usage_list", "usage_negative", "usage_huge", "usage_float", "usage_bool", "usage_not_object",
])
def test_a_malformed_reply_is_a_counted_parse_failure(judge_server, tmp_path, shape):
    row, a = one_hostile(judge_server, tmp_path, shape)
    assert row["score"] is None and row["scores"] == {"a": None}
    assert row["score_reasons"] == {"a": "error: parse_error"}
    assert a["failures"] == {"parse_error": 1} and a["calls"] == 1 + 2  # retried once, like a cut-off body


@pytest.mark.parametrize("shape", ["score_huge_int", "score_huge_negative", "score_huge_float"])
def test_a_score_of_hundreds_of_digits_is_out_of_scale(judge_server, tmp_path, shape):
    row, a = one_hostile(judge_server, tmp_path, shape)
    assert row["score"] is None and a["failures"] == {"out_of_scale": 1}


@pytest.mark.parametrize("shape", [
    "logprobs_string", "logprobs_content_string", "logprobs_entry_string", "logprobs_top_object",
    "logprob_1000", "logprob_huge_int", "logprob_positive", "logprob_string", "logprob_nan_token",
    "logprob_token_list",
])
def test_malformed_logprobs_are_a_counted_parse_failure(judge_server, tmp_path, shape):
    row, a = one_hostile(judge_server, tmp_path, shape, mode="logprobs")
    assert row["score"] is None and a["failures"] == {"parse_error": 1}


def test_a_superscript_digit_token_is_no_crash(judge_server, tmp_path):
    row, a = one_hostile(judge_server, tmp_path, "logprob_superscript_token", mode="logprobs")
    assert row["score"] == 4.0 and a["failures"] == {}  # '4' is the only scale digit among the tokens


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_and_is_a_failure(judge_server, tmp_path, status):
    row, a = one_hostile(judge_server, tmp_path, f"redirect_{status}")
    assert row["score"] is None and a["failures"] == {"redirect": 1}
    assert a["calls"] == 2  # not retried: the server will say the same
    assert judge_server.gets == 0  # the POST never became a GET ...
    assert judge_server.stats()["statuses"] == {str(status): 1, "200": 1}  # ... nor went elsewhere


@pytest.mark.parametrize("shape", ["drip_body", "drip_headers"])
def test_a_dripping_server_meets_the_deadline(judge_server, tmp_path, shape):
    # ~300 bytes at 50 a second: each byte comes well inside timeout_s, the whole reply does not
    t0 = time.perf_counter()
    jury = write_jury(tmp_path, [api_judge(judge_server)], retries=1, backoff_s=0.0, timeout_s=0.5)
    res = score(frame(convo(f"@shape={shape}", "x")), jury)
    took = time.perf_counter() - t0
    assert res.rejected["score_reasons"].to_list() == [{"a": "error: timeout"}]
    assert res.stats["judges"]["a"]["calls"] == 2
    assert took < 3.0  # two tries of 0.5 s, not the 6 s a reply takes at this pace


def test_a_raw_deflate_body_is_read(judge_server, tmp_path):
    jury = write_jury(tmp_path, [api_judge(judge_server)])
    assert score(frame(convo("@shape=encoding_deflate_raw", "x")), jury).kept["score"].to_list() == [2.0]


@pytest.mark.parametrize("shape", ["big_length", "big_chunked", "big_gzip", "encoding_deflate_bomb"])
def test_a_reply_over_the_size_limit_is_a_failure(judge_server, tmp_path, shape):
    judge_server.big_bytes = 2_000_000  # gzip: 2 MB from a few KB on the wire
    jury = write_jury(tmp_path, [api_judge(judge_server)], retries=2, backoff_s=0.0, max_response_bytes=100_000)
    res = score(frame(convo(f"@shape={shape}", "x"), convo("fine @score=3", "y")), jury)
    rows = by_text(res)
    assert rows[f"@shape={shape}"]["score_reasons"] == {"a": "error: too_large"}
    assert rows["fine @score=3"]["score"] == 3.0
    assert res.stats["judges"]["a"]["calls"] == 2  # not retried
    con = sqlite3.connect(tmp_path / "cache.sqlite")
    assert con.execute("SELECT MAX(LENGTH(value)) FROM answers").fetchone()[0] < 1000


def secret_everywhere(tmp_path, res, secret):
    from curate.stage import write_stage

    write_stage(res, tmp_path / "out")
    for f in list((tmp_path / "out").iterdir()) + [tmp_path / "cache.sqlite"]:
        data = f.read_bytes()
        assert secret.encode() not in data, f
    assert secret not in json.dumps(res.stats)


@pytest.mark.parametrize("shape", ["echo_auth", "echo_key_bare", "echo_key_in_object"])
def test_a_key_echoed_into_a_reason_is_scrubbed(judge_server, tmp_path, monkeypatch, shape):
    secret = "sk-test-SECRET-0123456789abcdef"
    monkeypatch.setenv("JUDGE_KEY", secret)
    jury = write_jury(tmp_path, [api_judge(judge_server, api_key_env="JUDGE_KEY")])
    res = score(frame(convo(f"@shape={shape}", "x")), jury)
    assert res.kept["score"].to_list() == [4.0]  # the answer stands, its reason without the key
    assert "***" in res.kept["score_reasons"].to_list()[0]["a"]
    secret_everywhere(tmp_path, res, secret)
    for fragment in (secret[:12], secret[-12:]):
        assert fragment not in res.kept["score_reasons"].to_list()[0]["a"]


def test_other_credentials_in_a_reason_are_scrubbed(judge_server, tmp_path):
    jury = write_jury(tmp_path, [api_judge(judge_server)])
    res = score(frame(convo("@shape=echo_other_tokens", "x")), jury)
    reason = res.kept["score_reasons"].to_list()[0]["a"]
    for token in ("eyJhbGciOiJIUzI1NiJ9", "sk-proj-AbCdEf0123456789", "hf_AbCdEfGhIjKlMnOp"):
        assert token not in reason
        secret_everywhere(tmp_path, res, token)
    assert reason.startswith("headers: authorization: Bearer ***")


def test_a_key_echoed_into_an_error_message_is_scrubbed(judge_server, tmp_path, monkeypatch):
    secret = "sk-test-SECRET-0123456789abcdef"
    monkeypatch.setenv("JUDGE_KEY", secret)
    jury = write_jury(tmp_path, [api_judge(judge_server, api_key_env="JUDGE_KEY")])
    with pytest.raises(ConfigError) as e:
        score(frame(convo("@shape=not_found_echo", "x")), jury)
    assert "HTTP 404" in str(e.value) and "model not found for key ***" in str(e.value)
    assert secret not in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("headers, wait", [
    ({"retry-after": "2"}, 2.0),
    ({"retry-after": "1e9"}, 60.0),              # capped
    ({"retry-after-ms": "1e12"}, 60.0),
    ({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, 60.0),
    ({"retry-after": "Mon, 01 Jan 1990 00:00:00 GMT"}, 0.0),  # a date past: at once
    ({"retry-after": "nan"}, None), ({"retry-after": "inf"}, None), ({"retry-after": "-5"}, None),
    ({"retry-after-ms": "nan", "retry-after": "1"}, 1.0),
    ({"retry-after": "soon"}, None), ({}, None),
])
def test_retry_after_is_capped_and_never_nan(headers, wait):
    from curate.score.remote import _retry_after

    assert _retry_after(headers) == wait


def test_a_password_in_the_base_url_is_refused_and_never_printed(judge_server, tmp_path):
    from curate.score.jury import load_jury

    host, port = judge_server.server_address[:2]
    jury = write_jury(tmp_path, [api_judge(judge_server, base_url=f"http://user:hunter2pass@{host}:{port}/v1")])
    with pytest.raises(ConfigError) as e:
        load_jury(jury)
    assert "hunter2pass" not in str(e.value) and "must not carry a user or password" in str(e.value)
    assert "\n" not in str(e.value)

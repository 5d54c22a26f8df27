"""Hostile input for `curate score` (session 6): option edges (--min-score, jury numbers), rubrics
that fail with Python errors, keys echoed in cut error messages, keys in files written by a
failing run. Everything runs against real HTTP servers on 127.0.0.1. Each bug it found was a strict xfail until its fix landed
(session 6); the rest holds."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from curate.cli import main

from .jurytools import api_judge, write_jury

KEY = "Zq9LocalSecret0123456789ABCDEFGH"  # no provider's shape: only the key itself can scrub it


def records(path: Path, items) -> Path:
    path.write_text("".join(json.dumps({"instruction": q, "output": a}) + "\n" for q, a in items))
    return path


def score(tmp_path, data, jury, *args, env=None):
    return CliRunner(env=env).invoke(main, ["score", str(data), "-o", str(tmp_path / "out"), "--jury", str(jury),
                                            *map(str, args)])


def one_line_error(r) -> str:
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), (repr(r.exception), r.output)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    return lines[0]


def every_byte_written(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


# ------------------------------------------------------------------ --min-score edges
def test_min_score_edges(judge_server, tmp_path):
    data = records(tmp_path / "in.jsonl", [("q0 @score=1", "a"), ("q1 @score=3", "a"), ("q2 @score=5", "a")])
    jury = write_jury(tmp_path, [api_judge(judge_server)])
    for edge, kept in (("3", [3.0, 5.0]), ("inf", []), ("-inf", [1.0, 3.0, 5.0]), ("5.0000001", [])):
        r = score(tmp_path, data, jury, "--min-score", edge)
        assert r.exit_code == 0, r.output
        got = pl.read_parquet(tmp_path / "out" / "kept.parquet")
        assert got["score"].to_list() == kept
        assert got.height + pl.read_parquet(tmp_path / "out" / "rejected.parquet").height == 3


def test_min_score_nan_is_refused(judge_server, tmp_path):
    data = records(tmp_path / "in.jsonl", [("q0 @score=1", "a"), ("q1 @score=3", "a")])
    jury = write_jury(tmp_path, [api_judge(judge_server)])
    one_line_error(score(tmp_path, data, jury, "--min-score", "nan"))


# ------------------------------------------------------------------ jury numbers
@pytest.mark.parametrize("change", [{"quorum": 2}, {"quorum": 0}, {"judges": []}, {"scale": [5, 1]},
                                    {"colour": "red"}, {"timeout_s": 0}, {"timeout_s": float("nan")},
                                    {"retries": -1}, {"scale": [0, 10], "judges": "logprobs"}])
def test_a_bad_jury_is_one_line_before_any_call(judge_server, tmp_path, change):
    data = records(tmp_path / "in.jsonl", [("q @score=2", "a")])
    change = dict(change)
    judges = [api_judge(judge_server)]
    if change.get("judges") == "logprobs":
        judges = [api_judge(judge_server, mode="logprobs")]
        change.pop("judges")
    if "judges" in change:
        judges = change.pop("judges")
    jury = write_jury(tmp_path, judges, **change)
    error = one_line_error(score(tmp_path, data, jury))
    assert str(jury) in error and judge_server.stats()["calls"] == 0
    assert not (tmp_path / "out").exists()


def test_an_infinite_timeout_is_refused_in_one_line(judge_server, tmp_path):
    data = records(tmp_path / "in.jsonl", [("q @score=2", "a")])
    jury = write_jury(tmp_path, [api_judge(judge_server)], timeout_s=float("inf"))
    one_line_error(score(tmp_path, data, jury))


def test_an_infinite_backoff_is_capped(judge_server, tmp_path):
    # backoff_s: .inf is accepted; the delay is capped at 30 s, and a server asking for a retry
    # with Retry-After is waited on as it asks, so one 429 costs no more than its Retry-After
    data = records(tmp_path / "in.jsonl", [("q @score=2 @429=1", "a")])
    jury = write_jury(tmp_path, [api_judge(judge_server)], backoff_s=float("inf"))
    r = score(tmp_path, data, jury)
    assert r.exit_code == 0, r.output
    assert pl.read_parquet(tmp_path / "out" / "kept.parquet")["score"].to_list() == [2.0]


# ------------------------------------------------------------------ rubrics that fail
def rubric_jury(tmp_path, server, body: str) -> Path:
    (tmp_path / "r.j2").write_text(body)
    jury = write_jury(tmp_path, [api_judge(server)])
    y = yaml.safe_load(jury.read_text())
    y["rubric"] = str(tmp_path / "r.j2")
    jury.write_text(yaml.safe_dump(y))
    return jury


@pytest.mark.parametrize("body", ["{% for m in messages %}{{ m.nope.x }}{% endfor %}", "{{ messages.__class__ }}",
                                  "{{ undefined_name }}", "{% if %}"])
def test_a_rubric_that_fails_as_jinja_is_one_line(judge_server, tmp_path, body):
    data = records(tmp_path / "in.jsonl", [("q @score=2", "a")])
    error = one_line_error(score(tmp_path, data, rubric_jury(tmp_path, judge_server, body)))
    assert "r.j2" in error and judge_server.stats()["calls"] == 0


@pytest.mark.parametrize("body", ["{{ 1 / (response | length) }}", "{{ range(10**9) | list | length }}"])
def test_a_rubric_that_fails_with_a_python_error_is_one_line(judge_server, tmp_path, body):
    data = records(tmp_path / "in.jsonl", [("q @score=2", "")])
    one_line_error(score(tmp_path, data, rubric_jury(tmp_path, judge_server, body)))


# ------------------------------------------------------------------ keys
def test_a_failing_run_with_retries_and_echoes_writes_the_key_nowhere(judge_server, tmp_path):
    data = records(tmp_path / "in.jsonl", [("q0 @score=2 @429=2", "a"), ("q1 @500=2", "a"),
                                           ("q2 @shape=echo_key_bare", "a"), ("q3 @shape=echo_auth", "a"),
                                           ("q4 @malformed", "a"), ("q5 @401", "a")])
    jury = write_jury(tmp_path, [api_judge(judge_server, api_key_env="H7_KEY")], retries=3)
    r = score(tmp_path, data, jury, env={"H7_KEY": KEY})
    assert r.exit_code == 2 and KEY not in r.output and KEY[:12] not in r.output, r.output
    # the last line is ours (the fake server's own thread may print a reset connection above it)
    assert r.output.strip().splitlines()[-1].startswith("Error: judge a: ") and "H7_KEY" in r.output
    written = every_byte_written(tmp_path)
    assert KEY.encode() not in written and KEY[:12].encode() not in written
    # the same without the 401: a finished run, the echoes scrubbed in kept.parquet and the cache
    data = records(tmp_path / "in2.jsonl", [("q2 @shape=echo_key_bare", "a"), ("q3 @shape=echo_auth", "a")])
    r = score(tmp_path, data, jury, env={"H7_KEY": KEY})
    assert r.exit_code == 0, r.output
    reasons = pl.read_parquet(tmp_path / "out" / "kept.parquet")["score_reasons"].struct.field("a").to_list()
    assert len(reasons) == 2 and all("***" in x for x in reasons), reasons
    assert KEY.encode() not in every_byte_written(tmp_path) and KEY not in r.output


class _NotFound(BaseHTTPRequestHandler):
    """A 404 whose message echoes the key after 180 characters of prose: the one-line cut
    (200 characters) falls inside the key."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        body = json.dumps({"error": {"message": "m" * 180 + " key " + token}}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def not_found_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.base_url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_a_key_straddling_the_cut_of_an_error_message_is_not_printed_in_part(not_found_server, tmp_path):
    data = records(tmp_path / "in.jsonl", [("q", "a")])
    jury = write_jury(tmp_path, [api_judge(not_found_server, api_key_env="H7_KEY")], retries=0)
    r = score(tmp_path, data, jury, env={"H7_KEY": KEY})
    assert r.exit_code == 2 and "HTTP 404" in r.output, r.output
    assert KEY[:12] not in r.output, r.output


def test_a_key_whole_inside_the_cut_of_an_error_message_is_scrubbed(not_found_server, tmp_path):
    data = records(tmp_path / "in.jsonl", [("q", "a")])
    short = "Zq9Local"  # 8 characters: whole before the cut
    jury = write_jury(tmp_path, [api_judge(not_found_server, api_key_env="H7_KEY")], retries=0)
    r = score(tmp_path, data, jury, env={"H7_KEY": short})
    assert r.exit_code == 2 and short not in r.output and "***" in r.output, r.output


# ------------------------------------------------------------------ --dry-run on odd input
def test_dry_run_on_an_empty_file_and_on_bad_records(judge_server, tmp_path):
    jury = write_jury(tmp_path, [api_judge(judge_server)])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = CliRunner().invoke(main, ["score", str(empty), "--jury", str(jury), "--dry-run"])
    assert r.exit_code in (0, 2) and "Traceback" not in r.output, r.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q", "output": "a"}\nnot json\n{"instruction": 3}\n')
    r = CliRunner().invoke(main, ["score", str(bad), "--jury", str(jury), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "1 calls to make" in r.output and judge_server.stats()["calls"] == 0


# ------------------------------------------------------------------ a cache shared by processes (long)
@pytest.mark.skipif(not __import__("os").environ.get("CURATE_HOSTILE_LONG"), reason="CURATE_HOSTILE_LONG=1: 3 processes")
def test_three_processes_sharing_one_cache_agree(judge_server, tmp_path):
    import os
    import subprocess
    import sys

    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(300)))
    jury = write_jury(tmp_path, [api_judge(judge_server)], concurrency=8)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[3]), HF_HUB_OFFLINE="1")
    runs = [subprocess.Popen([sys.executable, "-m", "curate.cli", "score", str(data), "-o", str(tmp_path / f"o{k}"),
                              "--jury", str(jury)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for k in range(3)]
    for p in runs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    scores = [pl.read_parquet(tmp_path / f"o{k}" / "kept.parquet")["score"].to_list() for k in range(3)]
    assert scores[0] == scores[1] == scores[2] and len(scores[0]) == 300
    r = CliRunner().invoke(main, ["score", str(data), "--jury", str(jury), "--dry-run"])
    assert "0 calls to make, 300 cached" in r.output, r.output


# ------------------------------------------------------------------ B10: a cache path naming a user's file
def test_a_cache_path_naming_the_input_leaves_the_input_alone(judge_server, tmp_path):
    data = records(tmp_path / "in.jsonl", [("q @score=2", "a")])
    before = data.read_bytes()
    jury = write_jury(tmp_path, [api_judge(judge_server)], cache=str(data))
    r = score(tmp_path, data, jury)
    assert data.read_bytes() == before and not list(tmp_path.glob("in.jsonl.corrupt-*")), r.output


@pytest.mark.parametrize("cache", ["/dev/null", "", "/proc/version"])
def test_a_cache_path_that_cannot_hold_a_database_is_one_line(judge_server, tmp_path, cache):
    data = records(tmp_path / "in.jsonl", [("q @score=2", "a")])
    jury = write_jury(tmp_path, [api_judge(judge_server)], cache=cache)
    assert "judge cache" in one_line_error(score(tmp_path, data, jury))


# ------------------------------------------------------------------ B11: keys an HTTP header cannot carry
@pytest.mark.parametrize("key", ["Zq9LocalSecret0123\r", "Zq9Local\nSecret0123", "Zq9Lokal-\u043a\u043b\u044e\u0447"])
def test_a_key_no_header_can_carry_is_one_line(judge_server, tmp_path, key):
    data = records(tmp_path / "in.jsonl", [("q @score=2", "a")])
    jury = write_jury(tmp_path, [api_judge(judge_server, api_key_env="H7_KEY")], retries=0)
    r = score(tmp_path, data, jury, env={"H7_KEY": key})
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), repr(r.exception)
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "H7_KEY" in last and key.strip() not in r.output


def test_two_runs_with_and_without_retries_write_the_same_bytes(judge_server, tmp_path):
    from tests.helpers import output_hashes

    # the first run meets a 500 on every third record (retried), the second none: same outputs
    data = records(tmp_path / "in.jsonl", [(f"q{i}" + (" @500=1" if i % 3 == 0 else ""), "a") for i in range(30)])
    hashes = []
    for k in range(2):
        jury = write_jury(tmp_path, [api_judge(judge_server), api_judge(judge_server, "b", model="m2")],
                          cache=str(tmp_path / f"c{k}.sqlite"))
        r = CliRunner().invoke(main, ["score", str(data), "-o", str(tmp_path / f"o{k}"), "--jury", str(jury),
                                      "--min-score", "3"])
        assert r.exit_code == 0, r.output
        hashes.append(output_hashes(tmp_path / f"o{k}"))
    assert hashes[0] == hashes[1] and set(hashes[0]) == {"kept.parquet", "rejected.parquet"}

"""Hostile build folders for `curate report` (session 6): missing, cut and hand-edited files, and
record text made to break out of the page. Each bug it found was a strict xfail until its fix landed
(session 6)."""
from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from curate.cli import main

HOSTILE = ("<script>alert(1)</script></textarea></details><img src=x onerror=alert(2)> "
           "\"' onmouseover=alert(3) <!-- --> ]]> \x1b[31m \u202e")


@pytest.fixture
def step(tmp_path):
    """A step folder written by `curate filter`: one kept record, one rejected (empty answer) whose
    text is hostile HTML."""
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"instruction": "What is two plus two? Please explain it to me carefully.",
                                "output": "It is four, because two plus two makes four in ordinary arithmetic."})
                    + "\n" + json.dumps({"instruction": HOSTILE, "output": ""}) + "\n")
    r = CliRunner().invoke(main, ["filter", str(data), "-o", str(tmp_path / "b" / "filter")])
    assert r.exit_code == 0, r.output
    return tmp_path / "b" / "filter"


def report(folder, out):
    return CliRunner().invoke(main, ["report", str(folder), "-o", str(out)])


def one_line_error(r) -> str:
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), (repr(r.exception), r.output)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    return lines[0]


def test_hostile_record_text_is_escaped(step, tmp_path):
    r = report(step.parent, tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    page = (tmp_path / "r.html").read_text()
    body = page.split("<body>", 1)[1].rsplit("<script>", 1)[0]  # the page's own script is at the end
    assert "<script" not in body and "<img" not in body and "<!--" not in body and "\x1b" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert not re.search(r"<[^>]*\sonerror=", page) and not re.search(r"<[^>]*\sonmouseover=", page)


def test_a_step_folder_without_rejected_parquet_is_one_line(step, tmp_path):
    (step / "rejected.parquet").unlink()
    assert "rejected.parquet" in one_line_error(report(step, tmp_path / "r.html"))
    # the build folder above it: the step without rejected.parquet is not a step folder
    assert "no step folders" in one_line_error(report(step.parent, tmp_path / "r.html"))


def test_a_folder_that_does_not_exist_is_one_line(tmp_path):
    one_line_error(report(tmp_path / "nope", tmp_path / "r.html"))


def test_a_stats_json_that_is_not_an_object_is_one_line(step, tmp_path):
    (step / "stats.json").write_text("[]")
    assert "stats.json" in one_line_error(report(step.parent, tmp_path / "r.html"))


def test_a_cut_rejected_parquet_is_one_line(step, tmp_path):
    path = step / "rejected.parquet"
    path.write_bytes(path.read_bytes()[:100])
    assert "rejected.parquet" in one_line_error(report(step.parent, tmp_path / "r.html"))


@pytest.mark.parametrize("value", ['"many"', "1e400"])
def test_a_stats_json_with_counts_that_are_not_numbers_is_one_line(step, tmp_path, value):
    stats = (step / "stats.json").read_text()
    (step / "stats.json").write_text(re.sub(r'"in": \d+', f'"in": {value}', stats, count=1))
    assert "stats.json" in one_line_error(report(step.parent, tmp_path / "r.html"))


@pytest.mark.skipif(not __import__("os").environ.get("CURATE_HOSTILE_LONG"), reason="CURATE_HOSTILE_LONG=1: a 2 MB record")
def test_a_format_step_with_a_huge_hostile_answer_gives_a_small_escaped_page(tiny_model, tmp_path):
    data = tmp_path / "in.jsonl"
    big = "word " * 400_000 + "</pre><script>x()</script>"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "<b>q</b>"},
                                             {"role": "assistant", "content": big}]}) + "\n"
                    + json.dumps({"messages": [{"role": "user", "content": "hi"},
                                               {"role": "assistant", "content": "there"}]}) + "\n")
    r = CliRunner().invoke(main, ["format", str(data), "-o", str(tmp_path / "b" / "format"), "--tokenizer",
                                  str(tiny_model)])
    assert r.exit_code == 0, r.output
    r = report(tmp_path / "b", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    page = (tmp_path / "r.html").read_text()
    assert len(page) < 200_000 and "<script>x()" not in page and "<b>q" not in page

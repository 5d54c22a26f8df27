"""Fixes of hostile7's report bugs (B6, B7): every parquet file the report reads, and the counts
of a step's stats.json, broken by hand or by a crash, are one line naming the file."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from curate.cli import main

pytest.importorskip("transformers")


def one_line_error(r) -> str:
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), (repr(r.exception), r.output)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    return lines[0]


def _data(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"question {i % 3}"},
                                                     {"role": "assistant", "content": f"answer {i % 3}"}]}) + "\n"
                            for i in range(6)))
    return data


@pytest.fixture
def format_step(tmp_path, tiny_model):
    r = CliRunner().invoke(main, ["format", str(_data(tmp_path)), "-o", str(tmp_path / "b" / "format"),
                                  "--tokenizer", str(tiny_model)])
    assert r.exit_code == 0, r.output
    return tmp_path / "b" / "format"


@pytest.fixture
def dedup_step(tmp_path):
    r = CliRunner().invoke(main, ["dedup", str(_data(tmp_path)), "-o", str(tmp_path / "b" / "dedup")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b" / "dedup" / "clusters.parquet").is_file()
    return tmp_path / "b" / "dedup"


@pytest.mark.parametrize("keep", [100, 0])
def test_a_cut_kept_parquet_of_a_format_step_is_one_line(format_step, tmp_path, keep):
    path = format_step / "kept.parquet"
    path.write_bytes(path.read_bytes()[:keep])
    line = one_line_error(CliRunner().invoke(main, ["report", str(format_step.parent), "-o", str(tmp_path / "r.html")]))
    assert "kept.parquet" in line


def test_a_cut_clusters_parquet_of_a_dedup_step_is_one_line(dedup_step, tmp_path):
    path = dedup_step / "clusters.parquet"
    path.write_bytes(path.read_bytes()[:-50])
    line = one_line_error(CliRunner().invoke(main, ["report", str(dedup_step.parent), "-o", str(tmp_path / "r.html")]))
    assert "clusters.parquet" in line


def test_an_intact_step_still_reports(format_step, dedup_step, tmp_path):
    r = CliRunner().invoke(main, ["report", str(format_step.parent), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("value", ["true", "2.5", "null", "[1]"])
def test_a_stats_json_count_of_another_kind_is_one_line(format_step, tmp_path, value):
    stats = json.loads((format_step / "stats.json").read_text())
    (format_step / "stats.json").write_text(json.dumps({**stats, "kept": json.loads(value)}))
    assert "stats.json" in one_line_error(CliRunner().invoke(main, ["report", str(format_step.parent), "-o",
                                                                    str(tmp_path / "r.html")]))

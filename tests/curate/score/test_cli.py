"""`curate score` through the CLI, against the real local server."""
import json

import polars as pl
from click.testing import CliRunner

from curate.cli import main

from .jurytools import api_judge, write_jury


def write_records(path, n=4, extra=None):
    with open(path, "w") as f:
        for i in range(n):
            rec = {"instruction": f"q{i} @score={1 + i % 5}", "output": f"a{i}", **(extra(i) if extra else {})}
            f.write(json.dumps(rec) + "\n")
    return path


def test_dry_run_then_run_then_dry_run_sees_the_cache(judge_server, tmp_path):
    data = write_records(tmp_path / "in.jsonl")
    jury = write_jury(tmp_path, [api_judge(judge_server)])
    r = CliRunner().invoke(main, ["score", str(data), "--jury", str(jury), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "judge a (openai model-a): 4 calls to make, 0 cached, ~" in r.output
    assert judge_server.stats()["calls"] == 0

    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["score", str(data), "-o", str(out), "--jury", str(jury), "--min-score", "2"])
    assert r.exit_code == 0, r.output
    assert "score.below_threshold" in r.output and "judge a (openai model-a): 4 scored, 0 failed" in r.output
    kept = pl.read_parquet(out / "kept.parquet")
    assert kept["score"].to_list() == [2.0, 3.0, 4.0]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["judges"]["a"]["calls"] == 4 and stats["histogram"]["1.0"] == 1

    r = CliRunner().invoke(main, ["score", str(data), "--jury", str(jury), "--dry-run"])
    assert "0 calls to make, 4 cached" in r.output


def test_calibrate_reports_agreement_with_human_labels(judge_server, tmp_path):
    # the server scores 1 + i % 5; people gave the same except for one record
    labels = write_records(tmp_path / "labels.jsonl", n=5,
                           extra=lambda i: {"human_score": (1 + i % 5) if i != 4 else 4})
    jury = write_jury(tmp_path, [api_judge(judge_server, "a"), api_judge(judge_server, "b", model="m2")])
    r = CliRunner().invoke(main, ["score", "--calibrate", str(labels), "--jury", str(jury)])
    assert r.exit_code == 0, r.output
    line = next(l for l in r.output.splitlines() if l.startswith("(jury)"))
    assert line.split()[1:4] == ["5", "0.80", "1.00"]  # n, exact, within one


def test_bad_jury_is_one_line_exit_2(tmp_path):
    data = write_records(tmp_path / "in.jsonl")
    bad = tmp_path / "bad.yaml"
    bad.write_text("judges: []\nrubric: x\n")
    r = CliRunner().invoke(main, ["score", str(data), "-o", str(tmp_path / "o"), "--jury", str(bad)])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and str(bad) in r.output


def test_validate_knows_juries(repo):
    r = CliRunner().invoke(main, ["validate", str(repo / "rules/juries/offline.yaml")])
    assert r.exit_code == 0 and "jury, 1 judges (smollm2)" in r.output


def test_sigint_mid_run_ends_promptly_and_leaves_a_sound_cache(judge_server, tmp_path):
    # SIGINT while requests are in flight (and a dripping one held by its deadline): the run
    # stops within a second or two and the cache holds what was answered, as a sound database
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    from .jurytools import REPO

    judge_server.stall_s = 30.0
    data = tmp_path / "in.jsonl"
    with open(data, "w") as f:
        for i in range(6):
            f.write(json.dumps({"instruction": f"fast{i} @score=3", "output": "a"}) + "\n")
        f.write(json.dumps({"instruction": "slow @stall", "output": "a"}) + "\n")
        f.write(json.dumps({"instruction": "drip @shape=drip_body", "output": "a"}) + "\n")
    jury = write_jury(tmp_path, [api_judge(judge_server)], timeout_s=60, retries=0, concurrency=4)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "score", str(data), "-o", str(tmp_path / "out"),
                             "--jury", str(jury)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while judge_server.stats()["statuses"].get("200", 0) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert b"Traceback" not in err, err.decode()[-2000:]
    assert time.monotonic() - t0 < 10
    assert proc.returncode != 0
    assert not (tmp_path / "out" / "kept.parquet").exists()
    con = sqlite3.connect(tmp_path / "cache.sqlite")
    assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 6


def test_score_shows_progress_on_a_terminal_and_not_when_quiet(judge_server, tmp_path, monkeypatch):
    import curate.progress

    data = write_records(tmp_path / "in.jsonl")
    jury = write_jury(tmp_path, [api_judge(judge_server)])
    monkeypatch.setattr(curate.progress, "is_tty", lambda stream: True)
    r = CliRunner().invoke(main, ["score", str(data), "-o", str(tmp_path / "o"), "--jury", str(jury)])
    assert r.exit_code == 0, r.output
    assert "\rjudging  4/4 calls  100%" in r.output and "judging: 4 calls in " in r.output
    r = CliRunner().invoke(main, ["-q", "score", str(data), "-o", str(tmp_path / "o2"), "--jury", str(jury),
                                  "--cache", str(tmp_path / "other.sqlite")])
    assert r.exit_code == 0, r.output
    assert "judging" not in r.output and "judge a (openai model-a): 4 scored" in r.output

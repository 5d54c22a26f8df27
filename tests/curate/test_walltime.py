"""stats.json says the whole command's wall time beside the stage's own seconds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from curate.walltime import since_start

REPO = Path(__file__).resolve().parents[2]


def test_since_start_counts_from_the_process_start():
    code = "import time; time.sleep(0.6); from curate.walltime import since_start; print(since_start())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    assert 0.6 <= float(out) < 30  # the sleep before the import is counted: the start, not the import
    t = since_start()
    time.sleep(0.05)
    assert since_start() >= t + 0.04


def test_a_command_records_its_wall_time_start_up_included(tmp_path):
    rows = [{"prompt": f"Question {i}?", "completion": f"Answer {i}."} for i in range(5)]
    (tmp_path / "raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "curate.cli", "filter", "raw.jsonl", "-o", "out"], cwd=tmp_path, check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.monotonic() - t0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["seconds"] < stats["command_seconds"] <= wall + 0.5
    assert 0 < stats["read_seconds"] and 0 < stats["stage_seconds"]
    assert stats["read_seconds"] + stats["stage_seconds"] <= stats["seconds"]
    assert stats["command_seconds"] > 0.3  # Python and polars starting up are part of it

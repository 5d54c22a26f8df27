"""The whole command's wall time, start-up included, for `stats.json`.

A stage's ``stats.json`` times its parts: ``read_seconds`` (reading the inputs),
``stage_seconds`` (the stage itself, numba's kernel loading included), ``seconds`` (the
two), ``write_seconds`` (the Parquet tables and text files; curate.stage). They
leave out what a user waits for around them: starting Python, importing the libraries,
parsing the command line and loading the config. ``command_seconds`` is measured from the
process's start (Linux: /proc; elsewhere from when this module was first imported) to
after the outputs are written, and added to the stats file the command wrote. It leaves
out only what comes after: the summary printed and the process's exit (curate.startup
ends it without Python's module teardown).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

_IMPORTED = time.monotonic()


def since_start() -> float:
    """Seconds since this process started."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        # field 22 of /proc/self/stat, after the command name (which may hold spaces) in parentheses
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - started)
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


def record(out, stats: dict) -> None:
    """Add ``command_seconds`` to ``stats`` and to OUT/stats.json (a local output; a URL's
    stats.json was uploaded with the rest and keeps the stage's seconds only)."""
    stats["command_seconds"] = round(since_start(), 3)
    path = Path(str(out)) / "stats.json"
    if "://" in str(out) or not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    data["command_seconds"] = stats["command_seconds"]
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")

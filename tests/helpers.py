"""Tiny inline records for rule tests."""
from __future__ import annotations

import polars as pl

from curate.record import record_id, records_frame


def convo(*turns: tuple[str, str] | str, **kw) -> list[dict]:
    """convo("user text", "assistant text") or convo(("system", "..."), ("user", "...")...)."""
    if turns and all(isinstance(t, str) for t in turns):
        roles = ["user", "assistant"] * len(turns)
        turns = tuple(zip(roles, turns))
    return [{"role": r, "content": c} for r, c in turns]


def frame(*conversations: list[dict]) -> pl.DataFrame:
    return records_frame([
        {"id": record_id(m), "messages": m, "source": f"test:{i + 1}", "meta": "{}"}
        for i, m in enumerate(conversations)
    ])


# two paraphrase pairs (0~1, 2~3) and two unrelated sentences: what the embedding tests dedup
SENTENCES = [
    "How do I reset my password?",
    "What is the way to reset my password?",
    "The cat sat quietly on the warm windowsill.",
    "A cat was sitting calmly on the sunny window ledge.",
    "Interest rates rose sharply in the third quarter.",
    "My favourite recipe for banana bread uses walnuts.",
]


def output_hashes(folder) -> dict[str, str]:
    """sha256 of every file a stage wrote but stats.json (timings): equal outputs, equal dicts."""
    import hashlib
    from pathlib import Path

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())
            if p.name != "stats.json"}


def untimed_stats(folder) -> dict:
    """A stage's stats.json without its timings (every *seconds key, judge latencies), at any depth."""
    import json
    from pathlib import Path

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not k.endswith("seconds") and k != "latency_s"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return strip(json.loads((Path(folder) / "stats.json").read_text()))

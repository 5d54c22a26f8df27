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

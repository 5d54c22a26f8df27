"""Write records out for people and other trainers: OpenAI, Alpaca or ShareGPT layout."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from .. import turns
from ..errors import InputError
from .read import SHAREGPT_FROM

def _alpaca(messages: list[dict]) -> dict | None:
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    if len(system) > 1 or len(turns) != 2 or [m["role"] for m in turns] != ["user", "assistant"]:
        return None
    out = {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"]}
    if system:
        out["system"] = system[0]
    return out


def convert(messages: list[dict], fmt: str) -> dict | None:
    if fmt == "openai":  # OpenAI's fine-tuning files carry weight, name and tool_calls too
        return {"messages": [turns.plain(m) for m in messages]}
    if fmt == "sharegpt":  # weight, as Axolotl reads it; no name nor tool calls
        return {"conversations": [{"from": SHAREGPT_FROM[m["role"]], "value": m["content"],
                                   **({"weight": m["weight"]} if m.get("weight") is not None else {})}
                                  for m in messages]}
    return _alpaca(messages)


# the turn fields each layout can write (turns.EXTRA); a record with others has no such form
CARRIES = {"openai": set(turns.EXTRA), "sharegpt": {"weight"}, "alpaca": set()}


def write_export(records: pl.DataFrame, dest: Path, fmt: str) -> int:
    rows = []
    for rid, messages in zip(records["id"].to_list(), records["messages"].to_list()):
        lost = sorted({k for m in messages for k in turns.EXTRA if m.get(k) is not None} - CARRIES[fmt])
        if lost:  # refuse rather than drop what the user said about a turn
            raise InputError(f"record {rid} has turns with {', '.join(lost)}, which the {fmt} layout cannot hold; "
                             "export as openai")
        item = convert(messages, fmt)
        if item is None:
            # Refuse rather than drop: a multi-turn record has no Alpaca form.
            raise InputError(f"record {rid} has {len(messages)} turns and no {fmt} form; export as openai or sharegpt")
        rows.append({"id": rid, **item})
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", encoding="utf-8") as fh:
        if dest.suffix.lower() == ".json":
            json.dump(rows, fh, ensure_ascii=False, indent=1)
            fh.write("\n")
        else:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return len(rows)

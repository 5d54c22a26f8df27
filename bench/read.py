"""Reading chat/instruction JSON Lines into the record table, end to end (files -> records),
the fast path (curate.jsonl_fast: msgspec per line, one convert+hash loop, Arrow table)
against the per-line path, in the same process.

    POLARS_MAX_THREADS=1 python bench/read.py [--records 200000] [--rounds 3]

Corpus (seeded): bench/dedup.py's Zipf-vocabulary documents (50-300 words) as the texts,
split into a question and an answer, with a line break every ~12 words and some non-ASCII
and quoted text; written as five files, one per layout: OpenAI ``messages`` (a third with
a system turn, an ``id`` field), ShareGPT ``conversations`` (``id``, ``source`` fields),
Alpaca (a third with an ``input``), prompt/completion, question/answer. Half the files are
written by ``json.dumps`` as it defaults (\\u escapes), half with ensure_ascii=False.
Both paths must return equal tables (checked); the figure is the median of the rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def texts(n: int) -> list[str]:
    from dedup import corpus

    docs, _ = corpus(n)
    spice = [" caf\u00e9", " \"quoted\"", " na\u00efve", " \u00fcber", " C:\\path", " \u4f60\u597d", " \U0001F600"]
    out = []
    for i, d in enumerate(docs):
        words = d.split(" ")
        for k in range(12, len(words), 12):
            words[k] += ".\n" if k % 24 else spice[(i + k) % len(spice)]
        out.append(" ".join(words))
    return out


def layouts(n: int) -> dict[str, list[dict]]:
    docs = texts(n)
    out: dict[str, list[dict]] = {k: [] for k in ("openai", "sharegpt", "alpaca", "pc", "qa")}
    for i, d in enumerate(docs):
        cut = d.find(" ", len(d) // 3)
        q, a = d[:cut], d[cut + 1:]
        kind = list(out)[i % 5]
        if kind == "openai":
            turns = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            if i % 3 == 0:
                turns.insert(0, {"role": "system", "content": "You are a helpful assistant."})
            out[kind].append({"messages": turns, "id": f"oa-{i}"})
        elif kind == "sharegpt":
            out[kind].append({"id": f"sg-{i}", "conversations": [{"from": "human", "value": q},
                                                                 {"from": "gpt", "value": a}], "source": "bench"})
        elif kind == "alpaca":
            out[kind].append({"instruction": q, "input": "context" if i % 3 == 0 else "", "output": a})
        elif kind == "pc":
            out[kind].append({"prompt": q, "completion": a})
        else:
            out[kind].append({"question": q, "answer": a})
    return out


def write(folder: Path, n: int) -> int:
    size = 0
    for j, (kind, rows) in enumerate(layouts(n).items()):
        path = folder / f"{kind}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=bool(j % 2)) + "\n")
        size += path.stat().st_size
    return size


def timed(folder: Path, fast: bool):
    from curate import readers

    readers._FAST_JSONL = fast
    t = time.perf_counter()
    read = readers.read_inputs([folder])
    return time.perf_counter() - t, read


def stages(folder: Path) -> None:
    """Where the fast path's time goes: one more read with its steps timed."""
    from curate import jsonl_fast, readers

    spent: dict[str, float] = {}

    def timer(module, name):
        inner = getattr(module, name)

        def wrapped(*a, **k):
            t = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
        setattr(module, name, wrapped)
        return inner

    steps = [(readers, "_read_jsonl"), (jsonl_fast, "read_lines"), (jsonl_fast, "_table")]
    saved = [(m, n, timer(m, n)) for m, n in steps]
    try:
        total, _ = timed(folder, True)
    finally:
        for m, n, f in saved:
            setattr(m, n, f)
    print(f"\nsteps of one fast read ({total:.2f} s end to end):")
    print(f"  {'decode, convert, hash (read_lines less _table)':<50} {spent['read_lines'] - spent['_table']:6.2f} s")
    print(f"  {'record table from flat lists (_table)':<50} {spent['_table']:6.2f} s")
    print(f"  {'file read, merge in line order (_read_jsonl rest)':<50} {spent['_read_jsonl'] - spent['read_lines']:6.2f} s")
    print(f"  {'folder walk, sources, concat (rest)':<50} {total - spent['_read_jsonl']:6.2f} s")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stages", action="store_true", help="also time the fast path's steps")
    args = ap.parse_args()
    import polars as pl

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        size = write(folder, args.records)
        print(f"{args.records} records, 5 layouts, {size / 2**20:.0f} MiB of JSONL; "
              f"polars threads: {pl.thread_pool_size()}, rounds: {args.rounds}")
        times: dict[str, list[float]] = {"fast (msgspec)": [], "per-line": []}
        for _ in range(args.rounds):
            t_fast, fast = timed(folder, True)
            t_slow, slow = timed(folder, False)
            assert fast.records.equals(slow.records) and fast.rejected.equals(slow.rejected), "the paths differ"
            assert fast.records.height == args.records and fast.rejected.height == 0
            times["fast (msgspec)"].append(t_fast)
            times["per-line"].append(t_slow)
        if args.stages:
            stages(folder)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{'reader (files -> record table)':<32} {'median s':>9} {'records/s':>11} {'MiB/s':>7}")
    for k, v in med.items():
        print(f"{k:<32} {v:>9.2f} {args.records / v:>11,.0f} {size / 2**20 / v:>7.0f}")
    print(f"the fast path is {med['per-line'] / med['fast (msgspec)']:.1f}x the per-line path "
          f"(all rounds: {', '.join(f'{a:.2f}/{b:.2f}' for a, b in zip(times['fast (msgspec)'], times['per-line']))} s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())

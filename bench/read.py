"""Reading chat/instruction JSON Lines into the record table, end to end (files -> records),
the native tier (curate.jsonl_native: one numba scan of the file buffer, then the msgspec
and per-line tiers for what it hands on) and the msgspec tier alone (curate.jsonl_fast: msgspec
per line, one convert+hash loop, Arrow table) against the per-line path, in the same process.

    POLARS_MAX_THREADS=1 python bench/read.py [--records 200000] [--rounds 3]

Corpus (seeded): bench/dedup.py's Zipf-vocabulary documents (50-300 words) as the texts,
split into a question and an answer, with a line break every ~12 words and some non-ASCII
and quoted text; written as five files, one per layout: OpenAI ``messages`` (a third with
a system turn, an ``id`` field), ShareGPT ``conversations`` (``id``, ``source`` fields),
Alpaca (a third with an ``input``), prompt/completion, question/answer. Half the files are
written by ``json.dumps`` as it defaults (\\u escapes), half with ensure_ascii=False.
All paths must return equal tables (checked); the figure is the median of the rounds. The
native kernel is compiled (or loaded from numba's cache) by a warm-up read of a tiny file
first, timed apart.
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


PATHS = {"native (numba + msgspec)": (True, True), "msgspec": (True, False), "per-line": (False, False)}


def timed(folder: Path, fast: bool, native: bool = True):
    from curate import readers

    readers._FAST_JSONL, readers._NATIVE_JSONL = fast, native
    t = time.perf_counter()
    read = readers.read_inputs([folder])
    return time.perf_counter() - t, read


def warm_up() -> tuple[float, float]:
    """Seconds to import the native tier, and to read a one-line file with it (compiling the
    kernel or loading it from numba's cache)."""
    from curate import readers

    t = time.perf_counter()
    from curate import jsonl_native  # noqa: F401
    t_import = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "one.jsonl").write_text('{"prompt": "p", "completion": "c"}\n')
        saved, readers._NATIVE_MIN_BYTES = readers._NATIVE_MIN_BYTES, 0  # this small file too
        t = time.perf_counter()
        try:
            timed(Path(tmp), True)
        finally:
            readers._NATIVE_MIN_BYTES = saved
    return t_import, time.perf_counter() - t


def stages(folder: Path) -> None:
    """Where the native path's time goes: one more read with its steps timed."""
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

    from curate import jsonl_native, jsonl_native_kernel

    steps = [(readers, "_read_jsonl"), (jsonl_native, "read_native"), (jsonl_native_kernel, "scan"),
             (jsonl_native, "_ids"), (jsonl_native, "_table"), (jsonl_fast, "read_numbered")]
    saved = [(m, n, timer(m, n)) for m, n in steps]
    try:
        total, _ = timed(folder, True)
    finally:
        for m, n, f in saved:
            setattr(m, n, f)
    native = spent["read_native"]
    print(f"\nsteps of one native read ({total:.2f} s end to end):")
    ids = spent.get("_ids", 0.0)  # (0 where the scan hashes the ids itself: jsonl_native.sha256_address)
    for what, s in [("scan (numba kernel)" + (", ids hashed in it" if jsonl_native.sha256_address() else ""), spent["scan"]),
                    ("ids (Python's sha256 loop)", ids),
                    ("record table from the buffers (_table)", spent["_table"]),
                    ("file reads, hand-on list (read_native rest)", native - spent["scan"] - ids - spent["_table"]),
                    ("msgspec tier (read_numbered)", spent.get("read_numbered", 0.0)),
                    ("file open, merge in line order (_read_jsonl rest)", spent["_read_jsonl"] - native - spent.get("read_numbered", 0.0)),
                    ("folder walk, sources, concat (rest)", total - spent["_read_jsonl"])]:
        print(f"  {what:<50} {s:6.2f} s")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stages", action="store_true", help="also time the fast path's steps")
    args = ap.parse_args()
    import polars as pl

    from curate import readers

    t_import, t_first = warm_up()
    readers._NATIVE_MIN_BYTES = 0  # --records small enough for files under 8 MiB: still the native tier
    print(f"native tier: import {t_import:.2f} s, first read of a one-line file {t_first:.2f} s "
          "(numba compiles the kernel, or loads it from its cache)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        size = write(folder, args.records)
        print(f"{args.records} records, 5 layouts, {size / 2**20:.0f} MiB of JSONL; "
              f"polars threads: {pl.thread_pool_size()}, rounds: {args.rounds}")
        times: dict[str, list[float]] = {k: [] for k in PATHS}
        for _ in range(args.rounds):
            reads = {}
            for name, (fast, native) in PATHS.items():
                before = dict(readers.TIER_LINES)
                times[name].append((t := timed(folder, fast, native))[0])
                reads[name] = t[1]
                tiers = {k: readers.TIER_LINES[k] - before[k] for k in before}
                if fast and native:
                    assert tiers["native"] == args.records, f"the native tier read only {tiers}"
            ref = reads["per-line"]
            for name, read in reads.items():
                assert read.records.equals(ref.records) and read.rejected.equals(ref.rejected), f"{name} differs"
            assert ref.records.height == args.records and ref.rejected.height == 0
        if args.stages:
            stages(folder)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{'reader (files -> record table)':<32} {'median s':>9} {'records/s':>11} {'MiB/s':>7} {'vs per-line':>12}")
    for k, v in med.items():
        print(f"{k:<32} {v:>9.2f} {args.records / v:>11,.0f} {size / 2**20 / v:>7.0f} {med['per-line'] / v:>11.1f}x")
    print("all rounds: " + "; ".join(f"{k} " + ", ".join(f"{t:.2f}" for t in v) for k, v in times.items()) + " s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())

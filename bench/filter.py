"""Filter throughput: the vectorised engine against a per-record Python loop of the same rules.

    make bench        # or: python bench/filter.py [--records 100000] [--threads 2]

Both run in this process on the same records, best of three runs each, on one core (POLARS_MAX_THREADS=1 and
NUMBA_NUM_THREADS=1 for the compiled repetition pass), every rule
on every record (no short-circuit on either side). Prints µs/record per rule for both, the
ratio, and records/s overall. The reference is curate.testing.filter_reference, which tests check
rejects exactly the same records as the engine.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# threads are fixed when polars and numba load, so read --threads before importing them
_threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
os.environ.setdefault("POLARS_MAX_THREADS", _threads)
os.environ.setdefault("NUMBA_NUM_THREADS", _threads)
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "data")]

PARSER_RULES = {"json", "python"}


def compare(records, label: str, repeats: int) -> None:
    import polars as pl

    from curate.filter import load_rules, run
    from curate.testing.filter_reference import Compiled
    from curate.filter.textchecks import FormatRule

    n = records.height
    rules = load_rules()
    print(f"\n## {n} {label}; default rules; polars threads={pl.thread_pool_size()}, "
          f"numba threads={os.environ.get('NUMBA_NUM_THREADS')}; best of {repeats} runs")

    # Best of `repeats` runs on both sides, per rule: the machine is shared, and a pause in
    # one run otherwise moves the ratio by a third.
    run(records.head(1000), rules)  # warm up regex caches
    eng: dict[str, float] = {}
    engine_total = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        result = run(records, rules)
        engine_total = min(engine_total, time.perf_counter() - t)
        for name, s in result.stats["rule_seconds"].items():
            eng[name] = min(eng.get(name, s), s)

    messages = records["messages"].to_list()
    ref: dict[str, float] = {}
    for rule in rules.rules:
        c = Compiled(rule)
        for _ in range(repeats):
            t = time.perf_counter()
            for m in messages:
                c.check(m)
            ref[rule.name] = min(ref.get(rule.name, float("inf")), time.perf_counter() - t)
    ref_total = sum(ref.values())

    us = lambda s: 1e6 * s / n  # noqa: E731
    print(f"\n{'rule':<31} {'engine µs/rec':>13} {'per-record µs/rec':>17} {'ratio':>7}")
    vec_e = eng["(fields)"]
    vec_r = par_e = par_r = 0.0
    print(f"{'(field extraction)':<31} {us(eng['(fields)']):>13.2f} {'':>17} {'':>7}")
    for rule in rules.rules:
        e, r = eng[rule.name], ref[rule.name]
        parser = isinstance(rule, FormatRule) and rule.check in PARSER_RULES
        if parser:
            par_e, par_r = par_e + e, par_r + r
        else:
            vec_e, vec_r = vec_e + e, vec_r + r
        tag = " (parser)" if parser else ""
        print(f"{rule.name + tag:<31} {us(e):>13.2f} {us(r):>17.2f} {r / max(e, 1e-9):>6.1f}x")
    print(f"\n{'vectorisable rules + fields':<31} {us(vec_e):>13.2f} {us(vec_r):>17.2f} {vec_r / vec_e:>6.1f}x")
    print(f"{'parser rules (row by row)':<31} {us(par_e):>13.2f} {us(par_r):>17.2f} {par_r / max(par_e, 1e-9):>6.1f}x")
    print(f"{'whole stage':<31} {us(engine_total):>13.2f} {us(ref_total):>17.2f} {ref_total / engine_total:>6.1f}x")
    print(f"records/s: engine {n / engine_total:,.0f}, per-record loop {n / ref_total:,.0f}")
    slowest = max(rules.rules, key=lambda r: eng[r.name])
    print(f"slowest rule in the engine: {slowest.name} at {us(eng[slowest.name]):.2f} µs/record")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--threads", default="1", help="engine threads (polars, numba); the loop is one thread")
    ap.add_argument("--repeats", type=int, default=3, help="runs per side; the best one counts")
    args = ap.parse_args()

    import make_demo
    import polars as pl

    from curate.readers import read_inputs

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        path.write_bytes(make_demo.build(n_clean=int(args.records / 1.078)))
        records = read_inputs([path]).records.head(args.records)
    compare(records, "synthetic records (data/make_demo.py)", args.repeats)

    shared = REPO.parent / "shared" / "datasets"
    if shared.is_dir():
        real = read_inputs([shared / "gsm8k" / "train.jsonl", shared / "gpteacher" / "roleplay.json",
                            shared / "gpteacher" / "toolformer-dedupe-only.json"]).records
        tiled = pl.concat([real] * (args.records // real.height + 1)).head(args.records)
        compare(tiled, f"real records (GSM8K + GPTeacher: {real.height} records, tiled)", args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())

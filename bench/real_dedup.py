"""How many GPTeacher Toolformer records each dedup method keeps at thresholds 0.6-0.9,
beside the counts the dataset's authors published for their own similarity cleaning.

    python bench/real_dedup.py [--on conversation|prompt|response] [--examples 3]

Needs ../shared/datasets (skips otherwise). Embeddings are cached, so a rerun is quick.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "datasets" / "gpteacher" / "toolformer-dedupe-only.json"
PUBLISHED = {0.9: 5959, 0.8: 4709, 0.7: 3487, 0.6: 2396}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--on", default="conversation", choices=["conversation", "prompt", "response"])
    ap.add_argument("--examples", type=int, default=2)
    args = ap.parse_args()
    if not DATA.is_file():
        print(f"{DATA} is absent: nothing to measure")
        return 0
    import polars as pl

    from curate.dedup import DedupConfig, run
    from curate.readers import read_inputs

    records = read_inputs([DATA]).records
    exact = run(records, DedupConfig(methods=["exact"], on=args.on))
    print(f"{records.height} records, --on {args.on}; exact duplicates: {exact.rejected.height}")
    print(f"\n{'threshold':>9} {'published':>9} {'minhash':>8} {'minhash --verify exact':>22} {'semantic':>9}")
    samples = {}
    for t in (0.9, 0.8, 0.7, 0.6):
        row = []
        for method, verify in (("minhash", "estimate"), ("minhash", "exact"), ("semantic", "estimate")):
            cfg = DedupConfig(methods=["exact", method], threshold={method: t}, on=args.on, verify=verify)
            res = run(records, cfg)
            row.append(res.kept.height)
            samples[(method, verify, t)] = res
        print(f"{t:>9} {PUBLISHED[t]:>9} {row[0]:>8} {row[1]:>22} {row[2]:>9}")

    def text(msgs):
        return " | ".join(m["content"].replace("\n", " ")[-160:] for m in msgs if m["role"] != "system")

    for key in (("minhash", "exact", 0.8), ("semantic", "estimate", 0.9), ("semantic", "estimate", 0.7)):
        res = samples[key]
        rej = res.rejected.filter(pl.col("rule") != "dedup.exact")
        if rej.height == 0:
            continue
        by_id = {r["id"]: r["messages"] for r in pl.concat([res.kept, rej], how="diagonal_relaxed").iter_rows(named=True)}
        clusters = res.extra["clusters"]
        print(f"\n{key[0]} (verify {key[1]}) at {key[2]}: example pairs (last 160 characters of each turn)")
        step = max(1, rej.height // args.examples)
        for row in rej[::step].head(args.examples).iter_rows(named=True):
            kept_id = clusters.filter(pl.col("id") == row["id"])["kept_id"][0]
            print(f"  {row['reason']}\n    kept:    {text(by_id[kept_id])}\n    removed: {text(row['messages'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

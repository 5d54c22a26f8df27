"""Scale-out: filtering and MinHash dedup of generated documents on the local engine and on
Ray Data with 1 and 2 CPUs of this machine, in one run.

    python bench/scale.py [--docs 1000000]

Corpus (seeded): chat records, a user turn of 8-40 words and an assistant turn of 30-150
words from a Zipf vocabulary; 5% near duplicates (a few words changed), 3% exact
duplicates, and a few percent that the default rules reject (refusals, too short,
repeated lines). Every engine runs the default rule set, then MinHash (word 5-grams,
128 permutations, threshold 0.8) on the filter's survivors.

Everything is one core unless said: POLARS_MAX_THREADS, NUMBA_NUM_THREADS and
OMP_NUM_THREADS are 1, so "local" is the one-core reference, "ray x1" pays Ray's overhead
on the same core, and "ray x2" shows what a second worker buys (this machine has 2 cores,
and the driver shares them). Ray's start-up is timed on its own line, not in the stages.
Outputs are compared byte for byte across engines. Per-document costs (signature bytes,
shuffle rows, candidate edges) feed the capacity estimate in the README.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path

for var in ("POLARS_MAX_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[var] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def corpus(n: int, seed: int = 0):
    import polars as pl

    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(40_000)])
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.05
    p /= p.sum()
    users, answers = [], []
    u_len = rng.integers(8, 41, n)
    a_len = rng.integers(30, 151, n)
    pool = vocab[rng.choice(len(vocab), size=int(u_len.sum() + a_len.sum()), p=p)]
    at = 0
    kind = rng.random(n)
    for i in range(n):
        u = pool[at:at + u_len[i]]
        at += u_len[i]
        a = pool[at:at + a_len[i]]
        at += a_len[i]
        users.append(" ".join(u.tolist()).capitalize() + "?")
        answers.append(" ".join(a.tolist()).capitalize() + ".")
        k = kind[i]
        if i > 10 and k < 0.03:  # exact duplicate of an earlier record
            j = int(rng.integers(0, i))
            users[i], answers[i] = users[j], answers[j]
        elif i > 10 and k < 0.08:  # near duplicate: a few words of the answer changed
            j = int(rng.integers(0, i))
            words = answers[j].split(" ")
            for w in rng.integers(0, len(words), max(1, len(words) // 60)).tolist():
                words[w] = "x" + words[w]
            users[i], answers[i] = users[j], " ".join(words)
        elif k > 0.985:
            answers[i] = "I'm sorry, but I cannot help with that request."
        elif k > 0.975:
            answers[i] = "Yes."
        elif k > 0.968:
            answers[i] = "\n".join([answers[i][:60]] * 8)
    msg = pl.DataFrame({"u": users, "a": answers}).select(pl.concat_list([
        pl.struct(role=pl.lit("user"), content=pl.col("u")),
        pl.struct(role=pl.lit("assistant"), content=pl.col("a"))]).alias("messages"))
    return pl.DataFrame({
        "id": [f"{i:016x}" for i in range(n)],
        "messages": msg["messages"],
        "source": [f"bench:{i + 1}" for i in range(n)],
        "meta": ["{}"] * n,
    })


def digest(df) -> str:
    from curate.stage import write_parquet

    buf = io.BytesIO()
    write_parquet(df, buf)  # the bytes a stage would write
    return hashlib.sha256(buf.getvalue()).hexdigest()[:16]


def run_engine(engine: str, records, rules, dedup_cfg) -> dict:
    from curate.engine import stage_runner

    t = time.perf_counter()
    f = stage_runner("filter", rules, engine)(records)
    t_filter = time.perf_counter() - t
    t = time.perf_counter()
    d = stage_runner("dedup", dedup_cfg, engine)(f.kept)
    t_dedup = time.perf_counter() - t
    m = d.stats["methods"][0]
    return {"filter_s": t_filter, "dedup_s": t_dedup, "filter_kept": f.kept.height,
            "filter_rejected": f.rejected.height, "dedup_kept": d.kept.height, "dedup_rejected": d.rejected.height,
            "bands": m["bands"], "rows": m["rows"], "candidate_pairs": m["candidate_pairs"],
            "verified_pairs": m["verified_pairs"],
            "hashes": [digest(f.kept), digest(f.rejected), digest(d.kept), digest(d.rejected),
                       digest(d.extra["clusters"])]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "scale.json"))
    args = ap.parse_args()

    from curate.dedup import DedupConfig
    from curate.filter import load_rules

    t = time.perf_counter()
    records = corpus(args.docs)
    print(f"corpus: {records.height:,} records, {records['messages'].list.eval(pl_len()).explode().sum() / 1e6:.0f} M "
          f"characters, generated in {time.perf_counter() - t:.0f} s", flush=True)
    rules = load_rules()
    cfg = DedupConfig(methods=["minhash"], threshold={"minhash": 0.8})

    results = {"local": run_engine("local", records, rules, cfg)}
    print(_line("local", results["local"]), flush=True)
    import ray

    from curate.engine import ray_engine

    for cpus in (1, 2):
        os.environ["CURATE_RAY_CPUS"] = str(cpus)
        t = time.perf_counter()
        ray_engine.connect()
        start = time.perf_counter() - t
        results[f"ray x{cpus}"] = {**run_engine("ray", records, rules, cfg), "start_s": start}
        print(_line(f"ray x{cpus}", results[f"ray x{cpus}"]), flush=True)
        ray.shutdown()

    same = report(results)
    per_doc = per_document(results["local"], cfg)
    print("per document: " + ", ".join(f"{k} {v:.4g}" for k, v in per_doc.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"docs": args.docs, "results": results, "per_doc": per_doc,
                                          "identical": same}, indent=2) + "\n")
    print(f"wrote {args.out}")


def report(results: dict) -> bool:
    """The table of stage times and ratios against local and ray x1; whether every engine's
    outputs are byte-identical to the local engine's."""
    base, r1, r2 = results["local"], results["ray x1"], results["ray x2"]
    same = all(r["hashes"] == base["hashes"] for r in results.values())
    print()
    print(f"{'':<8} {'filter s':>9} {'minhash s':>10} {'total s':>8} {'vs local':>9} {'vs ray x1':>10}")
    for name, r in results.items():
        total = r["filter_s"] + r["dedup_s"]
        print(f"{name:<8} {r['filter_s']:>9.1f} {r['dedup_s']:>10.1f} {total:>8.1f} "
              f"{(base['filter_s'] + base['dedup_s']) / total:>8.2f}x "
              f"{(r1['filter_s'] + r1['dedup_s']) / total:>9.2f}x")
    print(f"ray start-up: {r1['start_s']:.1f} s (x1), {r2['start_s']:.1f} s (x2), not in the stage times")
    print(f"ray overhead at 1 worker: filter {r1['filter_s'] / base['filter_s']:.2f}x, minhash "
          f"{r1['dedup_s'] / base['dedup_s']:.2f}x the local time; speed-up at 2 workers: filter "
          f"{r1['filter_s'] / r2['filter_s']:.2f}x, minhash {r1['dedup_s'] / r2['dedup_s']:.2f}x")
    print(f"outputs byte-identical across engines: {'yes' if same else 'NO'}")
    return same


def per_document(base: dict, cfg) -> dict:
    """The local run's costs per document: what sizing a cluster from them needs."""
    n_f, n_d = base["filter_kept"] + base["filter_rejected"], base["filter_kept"]
    return {
        "filter_us_per_doc_core": 1e6 * base["filter_s"] / n_f,
        "minhash_us_per_doc_core": 1e6 * base["dedup_s"] / n_d,
        "signature_bytes": 4 * cfg.num_perm,
        "shuffle_rows_per_doc": base["bands"],
        "shuffle_bytes_per_row": 20,  # row and key (8 bytes each), band and partition (2 each)
        "candidate_pairs_per_doc": base["candidate_pairs"] / n_d,
        "verified_pairs_per_doc": base["verified_pairs"] / n_d,
        "duplicate_share": base["dedup_rejected"] / n_d,
    }


def pl_len():
    import polars as pl

    return pl.element().struct.field("content").str.len_chars()


def _line(name: str, r: dict) -> str:
    return (f"{name:<8} filter {r['filter_s']:.1f} s ({r['filter_kept']:,} kept), minhash {r['dedup_s']:.1f} s "
            f"({r['dedup_rejected']:,} duplicates, {r['candidate_pairs']:,} candidate pairs, bands {r['bands']}x{r['rows']})")


if __name__ == "__main__":
    main()

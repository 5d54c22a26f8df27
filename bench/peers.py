"""curate's dedup and filter commands against their peers, end to end, each tool in its own process.

    python -m venv /work/bench-venv && /work/bench-venv/bin/pip install '.[bench]'   # the peers, apart
    flock /tmp/cpu.lock python bench/peers.py --peer-python /work/bench-venv/bin/python

The peers run under ``--peer-python`` (default: this interpreter), a separate environment:
datatrove pins xxhash<4 and pulls in spaCy, which the main install must not get. Every run is
one process, file in -> deduplicated (or filtered) file out, pinned to one CPU with one thread
(OMP/POLARS/NUMBA/RAYON_NUM_THREADS=1), timed by wall clock and by its CPU seconds (os.wait4);
tools are interleaved within a round, three rounds, medians; the load average is noted per run.
Every tool runs as installed: the peers' packages hold their bytecode (pip compiles it at
install) and curate's is compiled here first (``compileall``, into the ignored ``__pycache__``),
as a wheel install or an editable one's first run leaves it; with PYTHONDONTWRITEBYTECODE set
(as on the project's VMs) curate alone would otherwise compile the source of every module it imports on
every run (~0.04 CPU-s a command). numba's kernel cache is warmed by one untimed run.

Dedup: bench/dedup.py's corpus (seeded; near, exact and hard-negative duplicates), word
5-grams, 128 permutations, threshold 0.8. curate reads its own JSONL (prompt/completion) or a
record-table Parquet (its reader's cost apart); peers read JSONL {id, text} of the same texts.
datatrove (4 MinHash stages, 18x7 hashes, digits left as they are) and datasketch (the
per-document MinHash + LSH loop) are slow: they run on the first ``--slow-docs`` documents,
and their rate is per document. Quality on the first ``--sample`` documents against the
brute-force Jaccard of every pair: pair recall (true pairs, J >= 0.8, with a member removed)
and removal precision (removed documents that have a true partner).

Filter: ``curate filter`` (default rules) against datatrove's Gopher repetition + quality
filters, on the real datasets (GSM8K, GPTeacher; ../shared/datasets) tiled to ``--records``
(datatrove on the first ``--slow-records``). rensa's one-call duplicate flags mark every member
of a shared band bucket, the first copy too, unverified: its removal precision shows that.
semhash is not run: it embeds with a model2vec model that is not available offline here.

One extra row per table, printed after it and labelled as such: curate with ``--compression none``
(uncompressed Parquet, ~3x larger files; docs/speed.md "Output compression, session 6"), run
in the same rounds. It never replaces the default rows, and the "ours is" ratios are the
default run's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
SHARED = REPO.parent / "shared" / "datasets"
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "POLARS_MAX_THREADS", "NUMBA_NUM_THREADS", "RAYON_NUM_THREADS",
                               "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def timed(cmd: list[str], cpu: int) -> dict:
    """Run ``cmd`` on one CPU; its wall and CPU seconds and the load average when it started."""
    load = os.getloadavg()[0]
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"{cmd[:4]} failed: {err.decode(errors='replace')[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "load": load}


def write_corpus(docs: list[str], folder: Path, name: str) -> dict[str, Path]:
    """The same texts as curate's JSONL, a record-table Parquet, and the peers' {id, text}."""
    from curate.readers import read_inputs

    paths = {"ours": folder / f"{name}.jsonl", "peers": folder / f"{name}-text.jsonl",
             "parquet": folder / f"{name}.parquet"}
    with open(paths["ours"], "w") as f, open(paths["peers"], "w") as g:
        for i, d in enumerate(docs):
            w = d.split(" ")  # a prompt and a completion: the conversation has the same words
            f.write(json.dumps({"prompt": " ".join(w[:20]), "completion": " ".join(w[20:])}) + "\n")
            g.write(json.dumps({"id": str(i), "text": d}) + "\n")
    read_inputs([paths["ours"]]).records.write_parquet(paths["parquet"])
    return paths


def dedup_tools(py: str, peer: str, full: dict, slow: dict) -> dict[str, tuple[list[str], Path]]:
    ours = [py, "-m", "curate.cli", "dedup", "--method", "minhash"]
    runner = [peer, str(REPO / "bench" / "peers_run.py")]
    return {"curate (JSONL in)": (ours + [str(full["ours"]), "-o"], full["ours"]),
            "curate (Parquet in)": (ours + [str(full["parquet"]), "-o"], full["ours"]),
            "rensa": (runner + ["rensa", str(full["peers"])], full["peers"]),
            "datasketch loop": (runner + ["datasketch", str(slow["peers"])], slow["peers"]),
            "datatrove MinHash": (runner + ["datatrove_minhash", str(slow["peers"])], slow["peers"])}


def lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def rounds(tools: dict, rounds_: int, tmp: Path, cpu: int) -> dict[str, dict]:
    """Each tool once per round, interleaved; medians of wall and CPU seconds."""
    runs: dict[str, list[dict]] = {name: [] for name in tools}
    for r in range(rounds_):
        for name, (cmd, src) in tools.items():
            out = tmp / f"out-{r}-{len(runs[name])}-{abs(hash(name))}"
            runs[name].append(timed(cmd + [str(out)], cpu))
            print(f"  round {r + 1} {name}: {runs[name][-1]['wall']:.2f} s wall, {runs[name][-1]['cpu']:.2f} s CPU, "
                  f"load {runs[name][-1]['load']:.2f}", flush=True)
    result = {}
    for name, (cmd, src) in tools.items():
        n = lines(src)
        wall = statistics.median(x["wall"] for x in runs[name])
        cpu_s = statistics.median(x["cpu"] for x in runs[name])
        result[name] = {"docs": n, "wall_s": wall, "cpu_s": cpu_s, "docs_per_s": n / wall, "docs_per_cpu_s": n / cpu_s,
                        "load": [round(x["load"], 2) for x in runs[name]]}
    return result


def kept_ids(out: Path) -> set[int]:
    """Which input documents (0-based) a tool kept, from its output folder."""
    import polars as pl

    if (out / "kept.parquet").is_file():  # curate: the source column is FILE:LINE (1-based)
        src = pl.read_parquet(out / "kept.parquet", columns=["source"])["source"]
        return {int(s.rsplit(":", 1)[1]) - 1 for s in src.to_list()}
    ids = set()
    for f in out.glob("*.jsonl"):
        with open(f) as fh:
            ids.update(int(json.loads(line)["id"]) for line in fh)
    return ids


def quality(docs: list[str], tools: dict, tmp: Path, cpu: int) -> dict[str, dict]:
    from dedup import THRESHOLD, truth

    true = truth(docs)
    pairs = [p for p, s in true.items() if s >= THRESHOLD]
    has_partner = {i for p in pairs for i in p}
    out = {}
    for name, (cmd, _) in tools.items():
        folder = tmp / f"q-{abs(hash(name))}"
        timed(cmd + [str(folder)], cpu)
        kept = kept_ids(folder)
        removed = set(range(len(docs))) - kept
        caught = sum(1 for a, b in pairs if a in removed or b in removed)
        out[name] = {"removed": len(removed), "pair_recall": caught / max(len(pairs), 1),
                     "removal_precision": len(removed & has_partner) / max(len(removed), 1), "true_pairs": len(pairs)}
    return out


def filter_inputs(n: int, folder: Path, n_peers: int) -> dict[str, Path]:
    """The real datasets tiled to n records: curate's openai JSONL, and the peers' {id, text}
    of the same conversations (turns joined by a blank line, as curate's rules read them)."""
    import polars as pl

    from curate.filter.fields import field_text
    from curate.readers import read_inputs

    real = read_inputs([SHARED / "gsm8k" / "train.jsonl", SHARED / "gpteacher" / "roleplay.json",
                        SHARED / "gpteacher" / "toolformer-dedupe-only.json"]).records
    tiled = pl.concat([real] * (n // real.height + 1)).head(n)
    texts = tiled.select(field_text("conversation").alias("t"))["t"].to_list()
    paths = {"ours": folder / "real.jsonl", "peers": folder / "real-text.jsonl"}
    with open(paths["ours"], "w") as f, open(paths["peers"], "w") as g:
        for i, (msgs, text) in enumerate(zip(tiled["messages"].to_list(), texts)):
            f.write(json.dumps({"messages": [{"role": m["role"], "content": m["content"] or ""} for m in msgs]}) + "\n")
            if i < n_peers:  # datatrove's filters are slow: the first n_peers records
                g.write(json.dumps({"id": str(i), "text": text}) + "\n")
    return paths


def uncompressed(tools: dict, name: str) -> tuple[str, dict]:
    """``tools`` plus ``name`` again with ``--compression none`` (its label, the tools)."""
    cmd, src = tools[name]
    label = f"{name}, --compression none"
    return label, {**tools, label: (cmd[:-1] + ["--compression", "none"] + cmd[-1:], src)}  # cmd ends with -o


def split_extra(result: dict, label: str) -> tuple[dict, dict]:
    """The default rows and the extra row apart: the table and its ratios are the defaults'."""
    return {k: v for k, v in result.items() if k != label}, {label: result[label]}


def extra_table(extra: dict, result: dict, ours: str) -> None:
    base = result[ours]["cpu_s"]
    for name, r in extra.items():
        print(f"extra, not the default: {name}: {r['docs']} docs, {r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} CPU-s "
              f"({r['docs_per_cpu_s']:,.0f} docs/CPU-s; {r['cpu_s'] / base:.2f}x the default run's CPU-s), "
              f"load {r['load']}")


def table(title: str, result: dict, ours: str) -> None:
    print(f"\n{title}")
    print(f"{'tool':<22} {'docs':>8} {'wall s':>8} {'CPU s':>8} {'docs/s':>9} {'docs/CPU-s':>11} {'ours is':>8}  load")
    base = result[ours]["docs_per_cpu_s"]
    for name, r in result.items():
        print(f"{name:<22} {r['docs']:>8} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} {r['docs_per_s']:>9,.0f} "
              f"{r['docs_per_cpu_s']:>11,.0f} {base / r['docs_per_cpu_s']:>7.1f}x  {r['load']}")


def versions(peer: str) -> dict:
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "('datatrove', 'rensa', 'datasketch', 'xxhash', 'spacy')}))")
    ours = {p: __import__("importlib.metadata").metadata.version(p) for p in ("polars", "numba", "numpy")}
    return {**ours, **json.loads(subprocess.run([peer, "-c", code], capture_output=True, text=True).stdout or "{}")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--slow-docs", type=int, default=20_000, help="documents for datatrove MinHash and datasketch")
    ap.add_argument("--sample", type=int, default=5_000)
    ap.add_argument("--records", type=int, default=100_000, help="filter: real records, tiled")
    ap.add_argument("--slow-records", type=int, default=20_000, help="filter: records for datatrove's Gopher filters")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peer-python", default=sys.executable)
    ap.add_argument("--cpu", type=int, default=0, help="the CPU every run is pinned to")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    from dedup import corpus

    py = sys.executable
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
              "versions": versions(args.peer_python)}
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp_:
        tmp = Path(tmp_)
        docs, kinds = corpus(args.docs)
        full = write_corpus(docs, tmp, "full")
        slow = write_corpus(docs[:args.slow_docs], tmp, "slow")
        sample = write_corpus(docs[:args.sample], tmp, "sample")
        print(f"corpus: {len(docs)} docs, planted {kinds}; {report['versions']}", flush=True)
        subprocess.run([py, "-m", "compileall", "-q", str(REPO / "curate")], check=True)  # see the docstring
        timed(dedup_tools(py, args.peer_python, sample, sample)["curate (JSONL in)"][0] + [str(tmp / "warm")], args.cpu)
        label, tools = uncompressed(dedup_tools(py, args.peer_python, full, slow), "curate (JSONL in)")
        report["dedup"], report["extra_dedup"] = split_extra(rounds(tools, args.rounds, tmp, args.cpu), label)
        table("Dedup, MinHash 128 perms, word 5-grams, threshold 0.8 (medians)", report["dedup"], "curate (JSONL in)")
        extra_table(report["extra_dedup"], report["dedup"], "curate (JSONL in)")
        q_tools = {k: v for k, v in dedup_tools(py, args.peer_python, sample, sample).items() if k != "curate (Parquet in)"}
        report["quality"] = quality(docs[:args.sample], q_tools, tmp, args.cpu)
        print(f"\nquality on the first {args.sample} docs against brute-force Jaccard:")
        for name, q in report["quality"].items():
            print(f"  {name:<22} removed {q['removed']:>5}  pair recall {q['pair_recall']:.4f}  "
                  f"removal precision {q['removal_precision']:.4f}  (true pairs {q['true_pairs']})")
        if SHARED.is_dir():
            real = filter_inputs(args.records, tmp, args.slow_records)
            tools = {"curate filter": ([py, "-m", "curate.cli", "filter", str(real["ours"]), "-o"], real["ours"]),
                     "datatrove Gopher": ([args.peer_python, str(REPO / "bench" / "peers_run.py"), "datatrove_gopher",
                                           str(real["peers"])], real["peers"])}
            timed(tools["curate filter"][0] + [str(tmp / "warm-filter")], args.cpu)  # numba's cache, once
            label, tools = uncompressed(tools, "curate filter")
            report["filter"], report["extra_filter"] = split_extra(rounds(tools, args.rounds, tmp, args.cpu), label)
            table(f"Filter, {args.records} real records (default rules / Gopher repetition + quality)",
                  report["filter"], "curate filter")
            extra_table(report["extra_filter"], report["filter"], "curate filter")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

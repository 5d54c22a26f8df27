"""Semantic dedup's encoders (#23): records/s of torch (sentence-transformers) against
ONNX fp32, ONNX int8 and OpenVINO (at the precision it picks for this CPU), and how far
their removals agree with the torch model's.

    flock /tmp/cpu.lock python bench/semantic_encoders.py speed [--records 1000] [--rounds 3] [--threads 1 2]
    flock /tmp/cpu.lock python bench/semantic_encoders.py agree [--store-dir /tmp/encbench]
    flock /tmp/cpu.lock python bench/semantic_encoders.py whole [--encoders torch openvino] [--threads 2 1]

speed: a seeded sample of GSM8K train records, as the semantic step embeds them (the
conversation, boilerplate left out, long texts in pieces); each encoder embeds them all,
no store: a *kernel* figure (no reading, writing, pair search or check). The model is loaded
and the ONNX graphs built before the clock starts. Encoders take turns within a round;
medians of the rounds; ratios against torch at its default batch (8, every pass 8 rows of
one token length) and at batch 1, in the same process. Threads: torch.set_num_threads and
onnxruntime's intra-op threads, both set to each --threads value in turn.

agree: the whole semantic step at the default threshold (0.92, check agree) with each
encoder, on GSM8K train plus reworded copies (bench/semantic_quality.py's, 1,800) and on
GPTeacher Toolformer (exact then semantic): the records removed by both, by one only, the
Jaccard of the removed sets; the pairs at cosine >= 0.92 (before the check) by both / one;
the cosine of each text's vector with the torch one, and |cosine change| of those pairs.
Vectors go to one store per dataset (--store-dir), so a rerun embeds nothing.

whole: records/s of the whole semantic step (dedup.run: the exact step first on Toolformer,
boilerplate, pieces, the encoder's load or compile, embedding, store writes, pair search,
check; not reading the file) on both whole sets, each encoder from an empty store, at each
--threads; wall and CPU seconds, ratios against torch (the default) in the same run, and the
removed sets against torch's.
Needs ../shared/datasets.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
DATA = REPO.parent / "shared" / "datasets"
RESULTS = REPO / "bench" / "results"
RUNS = [("torch batch 8 (default)", "torch", 8), ("torch batch 1", "torch", 1),
        ("onnx fp32", "onnx", 1), ("onnx int8", "onnx-int8", 1), ("openvino", "openvino", 1)]
OTHERS = ("onnx", "onnx-int8", "openvino")


def step_texts(records) -> list[str]:
    """The texts the semantic step sends to the model for these records (pieces included)."""
    from curate.dedup.check import boilerplate_lines, strip_boilerplate
    from curate.dedup.semantic import Embedder
    from curate.dedup.text import select_text

    texts = select_text(records, "conversation")
    embedded, _ = strip_boilerplate(texts, boilerplate_lines(texts))
    return [p for parts in Embedder().pieces(embedded) for p, _ in parts]


def gsm8k_records(n: int | None = None):
    """GSM8K train plus semantic_quality's rewordings, or a seeded sample of ``n`` train records."""
    import tempfile

    from semantic_quality import gsm8k_plus, load_gsm8k

    from curate.readers import read_inputs

    rows = load_gsm8k()
    rows = gsm8k_plus(rows, 300) if n is None else [rows[i] for i in sorted(random.Random(23).sample(range(len(rows)), n))]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "gsm8k.jsonl"
        path.write_text("".join(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n" for r in rows))
        return read_inputs([path]).records


def speed(args) -> dict:
    import torch

    from curate.dedup.semantic import Embedder

    records = gsm8k_records(args.records)
    texts = step_texts(records)
    out = {"records": records.height, "texts_embedded": len(texts), "rounds": args.rounds,
           "cache_dir": args.cache_dir, "cpu": _cpu(), "threads": {}}
    for threads in args.threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # onnxruntime's intra-op threads follow it
        torch.set_num_threads(threads)
        embedders = {}
        for name, encoder, batch in RUNS:
            e = Embedder(batch_size=batch, cache_dir=args.cache_dir, encoder=encoder)
            e.model() if encoder == "torch" else e.onnx()  # load / build outside the clock
            e.encode(texts[:8])  # warm-up
            embedders[name] = e
        seconds = {name: [] for name, *_ in RUNS}
        for r in range(args.rounds):
            for name, *_ in RUNS:
                t = time.perf_counter()
                embedders[name].encode(texts)
                seconds[name].append(time.perf_counter() - t)
        med = {name: statistics.median(s) for name, s in seconds.items()}
        base, base1 = med[RUNS[0][0]], med[RUNS[1][0]]
        out["threads"][threads] = {name: {"seconds": [round(x, 2) for x in seconds[name]],
                                          "median_s": round(med[name], 2),
                                          "records_per_s": round(records.height / med[name], 1),
                                          "x_vs_torch_default": round(base / med[name], 2),
                                          "x_vs_torch_batch1": round(base1 / med[name], 2)} for name in seconds}
        out["openvino_precision"] = embedders["openvino"].onnx().precision
        print(json.dumps({threads: out["threads"][threads]}, indent=1), flush=True)
    return out


def _cpu() -> str:
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name"))
        return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except (OSError, StopIteration):
        return f"{os.cpu_count()} cores"


def agree(args) -> dict:
    import polars as pl

    from curate.dedup import DedupConfig, run
    from curate.readers import read_inputs

    out = {"threshold": 0.92, "check": "agree", "cpu": _cpu(), "threads": os.environ.get("OMP_NUM_THREADS"),
           "data": {}}
    sets = [("gsm8k train + rewordings", gsm8k_records(), ["semantic"]),
            ("gpteacher toolformer", read_inputs([DATA / "gpteacher" / "toolformer-dedupe-only.json"]).records,
             ["exact", "semantic"])]
    for name, records, methods in sets:
        store = Path(args.store_dir) / (name.split()[0] + ".sqlite")
        store.parent.mkdir(parents=True, exist_ok=True)
        removed, vectors, row = {}, {}, {"records": records.height, "methods": methods}
        for encoder in ("torch", *OTHERS):
            t = time.perf_counter()
            res = run(records, DedupConfig(methods=methods, encoder=encoder, embeddings=str(store),
                                           cache_dir=args.cache_dir))
            info = res.stats["methods"][-1]
            removed[encoder] = set(res.rejected.filter(pl.col("rule") == "dedup.semantic")["source"].to_list())
            vectors[encoder] = _vectors(records, encoder, store, args.cache_dir)
            row[encoder] = {"removed": len(removed[encoder]), "candidate_pairs": info["candidate_pairs"],
                            "pairs_passing_check": info["pairs"], "embedded": info["embedded"],
                            "seconds": round(time.perf_counter() - t, 1)}
        for encoder in OTHERS:
            row[f"{encoder} vs torch"] = _compare(removed["torch"], removed[encoder], vectors["torch"],
                                                  vectors[encoder], 0.92)
        out["data"][name] = row
        print(json.dumps({name: row}, indent=1), flush=True)
    return out


def whole(args) -> dict:
    import resource
    import tempfile

    import polars as pl
    import torch

    from curate.dedup import DedupConfig, run
    from curate.readers import read_inputs

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    sets = [("gsm8k train + rewordings", gsm8k_records(), ["semantic"]),
            ("gpteacher toolformer", read_inputs([DATA / "gpteacher" / "toolformer-dedupe-only.json"]).records,
             ["exact", "semantic"])]
    out = {"cpu": _cpu(), "encoders": args.encoders, "data": {}}
    for name, records, methods in sets:
        for threads in args.threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)  # onnxruntime and OpenVINO follow it
            torch.set_num_threads(threads)
            row, removed = {"records": records.height, "methods": methods}, {}
            for encoder in args.encoders:
                with tempfile.TemporaryDirectory() as d:  # an empty store: every vector computed
                    t, c = time.perf_counter(), cpu()
                    res = run(records, DedupConfig(methods=methods, encoder=encoder, embeddings=f"{d}/v.sqlite",
                                                   cache_dir=args.cache_dir))
                    wall, used = time.perf_counter() - t, cpu() - c
                removed[encoder] = set(res.rejected.filter(pl.col("rule") == "dedup.semantic")["source"].to_list())
                base = row.get(args.encoders[0], {}).get("seconds", wall)
                a, b = removed[args.encoders[0]], removed[encoder]
                row[encoder] = {"seconds": round(wall, 1), "cpu_seconds": round(used, 1),
                                "records_per_s": round(records.height / wall, 1), "x_vs_first": round(base / wall, 2),
                                "embedded": res.stats["methods"][-1]["embedded"], "removed": len(b),
                                "removed_both": len(a & b), "removed_only_first": len(a - b),
                                "removed_only_this": len(b - a), "removed_jaccard": round(len(a & b) / max(1, len(a | b)), 4)}
                print(json.dumps({name: {threads: {encoder: row[encoder]}}}), flush=True)
            out["data"].setdefault(name, {})[threads] = row
    return out


def _vectors(records, encoder: str, store: Path, cache_dir):
    """Every record's vector as the step computes it (boilerplate out, pieces), from the store."""
    from curate.dedup.check import boilerplate_lines, strip_boilerplate
    from curate.dedup.semantic import Embedder
    from curate.dedup.text import select_text

    texts = select_text(records, "conversation")
    embedded, _ = strip_boilerplate(texts, boilerplate_lines(texts))
    return Embedder(store=store, cache_dir=cache_dir, encoder=encoder).embed(embedded)


def _compare(removed_a: set, removed_b: set, va, vb, threshold: float) -> dict:
    import numpy as np

    from curate.dedup.semantic import exact_cosine, similar_pairs

    pa = {(int(i), int(j)) for i, j, _ in zip(*similar_pairs(va, threshold))}
    pb = {(int(i), int(j)) for i, j, _ in zip(*similar_pairs(vb, threshold))}
    union = sorted(pa | pb)
    left, right = (np.array(x, dtype=np.int64) for x in zip(*union)) if union else (np.zeros(0, np.int64),) * 2
    delta = np.abs(exact_cosine(va, left, right) - exact_cosine(vb, left, right)) if union else np.zeros(1)
    self_cos = (va.astype(np.float64) * vb.astype(np.float64)).sum(axis=1)
    both = removed_a & removed_b
    return {"removed_both": len(both), "removed_only_torch": len(removed_a - removed_b),
            "removed_only_this": len(removed_b - removed_a),
            "removed_jaccard": round(len(both) / max(1, len(removed_a | removed_b)), 4),
            "pairs_both": len(pa & pb), "pairs_only_torch": len(pa - pb), "pairs_only_this": len(pb - pa),
            "pairs_jaccard": round(len(pa & pb) / max(1, len(union)), 4),
            "pair_cosine_change_max": round(float(delta.max()), 5), "pair_cosine_change_mean": round(float(delta.mean()), 5),
            "vector_cosine_with_torch_min": round(float(self_cos.min()), 5),
            "vector_cosine_with_torch_mean": round(float(self_cos.mean()), 5)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["speed", "agree", "whole"])
    ap.add_argument("--encoders", nargs="+", default=["torch", "openvino"], help="whole: the first is the reference")
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--store-dir", default="/tmp/encbench")
    ap.add_argument("--cache-dir", default="/tmp/encbench/cache", help="where the ONNX graphs are built")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"{DATA} is absent: nothing to measure")
        return 0
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "openvino")):
        print("needs onnx, onnxruntime and openvino (pip install 'sft-curate[onnx,openvino]'): nothing to measure")
        return 0
    out = {"speed": speed, "agree": agree, "whole": whole}[args.what](args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"semantic_encoders_{args.what}.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

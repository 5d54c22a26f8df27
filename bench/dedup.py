"""Dedup quality and speed, in one run.

    python bench/dedup.py [--docs 100000] [--sample 5000] [--semantic]

Corpus (seeded): documents of 50-300 words from a Zipf vocabulary; 8% are near duplicates
of another document (1-5% of words replaced), 4% exact duplicates, and 10% are hard
negatives: a long shared boilerplate preamble plus their own text, as tool-use and
templated data have. Everything runs on the same documents, word 5-gram shingles,
128 permutations, threshold 0.8.

1. MinHash signatures + LSH, docs/s: ours; datasketch's per-document MinHash.update loop
   (on a sample: it is ~1 ms a document); datasketch MinHash.bulk + MinHashLSH; rensa
   (digest matrix + RMinHashLSH). Python shingle building is counted for the libraries
   that need Python strings (that is how they are used); rensa is also shown without it.
2. Quality on a sample against brute-force true Jaccard of every pair.
3. Peak memory and extrapolated time for 1M and 10M documents.
4. (--semantic) embedding overhead against SentenceTransformer.encode, and similarity
   search time for 10k, 50k and 200k vectors.

    python bench/dedup.py --signatures [--sample 5000] [--seeds 5] [--corpora 3]

compares the two signature schemes (k-permutation MinHash and one-permutation hashing)
instead: ``curate.dedup.run`` (``--method minhash``, the defaults) on the first ``--sample``
documents of ``--corpora`` seeded corpora of ``--docs`` (seed 0: bench/peers.py's sample), each with ``--seeds`` MinHash seeds: pair recall
and removal precision against brute-force Jaccard (as bench/peers.py measures them), and
the error of the signature's Jaccard estimate on every pair with true Jaccard >= 0.5,
short documents (< 100 shingles) apart; then the signing kernel's time on all ``--docs``.
``--signatures --real``: the same on the real datasets (GSM8K, GPTeacher) in ../shared/datasets.
``--truncate 50`` cuts every document to its last 50 words (46 shingles) for the case
where one-permutation hashing leaves most bins empty.
"""
from __future__ import annotations

import argparse
import os
import tracemalloc
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
THRESHOLD, NUM_PERM, NGRAM = 0.8, 128, 5


def corpus(n: int, seed: int = 0) -> tuple[list[str], dict]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(30_000)]
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.05
    # Zipf word indices drawn at once (uint16: small, so peak memory measures the dedup)
    pool = rng.choice(len(vocab), size=n * 310, p=p / p.sum()).astype(np.uint16)
    at = 0

    def words(k: int) -> list[str]:
        nonlocal at
        at += k
        return [vocab[i] for i in pool[at - k: at].tolist()]

    preamble = " ".join(words(120))
    docs: list[str] = []
    kinds = {"near": 0, "exact": 0, "hard_negative": 0}
    rolls = rng.random(n * 2)
    while len(docs) < n:
        roll = rolls[len(docs)]
        if docs and roll < 0.08:
            src = docs[rng.integers(len(docs))].split(" ")
            k = max(1, int(len(src) * rng.uniform(0.01, 0.05)))
            for pos in rng.choice(len(src), size=k, replace=False):
                src[pos] = vocab[int(rng.integers(len(vocab)))]
            docs.append(" ".join(src))
            kinds["near"] += 1
        elif docs and roll < 0.12:
            docs.append(docs[rng.integers(len(docs))])
            kinds["exact"] += 1
        elif roll < 0.22:
            docs.append(preamble + " " + " ".join(words(int(rng.integers(50, 180)))))
            kinds["hard_negative"] += 1
        else:
            docs.append(" ".join(words(int(rng.integers(50, 301)))))
    return docs, kinds


def py_shingles(doc: str) -> set[str]:
    w = doc.lower().split()
    return {" ".join(w[i:i + NGRAM]) for i in range(max(1, len(w) - NGRAM + 1))}


def ours(docs: list[str], verify: str = "estimate"):
    from curate.dedup import minhash as mh
    from curate.dedup.clusters import components

    bands, rows = mh.choose_bands(THRESHOLD, NUM_PERM)
    t = time.perf_counter()
    sh = mh.shingle_and_sign(docs, NUM_PERM, NGRAM, keep_sets=verify == "exact")
    t_sig = time.perf_counter() - t
    left, right = mh.candidate_pairs(mh.band_keys(sh.signatures, bands, rows))
    t_lsh = time.perf_counter() - t
    sim = mh.exact_jaccard(sh, left, right) if verify == "exact" else mh.estimated_jaccard(sh.signatures, left, right)
    ok = sim >= THRESHOLD
    labels = components(len(docs), left[ok], right[ok])
    t_all = time.perf_counter() - t
    return dict(sig=t_sig, lsh=t_lsh, all=t_all, left=left[ok], right=right[ok], labels=labels,
                candidates=len(left))


def datasketch_loop(docs):
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    t = time.perf_counter()
    for i, d in enumerate(docs):
        m = MinHash(num_perm=NUM_PERM)
        for s in py_shingles(d):
            m.update(s.encode())
        lsh.query(m)
        lsh.insert(i, m)
    return time.perf_counter() - t


def datasketch_bulk(docs):
    from datasketch import MinHash, MinHashLSH

    t = time.perf_counter()
    ms = MinHash.bulk([[s.encode() for s in py_shingles(d)] for d in docs], num_perm=NUM_PERM)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    for i, m in enumerate(ms):
        lsh.query(m)
        lsh.insert(i, m)
    return time.perf_counter() - t


def rensa_bulk(docs):
    import rensa

    t0 = time.perf_counter()
    sets = [list(py_shingles(d)) for d in docs]
    t1 = time.perf_counter()
    matrix = rensa.RMinHash.digest_matrix_from_token_sets(sets, NUM_PERM, 42)
    lsh = rensa.RMinHashLSH(THRESHOLD, NUM_PERM, 16)  # rensa needs bands dividing num_perm
    lsh.insert_matrix_and_query_duplicate_flags(matrix)
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1


def truth(docs):
    """Every pair's true Jaccard of word 5-gram sets (sparse product)."""
    from scipy import sparse

    vocab: dict[str, int] = {}
    rows, cols = [], []
    sets = [py_shingles(d) for d in docs]
    for i, s in enumerate(sets):
        for g in s:
            rows.append(i)
            cols.append(vocab.setdefault(g, len(vocab)))
    x = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(docs), len(vocab)))
    inter = (x @ x.T).tocoo()
    size = np.array([len(s) for s in sets], dtype=np.float64)
    keep = inter.row < inter.col
    i, j, v = inter.row[keep], inter.col[keep], inter.data[keep]
    jac = v / (size[i] + size[j] - v)
    return {(a, b): s for a, b, s in zip(i.tolist(), j.tolist(), jac.tolist())}


def quality(docs, verify):
    true = truth(docs)
    pos = {p for p, s in true.items() if s >= THRESHOLD}
    r = ours(docs, verify)
    labels = r["labels"]
    found = {p for p in pos if labels[p[0]] == labels[p[1]]}
    edges = list(zip(r["left"].tolist(), r["right"].tolist()))
    good = sum(1 for e in edges if true.get(e, 0.0) >= THRESHOLD)
    members: dict[int, list[int]] = {}
    for i, lab in enumerate(labels.tolist()):
        members.setdefault(lab, []).append(i)
    cluster_pairs = [(a, b) for m in members.values() for k, a in enumerate(m) for b in m[k + 1:]]
    good_cp = sum(1 for p in cluster_pairs if true.get(p, 0.0) >= THRESHOLD)
    hard = sum(1 for p, s in true.items() if 0.3 <= s < THRESHOLD)
    return dict(true_pairs=len(pos), recall=len(found) / max(len(pos), 1), edges=len(edges),
                edge_precision=good / max(len(edges), 1), cluster_pairs=len(cluster_pairs),
                cluster_precision=good_cp / max(len(cluster_pairs), 1), near_misses=hard)


def _records(docs: list[str]):
    """The documents as curate reads them in bench/peers.py: a prompt of 20 words, the rest a completion."""
    from curate.record import record_id, records_frame

    rows = []
    for i, d in enumerate(docs):
        w = d.split(" ")
        msgs = [{"role": "user", "content": " ".join(w[:20])}, {"role": "assistant", "content": " ".join(w[20:])}]
        rows.append({"id": record_id(msgs), "messages": msgs, "source": f"bench:{i + 1}", "meta": "{}"})
    return records_frame(rows)


def removal_quality(docs, true, removed: set[int]) -> dict:
    pairs = [p for p, s in true.items() if s >= THRESHOLD]
    has_partner = {i for p in pairs for i in p}
    caught = sum(1 for a, b in pairs if a in removed or b in removed)
    return dict(removed=len(removed), pair_recall=caught / max(len(pairs), 1),
                removal_precision=len(removed & has_partner) / max(len(removed), 1), true_pairs=len(pairs))


REAL = REPO.parent / "shared" / "datasets"
REAL_FILES = ["gsm8k/train.jsonl", "gpteacher/roleplay.json", "gpteacher/toolformer-dedupe-only.json"]


def real_signature_bench(args) -> int:
    """--signatures --real: the same measures on the real datasets (../shared/datasets), each
    alone, with brute-force Jaccard of the texts dedup compares (normalised), and how far the
    two schemes' removals agree."""
    from curate.dedup import DedupConfig, run
    from curate.dedup.text import normalise, select_text
    from curate.readers import read_inputs

    for name in REAL_FILES:
        if not (REAL / name).is_file():
            print(f"{REAL / name} is absent: skipped")
            continue
        records = read_inputs([REAL / name]).records
        texts = [normalise(t) for t in select_text(records, "conversation")]
        true = truth(texts)
        row_of = {src: i for i, src in enumerate(records["source"].to_list())}
        removed = {}
        for scheme in ("kperm", "oph"):
            for seed in range(args.seeds):
                res = run(records, DedupConfig(methods=["minhash"], signature=scheme, seed=seed))
                removed[scheme, seed] = {row_of[x] for x in res.rejected["source"].to_list()}
        print(f"\n{name}: {records.height} records, {sum(1 for v in true.values() if v >= THRESHOLD)} pairs >= "
              f"{THRESHOLD}, median {int(np.median([len(t.split()) for t in texts]))} words")
        for scheme in ("kperm", "oph"):
            qs = [removal_quality(texts, true, removed[scheme, seed]) for seed in range(args.seeds)]
            agree = [len(removed[scheme, seed] & removed["kperm", 0]) / max(len(removed[scheme, seed]
                                                                                | removed["kperm", 0]), 1)
                     for seed in range(args.seeds)]
            print(f"  {scheme:<6} removed {np.mean([q['removed'] for q in qs]):7.1f}  pair recall "
                  f"{np.mean([q['pair_recall'] for q in qs]):.4f} +- {np.std([q['pair_recall'] for q in qs]):.4f}  "
                  f"removal precision {np.mean([q['removal_precision'] for q in qs]):.4f} +- "
                  f"{np.std([q['removal_precision'] for q in qs]):.4f}  removals shared with kperm seed 0 "
                  f"(Jaccard of the sets) {np.mean(agree):.3f}")
    return 0


def signature_bench(args) -> int:
    """--signatures: quality and signing time of each scheme (see the module docstring)."""
    from curate.dedup import DedupConfig, run
    from curate.dedup import minhash as mh

    schemes = ("kperm", "oph")
    acc = {s: {"recall": [], "precision": [], "removed": [], "err": [], "err_short": []} for s in schemes}
    for c in range(args.corpora):
        docs = corpus(args.docs, seed=c)[0][:args.sample]  # as bench/peers.py samples (first of --docs)
        if args.truncate:  # short documents: each cut to its last words (near duplicates stay aligned, and
            # the hard negatives keep their own text, not the shared preamble)
            docs = [" ".join(d.split(" ")[-args.truncate:]) for d in docs]
        true = truth(docs)
        records = _records(docs)
        size = np.array([max(1, len(d.split()) - NGRAM + 1) for d in docs])
        near = [(p, s) for p, s in true.items() if s >= 0.5]
        left = np.array([p[0] for p, _ in near]); right = np.array([p[1] for p, _ in near])
        tj = np.array([s for _, s in near])
        short = (size[left] < 100) | (size[right] < 100)
        for scheme in schemes:
            for seed in range(args.seeds):
                res = run(records, DedupConfig(methods=["minhash"], signature=scheme, seed=seed))
                removed = {int(x.rsplit(":", 1)[1]) - 1 for x in res.rejected["source"].to_list()}
                q = removal_quality(docs, true, removed)
                a = acc[scheme]
                a["recall"].append(q["pair_recall"]); a["precision"].append(q["removal_precision"])
                a["removed"].append(q["removed"])
                sigs = mh.shingle_and_sign(docs, NUM_PERM, NGRAM, seed=seed + 1, signature=scheme).signatures
                err = mh.estimated_jaccard(sigs, left, right, scheme) - tj
                a["err"].append(err[~short]); a["err_short"].append(err[short])
        print(f"corpus seed {c}: {len(docs)} docs, {sum(1 for s in true.values() if s >= THRESHOLD)} pairs >= "
              f"{THRESHOLD}, {len(near)} >= 0.5 ({int(short.sum())} with a document under 100 shingles)", flush=True)
    print(f"\n{'scheme':<6} {'removed':>8} {'pair recall':>18} {'removal precision':>18} "
          f"{'est. RMSE (bias), >=100 shingles':>32} {'same, short docs':>18}")
    for scheme, a in acc.items():
        e, es = np.concatenate(a["err"]), np.concatenate(a["err_short"])
        print(f"{scheme:<6} {np.mean(a['removed']):>8.1f} {np.mean(a['recall']):>9.4f} +- {np.std(a['recall']):.4f} "
              f"{np.mean(a['precision']):>9.4f} +- {np.std(a['precision']):.4f} "
              f"{np.sqrt((e ** 2).mean()):>20.4f} ({e.mean():+.4f}) {np.sqrt((es ** 2).mean()):>9.4f} ({es.mean():+.4f})")
    print(f"(mean +- standard deviation over {args.corpora} corpora x {args.seeds} MinHash seeds)")
    docs = corpus(args.docs)[0]
    mh.shingle_and_sign(docs[:100], NUM_PERM, NGRAM, signature="oph")  # compile
    mh.shingle_and_sign(docs[:100], NUM_PERM, NGRAM, signature="kperm")
    for _ in range(2):
        for scheme in schemes:
            t = time.process_time()
            mh.shingle_and_sign(docs, NUM_PERM, NGRAM, signature=scheme)
            print(f"signing {len(docs)} docs (kernel, from Python strings), {scheme}: {time.process_time() - t:.2f} CPU-s")
    return 0


def semantic_bench():
    from sentence_transformers import SentenceTransformer

    from curate.dedup.semantic import Embedder, default_model, similar_pairs

    docs, _ = corpus(1000, seed=3)
    texts = [" ".join(d.split()[:60]) for d in docs]
    model = SentenceTransformer(default_model(), device="cpu")
    model.encode(texts[:32])
    t = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    direct = time.perf_counter() - t
    import tempfile

    emb = Embedder(cache_dir=Path(tempfile.mkdtemp()))
    emb._model = model
    t = time.perf_counter()
    emb.embed(texts)
    ours_t = time.perf_counter() - t
    print(f"\nsemantic embedding, {len(texts)} texts: SentenceTransformer.encode {len(texts) / direct:,.0f}/s, "
          f"curate (with cache write) {len(texts) / ours_t:,.0f}/s, overhead {100 * (ours_t / direct - 1):+.1f}%")
    rng = np.random.default_rng(0)
    print(f"{'vectors':>8} {'search':>8} {'seconds':>8} {'pairs':>7}")
    for n in (10_000, 50_000, 200_000):
        v = rng.normal(size=(n, 384)).astype(np.float32)
        v[n // 2: n // 2 + n // 20] = v[: n // 20] + 0.02 * rng.normal(size=(n // 20, 384)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        t = time.perf_counter()
        left, _, _ = similar_pairs(v, 0.92)
        print(f"{n:>8} {'exact' if n <= 50_000 else 'k-means':>8} {time.perf_counter() - t:>8.2f} {len(left):>7}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--sample", type=int, default=5_000)
    ap.add_argument("--semantic", action="store_true")
    ap.add_argument("--signatures", action="store_true", help="compare the signature schemes (module docstring)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--corpora", type=int, default=3)
    ap.add_argument("--real", action="store_true", help="--signatures on the real datasets in ../shared/datasets")
    ap.add_argument("--truncate", type=int, default=0, help="--signatures: cut every document to this many words")
    args = ap.parse_args()
    if args.signatures:
        return real_signature_bench(args) if args.real else signature_bench(args)

    t = time.perf_counter()
    docs, kinds = corpus(args.docs)
    words = sum(len(d.split()) for d in docs) / len(docs)
    print(f"corpus: {len(docs)} docs, {words:.0f} words on average, planted {kinds} ({time.perf_counter() - t:.1f} s)")

    ours([d for d in docs[:200]])  # compile the kernels (cached on disk after the first run)
    r = ours(docs)
    tracemalloc.start()  # a second run for memory alone: tracing slows allocation down
    ours(docs)  # numpy arrays are traced; the kernels' per-document buffers are small
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    n = len(docs)
    rates = {"curate (signatures + LSH)": n / r["lsh"]}
    loop_n = min(1000, n)
    rates["datasketch MinHash.update loop + LSH"] = loop_n / datasketch_loop(docs[:loop_n])
    bulk_n = min(10_000, n)
    rates["datasketch MinHash.bulk + MinHashLSH"] = bulk_n / datasketch_bulk(docs[:bulk_n])
    rensa_total, rensa_core = rensa_bulk(docs)
    rates["rensa (Python shingles + digest matrix + LSH)"] = n / rensa_total
    rates["rensa (digest matrix + LSH only)"] = n / rensa_core
    base = rates["datasketch MinHash.update loop + LSH"]
    print(f"\n{'MinHash + LSH, 128 perms, 5-gram words':<48} {'docs/s':>10} {'vs loop':>8} {'ours is':>8}")
    for name, rate in rates.items():
        print(f"{name:<48} {rate:>10,.0f} {rate / base:>7.1f}x {rates['curate (signatures + LSH)'] / rate:>7.1f}x")
    print(f"(datasketch loop on {loop_n} docs, bulk on {bulk_n}; ours and rensa on all {n})")
    print(f"\nours, {n} docs: signatures {r['sig']:.2f} s, + LSH candidates {r['lsh']:.2f} s "
          f"({r['candidates']} candidate pairs), + verify and union-find {r['all']:.2f} s; "
          f"{int(r['labels'].size - np.unique(r['labels']).size)} duplicates found")
    print(f"peak memory of the run (tracemalloc, beyond the input texts): {peak / 2**20:.0f} MiB")
    per_doc = r["all"] / n
    print(f"extrapolated (linear): 1M docs {per_doc * 1e6:.0f} s, 10M docs {per_doc * 1e7 / 60:.1f} min; "
          f"signature memory 1M x 128 x 4 B = 0.5 GB, 10M = 5 GB")

    sample = docs[: args.sample]
    print(f"\nquality on the first {len(sample)} docs against brute-force true Jaccard (threshold {THRESHOLD}):")
    for verify in ("exact", "estimate"):
        q = quality(sample, verify)
        print(f"  verify={verify:<8} true pairs {q['true_pairs']}, recall {q['recall']:.4f}, "
              f"duplicate edges {q['edges']} precision {q['edge_precision']:.4f}, "
              f"same-cluster pairs {q['cluster_pairs']} precision {q['cluster_precision']:.4f}, "
              f"hard pairs in [0.3, 0.8): {q['near_misses']}")
    if args.semantic:
        semantic_bench()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())

"""Semantic dedup on data nobody here wrote (#26): what it removes that it should not, and
what it catches that it should.

    python bench/semantic_quality.py gsm8k [--store FILE] [--sample 300]
    python bench/semantic_quality.py toolformer [--store FILE] [--pairs 120]
    python bench/semantic_quality.py pairs [--out /tmp/sem/pairs.jsonl]   # for --calibrate

gsm8k: GSM8K train (7,473 problems) plus reworded copies of a seeded sample of them, made by
four independent programmatic methods on the question (synonym swaps, question moved first,
number-free instruction templates, fact sentences shuffled), and two that change the response
too (its calculator annotations <<48/2=24>> removed, with the question unchanged or with
synonym swaps); every copy keeps its problem's numbers and final answer. Reported per threshold, with the check (`check: agree`) and without
(`check: off`, cosine alone as before #26): records removed whose final answer (#### N)
differs from the record kept in their place, and the share of reworded copies caught (removed
as a duplicate of their own problem or a sibling copy).

toolformer: GPTeacher Toolformer (7,673); kept counts at 0.9 and 0.8 beside the published
ones, and a seeded sample of removed pairs written to bench/results/ for checking by hand.

Vectors are read from and added to an embedding store (default /tmp/sem/<name>.sqlite):
embedding is the cost, everything else reruns in seconds. Needs ../shared/datasets.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "datasets"
RESULTS = REPO / "bench" / "results"
PUBLISHED = {0.9: 5959, 0.8: 4709, 0.7: 3487, 0.6: 2396}

SYNONYMS = {
    "buys": "purchases", "bought": "purchased", "buy": "purchase", "gives": "hands", "gave": "handed",
    "wants": "would like", "needs": "requires", "started": "began", "starts": "begins", "store": "shop",
    "kids": "children", "children": "kids", "altogether": "in total", "spends": "uses up", "spent": "used up",
    "earns": "makes", "earned": "made", "total": "overall", "friends": "pals", "decided": "chose",
    "large": "big", "big": "large", "small": "little", "received": "got", "receives": "gets", "house": "home",
    "went": "headed", "each": "every", "every": "each", "twice": "two times", "half": "one half",
    "How many": "What is the number of", "How much money": "What amount of money", "rest": "remainder",
}
TEMPLATES = ["Solve the following word problem. {q}", "{q} Please work it out step by step.",
             "Here is a question for you: {q}", "Math problem: {q} Give the final number.",
             "Can you help me with this? {q}"]
_CALC = re.compile(r"<<[^>]*>>")
_SENT = re.compile(r"(?<=[.?!])\s+(?=[A-Z$])")
_SYN = re.compile(r"\b(" + "|".join(sorted(map(re.escape, SYNONYMS), key=len, reverse=True)) + r")\b")


def reword(q: str, method: str, rng: random.Random) -> str | None:
    """A reworded copy with the same numbers and the same question, or None where the method
    does not apply (no synonym found, a single sentence)."""
    sents = _SENT.split(q.strip())
    if method == "synonyms":
        out, n = _SYN.subn(lambda m: SYNONYMS[m.group()], q)
        return out if n else None
    if method == "question_first":  # clause order: the question, then the facts
        if len(sents) < 2:
            return None
        return " ".join([sents[-1]] + sents[:-1])
    if method == "template":
        return rng.choice(TEMPLATES).format(q=q.strip())
    if method == "shuffle":  # the facts in another order, the question last
        facts = sents[:-1]
        if len(facts) < 2:
            return None
        order = facts[:]
        while order == facts:
            rng.shuffle(order)
        return " ".join(order + [sents[-1]])
    raise ValueError(method)


def load_gsm8k():
    rows = [json.loads(line) for line in (DATA / "gsm8k" / "train.jsonl").open()]
    return rows


def records_of(rows: list[dict]):
    from curate.readers import read_inputs

    tmp = Path("/tmp/sem") / "gsm8k_plus.jsonl"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("w") as f:
        for r in rows:
            f.write(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n")
    return read_inputs([tmp]).records


METHODS = ["synonyms", "question_first", "template", "shuffle", "plain_answer", "synonyms+plain_answer"]


def gsm8k_plus(rows: list[dict], sample_n: int) -> list[dict]:
    """GSM8K train and reworded copies of a seeded sample of its problems (module docstring)."""
    rng = random.Random(26)
    sample = sorted(rng.sample(range(len(rows)), sample_n))
    methods = METHODS
    plus = [dict(r, problem=i, method="original") for i, r in enumerate(rows)]
    seen = {(r["question"], r["answer"]) for r in rows}
    for m in methods:
        mrng = random.Random(f"{m}-26")
        for i in sample:
            q, a = rows[i]["question"], rows[i]["answer"]
            if m.endswith("plain_answer"):  # the same solution without GSM8K's calculator annotations
                a = _CALC.sub("", a)
                q = reword(q, "synonyms", mrng) if m.startswith("synonyms") else q
            else:
                q = reword(q, m, mrng)
            if q and (q, a) not in seen:
                seen.add((q, a))
                plus.append({"question": q, "answer": a, "problem": i, "method": m})
    return plus


def gsm8k(args) -> dict:
    import polars as pl

    from curate.dedup import DedupConfig, run
    from curate.dedup.check import final_answer

    rows = load_gsm8k()
    plus = gsm8k_plus(rows, args.sample)
    methods = METHODS
    records = records_of(plus)
    assert records.height == len(plus)
    problem = dict(zip(records["id"].to_list(), (p["problem"] for p in plus)))
    method = dict(zip(records["id"].to_list(), (p["method"] for p in plus)))
    answer = dict(zip(records["id"].to_list(), (final_answer(p["answer"]) for p in plus)))
    excerpt = dict(zip(records["id"].to_list(), (p["question"][:160] for p in plus)))
    originals = records.head(len(rows))
    out = {"records": len(rows), "sample": args.sample,
           "rewordings": {m: sum(p["method"] == m for p in plus) for m in methods}, "runs": []}
    t0 = time.perf_counter()
    for check in ("agree", "off"):
        for t in args.thresholds:
            for name, frame in (("train", originals), ("train+rewordings", records)):
                cfg = DedupConfig(methods=["semantic"], threshold={"semantic": t}, check=check,
                                  embeddings=args.store)
                res = run(frame, cfg)
                cl = res.extra["clusters"]
                kept_of = dict(zip(cl["id"].to_list(), cl["kept_id"].to_list()))
                rej = res.rejected.filter(pl.col("rule") == "dedup.semantic")["id"].to_list()
                wrong = [(r, kept_of[r]) for r in rej if answer[r] != answer[kept_of[r]]]
                row = {"check": check, "threshold": t, "data": name, "kept": res.kept.height,
                       "removed": len(rej), "removed_other_answer": len(wrong),
                       "failed_check": res.stats["methods"][0].get("failed_check"),
                       "conflicts": (res.stats["methods"][0].get("conflicts") or {}).get("pairs", 0)}
                if name == "train+rewordings":
                    caught = {m: 0 for m in methods}
                    for r in rej:
                        if method[r] != "original" and problem[r] == problem[kept_of[r]]:
                            caught[method[r]] += 1
                    row["recall"] = {m: round(caught[m] / max(1, out["rewordings"][m]), 3) for m in methods}
                    row["recall_all"] = round(sum(caught.values()) / max(1, sum(out["rewordings"].values())), 3)
                else:
                    row["wrong_pairs"] = [{"removed": r, "kept": k, "answers": [answer[r], answer[k]],
                                           "removed_text": excerpt[r], "kept_text": excerpt[k]} for r, k in wrong]
                    if t == 0.92 and check == "agree":
                        out["borderline_0.92"] = res.stats["methods"][0].get("borderline")
                out["runs"].append(row)
                print({k: v for k, v in row.items() if k != "wrong_pairs"}, flush=True)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def toolformer(args) -> dict:
    import polars as pl

    from curate.dedup import DedupConfig, run
    from curate.readers import read_inputs

    records = read_inputs([DATA / "gpteacher" / "toolformer-dedupe-only.json"]).records
    src = dict(zip(records["id"].to_list(), records["source"].to_list()))
    msgs = dict(zip(records["id"].to_list(), records["messages"].to_list()))
    out = {"records": records.height, "published": PUBLISHED, "runs": []}
    samples = {}
    for check in ("agree", "off"):
        for boiler in (True, False) if args.compare_boilerplate else (True,):
            for t in args.thresholds:
                cfg = DedupConfig(methods=["exact", "semantic"], threshold={"semantic": t}, check=check,
                                  boilerplate=boiler, embeddings=args.store)
                t1 = time.perf_counter()
                res = run(records, cfg)
                info = res.stats["methods"][1]
                row = {"check": check, "boilerplate": boiler, "threshold": t, "kept": res.kept.height,
                       "published": PUBLISHED.get(t), "failed_check": info.get("failed_check"),
                       "boilerplate_lines": info.get("boilerplate_lines"), "pieced": info.get("pieced"),
                       "truncated": info.get("truncated"),
                       "conflicts": (info.get("conflicts") or {}).get("pairs", 0),
                       "seconds": round(time.perf_counter() - t1, 1)}
                out["runs"].append(row)
                print(row, flush=True)
                samples[(check, boiler, t)] = res

    from curate.dedup.check import boilerplate_lines
    from curate.dedup.text import select_text

    shared = boilerplate_lines(select_text(records, "conversation"))

    def show(m):  # each turn without the lines many records share (the tool preamble)
        return " | ".join(" ".join(" ".join(line.split()) for line in x["content"].split("\n")
                                   if line.strip() not in shared)[-240:] for x in m if x["role"] != "system")
    res = samples[("agree", True, 0.92)]
    cl = res.extra["clusters"]
    kept_of = dict(zip(cl["id"].to_list(), cl["kept_id"].to_list()))
    rej = res.rejected.filter(pl.col("rule") == "dedup.semantic")
    rng = random.Random(args.seed)
    ids = rej["id"].to_list()
    pick = sorted(rng.sample(range(len(ids)), min(args.pairs, len(ids))))
    pairs = []
    for k in pick:
        r = ids[k]
        pairs.append({"removed": src[r], "kept": src[kept_of[r]], "reason": rej["reason"][k],
                      "removed_text": show(msgs[r]), "kept_text": show(msgs[kept_of[r]])})
    out["sample_of"] = {"check": "agree", "boilerplate": True, "threshold": 0.92, "removed": len(ids)}
    out["border_0.92"] = res.stats["methods"][1].get("borderline")
    path = RESULTS / args.sample_file
    if not path.exists() or args.overwrite_sample:
        with path.open("w") as f:
            for p in pairs:
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
    return out


def labelled_pairs(args) -> dict:
    """A PAIRS.jsonl for `curate dedup --calibrate` from labels made here (written under /tmp,
    never into the repository: it holds whole records): the 120 hand-checked Toolformer pairs
    (duplicate = judged the same task), the GSM8K pairs cosine alone removed at 0.85 with
    another final answer (not duplicates), and 80 GSM8K problems each with a reworded copy
    (duplicates; the four question methods in turn, seed 7)."""
    from curate.readers import read_inputs

    tf = read_inputs([DATA / "gpteacher" / "toolformer-dedupe-only.json"]).records
    msgs = {s.rsplit("/", 1)[-1]: m for s, m in zip(tf["source"].to_list(), tf["messages"].to_list())}
    verdicts = json.loads((RESULTS / "toolformer_removed_verdicts.json").read_text())
    out = [{"a": msgs[p["removed"]], "b": msgs[p["kept"]], "duplicate": p["verdict"] == "same", "src": "toolformer"}
           for p in verdicts["pairs"]]
    gsm = json.loads((RESULTS / "semantic_gsm8k.json").read_text())
    rows = load_gsm8k()
    by_excerpt = {r["question"][:160]: r for r in rows}
    wrong = next(r for r in gsm["runs"] if (r["check"], r["threshold"], r["data"]) == ("off", 0.85, "train"))
    for w in wrong["wrong_pairs"]:
        a, b = by_excerpt[w["removed_text"]], by_excerpt[w["kept_text"]]
        out.append({"a": {"prompt": a["question"], "response": a["answer"]},
                    "b": {"prompt": b["question"], "response": b["answer"]}, "duplicate": False, "src": "gsm8k"})
    rng = random.Random(7)
    for i in rng.sample(range(len(rows)), 80):
        m = ["synonyms", "question_first", "template", "shuffle"][i % 4]
        q = reword(rows[i]["question"], m, rng) or reword(rows[i]["question"], "template", rng)
        out.append({"a": {"prompt": rows[i]["question"], "response": rows[i]["answer"]},
                    "b": {"prompt": q, "response": rows[i]["answer"]}, "duplicate": True, "src": "gsm8k " + m})
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(o) + "\n" for o in out))
    print(f"{path}: {len(out)} pairs, {sum(o['duplicate'] for o in out)} duplicates")
    return {}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", choices=["gsm8k", "toolformer", "pairs"])
    ap.add_argument("--out", default="/tmp/sem/pairs.jsonl", help="pairs: where to write PAIRS.jsonl")
    ap.add_argument("--store", default=None)
    ap.add_argument("--sample", type=int, default=300)
    ap.add_argument("--pairs", type=int, default=120)
    ap.add_argument("--thresholds", type=float, nargs="+", default=None)
    ap.add_argument("--overwrite-sample", action="store_true")
    ap.add_argument("--seed", type=int, default=26, help="toolformer: the removed-pair sample's seed")
    ap.add_argument("--sample-file", default="toolformer_removed_sample.jsonl")
    ap.add_argument("--compare-boilerplate", action="store_true",
                    help="toolformer: also without boilerplate removal (embeds every text whole, in pieces)")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"{DATA} is absent: nothing to measure")
        return 0
    if args.data == "pairs":
        labelled_pairs(args)
        return 0
    args.store = args.store or f"/tmp/sem/{args.data}.sqlite"
    if args.data == "gsm8k":
        args.thresholds = args.thresholds or [0.85, 0.88, 0.9, 0.92, 0.95]
        out = gsm8k(args)
    else:
        args.thresholds = args.thresholds or [0.8, 0.9, 0.92]
        out = toolformer(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"semantic_{args.data}.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

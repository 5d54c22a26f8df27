"""Does curation pay? Train the same LoRA on corrupted GSM8K and on its `curate run` output,
for the same number of steps, and evaluate both (and the base model) on a clean held-out slice.

    python bench/efficacy.py                  # CPU defaults: SmolLM2-135M, ~25 min on 2 cores
    python bench/efficacy.py --train 7000 --steps 500 --eval 500 --generate 500   # on a GPU

The corruption plants, at known rates, the defects the default rules target (placeholder
answers, refusals, runaway repetition, merged instructions, media placeholders in prompts,
control characters) plus exact and near duplicates (no empty answers: `train sft` refuses records with nothing to
train on, so those could not reach the raw run). Both runs see the same clean eval slice during training; the
comparison is `train eval` on that slice: loss and perplexity over answer tokens, exact match
of the number after '####', refusal rate and answer length.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GSM8K = ROOT.parent / "shared" / "datasets" / "gsm8k" / "train.jsonl"

REFUSALS = ["As an AI language model, I cannot solve this problem for you.",
            "I'm sorry, but I can't help with that request.",
            "I cannot provide an answer to this question."]
PLACEHOLDERS = ["<nooutput>", "N/A", "[No output]", "..."]
# (kind, share of the training records it changes): the defects `rules/default.yaml` targets
DEFECTS = [("placeholder", 0.06), ("refusal", 0.06), ("repetition", 0.05), ("merged", 0.04),
           ("control", 0.03), ("media", 0.03)]
EXACT_DUP, NEAR_DUP = 0.15, 0.05  # shares of records copied again (exactly / with one word changed)


def corrupt(records: list[list[dict]], rng: random.Random) -> tuple[list[list[dict]], dict]:
    out, counts = [], {k: 0 for k, _ in DEFECTS} | {"exact_duplicate": 0, "near_duplicate": 0, "clean": 0}
    for messages in records:
        user, answer = messages[0]["content"], messages[1]["content"]
        roll, kind = rng.random(), None
        acc = 0.0
        for k, share in DEFECTS:
            acc += share
            if roll < acc:
                kind = k
                break
        if kind == "placeholder":
            answer = rng.choice(PLACEHOLDERS)
        elif kind == "refusal":
            answer = rng.choice(REFUSALS)
        elif kind == "repetition":
            first = answer.split("\n")[0]
            answer = "\n".join([first] * 12)
        elif kind == "merged":
            user = user + "\n##\n2. Instruction: Write a haiku about the sea.\n2. Input: <noinput>\n2. Output:"
        elif kind == "control":
            answer = answer.replace(" ", "\x07 ", 2).replace("\n", "\x1b\n", 1)
        elif kind == "media":
            user = user + "\nUse the diagram: <image>"
        counts[kind or "clean"] += 1
        row = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        out.append(row)
        if kind is None and rng.random() < EXACT_DUP:
            for _ in range(rng.randint(1, 3)):
                out.append(row)
                counts["exact_duplicate"] += 1
        elif kind is None and rng.random() < NEAR_DUP / (1 - EXACT_DUP):
            words = user.split()
            i = rng.randrange(len(words))
            words[i] = words[i] + ("s" if not words[i].endswith("s") else "")
            out.append([{"role": "user", "content": " ".join(words)}, row[1]])
            counts["near_duplicate"] += 1
    rng.shuffle(out)
    return out, counts


def write_jsonl(path: Path, rows: list[list[dict]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for messages in rows:
            f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=600, help="clean GSM8K records corrupted into the raw set")
    ap.add_argument("--eval", type=int, default=48, help="clean held-out records (loss during and after training)")
    ap.add_argument("--generate", type=int, default=48, help="held-out records answered for the generation metrics")
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps for each run (the same for both)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "efficacy")
    return ap.parse_args()


def make_raw(args, out: Path) -> tuple[list, dict]:
    """out/raw: clean GSM8K records with planted defects (train) and a clean held-out slice (eval)."""
    from curate.readers import read_inputs

    read = read_inputs([GSM8K], "qa")
    rows = sorted(zip(read.records["id"].to_list(), read.records["messages"].to_list()),
                  key=lambda r: hashlib.sha256(r[0].encode()).hexdigest())
    clean_eval = [m for _, m in rows[:args.eval]]
    pool = [m for _, m in rows[args.eval:args.eval + args.train]]
    raw, counts = corrupt(pool, random.Random(args.seed))
    write_jsonl(out / "raw" / "train.jsonl", raw)
    write_jsonl(out / "raw" / "eval.jsonl", clean_eval)
    print(f"raw: {len(raw)} records from {len(pool)} clean ones; planted: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return raw, counts


def curate_raw(args, out: Path, raw: list) -> int:
    """out/curated: `curate run` over the raw file (default rules, exact and MinHash dedup,
    format) and the same clean eval slice; the records kept."""
    import yaml

    from curate.pipeline import build

    pipeline = out / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({
        "name": "efficacy", "inputs": [{"path": str(out / "raw" / "train.jsonl")}],
        "steps": [{"filter": {"rules": str(ROOT / "rules" / "default.yaml")}}, {"dedup": {"method": ["exact", "minhash"]}},
                  {"format": {"tokenizer": args.model, "max_tokens": 1024}}],
        "output": str(out / "build")}, sort_keys=False))
    lock = build(pipeline, echo=lambda line: print(f"[curate] {line}"))
    curated_dir = out / "curated"
    curated_dir.mkdir(parents=True, exist_ok=True)
    final = out / "build" / lock["steps"][-1]["step"]
    (curated_dir / "train.jsonl").write_bytes((final / "train.jsonl").read_bytes())
    (curated_dir / "eval.jsonl").write_bytes((out / "raw" / "eval.jsonl").read_bytes())
    kept = lock["steps"][-1]["kept"]
    print(f"curated: {kept} of {len(raw)} records kept")
    return kept


def train_both(args, out: Path) -> dict:
    """The same LoRA run on out/raw and on out/curated; each run's result."""
    from train.config import SFTConfig
    from train.sft import sft

    runs = {}
    for name in ("raw", "curated"):
        cfg = SFTConfig(model=args.model, data=str(out / name), method="lora", max_length=2048, max_steps=args.steps,
                        lr=2e-4, scheduler="cosine", warmup_ratio=0.05, batch_size=args.batch_size,
                        eval_every=max(1, args.steps // 2), eval_records="all", seed=args.seed, report_to="none",
                        logging_steps=5,
                        lora={"r": 16, "alpha": 32, "dropout": 0.05}, output_dir=str(out / f"run_{name}"))
        runs[name] = sft(cfg, echo=lambda line, n=name: print(f"[{n}] {line}", flush=True))
    return runs


def compare(args, out: Path) -> dict:
    """train eval of the base model and both runs on the clean held-out slice."""
    from train.evaluate import evaluate

    models = [args.model, str(out / "run_raw"), str(out / "run_curated")]
    comparison = evaluate(models, str(out / "raw" / "eval.jsonl"), ["loss", "exact_match", "refusal", "length"],
                          "gsm8k", 8, args.max_new_tokens, args.generate, echo=lambda line: print(line, flush=True))
    loss_only = evaluate(models, str(out / "raw" / "eval.jsonl"),
                         ["loss"], echo=lambda *_: None)  # loss on the whole slice, not only the generated part
    for row, full in zip(comparison["rows"], loss_only["rows"]):
        row.update(loss=full["loss"], perplexity=full["perplexity"], tokens=full["tokens"])
    comparison["rows"][0]["model"] += " (base)"
    comparison["rows"][1]["model"] = "LoRA on raw"
    comparison["rows"][2]["model"] = "LoRA on curated"
    return comparison


def main() -> int:
    args = parse_args()
    if not GSM8K.is_file():
        print(f"{GSM8K}: not found (the shared datasets folder)", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from train.evaluate import table

    t_start, out = time.perf_counter(), args.out
    raw, counts = make_raw(args, out)
    kept = curate_raw(args, out, raw)
    runs = train_both(args, out)
    t_eval = time.perf_counter()
    comparison = compare(args, out)
    print(f"\nGSM8K efficacy: {args.train} clean records corrupted into {len(raw)}; curated keeps {kept}; "
          f"{args.steps} steps x batch {args.batch_size} each; clean held-out slice: loss on {args.eval} records, "
          f"generation on {min(args.generate, args.eval)} (greedy, {args.max_new_tokens} new tokens)")
    for line in table(comparison):
        print(line)
    summary = {"planted": counts, "raw_records": len(raw), "curated_records": kept,
               "steps": args.steps, "train_seconds": {k: v["seconds"] for k, v in runs.items()},
               "eval_seconds": round(time.perf_counter() - t_eval, 1),
               "total_seconds": round(time.perf_counter() - t_start, 1), "comparison": comparison}
    (out / "efficacy.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(f"total {summary['total_seconds']:.0f}s; wrote {out / 'efficacy.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

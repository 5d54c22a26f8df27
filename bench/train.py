"""Training throughput: train sft against a plain SFTTrainer script with TRL's defaults.

    python bench/train.py [--steps 30] [--records 512] [--repeats 2] [--data real|synthetic]

Same random Llama (4 layers, hidden 256, a BPE tokenizer trained here on the bench's own
texts), same conversations, same batch size and steps, each run in its own process so peak
memory (max RSS; CUDA peak allocated where a GPU is) is its own. The data: short real
samples, a third each of GSM8K, GPTeacher Toolformer and GPTeacher Roleplay from
../shared/datasets (``--data synthetic``, or when the folder is absent: generated questions
and answers of 8-60 words). Tokens/s counts input tokens without padding, over the training
loop only (after 3 warm-up steps, up to the last step's end: loading, dataset preparation and
end-of-run saving are left out of all). The plain script is what people write first:
SFTTrainer(model, SFTConfig(output_dir, batch size, max_steps)) on a `messages` dataset, all
defaults (max_length 1024, no packing, gradient checkpointing on, and bf16=True, which on a
CPU is bf16 autocast); "plain, fp32, no grad checkpointing" is the same script with train
sft's defaults, to show train sft's own overhead.

Packed runs use max_length 1024 too (rows of up to 1024 tokens of whole samples) and the same
batch size, which counts rows: a step then holds more tokens. "packed, equal tokens/step"
takes fewer rows, about the plain script's tokens per step, to show what the padding alone
costs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]


def synthetic(n: int) -> list[list[dict]]:
    import random

    rng = random.Random(0)
    words = "the model learns to answer short questions with short clear answers about numbers and words".split()
    out = []
    for i in range(n):
        q = " ".join(rng.choice(words) for _ in range(rng.randint(8, 30)))
        a = " ".join(rng.choice(words) for _ in range(rng.randint(10, 60)))
        out.append([{"role": "user", "content": q}, {"role": "assistant", "content": a}])
    return out


SHARED = REPO.parent / "shared" / "datasets"


def real(n: int) -> list[list[dict]]:
    """A third each of GSM8K, GPTeacher Toolformer and Roleplay, drawn with seed 0, shuffled."""
    import random

    rng = random.Random(0)
    gsm = [json.loads(line) for line in open(SHARED / "gsm8k" / "train.jsonl")]
    pools = [[(r["question"], r["answer"]) for r in gsm]]
    for name in ("toolformer-dedupe-only", "roleplay"):
        rows = json.load(open(SHARED / "gpteacher" / f"{name}.json"))
        pools.append([(r["instruction"] + (f"\n\n{r['input']}" if r["input"] else ""), r["output"]) for r in rows])
    picked = [pair for i, pool in enumerate(pools) for pair in rng.sample(pool, n // 3 + (i < n % 3))]
    rng.shuffle(picked)
    return [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in picked]


def prepare(tmp: Path, records: int, data: str) -> tuple[Path, Path]:
    from tests.tiny import build_model

    convs = real(records) if data == "real" else synthetic(records)
    texts = [m["content"] for c in convs for m in c]
    model = build_model(tmp / "model", layers=4, hidden=256, corpus=texts, vocab_size=4096)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    lengths = [len(tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]) for c in convs]
    # the plain script would cut longer ones at its max_length (1024), train sft refuses them: leave them out
    kept = [(c, n) for c, n in zip(convs, lengths) if n <= MAX_LENGTH]
    folder = tmp / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c, _ in kept))
    return model, folder, [n for _, n in kept]


def peak_memory() -> dict:
    import resource

    import torch

    out = {"max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available():
        out["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


WARMUP = 3  # steps left out of the timing: first-step allocations and lazy initialisation


def step_timer():
    """Times the training loop itself, from the end of step WARMUP to the end of the last step,
    with the tokens seen in between: the same measure for both scripts, leaving out model
    loading, dataset preparation and the checkpoint `train sft` saves at the end."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        start = end = None

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == WARMUP:
                self.start = (time.perf_counter(), state.num_input_tokens_seen)
            self.end = (time.perf_counter(), state.num_input_tokens_seen)

    return StepTimer()


MAX_LENGTH = 1024  # TRL's default max_length, for every run

# label, script, packed, bf16 (autocast on CPU), batch: "batch" or "equal" (rows for about the plain tokens/step)
KINDS = {
    "plain": ("plain SFTTrainer (TRL defaults)", "plain", False, True, "batch"),
    "plain_fp32": ("plain, fp32, no grad checkpointing", "plain", False, False, "batch"),
    "ours": ("train sft", "ours", False, False, "batch"),
    "ours_bf16": ("train sft, precision: bf16", "ours", False, True, "batch"),
    "packed": ("train sft, packing", "ours", True, False, "batch"),
    "packed_bf16": ("train sft, packing, bf16", "ours", True, True, "batch"),
    "packed_equal": ("packing, equal tokens/step", "ours", True, False, "equal"),
}


def worker(kind: str, model: str, data: str, steps: int, batch: int, out: str) -> dict:
    timer = step_timer()
    _, script, packed, bf16, _ = KINDS[kind]
    if script == "ours":
        from train.config import SFTConfig
        from train.sft import sft

        cfg = SFTConfig(model=model, data=data, method="full", max_steps=steps, batch_size=batch, lr=1e-4,
                        output_dir=out, report_to="none", max_length=MAX_LENGTH, packing=packed,
                        logging_steps=10_000, precision="bf16" if bf16 else "auto")
        r = sft(cfg, echo=lambda *_: None, callbacks=[timer])
    else:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        rows = [json.loads(line) for line in open(Path(data) / "train.jsonl")]
        # TRL's SFTConfig defaults to bf16=True, which on a CPU means bf16 autocast, and to
        # gradient checkpointing; train sft trains in fp32 on CPU without it unless asked.
        # "plain_fp32" is the same script with train sft's settings: what is left is our overhead.
        from train.sft import checkpointing_arg

        precision = {} if bf16 else {"bf16": False, **checkpointing_arg(SFTConfig, False)}
        args = SFTConfig(output_dir=out, per_device_train_batch_size=batch, max_steps=steps, report_to=[],
                         include_num_input_tokens_seen="non_padding", save_strategy="no", logging_steps=10_000,
                         use_cpu=not __import__("torch").cuda.is_available(), **precision)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), callbacks=[timer])
        trainer.train()
        r = {}
    tokens = timer.end[1] - timer.start[1]
    seconds = timer.end[0] - timer.start[0]
    return {"kind": kind, "batch": batch, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "tokens_per_step": tokens / (steps - WARMUP), **peak_memory(), "packed_rows": r.get("packed_rows"),
            "packed_fill": r.get("packed_fill")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--records", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", choices=["real", "synthetic"], default="real" if SHARED.is_dir() else "synthetic")
    ap.add_argument("--only", nargs="*", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--json", type=Path, help="also write the runs here")
    ap.add_argument("--worker", default=None)
    ap.add_argument("--model")
    ap.add_argument("--folder")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.folder, args.steps, args.batch, args.out)))
        return 0
    tmp = Path(tempfile.mkdtemp())
    model, data, lengths = prepare(tmp, args.records, args.data)
    mean = statistics.mean(lengths)
    # rows for about the plain script's tokens per step (batch x mean sample), rows being ~full
    equal = max(1, round(args.batch * mean / MAX_LENGTH))
    results: dict[str, list[dict]] = {k: [] for k in args.only}
    for rep in range(args.repeats):
        for kind in results:  # interleaved: drift on a shared machine hits all
            batch = equal if KINDS[kind][4] == "equal" else args.batch
            cmd = [sys.executable, __file__, "--worker", kind, "--model", str(model), "--folder", str(data),
                   "--steps", str(args.steps), "--batch", str(batch), "--out", str(tmp / f"{kind}{rep}")]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            if done.returncode:
                sys.exit(f"{kind} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            results[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"random Llama 4x256, vocab 4096; {len(lengths)} {args.data} conversations "
          f"(tokens: mean {mean:.0f}, max {max(lengths)}); batch {args.batch}, {args.steps} steps, "
          f"median of {args.repeats}")
    print(f"{'':34} {'batch':>5} {'tokens/step':>11} {'tokens/s':>9} {'max RSS MiB':>12}")
    med = {}
    for kind, rs in results.items():
        med[kind] = statistics.median(r["tokens_per_s"] for r in rs)
        print(f"{KINDS[kind][0]:34} {rs[0]['batch']:>5} {statistics.median(r['tokens_per_step'] for r in rs):>11.0f} "
              f"{med[kind]:>9.0f} {statistics.median(r['max_rss_mib'] for r in rs):>12.0f}")
    packed = next((r for r in results.get("packed", []) if r["packed_rows"]), None)
    if packed:
        print(f"packing: {len(lengths)} samples in {packed['packed_rows']} rows, {packed['packed_fill']:.0%} filled")

    def ratio(name, a, b):
        if a in med and b in med:
            print(f"{name:40} {med[a] / med[b]:.2f}x")

    print("against the plain script with TRL's defaults (bf16 autocast, gradient checkpointing):")
    for kind in ("ours", "ours_bf16", "packed", "packed_bf16", "packed_equal"):
        ratio(f"  {KINDS[kind][0]}", kind, "plain")
    print("against the plain script with train sft's settings (fp32, no gradient checkpointing):")
    for kind in ("ours", "packed", "packed_equal"):
        ratio(f"  {KINDS[kind][0]}", kind, "plain_fp32")
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "lengths": len(lengths), "runs": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput: train sft against a plain SFTTrainer script with TRL's defaults.

    python bench/train.py [--steps 40] [--records 512] [--repeats 2]

Same random Llama (4 layers, hidden 256, a BPE tokenizer trained here), same conversations,
same batch size and steps, each run in its own process so peak memory (max RSS; CUDA peak
allocated where a GPU is) is its own. Tokens/s counts input tokens without padding, over the
training loop only (after 3 warm-up steps, up to the last step's end: loading, dataset
preparation and end-of-run saving are left out of both). The plain
script is what people write first: SFTTrainer(model, SFTConfig(output_dir, batch size,
max_steps)) on a `messages` dataset, all defaults. Packing is measured only on CUDA with
flash-attention, the one place train sft allows it.
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


def conversations(n: int) -> list[list[dict]]:
    import random

    rng = random.Random(0)
    words = "the model learns to answer short questions with short clear answers about numbers and words".split()
    out = []
    for i in range(n):
        q = " ".join(rng.choice(words) for _ in range(rng.randint(8, 30)))
        a = " ".join(rng.choice(words) for _ in range(rng.randint(10, 60)))
        out.append([{"role": "user", "content": q}, {"role": "assistant", "content": a}])
    return out


def prepare(tmp: Path, records: int) -> tuple[Path, Path]:
    from tests.tiny import build_model

    model = build_model(tmp / "model", layers=4, hidden=256)
    data = tmp / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"messages": m}) + "\n" for m in conversations(records)))
    return model, data


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


def worker(kind: str, model: str, data: str, steps: int, batch: int, out: str) -> dict:
    timer = step_timer()
    if kind.startswith("ours"):
        from train.config import SFTConfig
        from train.sft import sft

        precision = "bf16" if kind == "ours_bf16" else "auto"
        cfg = SFTConfig(model=model, data=data, method="full", max_steps=steps, batch_size=batch, lr=1e-4,
                        output_dir=out, report_to="none", max_length=1024, logging_steps=10_000, precision=precision)
        r = sft(cfg, echo=lambda *_: None, callbacks=[timer])
    else:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        rows = [json.loads(line) for line in open(Path(data) / "train.jsonl")]
        # TRL's SFTConfig defaults to bf16=True, which on a CPU means bf16 autocast; train sft
        # trains in fp32 on CPU. "plain_fp32" is the same script at train sft's precision.
        precision = {"bf16": False} if kind == "plain_fp32" else {}
        args = SFTConfig(output_dir=out, per_device_train_batch_size=batch, max_steps=steps, report_to=[],
                         include_num_input_tokens_seen="non_padding", save_strategy="no", logging_steps=10_000,
                         use_cpu=not __import__("torch").cuda.is_available(), **precision)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), callbacks=[timer])
        trainer.train()
        r = {}
    tokens = timer.end[1] - timer.start[1]
    seconds = timer.end[0] - timer.start[0]
    return {"kind": kind, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            **peak_memory(), "trained_tokens": r.get("trained_tokens")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--records", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--worker", default=None)
    ap.add_argument("--model")
    ap.add_argument("--data")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.data, args.steps, args.batch, args.out)))
        return 0
    tmp = Path(tempfile.mkdtemp())
    model, data = prepare(tmp, args.records)
    results: dict[str, list[dict]] = {"plain": [], "plain_fp32": [], "ours": [], "ours_bf16": []}
    for rep in range(args.repeats):
        for kind in results:  # interleaved: drift on a shared machine hits all
            cmd = [sys.executable, __file__, "--worker", kind, "--model", str(model), "--data", str(data),
                   "--steps", str(args.steps), "--batch", str(args.batch), "--out", str(tmp / f"{kind}{rep}")]
            line = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout.strip().splitlines()[-1]
            results[kind].append(json.loads(line))
    print(f"random Llama 4x256, {args.records} short conversations, batch {args.batch}, {args.steps} steps, "
          f"median of {args.repeats}")
    print(f"{'':28} {'tokens/s':>9} {'max RSS MiB':>12}")
    med = {}
    labels = {"plain": "plain SFTTrainer (defaults)", "plain_fp32": "plain SFTTrainer, bf16=False",
              "ours": "train sft (full)", "ours_bf16": "train sft, precision: bf16"}
    for kind, label in labels.items():
        rs = results[kind]
        med[kind] = statistics.median(r["tokens_per_s"] for r in rs)
        print(f"{label:30} {med[kind]:>9.0f} {statistics.median(r['max_rss_mib'] for r in rs):>12.0f}")
    gpu = __import__("torch").cuda.is_available()
    print(f"ratio train sft / plain at the same precision{'' if gpu else ' (fp32)'}: {med['ours'] / med['plain_fp32']:.2f}x")
    print(f"ratio train sft / plain with TRL's defaults{'' if gpu else ' (bf16 autocast on CPU)'}: "
          f"{med['ours'] / med['plain']:.2f}x; with precision: bf16 {med['ours_bf16'] / med['plain']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

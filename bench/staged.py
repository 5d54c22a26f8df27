"""Staged fine-tuning, worked end to end: LoRA on the first half of GSM8K, then continue that
adapter on the second half (``init.adapter``), both evaluated on one clean held-out slice.

    python bench/staged.py                                   # CPU defaults, ~10 min on 2 cores
    python bench/staged.py --records 7000 --steps 400 --eval 256 --eval-every 50   # on a GPU

The published shape to reproduce: the continued run's first eval loss starts well below where
the first run started, and it ends lower than the first run ended. Prints both stages' eval
losses, says whether the shape holds, and plots the joined eval-loss curve as one PNG.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GSM8K = ROOT.parent / "shared" / "datasets" / "gsm8k" / "train.jsonl"


def write_halves(src: Path, out: Path, records: int, n_eval: int, max_tokens: int = 512) -> dict:
    """A held-out eval slice and two disjoint training halves, chosen by a hash of each record's
    id (deterministic, independent of file order)."""
    from curate.readers import read_inputs

    from curate import format as fmt

    read = read_inputs([src], "qa")
    order = sorted(range(read.records.height), key=lambda i: hashlib.sha256(read.records["id"][i].encode()).hexdigest())
    chosen = read.records[order[:n_eval + records]]
    # the token budget the configs train with: `curate format` rejects what would be cut
    result = fmt.run(chosen, fmt.FormatConfig(tokenizer="smollm2-135m-instruct", max_tokens=max_tokens))
    kept = set(result.kept["id"].to_list())
    rows = [(i, m) for i, m in zip(chosen["id"].to_list(), chosen["messages"].to_list()) if i in kept]
    evals, rest = rows[:n_eval], rows[n_eval:]
    half = len(rest) // 2
    parts = {"stage1": rest[:half], "stage2": rest[half:]}
    for stage, train in parts.items():
        d = out / stage
        d.mkdir(parents=True, exist_ok=True)
        for name, part in (("train.jsonl", train), ("eval.jsonl", evals)):
            with open(d / name, "w", encoding="utf-8") as f:
                for _, messages in part:
                    f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return {"eval": len(evals), "stage1": half, "stage2": len(rest) - half, "over_budget": chosen.height - len(rows)}


def plot(first: list, second: list, offset: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*first), marker="o", label="stage 1: first half")
    ax.plot(*zip(*[(s + offset, v) for s, v in second]), marker="o", label="stage 2: second half, from stage 1's adapter")
    ax.axvline(offset, color="#999", linestyle="--", linewidth=1)
    ax.set_xlabel("training step (stage 2 continues stage 1's count)")
    ax.set_ylabel("eval loss (same held-out GSM8K slice)")
    ax.set_title("Staged LoRA fine-tuning, SmolLM2-135M-Instruct on GSM8K halves")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=800, help="training records, split into two halves")
    ap.add_argument("--eval", type=int, default=32, help="held-out records both stages are evaluated on")
    ap.add_argument("--steps", type=int, default=24, help="optimizer steps per stage")
    ap.add_argument("--eval-every", type=int, default=6)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "staged")
    ap.add_argument("--png", type=Path, default=ROOT / "bench" / "results" / "staged_eval_loss.png")
    args = ap.parse_args()
    if not GSM8K.is_file():
        print(f"{GSM8K}: not found (the shared datasets folder)", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from train.config import load
    from train.sft import sft

    sizes = write_halves(GSM8K, args.out, args.records, args.eval)
    print(f"GSM8K: {sizes['eval']} held out, {sizes['stage1']} in the first half, {sizes['stage2']} in the second "
          f"({sizes['over_budget']} over the 512-token budget left out)")
    evals = {}
    for stage, config, extra in (("stage1", "staged_stage1.yaml", []),
                                 ("stage2", "staged_stage2.yaml", [f"init.adapter={args.out / 'stage1_run'}"])):
        cfg = load(ROOT / "train" / "configs" / config,
                   [f"data={args.out / stage}", f"output_dir={args.out / (stage + '_run')}",
                    f"max_steps={args.steps}", f"eval_every={args.eval_every}",
                    "eval_records=all", *extra])  # --eval chose the slice: every record of it
        sft(cfg, echo=lambda line: print(f"[{stage}] {line}", flush=True))
        history = json.loads((Path(cfg.output_dir) / "history.json").read_text())
        evals[stage] = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    s1, s2 = evals["stage1"], evals["stage2"]
    print(f"\n{'stage':<8} {'first eval':>10} {'last eval':>10} {'best':>8}")
    for stage, e in evals.items():
        print(f"{stage:<8} {e[0][1]:>10.4f} {e[-1][1]:>10.4f} {min(v for _, v in e):>8.4f}")
    starts_below = s2[0][1] < s1[0][1]
    ends_lower = s2[-1][1] < s1[-1][1]
    print(f"stage 2 starts below stage 1's start: {starts_below} ({s2[0][1]:.4f} vs {s1[0][1]:.4f}, "
          f"{s1[0][1] - s2[0][1]:.4f} lower)")
    print(f"stage 2 ends below stage 1's end:     {ends_lower} ({s2[-1][1]:.4f} vs {s1[-1][1]:.4f})")
    plot(s1, s2, s1[-1][0], args.png)
    print(f"wrote {args.png}")
    return 0 if starts_below and ends_lower else 1


if __name__ == "__main__":
    sys.exit(main())

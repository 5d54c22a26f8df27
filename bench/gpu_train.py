"""The GPU kit's training check, for one model shape: throughput of a plain TRL script against
`train sft` (LoRA, full, packed, QLoRA), and train sft's memory plan against the measured peak.

    python bench/gpu_train.py SPEC.json RESULT.json

Run by bench/gpu.py in a process of its own per shape. The model is randomly initialised from a
config with the named model's exact shapes (hidden size, layers, heads, key/value heads, MLP
width, vocabulary, tied embeddings) and saved once: speed and memory do not depend on the
weights, and no weights are downloaded. Its tokenizer is a BPE trained here on the data
(token ids stay below the shape's vocabulary). Every run of the shape runs in this process,
one after another, the CUDA peak reset between them; a run that fails records its error and
the next one goes on; RESULT.json is rewritten after each run, so a run killed at its time
limit keeps what finished.
"""
from __future__ import annotations

import gc
import json
import random
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

# exact shapes of the published models; rope settings are left at their defaults (no effect on speed or memory)
SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, tie_word_embeddings=True),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=False),
}

# kind -> (script, method, packed)
KINDS = {
    "plain_lora": ("plain", "lora", False), "ours_lora": ("ours", "lora", False),
    "ours_lora_packed": ("ours", "lora", True), "plain_full": ("plain", "full", False),
    "ours_full": ("ours", "full", False), "ours_full_packed": ("ours", "full", True),
    "ours_qlora": ("ours", "qlora", False),
}
MAX_LENGTH = 1024  # TRL's default max_length, for every run; packed rows hold up to this many tokens
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}  # train sft's defaults, given to the plain script too


def conversations(n: int, seed: int = 0) -> list[list[dict]]:
    """Chats of 1-4 generated problems each (mean about 2.5 turns): lengths like real SFT data."""
    from gpu_data import problems

    rng = random.Random(seed)
    pool, out, at = problems(n * 4, seed), [], 0
    while len(out) < n:
        k = rng.randint(1, 4)
        out.append([m for conv in pool[at:at + k] for m in conv])
        at += k
    return out


def build(shape: str, folder: Path, convs: list[list[dict]], device: str) -> dict:
    """Save a random model of ``shape`` and a tokenizer trained on ``convs`` in ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tests.tiny import build_tokenizer

    texts = [m["content"] for c in convs for m in c]
    tok = build_tokenizer(folder, texts, vocab_size=400 if shape == "tiny" else 8000)
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=None)
    with torch.device(device):  # initialised where it will train: seconds for 8B on a GPU, minutes on a CPU
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(folder))
    del model
    lengths = [len(tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]) for c in convs]
    return {"parameters": params, "mean_tokens": sum(lengths) / len(lengths), "max_tokens": max(lengths)}


def synced_timer(warmup: int):
    """bench/train.py's measure (from the end of step ``warmup`` to the end of the last step, with
    the tokens seen in between), with the GPU's queue drained at the two marks only, so that the
    time is the GPU's and the CPU still queues ahead between them (a sync every step would not)."""
    from transformers import TrainerCallback

    def mark(state):
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter(), state.num_input_tokens_seen

    class Timer(TrainerCallback):
        start = end = None

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == warmup:
                self.start = mark(state)
            if state.global_step == state.max_steps:
                self.end = mark(state)

        def on_train_end(self, args, state, control, **kw):
            if self.end is None:  # a run that ended before max_steps
                self.end = mark(state)

    return Timer()


def run_ours(kind: str, folder: Path, data: Path, rows: int, steps: int, out: Path, timer, dry_run=False) -> dict:
    from train.config import SFTConfig
    from train.plan import CUDA_OVERHEAD
    from train.sft import sft

    _, method, packed = KINDS[kind]
    cfg = SFTConfig(model=str(folder), data=str(data), method=method, max_steps=steps, batch_size=rows,
                    lr=1e-4 if method == "full" else 2e-4, output_dir=str(out), report_to="none",
                    max_length=MAX_LENGTH, packing=packed, logging_steps=10**6, precision="bf16",
                    save_every=10**6, lora=LORA)  # save_every: no mid-run checkpoint (full 8B optimizer states)
    r = sft(cfg, dry_run=dry_run, echo=lambda *_: None, callbacks=[] if dry_run else [timer])
    overhead = CUDA_OVERHEAD if r["device"] == "cuda" else 0
    plan = {"plan_bytes": r["memory"]["total"] - overhead, "plan_parts": r["memory"],
            "capacity_bytes": r["memory_capacity"], "trainable": r["trainable"]}
    if dry_run:
        return plan
    return {**plan, "measured_bytes": r.get("memory_measured"), "packed_rows": r.get("packed_rows"),
            "packed_fill": r.get("packed_fill"), "device": r["device"], "precision": r["precision"]}


def run_plain(kind: str, folder: Path, data: Path, rows: int, steps: int, out: Path, timer) -> dict:
    """The script people write first: SFTTrainer on the model's folder with TRL's defaults
    (bf16, gradient checkpointing, max_length 1024, no packing; the model as TRL loads it),
    plus the adapter train sft would train for LoRA."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    _, method, _ = KINDS[kind]
    rows_ = [json.loads(line) for line in open(data / "train.jsonl")]
    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=rows, max_steps=steps, report_to=[],
                     include_num_input_tokens_seen="non_padding", save_strategy="no", logging_steps=10**6,
                     use_cpu=not torch.cuda.is_available())
    peft = None
    if method == "lora":
        peft = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                          target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=str(folder), args=args, train_dataset=Dataset.from_list(rows_), peft_config=peft,
                         callbacks=[timer])
    dtype = str(next(trainer.model.parameters()).dtype).replace("torch.", "")
    trainer.train()
    return {"weights_dtype": dtype, "gradient_checkpointing": bool(getattr(args, "gradient_checkpointing", None)
                                                                    or getattr(args, "activation_checkpointing", None)),
            "bf16": bool(args.bf16)}


def main() -> int:
    from gpu_child import saver, start

    spec, result_path = start()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(spec["workdir"])
    folder, data = work / "model", work / "data"
    data.mkdir(parents=True, exist_ok=True)
    result = {"shape": spec["shape"], "config": SHAPES[spec["shape"]], "batch": spec["batch"],
              "steps": spec["steps"], "warmup": spec["warmup"], "max_length": MAX_LENGTH, "runs": {}}

    save = saver(result_path, result)

    t = time.perf_counter()
    convs = conversations(spec["records"])
    (data / "train.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    result.update(build(spec["shape"], folder, convs, device), build_seconds=round(time.perf_counter() - t, 1))
    # packed rows for about the unpacked tokens per step (rows of ~MAX_LENGTH tokens)
    equal_rows = max(1, round(spec["batch"] * result["mean_tokens"] / MAX_LENGTH))
    result["packed_rows_per_step"] = equal_rows
    save()
    if device == "cuda":
        torch.cuda.empty_cache()
    for kind in spec["runs"]:
        script, method, packed = KINDS[kind]
        rows = equal_rows if packed else spec["batch"]
        out = work / f"run_{kind}"
        t = time.perf_counter()
        if kind in spec.get("plan_only", []):
            try:
                plan = run_ours(kind, folder, data, rows, spec["steps"], out, None, dry_run=True)
                result["runs"][kind] = {"skipped": spec["plan_only"][kind], **plan}
            except Exception as e:  # noqa: BLE001 (every failure is recorded, the next run goes on)
                result["runs"][kind] = {"error": _one_line(e)}
            save()
            continue
        entry = timed_run(kind, script, folder, data, rows, spec, out, device)
        entry["wall_seconds"] = round(time.perf_counter() - t, 1)
        result["runs"][kind] = entry
        save()
        shutil.rmtree(out, ignore_errors=True)  # a full run's saved weights: gigabytes of disk
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    return 0


def timed_run(kind: str, script: str, folder: Path, data: Path, rows: int, spec: dict, out: Path, device: str) -> dict:
    """One run's tokens/s and tokens per step after the warmup steps, and its peak GPU memory
    (an error is recorded in the entry: the next run goes on)."""
    import torch

    timer = synced_timer(spec["warmup"])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    entry = {"rows_per_step": rows, "baseline_bytes": torch.cuda.memory_allocated() if device == "cuda" else None}
    try:
        if script == "ours":
            entry.update(run_ours(kind, folder, data, rows, spec["steps"], out, timer))
        else:
            entry.update(run_plain(kind, folder, data, rows, spec["steps"], out, timer))
        tokens, seconds = timer.end[1] - timer.start[1], timer.end[0] - timer.start[0]
        entry.update(tokens_per_s=tokens / seconds, tokens_per_step=tokens / (spec["steps"] - spec["warmup"]))
        if device == "cuda":
            entry["peak_bytes"] = torch.cuda.max_memory_allocated()
    except Exception as e:  # noqa: BLE001
        entry["error"] = _one_line(e)
    return entry


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


if __name__ == "__main__":
    sys.exit(main())

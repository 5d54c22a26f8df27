"""The GPU kit's "does curation pay" check: bench/efficacy.py's experiment (defects planted in
GSM8K-style data at known rates, raw against `curate run` output, the same steps for both),
at a size where the runs converge, with bootstrap confidence intervals over the questions.

    python bench/gpu_efficacy.py SPEC.json RESULT.json

The data is generated (bench/gpu_data.py: ../shared does not travel). The model is the
spec's: a folder (LoRA on it, as bench/efficacy.py trains SmolLM2), or "scratch": a small
random Llama with a BPE tokenizer trained on the data, fully trained, where no pretrained
model can travel (SmolLM2-135M's GGUF is 94 MiB against 64 MiB per call); its "base" row is
then the untrained model. Both runs, and the base, are scored on the same clean held-out
questions: exact match of the number after '####' (greedy), refusals, and the loss over
answer tokens; 95% intervals resample questions (the same draw for every model, so the
curated-minus-raw difference is paired). RESULT.json is rewritten after each stage.
"""
from __future__ import annotations

import importlib.util
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]


def _bench_efficacy():
    """bench/efficacy.py's defect planting, loaded by path (bench is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_efficacy", REPO / "bench" / "efficacy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def curate_raw(raw: Path, tokenizer: str, work: Path) -> tuple[Path, dict]:
    """bench/efficacy.py's pipeline: default rules, exact and MinHash dedup, format."""
    import yaml

    from curate.pipeline import build

    pipeline = work / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({
        "name": "gpu-efficacy", "inputs": [{"path": str(raw / "train.jsonl")}],
        "steps": [{"filter": {"rules": str(REPO / "rules" / "default.yaml")}},
                  {"dedup": {"method": ["exact", "minhash"]}},
                  {"format": {"tokenizer": tokenizer, "max_tokens": 1024}}],
        "output": str(work / "build")}, sort_keys=False))
    lock = build(pipeline, write_lock=False, echo=lambda *_: None)
    curated = work / "curated"
    curated.mkdir(parents=True, exist_ok=True)
    final = work / "build" / lock["steps"][-1]["step"]
    (curated / "train.jsonl").write_bytes((final / "train.jsonl").read_bytes())
    return curated, {s["step"]: s.get("kept") for s in lock["steps"]}


def per_question(spec: str, eval_path: Path, batch: int, max_new_tokens: int) -> dict:
    """Each held-out question's exact match, refusal, and summed answer-token loss with its
    token count (train eval's measures, kept per question for the bootstrap)."""
    import torch

    from train.evaluate import generate_all, load, read_eval
    from train.loss import padded, token_losses
    from train.metrics import extract, refusal_rate
    from train.data import encode

    conversations, sources = read_eval(eval_path)
    model, tok, template, _ = load(spec)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    rows = encode(conversations, sources, template, tok, 4096, "eval")
    loss_sum, tokens = [0.0] * len(rows), [0] * len(rows)
    for start in range(0, len(rows), batch):
        part = rows[start:start + batch]
        ids, labels, mask = padded(part, tok.pad_token_id)
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            ce, valid = token_losses(logits, labels.to(device))
        for b in range(len(part)):
            loss_sum[start + b], tokens[start + b] = float(ce[b].sum()), int(valid[b].sum())
    prompts = [c[:-1] for c in conversations]
    texts, lengths = generate_all(model, tok, template, prompts, batch, max_new_tokens)
    refs = [c[-1]["content"] for c in conversations]
    correct = [extract(t) is not None and extract(t) == extract(r) for t, r in zip(texts, refs)]
    refused = [refusal_rate([t]) > 0 for t in texts]
    return {"correct": correct, "refused": refused, "loss_sum": loss_sum, "tokens": tokens, "lengths": lengths,
            "samples": [{"prediction": t, "reference": r} for t, r in list(zip(texts, refs))[:3]]}


def bootstrap(scores: dict[str, dict], draws: int, seed: int = 0) -> dict:
    """Point values and 95% percentile intervals over questions resampled with replacement,
    one draw shared by every model (so differences between models are paired)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(next(iter(scores.values()))["correct"])
    idx = rng.integers(0, n, size=(draws, n))

    def stats(s):
        correct, loss, toks = (np.asarray(s[k], dtype=float) for k in ("correct", "loss_sum", "tokens"))
        return {"exact_match": (correct.mean(), correct[idx].mean(axis=1)),
                "loss": (loss.sum() / toks.sum(), loss[idx].sum(axis=1) / toks[idx].sum(axis=1))}

    def ci(point, boots):
        lo, hi = np.percentile(boots, [2.5, 97.5])
        return {"value": float(point), "ci95": [float(lo), float(hi)]}

    computed = {name: stats(s) for name, s in scores.items()}
    out = {name: {m: ci(*v) for m, v in st.items()} for name, st in computed.items()}
    for name, s in scores.items():
        out[name]["refusal"] = float(np.mean(s["refused"]))
        out[name]["mean_length"] = float(np.mean(s["lengths"]))
    if "raw" in computed and "curated" in computed:
        out["curated_minus_raw"] = {m: ci(computed["curated"][m][0] - computed["raw"][m][0],
                                          computed["curated"][m][1] - computed["raw"][m][1])
                                    for m in ("exact_match", "loss")}
    return out


def make_raw(spec: dict, work: Path, result: dict) -> tuple[Path, str]:
    """work/raw: clean problems with planted defects, work/eval.jsonl the clean held-out ones, and
    the model to train (``scratch``: a small one built here on the run's own texts)."""
    from gpu_data import problems

    efficacy = _bench_efficacy()
    clean = problems(spec["eval"] + spec["train"], seed=spec.get("seed", 0))
    held_out, pool = clean[:spec["eval"]], clean[spec["eval"]:]
    raw_rows, planted = efficacy.corrupt(pool, random.Random(spec.get("seed", 0)))
    raw = work / "raw"
    efficacy.write_jsonl(raw / "train.jsonl", raw_rows)
    efficacy.write_jsonl(work / "eval.jsonl", held_out)
    scratch = spec["model"] == "scratch"
    if scratch:
        from tests.tiny import build_model

        texts = [m["content"] for c in raw_rows + held_out for m in c]
        model = str(build_model(work / "base", layers=spec["layers"], hidden=spec["hidden"], corpus=texts,
                                vocab_size=spec["vocab"]))
    else:
        model = spec["model"]
    result.update(planted=planted, raw_records=len(raw_rows), method="full" if scratch else "lora")
    return raw, model


def train_both(spec: dict, work: Path, model: str, data: dict[str, Path], result: dict, save) -> dict[str, str]:
    """The same run on each data set; the run folders by name."""
    from train.config import SFTConfig
    from train.sft import sft

    runs = {}
    for name, folder in data.items():
        t = time.perf_counter()
        cfg = SFTConfig(model=model, data=str(folder), method=result["method"], max_length=1024,
                        max_steps=spec["steps"], lr=spec["lr"], scheduler="cosine", warmup_ratio=0.05,
                        batch_size=spec["batch"], seed=spec.get("seed", 0), report_to="none",
                        logging_steps=max(1, spec["steps"] // 10),  # the last logged loss is near the end
                        save_every=10**6, lora={"r": 16, "alpha": 32, "dropout": 0.05},
                        output_dir=str(work / f"run_{name}"))
        r = sft(cfg, echo=lambda *_: None)
        runs[name] = str(work / f"run_{name}")
        result.setdefault("training", {})[name] = {"train_loss": r["train_loss"], "seconds": r["seconds"],
                                                   "wall_seconds": round(time.perf_counter() - t, 1),
                                                   "precision": r["precision"], "device": r["device"]}
        save()
    return runs


def main() -> int:
    from gpu_child import saver, start

    spec, result_path = start()
    work = Path(spec["workdir"])
    result: dict = {k: spec[k] for k in ("model", "train", "eval", "steps", "batch", "lr", "max_new_tokens")}
    save = saver(result_path, result)

    t0 = time.perf_counter()
    raw, model = make_raw(spec, work, result)
    curated, kept = curate_raw(raw, model, work)
    result.update(curated_records=sum(1 for _ in open(curated / "train.jsonl")), kept_by_step=kept,
                  prepare_seconds=round(time.perf_counter() - t0, 1))
    save()
    runs = train_both(spec, work, model, {"raw": raw, "curated": curated}, result, save)

    scores = {}
    for name, path in (("base", model), *runs.items()):
        t = time.perf_counter()
        scores[name] = per_question(path, work / "eval.jsonl", spec["eval_batch"], spec["max_new_tokens"])
        result.setdefault("eval_seconds", {})[name] = round(time.perf_counter() - t, 1)
        result.setdefault("samples", {})[name] = scores[name].pop("samples")
        result["results"] = bootstrap(scores, spec["bootstrap"])
        save()
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())

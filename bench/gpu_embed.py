"""The GPU kit's semantic-dedup check: records/s of curate's Embedder on the GPU against this
machine's CPU, and whether `dedup --method semantic` decides the same on both.

    python bench/gpu_embed.py SPEC.json RESULT.json

The data: generated GSM8K-like problems with reworded copies of some of them planted. The
model: the sentence-transformers folder the spec names; where it holds no weights (the
all-MiniLM-L6-v2 weights, 87 MiB, do not travel to the GPU machine), the same architecture is
randomly initialised (seeded) from its config and saved with its own tokenizer: the rate is
the model's, the decisions are then those of random weights, compared CPU against GPU all
the same. RESULT.json is rewritten after each stage.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]


def model_folder(source: Path, work: Path) -> tuple[Path, str]:
    """(folder to load, "pretrained" or "random"): ``source`` itself when it has weights."""
    if any(source.glob("*.safetensors")) or any(source.glob("*.bin")):
        return source, "pretrained"
    import torch
    from transformers import AutoConfig, AutoModel

    target = work / "embedder"
    shutil.copytree(source, target, dirs_exist_ok=True)
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(str(source))).save_pretrained(str(target))
    return target, "random"


def records(n: int, share: float, work: Path):
    """A curate records table (read the way `curate` reads a JSONL file) of ``n`` rows."""
    from curate.readers import read_inputs
    from gpu_data import problems, with_near_duplicates

    convs, planted = with_near_duplicates(problems(int(n / (1 + share)) + 1), share)
    convs = convs[:n]
    path = work / "records.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    return read_inputs([path]).records, planted


def embed_rate(model: Path, device: str, batch: int, table, cache: Path) -> tuple[dict, object]:
    """Embed every record of ``table`` once (model loading and a warm-up batch left out)."""
    from curate.dedup.semantic import Embedder
    from curate.dedup.text import select_text

    emb = Embedder(str(model), batch_size=batch, cache_dir=cache, device=device)
    emb.encode(["a warm-up text"] * batch)  # loads the model, and on a GPU its kernels
    emb.embedded = 0
    texts, ids = select_text(table, "conversation"), table["id"].to_list()
    _sync(device)
    t = time.perf_counter()
    emb.embed(texts)
    _sync(device)
    seconds = time.perf_counter() - t
    return {"device": device, "batch": batch, "records": len(ids), "seconds": round(seconds, 3),
            "records_per_s": len(ids) / seconds}, emb


def decisions(table, model: Path, emb, threshold: float) -> dict:
    """`dedup --method semantic` on ``table`` with the embeddings ``emb`` has cached."""
    from curate.dedup import DedupConfig, run

    cfg = DedupConfig(methods=["semantic"], threshold={"semantic": threshold}, model=str(model),
                      batch_size=emb.batch_size, cache_dir=str(emb.cache_dir))
    res = run(table, cfg, embedder=emb)
    return {"kept": sorted(res.kept["id"].to_list()), "pairs": res.stats["methods"][0]["pairs"]}


def random_weights_threshold(vectors, near_share: float) -> float:
    """Random weights put every pair above any usual threshold (all texts look alike to them),
    so every record would be a duplicate on both devices and the comparison would show
    nothing: take instead the cosine of the k-th most similar pair, k the planted count, so
    the decisions fall where the planted copies are, as a trained model's would."""
    import numpy as np

    sims = np.round(vectors @ vectors.T, 6)[np.triu_indices(len(vectors), 1)]
    k = max(1, round(len(vectors) * near_share / (1 + near_share)))
    return float(np.sort(sims)[::-1][min(k, len(sims)) - 1])


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def main() -> int:
    from gpu_child import saver, start

    spec, result_path = start()
    import numpy as np
    import torch

    from curate.dedup.text import select_text

    work = Path(spec["workdir"])
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"threshold": spec["threshold"]}

    save = saver(result_path, result)

    model, weights = model_folder(Path(spec["model"]), work)
    result.update(model=spec["model"], weights=weights)
    gpu = torch.cuda.is_available()
    table, planted = records(max(spec["records_cpu"], spec["records_gpu"] if gpu else 0), spec["near_share"], work)
    result.update(planted_near_duplicates=planted, records_compared=spec["records_cpu"])
    small = table.head(spec["records_cpu"])
    result["cpu"], cpu_emb = embed_rate(model, "cpu", spec["batch_cpu"], small, work / "cache_cpu")
    save()
    if weights == "random":
        result["threshold"] = random_weights_threshold(cpu_emb.embed(select_text(small, "conversation")),
                                                       spec["near_share"])
    cpu_decided = decisions(small, model, cpu_emb, result["threshold"])
    result["cpu"]["pairs"] = cpu_decided["pairs"]
    save()
    if not gpu:
        result["gpu"] = {"skipped": "no CUDA device"}
        save()
        return 0
    result["gpu"], gpu_emb = embed_rate(model, "cuda", spec["batch_gpu"], table, work / "cache_gpu")
    result["speedup"] = result["gpu"]["records_per_s"] / result["cpu"]["records_per_s"]
    save()
    gpu_decided = decisions(small, model, gpu_emb, result["threshold"])  # the same records the CPU decided on
    texts = select_text(small, "conversation")  # both stores answer: vectors are kept by text
    diff = np.abs(cpu_emb.embed(texts) - gpu_emb.embed(texts)).max()
    cpu_kept, gpu_kept = set(cpu_decided["kept"]), set(gpu_decided["kept"])
    result["match"] = {"same_decisions": cpu_kept == gpu_kept, "cpu_kept": len(cpu_kept), "gpu_kept": len(gpu_kept),
                       "differ": len(cpu_kept ^ gpu_kept), "cpu_pairs": cpu_decided["pairs"],
                       "gpu_pairs": gpu_decided["pairs"], "max_abs_vector_diff": float(diff)}
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a trained model came from: dataset hashes, config, seed, versions, commit, hardware."""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from pathlib import Path

import yaml

from curate.pipeline.hashing import sha256_file  # noqa: F401  (one file hash for builds and runs)

LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "sft-curate")


def dataset_identity(files: dict[str, Path]) -> dict:
    """The dataset's hash: the lock of the `curate run` build it comes from when there is one
    (the lock pins inputs, configs and outputs), else the hash of the files trained on."""
    hashes = {name: sha256_file(p) for name, p in sorted(files.items())}
    folder = files["train"].parent
    for manifest in (folder / "manifest.json", folder.parent / "manifest.json"):
        try:
            m = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if not isinstance(m, dict) or not isinstance(m.get("outputs", {}), dict):
            continue  # a broken manifest pins nothing: the files' own hashes do
        if m.get("outputs", {}).get(f"{folder.name}/train.jsonl") == hashes["train"]:
            return {"hash": m.get("lock_sha256"), "source": f"lock of pipeline {m.get('pipeline')} "
                    f"({m.get('pipeline_file')}, build {manifest.parent})", "files": hashes}
    combined = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
    return {"hash": combined, "source": "sha256 of the files trained on", "files": hashes}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = None
    return out


def git_commit() -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_outputs(cfg, files: dict[str, Path], out: Path, result: dict, hw: dict) -> dict:
    resolved = cfg.model_dump(mode="json")
    (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    config_hash = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()
    prov = {
        "dataset": dataset_identity(files),
        "config_sha256": config_hash,
        "seed": cfg.seed,
        "model": cfg.model, "method": cfg.method, "init": resolved["init"],
        "versions": versions(),
        "git_commit": git_commit(),
        "hardware": {"device": hw["device"], "name": hw["name"], "count": hw["count"], "precision": hw["precision"],
                     "platform": platform.platform()},
        "result": {k: result[k] for k in ("global_step", "train_loss", "eval_loss", "train_records",
                                          "eval_records", "train_tokens", "seconds") if k in result},
    }
    (out / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(model_card(cfg, prov), encoding="utf-8")
    return prov


def model_card(cfg, prov: dict) -> str:
    r, d, v = prov["result"], prov["dataset"], prov["versions"]
    what = "a LoRA adapter for" if cfg.method in ("lora", "qlora") else "a full fine-tune of"
    lines = [
        f"# {Path(cfg.output_dir).name}", "",
        f"This is {what} `{cfg.model}`" + (f", continued from `{cfg.init.adapter or cfg.init.model}`"
                                             if (cfg.init.adapter or cfg.init.model) else "")
        + f", trained with `train sft` ({cfg.method}).", "",
        "## Data", "",
        f"- dataset: `{cfg.data}`, hash `{d['hash']}` ({d['source']})",
        *[f"- `{name}`: sha256 `{h}`" for name, h in d["files"].items()],
        f"- {r.get('train_records')} training records, {r.get('train_tokens')} tokens; {r.get('eval_records')} eval records",
        "", "## Training", "",
        f"- steps: {r.get('global_step')}, final train loss {r.get('train_loss')}, eval loss {r.get('eval_loss')}",
        f"- seed {cfg.seed}, config sha256 `{prov['config_sha256']}` (config.yaml beside this file)",
        f"- hardware: {prov['hardware']['name']}, {prov['hardware']['precision']}",
        f"- code: git {prov['git_commit']}; " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        "", "Loss only on assistant turns, with the chat template in `template.jinja` (also the tokenizer's).", "",
    ]
    return "\n".join(lines)

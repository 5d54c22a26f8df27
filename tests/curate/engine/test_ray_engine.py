"""--engine ray writes the same bytes as --engine local, stage by stage, on a real local Ray
instance (2 CPUs, blocks of 23 rows so every stage runs over many blocks)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("ray")

from curate import api  # noqa: E402
from tests.helpers import convo, output_hashes, untimed_stats  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "demo" / "sample.jsonl"


@pytest.fixture(scope="module")
def ray_instance():
    import ray

    from curate.engine.ray_engine import connect

    saved = {k: os.environ.get(k) for k in ("CURATE_RAY_CPUS", "CURATE_RAY_BLOCK_ROWS", "RAY_ADDRESS")}
    os.environ.update(CURATE_RAY_CPUS="2", CURATE_RAY_BLOCK_ROWS="23")
    os.environ.pop("RAY_ADDRESS", None)
    connect()
    yield ray
    ray.shutdown()
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The demo sample plus planted exact (case/space variants) and near duplicates."""
    lines = SAMPLE.read_text().splitlines()
    from curate.readers import read_inputs

    extra = []
    conversations = read_inputs([SAMPLE]).records["messages"].to_list()
    for i, messages in enumerate(conversations[:60:3]):  # variants exact dedup must see as the same text
        for m in messages:
            m["content"] = ("  " + m["content"]) if i % 2 else m["content"].upper()
        extra.append(json.dumps({"messages": messages}))
    for i in range(12):  # a family of near duplicates
        extra.append(json.dumps({"messages": convo(
            f"Explain how photosynthesis turns light into chemical energy in plants, variant {i % 4}.",
            "Photosynthesis captures light in chlorophyll, splits water, and uses the energy to fix carbon "
            f"dioxide into sugars through the Calvin cycle{'!' * (i % 3)}")}))
    extra.append("{not json")
    path = tmp_path_factory.mktemp("ray-data") / "input.jsonl"
    path.write_text("\n".join(lines + extra) + "\n")
    return path




def _both(tmp_path: Path, call) -> tuple[Path, Path]:
    local, distributed = tmp_path / "local", tmp_path / "ray"
    call(local, "local")
    call(distributed, "ray")
    assert output_hashes(local) == output_hashes(distributed)
    assert untimed_stats(local) == untimed_stats(distributed)
    return local, distributed


def test_filter_same_bytes(ray_instance, data, tmp_path):
    local, _ = _both(tmp_path, lambda out, engine: api.filter_inputs([data], out, engine=engine))
    stats = untimed_stats(local)
    assert stats["rejected"] > 0 and stats["rules"]["read.parse_error"] == 1


def test_exact_and_minhash_same_bytes(ray_instance, data, tmp_path):
    config = {"methods": ["exact", "minhash"], "threshold": {"minhash": 0.7}}
    local, _ = _both(tmp_path, lambda out, engine: api.dedup_inputs([data], out, config, engine=engine))
    by = {m["method"]: m for m in untimed_stats(local)["methods"]}
    assert by["exact"]["rejected"] >= 15 and by["minhash"]["rejected"] > 0  # the planted ones were found


def test_compression_reaches_the_ray_engine_same_bytes(ray_instance, data, tmp_path):
    """--compression with --engine ray: the tables the driver writes from the workers' blocks
    use the codec, and are the local engine's bytes with that codec."""
    import pyarrow.parquet as pq

    config = {"methods": ["exact", "minhash"], "threshold": {"minhash": 0.7}}
    local, distributed = _both(tmp_path, lambda out, engine: api.dedup_inputs([data], out, config, engine=engine,
                                                                              compression="snappy"))
    for name in ("kept.parquet", "rejected.parquet", "clusters.parquet"):
        meta = pq.ParquetFile(distributed / name).metadata
        assert meta.num_rows and {meta.row_group(0).column(c).compression for c in range(meta.num_columns)} == {"SNAPPY"}
    api.dedup_inputs([data], tmp_path / "default", config, engine="ray")
    assert output_hashes(tmp_path / "default")["kept.parquet"] != output_hashes(distributed)["kept.parquet"]


def test_minhash_clusters_found_on_the_workers_same_bytes(ray_instance, data, tmp_path, monkeypatch):
    """Past DRIVER_EDGES verified pairs the clusters come from large-star/small-star on the
    workers instead of union-find on the driver: the same outputs."""
    from curate.engine import ray_engine

    monkeypatch.setattr(ray_engine, "DRIVER_EDGES", 0)
    config = {"methods": ["minhash"], "threshold": {"minhash": 0.5}}
    local, _ = _both(tmp_path, lambda out, engine: api.dedup_inputs([data], out, config, engine=engine))
    assert untimed_stats(local)["methods"][0]["verified_pairs"] > 20


def test_star_components_equal_union_find(ray_instance):
    import numpy as np
    import pyarrow as pa

    from curate.dedup.clusters import components
    from curate.engine.ray_engine import star_components

    rng = np.random.default_rng(0)
    n = 5_000
    left, right = rng.integers(0, n, 3_000), rng.integers(0, n, 3_000)
    chain = rng.permutation(n)[:600]  # a long path in random order: many rounds for label propagation
    star = np.full(200, 4_999)
    left, right = np.r_[left, chain[:-1], star], np.r_[right, chain[1:], rng.integers(0, n, 200)]
    ok = left != right
    left, right = left[ok], right[ok]
    blocks = [ray_instance.put(pa.table({"left": left[i::3], "right": right[i::3]})) for i in range(3)]
    assert np.array_equal(star_components(ray_instance, blocks, n, 4), components(n, left, right))
    assert np.array_equal(star_components(ray_instance, [], n, 4), np.arange(n))


def test_minhash_exact_verify_char_shingles_same_bytes(ray_instance, data, tmp_path):
    config = {"methods": ["minhash"], "threshold": {"minhash": 0.5}, "verify": "exact", "shingle": "char",
              "ngram": 4, "on": "response"}
    local, _ = _both(tmp_path, lambda out, engine: api.dedup_inputs([data], out, config, engine=engine))
    assert untimed_stats(local)["methods"][0]["rejected"] > 0


def test_semantic_kmeans_partitions_same_bytes(ray_instance, data, tmp_path, monkeypatch):
    from curate.dedup import semantic

    # force the k-means path (partitions searched as parallel Ray tasks) on a small input
    monkeypatch.setattr(semantic, "EXACT_LIMIT", 50)
    monkeypatch.setattr(semantic, "PARTITION_SIZE", 40)

    def call(out, engine):  # each engine embeds afresh (its own cache), the local one in-process
        config = {"methods": ["semantic"], "cache_dir": str(tmp_path / f"emb-{engine}")}
        api.dedup_inputs([data], out, config, engine=engine)

    local, _ = _both(tmp_path, call)
    m = untimed_stats(local)["methods"][0]
    assert m["search"] == "kmeans" and m["rejected"] > 0 and 0 < m["embedded"] <= m["in"]


def test_format_same_bytes(ray_instance, data, tmp_path):
    config = {"tokenizer": "smollm2-135m-instruct", "max_tokens": 200, "on_overflow": "truncate",
              "eval_fraction": 0.2}
    local, _ = _both(tmp_path, lambda out, engine: api.format_inputs([data], out, config, engine=engine))
    stats = untimed_stats(local)
    assert stats["train"] > 0 and stats["eval"] > 0
    assert (local / "train.jsonl").read_text().count("\n") == stats["train"]


def test_score_same_bytes_with_limit_across_blocks(ray_instance, data, tmp_path, judge_server):
    from tests.curate.score.jurytools import api_judge, write_jury

    def call(out, engine):  # a cache per engine: both ask the real HTTP server
        folder = tmp_path / f"jury-{engine}"
        folder.mkdir()
        jury = write_jury(folder, [api_judge(judge_server, "a"), api_judge(judge_server, "b")])
        api.score_inputs([data], out, {"jury": str(jury), "min_score": 3, "limit": 50}, engine=engine)

    local, _ = _both(tmp_path, call)
    stats = untimed_stats(local)
    # 50 scored, spread over three blocks of 23; the rest rejected as not scored
    assert stats["judges"]["a"]["records"] == 50 and stats["rules"]["score.not_scored"] == stats["in"] - 51
    assert stats["agreement"]["pairs"]


def test_cli_engine_option(ray_instance, data, tmp_path):
    from click.testing import CliRunner

    from curate.cli import main

    res = CliRunner().invoke(main, ["filter", str(data), "-o", str(tmp_path / "f"), "--engine", "ray"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["filter", str(data), "-o", str(tmp_path / "g"), "--engine", "spark"])
    assert res.exit_code == 2 and "spark" in res.output


def test_unreachable_cluster_is_one_line(tmp_path, monkeypatch):
    """RAY_ADDRESS naming no cluster: a clear error, not a traceback (run in a fresh process)."""
    import subprocess
    import sys

    env = dict(os.environ, RAY_ADDRESS="127.0.0.1:1")
    res = subprocess.run([sys.executable, "-m", "curate.cli", "filter", str(SAMPLE), "-o", str(tmp_path / "f"),
                          "--engine", "ray"], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: cannot start or reach the Ray cluster at RAY_ADDRESS=127.0.0.1:1"), res.stderr[-2000:]


def test_pipeline_engine_key_builds_the_local_lock(ray_instance, data, tmp_path, repo):
    """`engine: ray` in a pipeline file: the lock equals the one the local engine writes,
    and the engine is not part of any step's cache key."""
    from curate.pipeline import build

    body = ("name: p\ninputs:\n  - path: " + str(data) + "\nsteps:\n  - filter: {rules: "
            + str(repo / "rules" / "default.yaml") + "}\n  - dedup: {method: [exact, minhash]}\n")
    (tmp_path / "local.yaml").write_text(body + f"output: {tmp_path / 'b-local'}\n")
    (tmp_path / "ray.yaml").write_text(body + f"output: {tmp_path / 'b-ray'}\nengine: ray\n")
    local = build(tmp_path / "local.yaml", echo=lambda *_: None)
    distributed = build(tmp_path / "ray.yaml", echo=lambda *_: None)
    assert local["steps"] == distributed["steps"] and local["outputs"] == distributed["outputs"]
    # the ray build's steps are reused by the local engine: same keys
    lines = []
    build(tmp_path / "ray.yaml", engine="local", echo=lines.append)
    assert all(" cached " in ln for ln in lines), lines


def test_verification_joins_on_blocks_and_on_a_row_shuffle(ray_instance):
    """The joins read the signature blocks in place when they hold consecutive rows, and
    shuffle them by row otherwise; both give the local measure for every pair."""
    import numpy as np
    import pyarrow as pa

    from curate.dedup.minhash import estimated_jaccard
    from curate.engine.ray_shuffle import _fetch_edges, row_partitions, verify_pairs

    rng = np.random.default_rng(1)
    n, perm = 400, 16
    sigs = rng.integers(0, 4, (n, perm)).astype(np.uint32)  # few values: many pairs agree often
    blocks = [ray_instance.put(pa.table({"_row": np.arange(s, min(s + 90, n)),
                                         "sig": pa.FixedSizeListArray.from_arrays(pa.array(sigs[s:s + 90].ravel()), perm)}))
              for s in range(0, n, 90)]
    left, right = rng.integers(0, n, 3000), rng.integers(0, n, 3000)
    left, right = np.minimum(left, right), np.maximum(left, right)
    keep = left != right
    pairs = [ray_instance.put(pa.table({"pair": left[keep] * n + right[keep]}))]
    expected = {(a, b): s for a, b, s in zip(left[keep].tolist(), right[keep].tolist(),
                                             estimated_jaccard(sigs, left[keep], right[keep]).tolist())}
    for order in (blocks, blocks[::-1]):
        payload, starts = row_partitions(ray_instance, order, "sig", 3)
        assert (starts is None) == (order is not blocks)  # in place, or shuffled by row
        edges, n_pairs, n_kept = verify_pairs(ray_instance, pairs, payload, starts, "sig", n, 0.3)
        got = _fetch_edges(ray_instance, edges)
        assert n_pairs == len(expected)
        assert {(a, b): s for a, b, s in zip(got["left"].tolist(), got["right"].tolist(), got["sim"].tolist())} == \
            {k: v for k, v in expected.items() if v >= 0.3}
        assert n_kept == len(got["left"]) > 0


def test_a_users_error_in_a_worker_is_one_line(ray_instance, data, tmp_path):
    """A bad tokenizer is found in the actors, not the driver: still the local engine's line."""
    from click.testing import CliRunner

    from curate.cli import main

    bad = tmp_path / "tok"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    args = ["format", str(data), "-o", str(tmp_path / "f"), "--tokenizer", str(bad)]
    local = CliRunner().invoke(main, args)
    distributed = CliRunner().invoke(main, args + ["--engine", "ray"])
    assert local.exit_code == distributed.exit_code != 0
    assert distributed.output.strip().splitlines()[-1] == local.output.strip().splitlines()[-1]
    assert distributed.output.strip().splitlines()[-1].startswith(f"Error: --tokenizer {bad}: cannot load")

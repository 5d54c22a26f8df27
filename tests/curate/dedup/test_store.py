"""The embedding store: vectors under (model files, text), shared, replayed read-only."""
from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
import pytest

from curate.config import ConfigError
from curate.dedup import DedupConfig, run
from curate.dedup.semantic import Embedder
from curate.dedup.store import EmbeddingStore, model_identity, text_key
from tests.helpers import convo, frame


class CountingEmbedder(Embedder):
    """The real store path with a fake model: a vector per text, counted."""

    def __init__(self, store, readonly=False):
        super().__init__(model="fake-model", store=store, readonly=readonly)
        self.seen = []

    def encode(self, texts):
        self.seen += texts
        self.embedded += len(texts)
        out = np.zeros((len(texts), 4), np.float32)  # a direction per text, the same in every process
        for i, t in enumerate(texts):
            out[i] = np.frombuffer(hashlib.sha256(t.encode()).digest()[:16], dtype=np.uint32) / 2**32 + 0.01
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_vectors_are_keyed_by_text_not_by_record_id(tmp_path):
    """A forged id in one input cannot lend its vector to another record (issue 21, item 19)."""
    store = tmp_path / "v.sqlite"
    forged = frame(convo("Write a poem about the sea.", "Waves...")).with_columns(pl.lit("victim-id").alias("id"))
    run(forged, DedupConfig(methods=["semantic"]), embedder=CountingEmbedder(store))
    real = frame(convo("What is the capital of France?", "Paris."), convo("Name a prime.", "7"))
    real = real.with_columns(pl.Series("id", ["victim-id", "other"]))
    emb = CountingEmbedder(store)
    result = run(real, DedupConfig(methods=["semantic"]), embedder=emb)
    assert len(emb.seen) == 2  # nothing replayed for texts never embedded
    assert result.kept.height == 2


def test_a_second_run_replays_and_a_read_only_store_is_never_written(tmp_path):
    store = tmp_path / "v.sqlite"
    texts = ["one", "two", "three"]
    first = CountingEmbedder(store)
    v1 = first.embed(texts)
    again = CountingEmbedder(store)
    assert np.array_equal(again.embed(texts + ["one"]), np.vstack([v1, v1[:1]])) and again.seen == []
    assert again.replayed == 3
    before = store.read_bytes()
    ro = CountingEmbedder(store, readonly=True)
    ro.embed(["four", "one"])
    assert ro.seen == ["four"] and store.read_bytes() == before
    assert not list(tmp_path.glob("*-wal")) and not list(tmp_path.glob("*-shm"))
    assert CountingEmbedder(tmp_path / "absent.sqlite", readonly=True).embed(["x"]).shape == (1, 4)
    assert not (tmp_path / "absent.sqlite").exists()


def test_model_identity_is_its_files_not_its_path(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "config.json").write_text("{}")
        (d / "model.safetensors").write_bytes(b"weights")
        (d / "README.md").write_text(f"copy in {d}")
    assert model_identity(str(a)) == model_identity(str(b))
    (b / "model.safetensors").write_bytes(b"weightz")
    model_identity.cache_clear()
    assert model_identity(str(a)) != model_identity(str(b))
    assert text_key("m", "x") != text_key("m", "x ") != text_key("n", "x")


@pytest.mark.parametrize("readonly", [False, True])
def test_a_corrupt_store_is_one_line_naming_the_file(tmp_path, readonly):
    bad = tmp_path / "v.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match=r"v\.sqlite: not a readable embedding store"):
        EmbeddingStore(bad, readonly=readonly).get(["k"])
    assert bad.read_bytes() == b"this is not a database" * 100  # a user's file is never deleted

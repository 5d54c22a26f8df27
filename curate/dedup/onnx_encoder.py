"""Faster CPU encoders for semantic dedup: the sentence-transformers model exported to ONNX
(fp32, or int8 by dynamic quantisation) and run by onnxruntime (`pip install 'sft-curate[onnx]'`),
or the fp32 graph run by OpenVINO (`pip install 'sft-curate[openvino]'`) at the precision it
picks for this CPU: bf16 where the CPU has it (AMX, AVX512-BF16), else f32.

The ONNX files are built offline from the model folder, once, into a cache folder keyed by
the source model's identity (the bytes of its files) and the recipe, so a changed model or
recipe builds anew and a user's data is never touched. Vectors are stored under the identity
of the *built* folder (its bytes), so they never mix with the torch model's vectors.

Texts run in order of token length (a graph whose input shape changes from one run to the
next re-plans its kernels: sorted, it changes ~250 times on a whole set instead of at every
text), never padded. onnxruntime runs each text alone, shape (1, tokens): dynamic int8
quantises a MatMul's activations with one scale per tensor, so in a batch a text's vector
would depend on the other texts in it; alone, it depends on the text only (and fp32 batches
were slower and moved last bits). OpenVINO runs batches of texts of the *same* token length
(a dynamic batch dimension, no padding, no filler copies), as many as fit ``BATCH_TOKENS``,
and with two or more threads one stream per thread: there a text's vector came out the same
to the bit alone or in batches of 1 to 64 rows, on 1 or 2 threads, bf16 and f32 (docs/semantic.md); the
store keeps the vectors computed first either way.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..config import ConfigError

# what the build does; a change here builds every cached encoder anew
RECIPE = ("torch.onnx.export(dynamo=False, opset 17) of Transformer + mean pooling + L2 normalise; "
          "int8: onnxruntime quantize_dynamic QInt8 per-channel, MatMuls with a weight only")
MODEL_FILE = "model.onnx"
KEPT_FILES = ("tokenizer.json", "sentence_bert_config.json")  # what running needs besides the graph
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# OpenVINO's batches: texts of one token length, at most this many tokens (and MAX_ROWS rows)
# in all: on 2 cores GSM8K texts (~150 tokens) ran fastest in 8 rows of the 1, 4, 8, 32 tried,
# Toolformer's (~60) about equally in 16 to 64 rows
BATCH_TOKENS = 1024
MAX_ROWS = 32
# what each encoder imports (the build needs onnx), and the extra that installs it
NEEDS = {"onnx": (("onnx", "onnxruntime"), "onnx"), "onnx-int8": (("onnx", "onnxruntime"), "onnx"),
         "openvino": (("onnx", "openvino"), "openvino")}


def require(encoder: str) -> None:
    """One clear line when the optional dependencies are not installed."""
    import importlib.util

    modules, extra = NEEDS[encoder]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"encoder '{encoder}' needs {' and '.join(modules)} ({', '.join(missing)} not installed): "
                          f"pip install 'sft-curate[{extra}]'")


def build_key(source_identity: str, encoder: str) -> str:
    return hashlib.sha256(f"{source_identity}\0{encoder}\0{RECIPE}".encode()).hexdigest()[:20]


def built_model(model_path: str, encoder: str, root: Path) -> Path:
    """The folder holding ``encoder``'s ONNX build of ``model_path`` under ``root``, built now
    if absent (seconds for MiniLM). Built in a temporary folder beside it and renamed
    into place, so a concurrent or interrupted build never leaves a half-written one."""
    from .store import model_identity

    require(encoder)
    kind = "onnx" if encoder == "openvino" else encoder  # OpenVINO reads the fp32 graph
    source = Path(model_path)
    if not (source / "tokenizer.json").is_file() or not (source / "sentence_bert_config.json").is_file():
        raise ConfigError(f"encoder '{encoder}' needs a local sentence-transformers folder with tokenizer.json "
                          f"and sentence_bert_config.json; '{model_path}' is not one")
    source_id = model_identity(str(source))
    final = root / f"{kind}-{build_key(source_id, kind)}"
    if (final / MODEL_FILE).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    work.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        _export(source, work / "fp32.onnx")
        if kind == "onnx-int8":
            _quantize(work / "fp32.onnx", work / MODEL_FILE)
            (work / "fp32.onnx").unlink()
        else:
            (work / "fp32.onnx").rename(work / MODEL_FILE)
        for name in KEPT_FILES:
            shutil.copyfile(source / name, work / name)
        # hidden: model_identity reads the graph and tokenizer, not this note
        (work / ".build.json").write_text(json.dumps({"source": str(source), "source_identity": source_id,
                                                       "encoder": kind, "recipe": RECIPE, **_versions()}, indent=1))
        try:
            work.rename(final)
        except OSError:  # another process built it first
            if not (final / MODEL_FILE).is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return final


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "onnx", "onnxruntime"):  # onnxruntime is absent with [openvino] alone
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _export(source: Path, out: Path) -> None:
    """The Transformer, mean pooling and normalisation (what modules.json of an
    all-MiniLM-style model lists) as one graph with dynamic batch and length."""
    import torch
    from transformers import AutoModel

    config = json.loads((source / "1_Pooling" / "config.json").read_text()) if (source / "1_Pooling").is_dir() else {}
    if config and not config.get("pooling_mode_mean_tokens"):
        raise ConfigError(f"encoder onnx: {source} pools by other than the mean of its tokens; only mean pooling "
                          "is exported (use --encoder torch)")
    model = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()

    class Sentence(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(h.dtype)
            v = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(v, p=2, dim=1)

    ids = torch.ones(2, 7, dtype=torch.long)
    axes = {k: {0: "batch", 1: "tokens"} for k in INPUTS} | {"embedding": {0: "batch"}}
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shapes the graph keeps dynamic
        torch.onnx.export(Sentence(model), (ids, ids, torch.zeros_like(ids)), str(out), dynamo=False,
                          input_names=list(INPUTS), output_names=["embedding"], dynamic_axes=axes, opset_version=17)


def _quantize(src: Path, out: Path) -> None:
    """int8 weights, one scale per output channel, for the MatMuls that have a weight; the two
    attention MatMuls (both inputs computed) stay float: quantising them saves no weights and
    costs accuracy. Embeddings and LayerNorms stay float."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    both_computed = [n.name for n in graph.node if n.op_type == "MatMul" and not any(i in weights for i in n.input)]
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing": a hint for static quantisation
    try:
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=both_computed)
    finally:
        logging.getLogger().setLevel(level)


def _threads(threads: int | None) -> int:
    """onnxruntime and OpenVINO ignore OMP_NUM_THREADS; follow it as torch does (0: their default)."""
    return threads if threads is not None else int(os.environ.get("OMP_NUM_THREADS") or 0)


def length_batches(lengths: list[int], rows_for) -> list[np.ndarray]:
    """Indices of texts grouped by equal token length, shortest first, each group cut into
    runs of at most ``rows_for(length)`` (in input order within a length)."""
    n = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(n, kind="stable")
    cuts = np.flatnonzero(np.diff(n[order])) + 1
    out = []
    for group in np.split(order, cuts) if len(order) else []:
        rows = max(1, rows_for(int(n[group[0]])))
        out.extend(group[s:s + rows] for s in range(0, len(group), rows))
    return out


class OnnxEncoder:
    """``encode(texts) -> (vectors, truncated)``: one onnxruntime session on a built folder,
    each text alone, in order of length."""
    precision = "f32"

    def __init__(self, folder: Path, threads: int | None = None):
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.max_tokens = int(json.loads((self.folder / "sentence_bert_config.json").read_text())["max_seq_length"])
        self.tok = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(self.max_tokens)  # as sentence-transformers reads: the first max_tokens
        self.dim = None
        self._load(_threads(threads))

    def _load(self, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(self.folder / MODEL_FILE), opts, providers=["CPUExecutionProvider"])
        self.dim = int(session.get_outputs()[0].shape[1] or 0) or None
        self._session = session

    def rows(self, length: int) -> int:
        """Texts per run at this token length: one (module docstring)."""
        return 1

    def _run(self, feeds):
        """(rows, their vectors) for every (rows, feed) of ``feeds``."""
        for rows, feed in feeds:
            yield rows, self._session.run(None, feed)[0]

    def encode(self, texts: list[str], bar=None) -> tuple[np.ndarray, int]:
        encs = self.tok.encode_batch([t.strip() for t in texts])  # sentence-transformers strips too
        truncated = sum(bool(e.overflowing) for e in encs)
        if not encs:
            return np.zeros((0, self.dim or 0), dtype=np.float32), 0

        def feeds():
            for rows in length_batches([len(e.ids) for e in encs], self.rows):
                ids = np.array([encs[i].ids for i in rows], dtype=np.int64)
                types = np.array([encs[i].type_ids for i in rows], dtype=np.int64)
                yield rows, dict(zip(INPUTS, (ids, np.ones_like(ids), types)))
        out = None
        for rows, vecs in self._run(feeds()):
            if out is None:  # the graph's width, from its first output
                out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
            out[rows] = vecs
            if bar is not None:
                bar.update(len(rows))
        return out, truncated


class OpenVinoEncoder(OnnxEncoder):
    """The fp32 graph compiled by OpenVINO for this CPU; ``precision`` is what it runs at
    (part of the vectors' identity: bf16 and f32 vectors of one graph differ by ~1e-3).
    Batches of one token length; with n >= 2 threads, n streams of one thread each, n
    batches in flight (small matrices keep one thread busier than two share)."""

    def _load(self, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        config = ({"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": "1"} if threads == 1 else
                  {"PERFORMANCE_HINT": "THROUGHPUT"} | ({"NUM_STREAMS": str(threads), "INFERENCE_NUM_THREADS": str(threads)}
                                                         if threads else {}))
        compiled = core.compile_model(core.read_model(str(self.folder / MODEL_FILE)), "CPU", config)
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type: bf16, f16 or f32
        self.precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)
        self._compiled = compiled
        self.streams = int(compiled.get_property("NUM_STREAMS"))
        self._request = compiled.create_infer_request()

    def rows(self, length: int) -> int:
        return min(MAX_ROWS, max(1, BATCH_TOKENS // length))

    def _run(self, feeds):
        if self.streams <= 1:
            for rows, feed in feeds:
                yield rows, next(iter(self._request.infer(feed).values())).copy()  # the request reuses its output
            return
        import collections

        import openvino as ov

        finished = collections.deque()  # filled by OpenVINO's threads, emptied here
        queue = ov.AsyncInferQueue(self._compiled, self.streams)
        queue.set_callback(lambda request, rows: finished.append((rows, next(iter(request.results.values())).copy())))
        for rows, feed in feeds:
            queue.start_async(feed, rows)  # waits while every stream is busy
            while finished:
                yield finished.popleft()
        queue.wait_all()
        while finished:
            yield finished.popleft()

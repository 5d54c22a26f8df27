"""Loading a tokenizer: the folders this toolkit converts from a GGUF load by their saved
class, without AutoTokenizer's model-config step (which imports torch), and give what
AutoTokenizer gives; any other folder goes to AutoTokenizer."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curate.format import tokenizer as tk
from curate.models import SHIPPED

pytest.importorskip("transformers")
REPO = Path(__file__).resolve().parents[3]

TEXTS = ["Hello, world!", "Ünïcödé ✓ 漢字 — déjà vu?", "  spaced\n\ttabs  ", "<|im_start|>user\nhi<|im_end|>",
         "<bos><start_of_turn>user\nhi<end_of_turn>", ""]
CHAT = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]


def _shipped(name):
    try:
        return tk.tokenizer_folder(name)
    except Exception as e:  # noqa: BLE001 - the model's package is not installed here
        pytest.skip(f"{name}: {e}")


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_converted_folder_loads_as_autotokenizer_loads_it(name):
    path = _shipped(name)
    direct, auto = tk._converted_tokenizer(name, path), tk._auto_tokenizer(path)
    assert direct is not None
    assert type(direct) is type(auto)
    assert direct.backend_tokenizer.to_str() == auto.backend_tokenizer.to_str()
    assert direct.special_tokens_map == auto.special_tokens_map
    assert direct.chat_template == auto.chat_template
    assert (direct.bos_token_id, direct.eos_token_id, direct.pad_token_id) == (auto.bos_token_id, auto.eos_token_id,
                                                                                 auto.pad_token_id)
    for text in TEXTS:
        assert direct(text)["input_ids"] == auto(text)["input_ids"]
    if auto.chat_template:
        assert direct.apply_chat_template(CHAT, tokenize=False) == auto.apply_chat_template(CHAT, tokenize=False)


def test_other_folders_go_to_autotokenizer(tmp_path, monkeypatch):
    path = _shipped("smollm2-135m-instruct")
    folder = tmp_path / "mine"
    folder.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (folder / f).write_bytes((path / f).read_bytes())
    assert tk._converted_tokenizer(str(folder), folder) is None  # a user's folder: AutoTokenizer decides
    seen = []
    real = tk._auto_tokenizer
    monkeypatch.setattr(tk, "_auto_tokenizer", lambda p: seen.append(p) or real(p))
    assert tk.load_tokenizer(str(folder)).is_fast and seen == [folder]
    # a converted folder whose saved class transformers does not have: AutoTokenizer too
    config = json.loads((path / "tokenizer_config.json").read_text())
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "NoSuchTokenizer"}))
    assert tk._converted_tokenizer("smollm2-135m-instruct", odd) is None
    # a class that is not a fast tokenizer (as "GemmaTokenizer" is in transformers 4.x): AutoTokenizer
    (odd / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "PythonBackend"}))
    assert tk._converted_tokenizer("smollm2-135m-instruct", odd) is None
    # a class that fails to load the folder: AutoTokenizer decides (and says why)
    (odd / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "TokenizersBackend"}))
    assert tk._converted_tokenizer("smollm2-135m-instruct", odd) is None  # no tokenizer.json there


def test_a_load_error_is_one_line_naming_its_first_words(tmp_path):
    from curate.config import ConfigError

    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ConfigError) as e:
        tk.load_tokenizer(str(folder))
    message = str(e.value)
    assert "\n" not in message and message.split("cannot load a tokenizer: ", 1)[1].strip()


def test_format_with_a_shipped_tokenizer_does_not_import_torch(tmp_path):
    _shipped("smollm2-135m-instruct")
    raw = tmp_path / "raw.jsonl"
    raw.write_text(json.dumps({"messages": CHAT}) + "\n")
    code = f"""
import sys
from curate import cli
cli.main(["format", "--tokenizer", "smollm2-135m-instruct", {str(raw)!r}, "-o", {str(tmp_path / "out")!r}],
         standalone_mode=False)
print("torch" in sys.modules)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "False"

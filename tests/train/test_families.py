"""Issue #24 items 1, 5, 6 on tiny models: a family whose end of turn is not its eos token
(Gemma: <end_of_turn> and <eos>), a sliding-window model, a model that never stops."""
import shutil

import pytest
from click.testing import CliRunner

from curate.config import ConfigError
from train.cli import main
from train.config import SFTConfig
from train.sft import sft

from .conftest import arithmetic, write_jsonl


@pytest.fixture
def eos_apart(tiny_model, tmp_path):
    """The tiny model, its eos token <|endoftext|> (the model's too), its template closing turns
    with <|im_end|>: as Gemma, where generation config stops only at <eos>."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    path = tmp_path / "eos-apart"
    shutil.copytree(tiny_model, path)
    tok = AutoTokenizer.from_pretrained(str(path))
    tok.eos_token = "<|endoftext|>"
    tok.save_pretrained(str(path))
    config = AutoConfig.from_pretrained(str(path))
    config.eos_token_id = tok.eos_token_id
    config.save_pretrained(str(path))
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(str(path))
    return path


def scripted(model, tok, words):
    """The model answers ``words`` (token strings) one per step, then repeats the last one."""
    ids = tok.convert_tokens_to_ids(words)
    calls = []

    def hook(module, args, out):
        k = min(len(calls), len(ids) - 1)
        calls.append(1)
        out = out.clone()
        out[:, -1, :] = -1e4
        out[:, -1, ids[k]] = 1e4
        return out

    model.lm_head.register_forward_hook(hook)
    return model


# ------------------------------------------------------------------------------ item 1
def test_generate_stops_at_the_templates_end_of_turn(eos_apart, monkeypatch):
    import train.model as modelmod

    real = modelmod.load_for_inference

    def load(path):
        model, tok = real(path)
        return scripted(model, tok, [tok.tokenize(" fox")[0], "<|im_end|>", tok.tokenize(" dog")[0]]), tok

    monkeypatch.setattr(modelmod, "load_for_inference", load)
    r = CliRunner().invoke(main, ["generate", str(eos_apart), "--prompt", "hi", "--max-new-tokens", "6"])
    assert r.exit_code == 0, r.output
    assert r.output.rstrip().endswith("fox") and "dog" not in r.output, r.output  # not "fox dog dog dog dog": <|im_end|> ends the answer


# ------------------------------------------------------------------------------ item 5
@pytest.fixture
def windowed(tiny_model, tmp_path):
    """A folder with the tiny tokenizer and a Gemma 3 text config with a 32-token sliding window."""
    from transformers import AutoTokenizer, Gemma3TextConfig

    path = tmp_path / "windowed"
    AutoTokenizer.from_pretrained(str(tiny_model)).save_pretrained(str(path))
    Gemma3TextConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=1, head_dim=16, sliding_window=32, max_position_embeddings=256,
                     ).save_pretrained(str(path))
    return path


def test_a_packing_refusal_from_the_config_comes_before_the_model_loads(base_cfg, windowed, monkeypatch):
    import train.sft as sftmod

    def never(*a, **kw):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(sftmod, "load_model", never)
    cfg = SFTConfig(**{**base_cfg, "model": str(windowed), "packing": True, "max_length": 64})
    for dry_run in (True, False):
        with pytest.raises(ConfigError, match=r"sliding window \(32 tokens\).*max_length 64"):
            sft(cfg, dry_run=dry_run, echo=lambda *_: None)
    sft(SFTConfig(**{**base_cfg, "model": str(windowed), "packing": True, "max_length": 32}), dry_run=True,
        echo=lambda *_: None)


# ------------------------------------------------------------------------------ item 6
def test_eval_says_when_answers_reach_the_token_limit(eos_apart, tmp_path, monkeypatch):
    import train.evaluate as evmod

    real = evmod.load

    def load(spec):
        model, tok, template, identity = real(spec)
        return scripted(model, tok, [tok.tokenize(" dog")[0]]), tok, template, identity

    monkeypatch.setattr(evmod, "load", load)
    write_jsonl(tmp_path / "eval.jsonl", arithmetic(3))
    lines = []
    result = evmod.evaluate([str(eos_apart)], str(tmp_path / "eval.jsonl"), ["length"], max_new_tokens=5,
                            echo=lines.append)
    assert result["rows"][0]["at_limit"] == 3
    assert any("3 of 3 answers reached --max-new-tokens 5 without an end of turn" in x for x in lines), lines
    assert "at_limit" in evmod.table(result)[0]

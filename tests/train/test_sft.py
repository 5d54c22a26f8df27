"""train sft on CPU with a tiny random Llama and a BPE tokenizer trained in the test."""
import json

import pytest
import torch

from curate.config import ConfigError
from train.config import SFTConfig, load
from train.sft import sft

from .conftest import write_jsonl


def run(base_cfg, callbacks=(), **over):
    cfg = SFTConfig(**{**base_cfg, **over})
    return sft(cfg, echo=lambda *_: None, callbacks=callbacks)


def evals(out) -> list[float]:
    history = json.loads((out / "history.json").read_text())
    return [h["eval_loss"] for h in history if "eval_loss" in h]


def adapter_weights(out) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter_model.safetensors"))


@pytest.mark.parametrize("method, lr", [("lora", 5e-3), ("full", 1e-3)])
def test_training_lowers_the_loss(base_cfg, tmp_path, method, lr):
    r = run(base_cfg, method=method, lr=lr)
    out = tmp_path / "run"
    e = evals(out)
    assert e[-1] < e[0] - 0.3, e  # eval on start, then every 6 steps
    names = {p.name for p in out.iterdir()}
    weights = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    assert {weights, "tokenizer.json", "config.yaml", "provenance.json", "README.md", "loss.png",
            "template.jinja"} <= names
    assert r["global_step"] == 12


def test_only_assistant_tokens_are_trained(base_cfg, tiny_model):
    from train.data import encode
    from transformers import AutoTokenizer

    from .conftest import arithmetic

    tok = AutoTokenizer.from_pretrained(tiny_model)
    [row] = encode(arithmetic(1), ["x:1"], tok.chat_template, tok, 64, "train")
    trained = [t for t in row["labels"] if t != -100]
    assert tok.decode(trained) == "The answer is 3.<|im_end|>"


def test_init_adapter_continues_where_the_adapter_ended(base_cfg, tmp_path):
    run(base_cfg)
    first = evals(tmp_path / "run")
    run(base_cfg, output_dir=str(tmp_path / "second"), init={"adapter": str(tmp_path / "run")})
    second = evals(tmp_path / "second")
    assert second[0] == pytest.approx(first[-1], abs=1e-5)
    assert second[-1] < second[0]
    # the plan counts the continued adapter as trainable, like a fresh one of the same shape
    fresh = sft(SFTConfig(**base_cfg), dry_run=True, echo=lambda *_: None)
    cont = sft(SFTConfig(**{**base_cfg, "init": {"adapter": str(tmp_path / "run")}}), dry_run=True, echo=lambda *_: None)
    assert cont["trainable"] == fresh["trainable"] > 0


class Interrupt(Exception):
    pass


def test_interrupted_run_resumed_ends_with_the_same_weights(base_cfg, tmp_path):
    from transformers import TrainerCallback

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 6:
                raise Interrupt()

    cfg = dict(base_cfg, lora={"r": 8, "alpha": 16, "dropout": 0.1})  # dropout: the RNG state must be restored too
    run(cfg, output_dir=str(tmp_path / "whole"))
    with pytest.raises(Interrupt):
        run(cfg, output_dir=str(tmp_path / "cut"), callbacks=[KillAfterSave()])
    assert not (tmp_path / "cut" / "adapter_model.safetensors").exists()
    run(cfg, output_dir=str(tmp_path / "cut"), resume="auto")
    a, b = adapter_weights(tmp_path / "whole"), adapter_weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


@pytest.mark.parametrize("on", [False, True])
def test_gradient_checkpointing_is_what_the_config_says(base_cfg, on):
    # TRL's own configs default it to on: an unset key must not leave the run recomputing activations
    from transformers import TrainerCallback

    seen = []

    class Look(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            seen.append(any(getattr(m, "gradient_checkpointing", False) for m in base.modules()))

    run(base_cfg, max_steps=1, eval_every=None, gradient_checkpointing=on, callbacks=[Look()])
    assert seen == [on]


def test_merged_model_gives_the_adapter_logits(base_cfg, tmp_path):
    from train.model import load_for_inference, merge

    run(base_cfg, merge=True)
    out = tmp_path / "run"
    assert (out / "merged" / "model.safetensors").is_file()
    adapter, tok = load_for_inference(str(out))
    merged, _ = load_for_inference(str(out / "merged"))
    ids = tok("What is 3 plus 4?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(adapter(ids).logits, merged(ids).logits, atol=1e-4)
    merge(str(out), str(tmp_path / "again"))  # the command's path gives the same folder
    again, _ = load_for_inference(str(tmp_path / "again"))
    with torch.no_grad():
        assert torch.allclose(again(ids).logits, merged(ids).logits, atol=1e-6)


def test_provenance_names_the_dataset(base_cfg, tmp_path, data_dir):
    import hashlib

    run(base_cfg, max_steps=2, eval_every=None)
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    files = prov["dataset"]["files"]
    assert files["train"] == hashlib.sha256((data_dir / "train.jsonl").read_bytes()).hexdigest()
    assert set(files) == {"train", "eval"}
    assert len(prov["dataset"]["hash"]) == 64 and prov["seed"] == 0
    assert prov["versions"]["trl"] and prov["hardware"]["device"] == "cpu"
    card = (tmp_path / "run" / "README.md").read_text()
    assert prov["dataset"]["hash"] in card
    # data from a `curate run` build: training reads its last step, and the build's lock names the dataset
    import shutil

    build = tmp_path / "build"
    shutil.copytree(data_dir, build / "03-format")
    manifest = {"final": "03-format", "lock_sha256": "ab" * 32, "pipeline": "p", "pipeline_file": "pipelines/p.yaml",
                "outputs": {"03-format/train.jsonl": files["train"]}}
    (build / "manifest.json").write_text(json.dumps(manifest))
    run(base_cfg, max_steps=1, eval_every=None, output_dir=str(tmp_path / "r2"), data=str(build))
    prov2 = json.loads((tmp_path / "r2" / "provenance.json").read_text())
    assert prov2["dataset"]["hash"] == "ab" * 32 and "pipeline p" in prov2["dataset"]["source"]
    assert prov2["dataset"]["files"] == files
    (build / "manifest.json").write_text(json.dumps({"final": "02-dedup"}))
    with pytest.raises(ConfigError, match="the build ends with 02-dedup, not a format step"):
        run(base_cfg, max_steps=1, data=str(build))


def test_a_record_with_nothing_to_train_stops_the_run(base_cfg, data_dir):
    write_jsonl(data_dir / "train.jsonl", [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        [{"role": "system", "content": "s"}, {"role": "user", "content": "only a question"}],
    ])
    with pytest.raises(ConfigError, match=r"train data: 1 records with no trained tokens: .*train.jsonl:2"):
        run(base_cfg)


def test_a_cut_end_of_turn_stops_the_run(base_cfg, data_dir):
    write_jsonl(data_dir / "train.jsonl", [[{"role": "user", "content": "q"},
                                           {"role": "assistant", "content": "word " * 80}]])
    with pytest.raises(ConfigError, match=r"end-of-turn token is not trained.*max_length 64"):
        run(base_cfg)


def test_qlora_without_cuda_is_a_clear_error(base_cfg):
    with pytest.raises(ConfigError, match=r"qlora needs a CUDA GPU"):
        run(base_cfg, method="qlora")


def test_bad_config_names_the_file_and_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: m\ndata: d\noutput_dir: o\nlora: {rank: 8}\n")
    with pytest.raises(ConfigError) as e:
        load(p)
    assert str(e.value).startswith(f"{p}: lora: unknown key 'rank'")
    p.write_text("model: m\ndata: d\noutput_dir: o\nmethod: qlorra\n")
    with pytest.raises(ConfigError, match=r"method: 'qlorra' is not one of lora, qlora, full \(did you mean 'qlora'\?\)"):
        load(p)


def test_set_overrides_nested_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: m\ndata: d\noutput_dir: o\n")
    cfg = load(p, ["lora.r=32", "lr=1e-4", "packing=false", "init.adapter=runs/a"])
    assert (cfg.lora.r, cfg.lr, cfg.packing, cfg.init.adapter) == (32, 1e-4, False, "runs/a")
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE"):
        load(p, ["lora.r"])


def test_bf16_autocast_on_cpu_trains_and_fp16_is_refused(base_cfg, tmp_path):
    import json as _json

    result = run(base_cfg, precision="bf16", max_steps=6, eval_every=6)
    assert result["precision"] == "bf16"
    losses = evals(tmp_path / "run")
    assert losses[-1] < losses[0]
    prov = _json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["hardware"]["precision"] == "bf16"
    with pytest.raises(ConfigError, match="precision: fp16 needs a CUDA GPU"):
        run(base_cfg, precision="fp16")


def test_warmup_is_a_share_of_the_steps_on_transformers_4_and_5(tmp_path):
    """warmup_ratio reaches transformers as a share of the steps in the spelling it takes: 4.x's
    warmup_ratio (its warmup_steps must be a whole count: 0.03 there is refused), 5.x's float
    warmup_steps below 1 (it has no warmup_ratio)."""
    import dataclasses

    from trl import SFTConfig as TRLConfig

    from train.sft import warmup_arg

    @dataclasses.dataclass
    class Transformers4:  # the two fields as transformers 4.56's TrainingArguments declares them
        warmup_ratio: float = 0.0
        warmup_steps: int = 0

    @dataclasses.dataclass
    class Transformers5:
        warmup_steps: float = 0

    assert warmup_arg(Transformers4, 0.03) == {"warmup_ratio": 0.03}
    assert warmup_arg(Transformers5, 0.03) == {"warmup_steps": 0.03}
    installed = TRLConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], **warmup_arg(TRLConfig, 0.1))
    assert installed.get_warmup_steps(200) == 20  # the installed transformers, whichever it is

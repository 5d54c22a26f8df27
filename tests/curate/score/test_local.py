"""The in-process judge: digit probabilities from one forward pass."""
import pytest

from curate.score import ScoreConfig, run
from tests.contract import assert_stage_contract
from tests.helpers import convo, frame

from .jurytools import write_jury


def local_jury(tmp_path, model, **kw):
    return write_jury(tmp_path, [{"name": "tiny", "backend": "local", "model": str(model), "batch_size": 3}], **kw)


def test_local_judge_scores_within_the_scale_and_equals_unbatched(tiny_model, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    records = frame(*[convo(f"question {i} " + "word " * i, f"answer {i}") for i in range(7)])
    res = run(records, ScoreConfig(jury=str(local_jury(tmp_path, tiny_model))))
    scores = res.kept["score"].to_list()
    assert len(scores) == 7 and all(1 <= s <= 5 for s in scores)
    assert res.stats["judges"]["tiny"]["tokens_in"] > 0

    # the same number by hand, one record at a time, without padding
    from curate.score.rubric import render_prompts

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    rubric = open(res.stats["jury"]["rubric"]).read()
    prompts = render_prompts(records["messages"].to_list(), rubric, "r", (1, 5), "logprobs", 8000)
    digits = {d: sorted({tok.encode(s, add_special_tokens=False)[0] for s in (str(d), f" {d}")
                         if len(tok.encode(s, add_special_tokens=False)) == 1}) for d in range(1, 6)}
    for prompt, got in zip(prompts, scores):
        ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            probs = torch.softmax(model(ids).logits[0, -1].float(), -1)
        mass = {d: probs[t].sum().item() for d, t in digits.items()}
        expected = sum(d * p for d, p in mass.items()) / sum(mass.values())
        assert got == pytest.approx(expected, abs=2e-4)


def test_local_judge_stage_contract_and_cache(tiny_model, tmp_path):
    jury = local_jury(tmp_path, tiny_model)
    records = frame(*[convo(f"q{i}", "a" * (i + 1)) for i in range(5)])
    first = assert_stage_contract(lambda df: run(df, ScoreConfig(jury=str(jury), min_score=1)), records, tmp_path)
    again = run(records, ScoreConfig(jury=str(jury), min_score=1))
    assert again.stats["judges"]["tiny"]["cache_hits"] == 5 and again.stats["judges"]["tiny"]["calls"] == 0
    assert again.kept["score"].to_list() == first.kept["score"].to_list()


@pytest.mark.slow
def test_shipped_offline_jury_runs_the_real_smollm2(tmp_path, repo):
    """The shipped offline jury end to end on the real model. It does not assert that SmolLM2-135M
    tells good from bad: measured, it does not (README, "How good is the offline judge")."""
    import shutil

    jury = tmp_path / "offline.yaml"
    shutil.copy(repo / "rules" / "juries" / "offline.yaml", jury)
    text = jury.read_text().replace("../rubrics/sft_quality.j2", str(repo / "rules/rubrics/sft_quality.j2"))
    jury.write_text(text.replace(".curate/cache/judges.sqlite", str(tmp_path / "c.sqlite")))
    records = frame(
        convo("What is the capital of France?", "The capital of France is Paris."),
        convo("What is 7 times 8?", "7 times 8 is 56."),
    )
    res = run(records, ScoreConfig(jury=str(jury)))
    assert all(1 <= s <= 5 for s in res.kept["score"].to_list())
    for reason in res.kept["score_reasons"].struct.field("smollm2").to_list():
        assert reason.startswith("digit probabilities 1:")
    again = run(records, ScoreConfig(jury=str(jury)))
    assert again.stats["judges"]["smollm2"]["cache_hits"] == 2
    assert again.kept["score"].to_list() == res.kept["score"].to_list()

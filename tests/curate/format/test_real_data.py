"""GSM8K through curate format with SmolLM2: nothing rejected, masks exact (skips without ../shared)."""
from curate.format import FormatConfig, encode, run
from curate.format import template as tpl
from curate.readers import read_inputs


def test_gsm8k_formats_with_exact_masks(shared_datasets):
    from curate.format.tokenizer import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    records = read_inputs([shared_datasets / "gsm8k" / "train.jsonl"]).records.head(500)
    result = run(records, FormatConfig(tokenizer="smollm2-135m-instruct", max_tokens=1024, eval_fraction=0.1),
                 tokenizer=tok)
    assert result.rejected.height == 0
    assert 20 < result.stats["eval"] < 80
    _, template, _ = tpl.choose(None, tok)
    for messages in records["messages"].to_list()[:25]:
        ids, mask = encode(template, messages, tok)
        trained = tok.decode([i for i, m in zip(ids, mask) if m])
        assert trained == messages[-1]["content"] + "<|im_end|>"


def test_gpteacher_roleplay_formats_in_full_with_gemma3(shared_datasets):
    """#24 item 2: records 1976 and 2851 end in a space, which Gemma 3's template trims; the whole
    set used to abort. With a Gemma-3-like tokenizer (the real one: tests/train/test_gemma3.py)."""
    from tests.families import gemma_tokenizer, trl_templates

    path = trl_templates()["gemma3"]
    tok = gemma_tokenizer(path.read_text())
    records = read_inputs([shared_datasets / "gpteacher" / "roleplay.json"]).records
    result = run(records, FormatConfig(tokenizer="x", template=str(path)), tokenizer=tok)
    assert result.rejected.height == 0 and result.kept.height == records.height == 3146
    _, template, _ = tpl.choose(str(path), tok)
    for b in (1976, 2851):
        messages = records["messages"][b].to_list()
        assert messages[-1]["content"].endswith(" ")
        ids, mask = encode(template, messages, tok)
        assert tok.decode([i for i, m in zip(ids, mask) if m]) == messages[-1]["content"].strip() + "<end_of_turn>"

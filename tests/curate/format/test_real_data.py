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

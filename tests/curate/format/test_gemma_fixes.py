"""Issue #24 items 2-4 with a Gemma-3-like tokenizer and TRL's own Gemma 3 templates."""
import pytest

from curate.config import ConfigError
from curate.format import FormatConfig, encode, run
from curate.format import template as tpl
from tests.families import gemma_tokenizer, trl_templates
from tests.helpers import convo, frame

pytest.importorskip("trl")


@pytest.fixture(scope="module")
def gemma3():
    return trl_templates()["gemma3"]


@pytest.fixture(scope="module")
def gemma3_training():
    return trl_templates()["gemma3_training"]


@pytest.fixture(scope="module")
def tok(gemma3):
    return gemma_tokenizer(gemma3.read_text())


def trained(tok, ids, mask):
    return tok.decode([i for i, m in zip(ids, mask) if m])


# ------------------------------------------------------------------------------ item 2
def test_gemma3_trims_content_and_a_spaced_answer_is_measured_not_fatal(tok, gemma3):
    spaced = [convo("Hello", "Greetings, traveller. "), convo(" Lead", " and trail "), convo("Q", "A")]
    result = run(frame(*spaced), FormatConfig(tokenizer="x", template=str(gemma3)), tokenizer=tok)
    assert result.kept.height == 3 and result.rejected.height == 0
    _, template, _ = tpl.choose(str(gemma3), tok)
    ids, mask = encode(template, spaced[0], tok)
    assert trained(tok, ids, mask) == "Greetings, traveller.<end_of_turn>"  # what the template renders, trimmed
    assert tok.decode(ids) == tok.apply_chat_template(spaced[0], chat_template=gemma3.read_text(), tokenize=False)


def test_a_record_that_cannot_be_measured_is_rejected_with_a_reason(tok, tmp_path):
    # renders an earlier assistant turn differently once a later turn follows (as Qwen 3 drops old reasoning)
    f = tmp_path / "forgetful.jinja"
    f.write_text("{% for m in messages %}{{ '<start_of_turn>' + m['role'] + '\\n' }}"
                 "{% if m['role'] == 'assistant' and not loop.last %}{{ m['content'].split('</think>')[-1] }}"
                 "{% else %}{{ m['content'] }}{% endif %}{{ '<end_of_turn>\\n' }}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<start_of_turn>assistant\\n' }}{% endif %}")
    records = [convo("Q", "A"), convo("Q1", "<think>hm</think>A1", "Q2", "A2"), convo("Q3", "A3")]
    result = run(frame(*records), FormatConfig(tokenizer="x", template=str(f)), tokenizer=tok)
    assert result.kept.height == 2
    assert result.rejected["rule"].to_list() == ["format.not_measurable"]
    assert "marked copy" in result.rejected["reason"][0]


def test_a_template_never_prefix_consistent_is_still_refused_before_any_record(tok, tmp_path):
    f = tmp_path / "never.jinja"
    f.write_text("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + ' (' + messages|length|string + ')' }}"
                 "{{ '<end_of_turn>' }}{% endfor %}")
    with pytest.raises(ConfigError, match="prefix-consistently"):
        run(frame(convo("Q", "A")), FormatConfig(tokenizer="x", template=str(f)), tokenizer=tok)


# ------------------------------------------------------------------------------ item 3
def test_trl_marked_gemma3_template_is_accepted_and_trains_up_to_end_of_turn(tok, gemma3, gemma3_training):
    records = [convo("Hello", "Hi there."), [{"role": "system", "content": "Be brief."}, *convo("Q", "A ", "Q2", "B")]]
    result = run(frame(*records), FormatConfig(tokenizer="x", template=str(gemma3_training)), tokenizer=tok)
    assert result.kept.height == 2 and result.stats["template_markers"] is True
    _, template, _ = tpl.choose(str(gemma3_training), tok)
    ids, mask = encode(template, records[1], tok)
    assert trained(tok, ids, mask) == "A<end_of_turn>B<end_of_turn>"
    # the same text as the published template, and the same tokens as prefix rendering marks
    assert tok.decode(ids) == tok.apply_chat_template(records[1], chat_template=gemma3.read_text(), tokenize=False)
    assert (ids, mask) == encode(gemma3.read_text(), records[1], tok)


# ------------------------------------------------------------------------------ item 4
def test_only_the_templates_closing_token_ends_a_turn(tok, tmp_path):
    assert tpl.closing_tokens(trl_templates()["gemma3"].read_text(), tok) == ["<end_of_turn>"]
    # a turn the template closes with <unused1> (a question) is not an ended turn, though <unused1> is special
    f = tmp_path / "odd.jinja"
    f.write_text("{% for m in messages %}{{ '<start_of_turn>' + m['role'] + '\\n' }}{% if m['role'] == 'assistant' %}"
                 "{% generation %}{{ m['content'] }}{% if m['content'].endswith('?') %}{{ '<unused1>' }}{% else %}"
                 "{{ '<end_of_turn>' }}{% endif %}{% endgeneration %}{% else %}{{ m['content'] + '<end_of_turn>' }}"
                 "{% endif %}{{ '\\n' }}{% endfor %}")
    result = run(frame(convo("Q", "A."), convo("Q", "Why?")), FormatConfig(tokenizer="x", template=str(f)), tokenizer=tok)
    assert result.kept.height == 1
    assert result.rejected["rule"].to_list() == ["format.end_of_turn_not_trained"]


def test_train_sft_encode_checks_the_same_closing_token(tok):
    from train.data import encode as sft_encode

    _, template, _ = tpl.choose(str(trl_templates()["gemma3_training"]), tok)
    rows = sft_encode([convo("Q", "Answer here.")], ["a"], template, tok, 4096, "train")
    assert tok.decode([t for t in rows[0]["labels"] if t != -100]) == "Answer here.<end_of_turn>"
    # cut inside the answer right after a special token that is not the closing one: refused, named
    cut = [{"role": "user", "content": "Q"},
           {"role": "assistant", "content": [{"type": "text", "text": "Look"}, {"type": "image"},
                                             {"type": "text", "text": "there."}]}]
    ids, _ = encode(template, cut, tok)
    at = ids.index(tok.convert_tokens_to_ids("<start_of_image>")) + 1
    with pytest.raises(ConfigError, match="end-of-turn token is not trained"):
        sft_encode([cut], ["b"], template, tok, at, "train")


# ------------------------------------------------------------------------------ --template by family name
def test_template_by_family_name_uses_trls_marked_copy(tok, gemma3_training):
    _, template, original = tpl.choose("gemma3", tok)
    assert template == gemma3_training.read_text() and original is None
    with pytest.raises(ConfigError, match="nor a chat template TRL ships"):
        tpl.choose("gemma99", tok)


def test_a_tokenizer_carrying_a_published_template_gets_its_marked_copy():
    from tests.families import family_tokenizer

    qwen3 = trl_templates()["qwen3"].read_text()
    qtok = family_tokenizer(qwen3, "qwen")
    with pytest.raises(ConfigError, match="marked copy"):  # the published Qwen 3 template alone cannot be measured
        tpl.check_template(qwen3, qwen3, qtok, tpl.PROBES)
    name, _, _ = tpl.choose(None, qtok)
    assert name == "tokenizer (qwen3_training)"
    result = run(frame(convo("Q", "A"), convo("Q1", "A1", "Q2", "A2")), FormatConfig(tokenizer="x"), tokenizer=qtok)
    assert result.kept.height == 2 and result.stats["template"] == "tokenizer (qwen3_training)"


def test_cli_template_by_family_name_for_a_tokenizer_without_one(tok, tmp_path, repo):
    import json

    from click.testing import CliRunner

    from curate.cli import main

    bare = tmp_path / "gemma-tok"
    tok.save_pretrained(str(bare))
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    out = tmp_path / "f"
    args = ["format", str(repo / "data/demo/raw.jsonl"), "-o", str(out), "--tokenizer", str(bare)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "--template with a family name (gemma3" in r.output, r.output
    r = CliRunner().invoke(main, args + ["--template", "gemma3"])
    assert r.exit_code == 0, r.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["kept"] > 0 and stats["template_markers"] is True
    assert "<end_of_turn>" in (out / "template.jinja").read_text()

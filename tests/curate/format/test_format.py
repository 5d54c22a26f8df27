"""curate format with the real offline SmolLM2 tokenizer and real-world chat templates."""
import json

import polars as pl
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.config import ConfigError
from curate.format import FormatConfig, encode, eval_side, run
from curate.format import template as tpl
from tests.contract import assert_stage_contract
from tests.helpers import convo, frame

pytest.importorskip("transformers")

# As published with the models (Qwen2 ChatML; Mistral-7B-Instruct-v0.1), no generation markers.
QWEN = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n"
        "You are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
        "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n' }}{% endif %}")
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
           "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
           "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
          "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

CONVERSATIONS = [
    convo("What is 2+2?", "4"),
    convo("Name a colour.", "Blue.", "Another?", "Green, and then red."),
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hello"},
     {"role": "assistant", "content": "Bonjour !"}],
    convo("Ünïcödé ✓ 漢字 — déjà vu?", "Oui: 好的, ça va ✓"),
]


@pytest.fixture(scope="module")
def tok():
    from curate.format.tokenizer import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def llama_tok():
    from curate.format.tokenizer import load_tokenizer

    t = load_tokenizer("smollm2-135m-instruct")
    t.add_special_tokens({"additional_special_tokens": ["<|begin_of_text|>", "<|start_header_id|>",
                                                        "<|end_header_id|>", "<|eot_id|>"]})
    t.bos_token = "<|begin_of_text|>"
    return t


def _expected(messages, eot):
    return "".join(m["content"] + eot for m in messages if m["role"] == "assistant")


@pytest.mark.parametrize("source", ["tokenizer", "qwen", "mistral", "chatml", "alpaca"])
def test_trained_tokens_are_exactly_assistant_turns_and_end_of_turn(tok, source, tmp_path):
    if source in ("qwen", "mistral"):
        f = tmp_path / f"{source}.jinja"
        f.write_text(QWEN if source == "qwen" else MISTRAL)
        name, template, original = tpl.choose(str(f), tok)
    else:
        name, template, original = tpl.choose(None if source == "tokenizer" else source, tok)
    for messages in CONVERSATIONS:
        if source == "mistral" and messages[0]["role"] == "system":
            continue  # the published Mistral template refuses system turns
        ids, mask = encode(template, messages, tok)
        trained = tok.decode([i for i, m in zip(ids, mask) if m])
        assert trained == _expected(messages, tok.eos_token), (source, trained)
        # what is rendered is what the original template renders
        reference = original or template
        assert tok.decode(ids) == tok.apply_chat_template(messages, chat_template=reference, tokenize=False)


def test_llama3_shipped_template_matches_the_published_one(llama_tok):
    _, template, _ = tpl.choose("llama3", llama_tok)
    for messages in CONVERSATIONS:
        published = llama_tok.apply_chat_template(messages, chat_template=LLAMA3, tokenize=False)
        assert tpl.render(template, messages, llama_tok) == published
        ids, mask = encode(template, messages, llama_tok)
        assert llama_tok.decode([i for i, m in zip(ids, mask) if m]) == _expected(messages, "<|eot_id|>")


def test_published_llama3_template_masks_by_prefix_rendering(llama_tok, tmp_path):
    # it builds its text with {% set %}: no markers can be added, prefix rendering still finds the turns
    f = tmp_path / "llama3.jinja"
    f.write_text(LLAMA3)
    name, template, original = tpl.choose(str(f), llama_tok)
    assert not tpl.MARKER.search(template)
    for messages in CONVERSATIONS:
        ids, mask = encode(template, messages, llama_tok)
        assert llama_tok.decode([i for i, m in zip(ids, mask) if m]) == _expected(messages, "<|eot_id|>")
    result = run(frame(*CONVERSATIONS), FormatConfig(tokenizer="x", template=str(f)), tokenizer=llama_tok)
    assert result.kept.height == 4 and result.stats["template_markers"] is False


def test_llama3_template_on_a_tokenizer_without_its_tokens_is_refused(tok):
    with pytest.raises(ConfigError, match="not a special token of this tokenizer"):
        run(frame(*CONVERSATIONS[:1]), FormatConfig(tokenizer="x", template="llama3"), tokenizer=tok)


def test_written_template_gives_trl_the_same_mask(tok, tmp_path):
    result = run(frame(*CONVERSATIONS), FormatConfig(tokenizer="smollm2-135m-instruct"), tokenizer=tok)
    template = result.files["template.jinja"]
    for messages in CONVERSATIONS:
        out = tok.apply_chat_template(messages, chat_template=template, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        assert out["input_ids"] == encode(template, messages, tok)[0]
        assert out["assistant_masks"] == encode(template, messages, tok)[1]


def test_columns_stats_and_contract(tok, tmp_path):
    df = frame(*CONVERSATIONS)
    result = assert_stage_contract(
        lambda d: run(d, FormatConfig(tokenizer="s", eval_fraction=0.5), tokenizer=tok), df, tmp_path)
    assert result.kept.height == 4
    row = result.kept.row(1, named=True)
    ids, mask = encode(tpl.choose(None, tok)[1], CONVERSATIONS[1], tok)
    assert (row["n_tokens"], row["n_train_tokens"]) == (len(ids), sum(mask))
    assert row["text"] == tok.apply_chat_template(CONVERSATIONS[1], tokenize=False)
    t = result.stats["tokens"]
    assert t["n_tokens"]["max"] == max(result.kept["n_tokens"]) and 0 < t["share_trained"] < 1


def test_rejection_rules_fire(tok, tmp_path):
    no_eot = tmp_path / "no_eot.jinja"
    no_eot.write_text("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}{% if m['role'] == 'assistant' %}"
                      "{% generation %}{{ m['content'] }}{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}"
                      "{{ '<|im_end|>\\n' }}{% endfor %}")
    long = convo("x " * 50, "y " * 50, "z " * 50, "w " * 400)
    df = frame(convo("Only a question?", "ok"), long, [{"role": "user", "content": "No answer here."}],
               convo("Empty answer?", ""))
    result = run(df, FormatConfig(tokenizer="s", max_tokens=200), tokenizer=tok)
    assert result.rejected["rule"].to_list() == ["format.too_long", "format.no_train_tokens", "format.no_train_tokens"]
    # truncating at a turn boundary keeps the first exchange
    result = run(df, FormatConfig(tokenizer="s", max_tokens=200, on_overflow="truncate"), tokenizer=tok)
    assert result.rejected["rule"].to_list() == ["format.no_train_tokens"] * 2
    cut = result.kept.row(1, named=True)
    assert [m["content"] for m in cut["messages"]] == ["x " * 50, "y " * 50] and cut["n_tokens"] <= 200
    # a template whose marked turns omit the end-of-turn token
    result = run(frame(convo("Q", "A")), FormatConfig(tokenizer="s", template=str(no_eot)), tokenizer=tok)
    assert result.rejected["rule"].to_list() == ["format.end_of_turn_not_trained"]


def test_split_is_stable_under_insertions():
    ids = [f"{i:032x}" for i in range(2000)]
    sides = {i: eval_side(i, 0.1) for i in ids}
    assert 150 < sum(sides.values()) < 250
    more = ids[:1000] + [f"new{i}" for i in range(500)] + ids[1000:]
    assert all(eval_side(i, 0.1) == sides[i] for i in more if i in sides)


def test_no_template_is_a_clear_error(tok):
    bare = tok.__class__.from_pretrained(tok.name_or_path)
    bare.chat_template = None
    with pytest.raises(ConfigError, match="no chat template"):
        run(frame(convo("a", "b")), FormatConfig(tokenizer="x"), tokenizer=bare)


def test_cli_writes_everything(repo, tmp_path):
    out = tmp_path / "f"
    res = CliRunner().invoke(main, ["format", str(repo / "data/demo/raw.jsonl"), "-o", str(out), "--tokenizer",
                                    "smollm2-135m-instruct", "--max-tokens", "256", "--eval-fraction", "0.1"])
    assert res.exit_code == 0, res.output
    for name in ("train.jsonl", "eval.jsonl", "train.parquet", "eval.parquet", "template.jinja", "stats.json"):
        assert (out / name).is_file(), name
    stats = json.loads((out / "stats.json").read_text())
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(train) == stats["train"] == pl.read_parquet(out / "train.parquet").height
    assert set(train[0]) == {"messages"}
    res = CliRunner().invoke(main, ["format", str(repo / "data/demo/raw.jsonl"), "-o", str(out), "--tokenizer", "/nope"])
    assert res.exit_code == 2 and "--tokenizer /nope" in res.output


def test_conversation_the_template_refuses_is_a_rejected_row(tok, tmp_path):
    f = tmp_path / "mistral.jinja"
    f.write_text(MISTRAL)  # the published Mistral template raises on a system turn
    result = run(frame(*CONVERSATIONS), FormatConfig(tokenizer="x", template=str(f)), tokenizer=tok)
    assert result.rejected["rule"].to_list() == ["format.template_error"]
    assert "Conversation roles must alternate" in result.rejected["reason"][0]
    assert result.kept.height == 3


def test_empty_input(tok, tmp_path):
    result = assert_stage_contract(lambda d: run(d, FormatConfig(tokenizer="x"), tokenizer=tok), frame(), tmp_path)
    assert result.kept.height == 0 and result.stats["tokens"] == {}


# ------------------------------------------------------------------ #25 item 6: a hidden system prompt
SMOLLM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_the_templates_default_system_prompt_is_found(tok):
    assert tpl.default_system(tok.chat_template, tok) == (SMOLLM, True)
    assert tpl.default_system(QWEN, tok) == ("You are a helpful assistant.", True)
    for plain in (LLAMA3, MISTRAL, tpl.choose("chatml", tok)[1]):
        assert tpl.default_system(plain, tok)[0] is None


def test_format_says_what_the_template_adds_and_system_switch(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"messages": m}) + "\n" for m in CONVERSATIONS))

    def fmt(*extra):
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        res = CliRunner().invoke(main, ["format", str(src), "-o", str(out), "--tokenizer", "smollm2-135m-instruct",
                                        *extra])
        return res, out

    res, out = fmt()
    assert res.exit_code == 0, res.output
    assert f'note: the template adds a system prompt the data does not have to 3 records (those without a system ' \
           f'turn): "{SMOLLM}"' in res.output
    assert json.loads((out / "stats.json").read_text())["template_system"] == {"text": SMOLLM, "records": 3}
    texts = pl.read_parquet(out / "train.parquet")["text"].to_list()
    assert sum(SMOLLM in t for t in texts) == 3

    res, out = fmt("--system", "none")
    assert res.exit_code == 0 and "adds a system prompt" not in res.output, res.output
    train = pl.read_parquet(out / "train.parquet")
    assert not any(SMOLLM in t for t in train["text"].to_list())
    assert [m[0]["content"] for m in train["messages"].to_list()] == ["", "", "Answer in French.", ""]
    assert json.loads((out / "train.jsonl").read_text().splitlines()[0])["messages"][0] == \
        {"role": "system", "content": ""}

    res, out = fmt("--system", "Be brief.")
    assert res.exit_code == 0, res.output
    texts = pl.read_parquet(out / "train.parquet")["text"].to_list()
    assert sum("Be brief." in t for t in texts) == 3 and "Answer in French." in texts[2]
    assert not any(SMOLLM in t for t in texts)


def test_system_none_where_the_template_cannot_drop_it(tok, tmp_path):
    stubborn = QWEN.replace("loop.first and messages[0]['role'] != 'system'",
                            "loop.first and (messages[0]['role'] != 'system' or not messages[0]['content'])")
    (tmp_path / "t.jinja").write_text(stubborn)
    assert tpl.default_system(stubborn, tok) == ("You are a helpful assistant.", False)
    with pytest.raises(ConfigError, match="cannot be removed"):
        run(frame(*CONVERSATIONS), FormatConfig(tokenizer="smollm2-135m-instruct", template=str(tmp_path / "t.jinja"),
                                                system="none"), tokenizer=tok)


def test_format_shows_rendering_progress_on_a_terminal(tmp_path, monkeypatch):
    import curate.progress

    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"messages": m}) + "\n" for m in CONVERSATIONS))
    args = ["format", str(src), "-o", str(tmp_path / "o"), "--tokenizer", "smollm2-135m-instruct"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and "\rrendering" not in res.output and "rendering:" not in res.output, res.output
    monkeypatch.setattr(curate.progress, "is_tty", lambda stream: True)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and "\rrendering  4/4 records  100%" in res.output, res.output
    assert "rendering: 4 records in " in res.output

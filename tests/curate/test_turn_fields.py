"""#21 item 16: a turn's weight, name and tool_calls are kept, a weight-0 assistant turn is
not trained (by `curate format`'s counts and by `train sft`'s labels), and what cannot be
represented is a rejected record with a reason, never a silent change."""
from __future__ import annotations

import json

import polars as pl
import pytest

from curate.readers import read_inputs
from curate.record import record_id

pytest.importorskip("transformers")

SHARE = {"conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hello there, friend!", "weight": 0},
                           {"from": "human", "value": "Now count."}, {"from": "gpt", "value": "One two three."}]}
PLAIN = {"conversations": [{"from": t["from"], "value": t["value"]} for t in SHARE["conversations"]]}
CALL = [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]
TOOLS = {"messages": [{"role": "user", "content": "Weather in Paris?", "name": "ann"},
                      {"role": "assistant", "content": None, "tool_calls": CALL},
                      {"role": "user", "content": "Thanks. Summarise."}, {"role": "assistant", "content": "Sunny."}]}


def _read(tmp_path, rows):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return read_inputs([path], labels=["in.jsonl"])


def test_turn_fields_are_kept_and_ids_of_plain_records_do_not_move(tmp_path):
    read = _read(tmp_path, [SHARE, PLAIN, TOOLS])
    assert read.rejected.height == 0
    a, b, c = read.records["messages"].to_list()
    assert [m["weight"] for m in a] == [None, 0, None, None]
    assert c[0]["name"] == "ann" and json.loads(c[1]["tool_calls"]) == CALL and c[1]["content"] == ""
    ids = read.records["id"].to_list()
    assert ids[1] == record_id([{"role": m["role"], "content": m["content"]} for m in b])  # as before
    assert len(set(ids)) == 3  # a weight-0 turn makes another conversation than the plain one


@pytest.mark.parametrize("turn, rule, words", [
    ({"from": "gpt", "value": "x", "weight": 0.5}, "read.bad_field", "weight 0.5; a turn's weight is 0 or 1"),
    ({"from": "human", "value": "x", "weight": 1}, "read.unsupported_field", "weight 1 on a user turn"),
    ({"from": "gpt", "value": "x", "loss_mask": [1, 0]}, "read.unsupported_field", "has a 'loss_mask' field"),
])
def test_turn_fields_the_toolkit_cannot_represent_are_rejected_with_a_reason(tmp_path, turn, rule, words):
    read = _read(tmp_path, [{"conversations": [{"from": "human", "value": "q"}, turn]}])
    assert read.records.height == 0
    row = read.rejected.row(0, named=True)
    assert row["rule"] == rule and row["reason"].startswith("in.jsonl:1: conversations[1] ") and words in row["reason"]


def test_an_old_record_table_is_read_in_the_new_layout(tmp_path):
    old = pl.DataFrame({"id": ["x"], "messages": [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]],
                        "source": ["s:1"], "meta": ["{}"]})
    (tmp_path / "old").mkdir()
    old.write_parquet(tmp_path / "old" / "kept.parquet")
    read = read_inputs([tmp_path / "old"])
    assert read.records["messages"].to_list()[0][1] == {"role": "assistant", "content": "a", "weight": None,
                                                         "name": None, "tool_calls": None}


@pytest.fixture(scope="module")
def tok():
    from curate.format.tokenizer import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


def test_a_weight_zero_turn_is_not_trained_by_format_nor_by_train(tmp_path, tok):
    from curate.format import FormatConfig, run
    from train.data import encode, read_conversations

    read = _read(tmp_path, [SHARE, PLAIN])
    result = run(read.records, FormatConfig(tokenizer="smollm2-135m-instruct"), tokenizer=tok)
    weighted, plain = result.kept["n_train_tokens"].to_list()
    answer = len(tok("Hello there, friend!<|im_end|>", add_special_tokens=False)["input_ids"])
    assert plain - weighted == answer
    train = tmp_path / "train.jsonl"
    train.write_text(result.files["train.jsonl"])
    first = json.loads(train.read_text().splitlines()[0])["messages"]
    assert first[1] == {"role": "assistant", "content": "Hello there, friend!", "weight": 0}
    assert "weight" not in json.loads(train.read_text().splitlines()[1])["messages"][1]  # unchanged without
    conversations, sources = read_conversations(train)
    rows = encode(conversations, sources, result.files["template.jinja"], tok, 512, "train")
    trained = [tok.decode([t for t in r["labels"] if t != -100]) for r in rows]
    assert trained == ["One two three.<|im_end|>", "Hello there, friend!<|im_end|>One two three.<|im_end|>"]


def test_tool_calls_a_template_does_not_print_are_refused_and_printed_where_it_does(tmp_path, tok):
    from curate.format import FormatConfig, run

    read = _read(tmp_path, [TOOLS])
    refused = run(read.records, FormatConfig(tokenizer="smollm2-135m-instruct"), tokenizer=tok)
    assert refused.kept.height == 0
    assert refused.rejected["reason"][0] == ("the chat template refuses this conversation: it does not print the "
                                             "name and tool_calls of the turns, which would be lost")
    template = tmp_path / "tools.jinja"
    template.write_text(
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] }}{% if message.name %}{{ ' ' + message.name }}"
        "{% endif %}{{ '\\n' }}{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}"
        "{% for call in message.tool_calls or [] %}{{ '<tool_call>' + call.function.name + ' ' + call.function.arguments"
        " + '</tool_call>' }}{% endfor %}{{ '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}{% else %}"
        "{{ message['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    kept = run(read.records, FormatConfig(tokenizer="smollm2-135m-instruct", template=str(template)), tokenizer=tok)
    assert kept.rejected.height == 0
    assert '<tool_call>weather {"city": "Paris"}</tool_call><|im_end|>' in kept.kept["text"][0]
    assert "<|im_start|>user ann\n" in kept.kept["text"][0]
    assert json.loads(kept.files["train.jsonl"])["messages"][1]["tool_calls"] == CALL


def test_exports_carry_the_fields_or_refuse(tmp_path):
    from curate.layouts.write import write_export
    from curate.readers import InputError

    records = _read(tmp_path, [SHARE]).records
    write_export(records, tmp_path / "o.jsonl", "openai")
    assert json.loads((tmp_path / "o.jsonl").read_text())["messages"][1]["weight"] == 0
    write_export(records, tmp_path / "s.jsonl", "sharegpt")
    assert json.loads((tmp_path / "s.jsonl").read_text())["conversations"][1] == {"from": "gpt", "value": "Hello there, friend!",
                                                                                   "weight": 0}
    tools = _read(tmp_path, [TOOLS]).records
    with pytest.raises(InputError, match="has turns with name, tool_calls, which the sharegpt layout cannot hold"):
        write_export(tools, tmp_path / "t.jsonl", "sharegpt")


def test_rules_and_dedup_read_a_tool_call_as_what_the_turn_says(tmp_path):
    from curate.dedup import DedupConfig, run as dedup
    from curate.filter.fields import field_text

    other = json.loads(json.dumps(TOOLS))
    other["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{\"city\": \"Rome\"}"
    records = _read(tmp_path, [TOOLS, other]).records
    assert dedup(records, DedupConfig(methods=["exact"])).kept.height == 2  # other calls: not duplicates
    texts = records.select(field_text("assistant")).to_series().to_list()
    assert texts[0].startswith('[{"function"') and "Paris" in texts[0] and texts[0].endswith("Sunny.")


def test_sharegpt_names_written_read_back_as_the_same_roles():
    from curate.layouts.read import SHAREGPT_FROM, SHAREGPT_ROLES

    assert {role: SHAREGPT_ROLES[name] for role, name in SHAREGPT_FROM.items()} == {r: r for r in SHAREGPT_FROM}

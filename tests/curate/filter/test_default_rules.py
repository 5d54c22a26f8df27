"""rules/default.yaml against the defects the Alpaca cleaning effort catalogued, and
against real data it must leave alone."""
import json

import polars as pl
import pytest

from curate.filter import load_rules, run
from curate.readers import read_inputs
from tests.helpers import convo, frame

DEFECTS = [
    ("shape.roles", convo("Write a haiku about rain.", "")),
    ("output.placeholder", convo("List the inputs.", "<No Output>")),
    ("output.placeholder", convo("Summarise the text.", "N/A")),
    ("output.placeholder", convo("Rewrite this.", "<noinput>")),
    ("output.refusal", convo("What do you think of jazz?", "As an AI language model, I do not have opinions.")),
    ("output.refusal", convo("Tell me a joke", "I'm sorry, but I cannot help with that.")),
    ("prompt.merged_instructions", convo("Name a colour.", "Red.\n##\n18. Instruction: Name a fruit.\n18. Output: Apple")),
    ("prompt.url_only", convo("Summarize this article.\n\nhttps://example.com/news/1", "The article says...")),
    ("prompt.url_only", convo("https://www.example.org/page", "This page is about...")),
    # #21: the link on its own line right after the instruction (Alpaca instruction + input merged),
    # and its variants: bracketed, quoted, a Markdown link, a short label, named inline
    ("prompt.url_only", convo("Summarize this article.\nhttps://example.com/news/1", "The article says...")),
    ("prompt.url_only", convo("Classify the website.\nwww.example.com", "A shop.")),
    ("prompt.url_only", convo("Summarize the article.\n\n(https://example.com/news/1).", "It says...")),
    ("prompt.url_only", convo("Summarize the article.\n\n\"https://example.com/news/1\"", "It says...")),
    ("prompt.url_only", convo("Summarize the article.\n\n[the article](https://example.com/news/1)", "It says...")),
    ("prompt.url_only", convo("Summarize the article.\n\nSource - https://example.com/news/1", "It says...")),
    ("prompt.url_only", convo("Summarize this article https://example.com/news/1", "It says...")),
    ("output.refusal", convo("Who will win the election?",
                             "I cannot provide an answer to this question as it goes against my guidelines.")),
    ("output.refusal", convo("Write a story.", "I apologize, but I cannot fulfill your request.")),
    ("output.refusal", convo("Write a story.", "I’m sorry, I can’t assist with that.")),
    ("output.refusal", convo("Summarize https://example.com", "I cannot browse the internet, but ...")),
    ("prompt.media_placeholder", convo("Describe the photo <image attached>", "A dog on a beach.")),
    ("prompt.media_placeholder", convo("What is in this picture? [image]", "A cat.")),
    ("text.control_chars", convo("Say hi", "Hi\x00 there")),
    ("output.repetition", convo("Say thanks", "Thanks!\n" + "I hope this helps.\n" * 20)),
    ("output.invalid_json", convo("Return the data as JSON.", '{"name": "Ava" "age": 3}')),
    ("output.invalid_python", convo("Write a Python function that adds two numbers.",
                                    "```python\ndef add(a, b)\n    return a + b\n```")),
]


@pytest.mark.parametrize("rule,messages", DEFECTS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(DEFECTS)])
def test_catches_catalogued_defect(rule, messages):
    result = run(frame(messages), load_rules())
    assert result.rejected["rule"].to_list() == [rule], result.rejected["reason"].to_list()


GOOD = [
    convo("What is the capital of France?", "The capital of France is Paris."),
    convo("Return the data as JSON.", 'Here you go:\n```json\n{"name": "Ava", "age": 3}\n```'),
    convo("Write a Python function that adds two numbers.", "```python\ndef add(a, b):\n    return a + b\n```"),
    convo("Explain what JSON is.", "JSON is a text format for structured data."),
    convo("Pretend you are an AI language model from 2100.", "As an AI language model from 2100, I can..."),
    convo("Toolformer: request(url) gets a page.\nGet the page\n\nhttps://example.com", "request('https://example.com')"),
    # a tool declared Toolformer-style (GPTeacher) takes the link as its input
    convo("shell: runs a command.\nshell(shellcommand)\nTest the connectivity of the specified url.\n\nhttps://www.example.com",
          "The result is shell('ping -c 1 https://www.example.com')."),
    # a link inside the text, or a source given after real content, is not the prompt's only input
    convo("Read https://example.com and tell me what a URL is.", "A URL is an address."),
    convo("Explain this code:\n```\nx = 1\n```\nIt is from my repo, see https://github.com/a/b for more", "It sets x."),
    convo("Download it from the url 'https://x.com/a.zip'. What is a zip file?", "An archive."),
    convo("Roleplay as a knight.", "I cannot help but admire your courage; it goes against my nature to flee."),
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    convo("Natalia sold clips to 48 friends...", "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"),
]


def test_leaves_good_records_alone():
    result = run(frame(*GOOD), load_rules())
    assert result.rejected.height == 0, result.rejected.select("rule", "reason").to_dicts()


def test_demo_data_planted_defects_are_caught(repo):
    """The demo generator labels what it planted; every planted defect is rejected and no
    clean record is. (The rules were written alongside the generator: a sanity check, not a
    benchmark -- the GSM8K test below is the one against data nobody here wrote.)"""
    read = read_inputs([repo / "data" / "demo" / "raw.jsonl"])
    result = run(read.records, load_rules())
    label = pl.col("meta").str.json_path_match("$.demo_label")
    kept_labels = set(result.kept.select(label).to_series().to_list())
    assert kept_labels <= {"clean", "exact_duplicate", "near_duplicate"}
    rejected_labels = set(result.rejected.select(label).to_series().to_list())
    assert not rejected_labels & {"clean", "exact_duplicate", "near_duplicate"}
    assert read.rejected.height == 7  # the planted unreadable lines


def test_gsm8k_rejects_under_one_percent(shared_datasets):
    read = read_inputs([shared_datasets / "gsm8k" / "train.jsonl"])
    result = run(read.records, load_rules())
    assert read.records.height == 7473
    share = result.rejected.height / read.records.height
    assert share < 0.01, json.dumps(result.stats["rules"])

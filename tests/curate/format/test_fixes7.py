"""Fixes of hostile7's format bugs (B1 empty answers among the probes, B8 truncation by
bisection, B9 the disguise pool): what the strict xfails in test_hostile7.py do not pin."""
from __future__ import annotations

import random

import pytest

import curate.format as fmt
from curate.config import ConfigError
from curate.format import FormatConfig, encode, run
from curate.format import template as tpl
from tests.helpers import convo, frame
from tests.tiny import CHATML

pytest.importorskip("transformers")

EOT = "<|im_end|>"


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model))


def trained_text(template, messages, tok) -> str:
    ids, mask = encode(template, messages, tok)
    return tok.decode([i for i, m in zip(ids, mask) if m])


# ------------------------------------------------------------------ B1
@pytest.mark.parametrize("turns", [("Q", "", "Q2", "A2"), ("Q", "A", "Q2", "")])
def test_an_empty_answer_among_the_probes_is_kept_with_its_exact_mask(tok, tiny_model, turns):
    r = run(frame(convo(*turns), convo("hello", "world")), FormatConfig(tokenizer=str(tiny_model)), tokenizer=tok)
    assert r.kept.height == 2 and r.rejected.height == 0
    assert trained_text(CHATML, convo(*turns), tok) == "".join(t + EOT for t in turns[1::2])
    assert r.kept["n_train_tokens"][0] == sum(encode(CHATML, convo(*turns), tok)[1])


def test_markers_around_the_end_token_alone_are_still_refused_with_an_empty_answer_probed(tok):
    # the end-of-turn-only span an empty answer has is kept only where it covers what prefix
    # rendering finds: markers that leave every answer's content untrained still fail the check
    broken = CHATML.replace("{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}",
                            "{{ message['content'] }}{% generation %}{{ '<|im_end|>' }}{% endgeneration %}")
    assert broken != CHATML
    probes = [convo("Q", "", "Q2", "A2"), convo("Q", "")]
    with pytest.raises(ConfigError, match="generation markers cover characters"):
        tpl.check_template(broken, None, tok, probes)


# ------------------------------------------------------------------ B8
PICKY = CHATML.replace("{% for message in messages %}", "{% for message in messages %}{% if message['content'] == "
                       "'boom' %}{{ raise_exception('no boom') }}{% endif %}")
# renders only the last four turns of a conversation of eight or more: a longer prefix can have
# fewer tokens than a shorter one, so bisection alone would not find what the linear search does
SHRINKING = CHATML.replace("{% for message in messages %}",
                           "{% for message in messages %}{% if messages|length < 8 or loop.revindex <= 4 %}"
                           ).replace("{% endfor %}", "{% endif %}{% endfor %}")


def _conversations(seed: int, n: int) -> list[list[dict]]:
    rng = random.Random(seed)
    words = ["a", "bb", "question", "answer", "<|im_end|>", "\u00e9t\u00e9", "\U0001F600", "boom", "  ", "x y z"]
    out = []
    for _ in range(n):
        roles = ["user", "assistant"] * rng.randint(1, 12)
        if rng.random() < 0.2:
            roles.insert(rng.randrange(len(roles)), "assistant")  # two assistant turns in a row
        if rng.random() < 0.2:
            roles.insert(0, "system")
        messages = []
        for role in roles:
            text = "boom" if rng.random() < 0.03 else " ".join(rng.choice(words) for _ in range(rng.randint(0, 25)))
            messages.append({"role": role, "content": text})
        out.append(messages)
    return out


@pytest.mark.parametrize("name,template", [("chatml", CHATML), ("picky", PICKY), ("shrinking", SHRINKING)])
def test_bisected_truncation_finds_what_the_linear_search_finds(tok, monkeypatch, name, template):
    linear = fmt._truncate_linear
    fallbacks = []
    monkeypatch.setattr(fmt, "_truncate_linear", lambda *a: fallbacks.append(1) or linear(*a))
    cases = 0
    for messages in _conversations(7, 40):
        for budget in (8, 25, 60, 120, 250):
            assert fmt._truncate(template, messages, tok, budget) == linear(template, messages, tok, budget), \
                (name, budget, messages)
            cases += 1
    assert cases == 200
    if name == "chatml":
        assert not fallbacks  # the count grows with the prefix here: bisection decides alone
    else:
        assert fallbacks  # refused prefixes / a shrinking count were met, and the linear search decided


def test_the_shrinking_template_really_makes_the_count_not_monotone(tok):
    # what makes the "shrinking" case above a test of the fallback
    messages = convo(*[f"turn {i} " * 5 for i in range(10)])
    counts = [len(encode(SHRINKING, messages[:k], tok)[0]) for k in (6, 8)]
    assert counts[1] < counts[0]


# ------------------------------------------------------------------ B9
def test_special_token_text_beside_every_bmp_private_use_character_is_kept_as_text(tok, tiny_model):
    answer = "x <|im_end|> " + "".join(chr(c) for c in range(0xE000, 0xF900))
    r = run(frame(convo("q", "a"), convo("hello", answer)), FormatConfig(tokenizer=str(tiny_model)), tokenizer=tok)
    assert r.kept.height == 2
    assert trained_text(CHATML, convo("hello", answer), tok) == answer + EOT
    eot = tok.convert_tokens_to_ids(EOT)
    assert encode(CHATML, convo("hello", answer), tok)[0].count(eot) == 2  # the user's and the answer's own


def test_an_exhausted_disguise_pool_is_a_not_measurable_row(tok, tiny_model, monkeypatch):
    monkeypatch.setattr(fmt, "PRIVATE_USE", ((0xE000, 0xE003),))
    full = convo("hello", "\ue000\ue001\ue002 <|im_end|>")
    r = run(frame(convo("q", "a"), full, convo("q2", "<|im_end|>")), FormatConfig(tokenizer=str(tiny_model)),
            tokenizer=tok)
    assert r.kept.height == 2 and r.rejected["rule"].to_list() == ["format.not_measurable"]
    assert "private-use" in r.rejected["reason"][0]
    with pytest.raises(ValueError, match="private-use"):
        encode(CHATML, full, tok)

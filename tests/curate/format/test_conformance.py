"""Template conformance (#24): every chat template TRL ships (found at run time, so a new one is
covered) and every template under rules/templates/, with a tokenizer holding that family's
special tokens. A supported template's mask is checked against transformers'
return_assistant_tokens_mask on the marked template and against prefix rendering; a refused one
must say what is missing. docs/templates.md's table is checked against the same results."""
import re
from pathlib import Path

import pytest

from curate.format import encode
from curate.format import template as tpl
from tests.families import (
    BASIC,
    TOOLS,
    all_templates,
    conformance,
    tokenizer_for,
    trl_templates,
)

pytest.importorskip("trl")

NAMES = sorted(all_templates())
# what a refusal must name: the missing markers (and where a marked copy is), or that text is not rendered
REFUSALS = re.compile(r"prefix-consistently .* no \{% generation %\} markers: pass --template with a marked copy"
                      r"|does not render the text of a simple user/assistant conversation")


def _whitespace(tok, i) -> bool:
    return tok.decode([i]).strip() == ""


# where TRL's marked copy trains text that prefix rendering finds in the generation prompt: kept as marked
PROMPT_TEXT_TRAINED = {"qwen3_5_nothink_training": "<think>\n\n</think>\n\n"}


def _explained(tok, ids, ours, theirs, allowed=""):
    """Positions where two masks of the same ids differ are only whitespace (after a closing token,
    or the newline ending a generation prompt), special tokens (a second closing token, Cohere 2's
    <|END_OF_TURN_TOKEN|> after <|END_RESPONSE|>; phi3_training's final <|endoftext|>), or the
    generation-prompt text a marked copy is known to train (``allowed``)."""
    specials = set(tok.all_special_ids)
    odd = [k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b and not (_whitespace(tok, ids[k])
                                                                              or ids[k] in specials)]
    squeeze = lambda t: re.sub(r"\s", "", t)
    return not odd or bool(allowed and not squeeze(tok.decode([ids[k] for k in odd])).replace(squeeze(allowed), ""))


@pytest.mark.parametrize("name", NAMES)
def test_template_conforms(name):
    c = conformance(name)
    if not c["supported"]:
        assert REFUSALS.search(c["reason"]), c["reason"]
        return
    tok = tokenizer_for(name)
    template, original = c["template"], c["original"]
    assert c["closers"], "a supported template closes assistant turns with a special token"
    closing = set(tok.convert_tokens_to_ids(c["closers"]))
    assert c["renders"], "renders at least one of the basic conversations"
    for key in c["renders"]:
        messages = BASIC[key]
        ids, mask = encode(template, messages, tok)
        # the text is the template's own rendering (the original's, where markers were added here)
        assert tok.decode(ids) == tpl.render(original or template, messages, tok)
        # every trained run ends on a closing token and holds its answer
        runs, k = [], 0
        while k < len(mask):
            if mask[k]:
                j = k
                while j + 1 < len(mask) and mask[j + 1]:
                    j += 1
                runs.append((k, j))
                k = j + 1
            else:
                k += 1
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        assert len(runs) == len(answers), (name, key, tok.decode([i for i, m in zip(ids, mask) if m]))
        for (a, b), answer in zip(runs, answers):
            assert ids[b] in closing and answer.strip() in tok.decode(ids[a:b + 1]), (name, key)
        # transformers' mask on the marked template (this one, or TRL's marked copy of it)
        marked = template if tpl.MARKER.search(template) else _marked_copy(name)
        if marked is not None:
            # (a vision-language template reads content as parts: text records are rendered as one text part)
            shaped = tpl._as_parts(messages) if tpl.wants_parts(marked, tok) else messages
            out = tok.apply_chat_template(shaped, chat_template=marked, tokenize=True, return_dict=True,
                                          return_assistant_tokens_mask=True)
            assert out["input_ids"] == ids
            assert _explained(tok, ids, mask, out["assistant_masks"]), (name, key, mask, out["assistant_masks"])
        # prefix rendering of the unmarked text, where it can measure this conversation
        plain = original or template
        if tpl.prefix_spans(plain, messages, tok) is not None:
            unmarked = tpl.MARKER.sub("", re.sub(r"\{%-?\s*endgeneration\s*-?%\}", "", plain))
            p_ids, p_mask = encode(unmarked, messages, tok)
            assert p_ids == ids
            assert _explained(tok, ids, mask, p_mask, PROMPT_TEXT_TRAINED.get(name, "")), (name, key, mask, p_mask)


def _marked_copy(name):
    path = trl_templates().get(f"{name}_training")
    return path.read_text(encoding="utf-8") if path else None


@pytest.mark.parametrize("name", [n for n in NAMES if "tool_calls" in all_templates()[n].read_text(encoding="utf-8")])
def test_tool_calls(name):
    """Where the template renders tool calls: with markers they are trained as transformers marks
    them; by prefix rendering a turn runs from its content to its end-of-turn token, so calls a
    template prints after the content are trained and calls printed before it are not (the docs
    table says which); either way no other turn's text is ever trained."""
    c = conformance(name)
    if not c["supported"] or c["tools"] in (None, "refused"):
        return
    tok = tokenizer_for(name)
    ids, mask = encode(c["template"], TOOLS, tok)
    if tpl.MARKER.search(c["template"]):
        out = tok.apply_chat_template(TOOLS, chat_template=c["template"], tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        assert out["input_ids"] == ids
        assert _explained(tok, ids, mask, out["assistant_masks"])
    else:
        trained = tok.decode([i for i, m in zip(ids, mask) if m])
        assert "It is 21 degrees." in trained
        assert "Weather in Paris" not in trained and "temperature" not in trained
        assert c["tools"] == ("trained" if "get_weather" in trained else "not trained")


def _docs_rows() -> dict[str, list[str]]:
    doc = Path(__file__).resolve().parents[3] / "docs" / "templates.md"
    rows = {}
    for line in doc.read_text(encoding="utf-8").splitlines():
        cells = [x.strip() for x in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 4:
            rows[cells[0].strip("`")] = cells
    return rows


@pytest.mark.parametrize("name", NAMES)
def test_docs_table_row(name):
    """docs/templates.md has this template's row, and it says what the suite finds."""
    from tests.families import table_row

    rows = _docs_rows()
    assert name in rows, f"docs/templates.md lacks a row for {name}: python -m tests.families prints it"
    assert rows[name] == [x.strip() for x in table_row(name).strip().strip("|").split("|")]


@pytest.mark.parametrize("name", [n for n in NAMES if not conformance(n)["supported"]])
def test_a_refused_template_has_a_supported_marked_copy_by_its_name(name):
    """Every refusal comes with a way out: --template NAME (and a tokenizer carrying the published
    template) takes TRL's marked copy, which the suite supports."""
    copy = tpl.family_template(name)
    assert copy is not None and copy.stem == f"{name}_training", name
    assert conformance(copy.stem)["supported"], copy.stem

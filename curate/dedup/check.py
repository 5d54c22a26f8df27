"""What an embedding cannot see: the check a semantic candidate pair must pass to be a duplicate,
and the boilerplate left out of what is embedded.

Sentence embeddings place "Pam has 10 bags of 40 apples; how many apples?" (1200) and "Pam
has some bags of 40 apples, 1200 in all; how many bags?" (10) at cosine ~0.95: the words
are the same, the example is not. A candidate found by cosine is therefore removed only when

* **numbers**: the prompts hold the same set of numbers (digits, thousands separators and
  trailing decimal zeros normalised, number words two..ninety and twice read as digits);
* **links**: where both prompts name web addresses, they name the same ones (scheme, ``www.``
  and a trailing slash ignored): "fetch example.org" is not "fetch example.com";
* **names**: the capitalised words inside sentences of the prompts (names, places, products;
  a sentence's first word is not counted): one set must contain the other, so "Paris" and
  "Paris, France" agree and "Ben ... lives in Tokyo" and "Yara ... lives in Nairobi" do not;
* **answer**: the responses end on the same final number (GSM8K's ``#### N``, else the last
  number in the response), or neither has one;
* **response**: the responses share at least ``RESPONSE_MIN`` of their words (Jaccard of word
  sets, casefolded): the same answer, not another answer to a similar request.

With ``on="prompt"`` the response is not compared (the user asked for prompts alone) except
for the answer; with ``on="response"`` the prompt is not compared. A pair whose prompts are
the same text (after normalisation) but whose responses fail the check is a *conflict*: the
same question answered two ways, reported (or rejected, both records, with ``dedup.conflict``)
and never settled by keeping one at random.
"""
from __future__ import annotations

import math
import re
from collections import Counter

from .text import normalise

RESPONSE_MIN = 0.5
# boilerplate: a line of at least this many words found in at least this share of records
# (and at least BOILERPLATE_MIN_RECORDS of them) is left out of the text that is embedded
BOILERPLATE_SHARE = 0.01
BOILERPLATE_MIN_RECORDS = 5
BOILERPLATE_MIN_WORDS = 5

_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|-?\d+(?:\.\d+)?")
_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_WORDS.update({w: str(10 * i) for i, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), 3)})
del _WORDS["zero"], _WORDS["one"]  # "one of them", "no one": too often not a quantity
_WORDS["twice"] = "2"
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.IGNORECASE)
_FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)")
_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.?!:;])\s+|\n+")
_TOKEN = re.compile(r"[^\W\d_][\w'\-]*")
_URL = re.compile(r"(?:https?://|www\.)[^\s'\"<>()\[\]]+", re.IGNORECASE)


def _canon(token: str) -> str:
    t = token.replace(",", "")
    if "." in t:
        t = t.rstrip("0").rstrip(".")
    if t in ("-0", ""):
        t = "0"
    return t


def numbers(text: str) -> frozenset[str]:
    """The numbers a text states, as canonical strings ("1,200.50" -> "1200.5", "twelve" -> "12")."""
    found = {_canon(m.group()) for m in _NUMBER.finditer(text)}
    found.update(_WORDS[m.group().lower()] for m in _NUMBER_WORD.finditer(text))
    return frozenset(found)


def links(text: str) -> frozenset[str]:
    """Web addresses in a text, without scheme, ``www.``, trailing punctuation or slash."""
    out = set()
    for m in _URL.finditer(text):
        u = re.sub(r"^(?:https?://)?(?:www\.)?", "", m.group().lower()).rstrip(".,;:!?/")
        if u:
            out.add(u)
    return frozenset(out)


def names(text: str) -> frozenset[str]:
    """Capitalised words that do not open a sentence (or a line, or what follows a colon),
    casefolded, web addresses left out: the names a prompt is about."""
    out = set()
    for sentence in _SENTENCE.split(_URL.sub(" ", text)):
        words = _TOKEN.findall(sentence)
        out.update(w.casefold().removesuffix("'s") for w in words[1:] if len(w) > 1 and w[0].isupper())
    return frozenset(out)


def final_answer(text: str) -> str | None:
    """The number a response ends on: after GSM8K's ``####`` marker when there is one, else
    the last number written (digits), else None."""
    m = _FINAL.search(text)
    if m:
        return _canon(m.group(1))
    last = None
    for last in _NUMBER.finditer(text):
        pass
    return _canon(last.group()) if last else None


def word_set(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(normalise(text)))


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class Features:
    """What the check reads of one record, computed once (only for records in a candidate pair)."""
    __slots__ = ("prompt_numbers", "prompt_links", "prompt_names", "answer", "response_words", "prompt_key")

    def __init__(self, prompt: str, response: str):
        self.prompt_numbers = numbers(prompt)
        self.prompt_links = links(prompt)
        self.prompt_names = names(prompt)
        self.answer = final_answer(response)
        self.response_words = word_set(response)
        self.prompt_key = normalise(prompt)


def check_pair(a: Features, b: Features, on: str = "conversation") -> str | None:
    """None when the pair agrees on what its embedding cannot see; otherwise the first failed
    part: "numbers", "links", "names", "answer" or "response"."""
    if on != "response" and a.prompt_numbers != b.prompt_numbers:
        return "numbers"
    if on != "response" and a.prompt_links and b.prompt_links and a.prompt_links != b.prompt_links:
        return "links"
    if on != "response" and not (a.prompt_names <= b.prompt_names or b.prompt_names <= a.prompt_names):
        return "names"
    if a.answer != b.answer:
        return "answer"
    if on != "prompt" and jaccard(a.response_words, b.response_words) < RESPONSE_MIN:
        return "response"
    return None


def is_conflict(a: Features, b: Features, failed: str | None) -> bool:
    """The same prompt (normalised text, not empty) with responses that disagree."""
    return failed in ("answer", "response") and bool(a.prompt_key) and a.prompt_key == b.prompt_key


def boilerplate_lines(texts: list[str]) -> set[str]:
    """Lines (stripped; at least BOILERPLATE_MIN_WORDS words) that appear in at least
    BOILERPLATE_SHARE of the texts and BOILERPLATE_MIN_RECORDS of them: tool preambles, long
    system prompts, instructions repeated on every record."""
    need = max(BOILERPLATE_MIN_RECORDS, math.ceil(BOILERPLATE_SHARE * len(texts)))
    if len(texts) < need:
        return set()
    counts: Counter = Counter()
    for t in texts:
        counts.update({s for line in t.split("\n") if len((s := line.strip()).split()) >= BOILERPLATE_MIN_WORDS})
    return {line for line, n in counts.items() if n >= need}


def strip_boilerplate(texts: list[str], lines: set[str]) -> tuple[list[str], int]:
    """Each text without its boilerplate lines (a text that is nothing but boilerplate stays
    whole: then that is its content); and how many texts changed."""
    if not lines:
        return texts, 0
    out, changed = [], 0
    for t in texts:
        parts = t.split("\n")
        kept = [p for p in parts if p.strip() not in lines]
        if len(kept) == len(parts) or not any(p.strip() for p in kept):
            out.append(t)
            continue
        out.append("\n".join(kept).strip())
        changed += 1
    return out, changed

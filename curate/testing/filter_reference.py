"""A plain per-record Python implementation of the same rules.

It is what a filter loop usually looks like (datatrove, data-juicer style: one record at
a time, Python ``re`` and ``Counter``). It serves as the baseline of ``bench/filter.py``
and as an oracle in tests: it must reject the same records with the same rule codes as
the vectorised engine.
"""
from __future__ import annotations

import re
from collections import Counter

from curate.filter.rules import KeywordsRule, LengthRule, RegexRule, RolesRule
from curate.filter.textchecks import CONTROL_CHARS, FormatRule, PARSERS, RepetitionRule


def pick(messages: list[dict], field: str) -> list[dict]:
    if field == "conversation":
        return messages
    if field == "prompt":
        return [m for m in messages if m["role"] != "assistant"]
    if field == "last_assistant":
        return [m for m in messages if m["role"] == "assistant"][-1:]
    return [m for m in messages if m["role"] == field]


def field_text(messages: list[dict], field: str) -> str:
    return "\n\n".join(m["content"].strip(" \t\n\r") for m in pick(messages, field))


def turns(messages: list[dict], field: str) -> int:
    if field == "conversation":
        return len(messages)
    if field == "prompt":
        return sum(m["role"] != "assistant" for m in messages)
    if field == "last_assistant":
        return min(1, sum(m["role"] == "assistant" for m in messages))
    return sum(m["role"] == field for m in messages)


class Compiled:
    """One rule, compiled once, checked per record."""

    def __init__(self, rule):
        self.rule = rule
        self.when = re.compile(rule.when.matches) if rule.when else None
        self.unless = re.compile(rule.unless.matches) if rule.unless else None
        if isinstance(rule, RegexRule):
            self.must = re.compile(rule.must_match) if rule.must_match else None
            self.must_not = re.compile(rule.must_not_match) if rule.must_not_match else None
        if isinstance(rule, KeywordsRule):
            self.kw = re.compile(rule._regex())
        if isinstance(rule, FormatRule):
            self.ctrl = re.compile(CONTROL_CHARS)
            self.fence = re.compile(r"(?m)^[ \t]*```")

    def check(self, messages: list[dict]) -> bool:
        """True when the rule rejects the record."""
        # the order the engine uses: a condition gates a parser (parsing costs more than the
        # condition); any other rule is checked first and its condition only where it fires
        if self.rule.applies_itself:
            return self._applies(messages) and self._fires(messages)
        return self._fires(messages) and self._applies(messages)

    def _applies(self, messages: list[dict]) -> bool:
        r = self.rule
        if self.when and not self.when.search(field_text(messages, r.when.field)):
            return False
        return not (self.unless and self.unless.search(field_text(messages, r.unless.field)))

    def _fires(self, messages: list[dict]) -> bool:
        r = self.rule
        if isinstance(r, RolesRule):
            return _roles(r, messages)
        text = field_text(messages, r.field)
        if isinstance(r, LengthRule):
            values = {"chars": len(text), "words": len(text.split()),
                      "lines": text.count("\n") + 1 if text else 0, "turns": turns(messages, r.field)}
            for key, v in values.items():
                lo, hi = getattr(r, f"min_{key}"), getattr(r, f"max_{key}")
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    return True
            return False
        if isinstance(r, RegexRule):
            return bool((self.must and not self.must.search(text)) or (self.must_not and self.must_not.search(text)))
        if isinstance(r, KeywordsRule):
            return bool(self.kw.search(text))
        if isinstance(r, FormatRule):
            if r.check == "control_chars":
                return bool(self.ctrl.search(text))
            if r.check == "markdown_fences":
                return len(self.fence.findall(text)) % 2 == 1
            return bool(text) and PARSERS[r.check](text) is not None
        if isinstance(r, RepetitionRule):
            return _repetition(r, text)
        raise TypeError(type(r).__name__)


def _roles(r: RolesRule, messages: list[dict]) -> bool:
    if not messages:
        return True
    roles = [m["role"] for m in messages]
    if r.first_role and roles[0] not in r.first_role:
        return True
    if r.alternate:
        if "system" in roles[1:]:
            return True
        body = [x for x in roles if x != "system"]
        if any(a == b for a, b in zip(body, body[1:])):
            return True
    if r.ends_with and roles[-1] != r.ends_with:
        return True
    return r.no_empty_turns and any(not m["content"].strip() for m in messages)


def _dup_fraction(items: list[str], limit: float) -> bool:
    items = [x.strip() for x in items]
    items = [x for x in items if x]
    return len(items) > 1 and (len(items) - len(set(items))) / len(items) > limit


def _repetition(r: RepetitionRule, text: str) -> bool:
    if r.max_duplicate_line_fraction is not None and _dup_fraction(text.split("\n"), r.max_duplicate_line_fraction):
        return True
    if r.max_duplicate_paragraph_fraction is not None and _dup_fraction(
            re.split(r"\n[^\S\n]*\n\s*", text), r.max_duplicate_paragraph_fraction):
        return True
    words = text.split()
    if not r.max_top_ngram_fraction or len(words) < r.min_words:
        return False
    for n, limit in sorted(r.max_top_ngram_fraction.items()):
        grams = Counter(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))
        # most frequent n-gram, ties broken by length, as the engine does
        gram, count = max(grams.items(), key=lambda kv: (kv[1], len(kv[0])))
        if count > 1 and count * len(gram) / len(text) > limit:
            return True
    return False


def run_reference(messages_list: list[list[dict]], rules) -> list[str | None]:
    """Per record: the name of the first rule that rejects it, or None."""
    compiled = [Compiled(r) for r in rules.rules]
    out = []
    for messages in messages_list:
        out.append(next((c.rule.name for c in compiled if c.check(messages)), None))
    return out

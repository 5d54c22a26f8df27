"""Rule kinds about size, patterns, phrases and conversation shape, and the rule set.

Each builds one polars expression (or, for keywords, an Aho-Corasick pass plus a regex
over its hits) over the precomputed field columns; see :mod:`.textchecks` for the rest.
"""
from __future__ import annotations

import functools
import operator
import re
from pathlib import Path
from typing import Annotated, Literal, Union

import polars as pl
from pydantic import BaseModel, ConfigDict, Field as PField, PrivateAttr, ValidationInfo, field_validator, model_validator

from .base import MAX_COUNT, Role, Rule, check_regex, evaluate, first_reason, message, no_reasons, on_rows, snippet
from .literals import FEW, ascii_folded_any, candidates
from .fields import SIGNATURE, signature, text_column, turn_text_of, turns_column


def _include(base: Path, name: str, what: str) -> Path:
    """A file a rule set names (``name``), found beside the rule file or under it (``base``,
    then ``base/lists``). A path that resolves outside ``base`` (``..``, an absolute path,
    a symlink out) is refused: a rule set must not read /etc/passwd or /proc/self/environ."""
    root = base.resolve()
    escaped = False
    for candidate in (base / name, base / "lists" / name):
        if not candidate.resolve().is_relative_to(root):
            escaped = True
        elif candidate.is_file():
            return candidate
    if escaped:
        raise ValueError(f"{what} '{name}' is outside {root} (a rule set's includes live beside it or in a folder under it)")
    raise ValueError(f"{what} '{name}' not found (looked in {base} and {base / 'lists'})")


class LengthRule(Rule):
    kind: Literal["length"]
    min_chars: int | None = PField(None, ge=0, le=MAX_COUNT)
    max_chars: int | None = PField(None, ge=0, le=MAX_COUNT)
    min_words: int | None = PField(None, ge=0, le=MAX_COUNT)
    max_words: int | None = PField(None, ge=0, le=MAX_COUNT)
    min_lines: int | None = PField(None, ge=0, le=MAX_COUNT)
    max_lines: int | None = PField(None, ge=0, le=MAX_COUNT)
    min_turns: int | None = PField(None, ge=0, le=MAX_COUNT)
    max_turns: int | None = PField(None, ge=0, le=MAX_COUNT)

    @model_validator(mode="after")
    def _some_bound(self):
        bounds = ("chars", "words", "lines", "turns")
        if all(getattr(self, f"{s}_{b}") is None for b in bounds for s in ("min", "max")):
            raise ValueError("a length rule needs at least one of min_/max_ chars, words, lines, turns")
        for b in bounds:
            lo, hi = getattr(self, f"min_{b}"), getattr(self, f"max_{b}")
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"min_{b} ({lo}) is greater than max_{b} ({hi})")
        return self

    def turn_fields(self) -> set[str]:
        return {self.field} if self.min_turns is not None or self.max_turns is not None else set()

    def expr(self) -> pl.Expr:
        t = self.text
        measures = {
            "chars": ("characters", t.str.len_chars()),
            "words": ("words", t.str.count_matches(r"\S+")),
            "lines": ("lines", pl.when(t == "").then(0).otherwise(t.str.count_matches("\n") + 1)),
            "turns": ("turns", pl.col(turns_column(self.field))),
        }
        parts = []
        for key, (unit, value) in measures.items():
            lo, hi = getattr(self, f"min_{key}"), getattr(self, f"max_{key}")
            if lo is not None:
                parts.append(pl.when(value < lo).then(
                    message(f"{self.field} has ", value, f" {unit}, fewer than {lo}")))
            if hi is not None:
                parts.append(pl.when(value > hi).then(
                    message(f"{self.field} has ", value, f" {unit}, more than {hi}")))
        return first_reason(*parts)

    def reasons(self, frame: pl.DataFrame) -> pl.Series:
        return on_rows(frame, self.may_fire(frame), self.expr())

    def may_fire(self, frame: pl.DataFrame) -> pl.Series | None:
        """A superset of the rows a bound may reject, from the texts' byte lengths (no pass
        over the text: counting characters reads every byte); None: every row. A character
        takes 1 to 4 bytes, n words at least 2n - 1, n lines n - 1 newlines; a lower
        bound on words or lines, or any on turns, holds no such promise."""
        if any(getattr(self, k) is not None for k in ("min_words", "min_lines", "min_turns", "max_turns")):
            return None
        size = frame[text_column(self.field)].str.len_bytes().cast(pl.Int64)
        bounds = [(self.max_chars, lambda hi: size > hi), (self.min_chars, lambda lo: size < 4 * lo),
                  (self.max_words, lambda hi: size > 2 * hi), (self.max_lines, lambda hi: size >= hi)]
        # the validator asks for a bound, and the ones without a test returned above
        return functools.reduce(operator.or_, [test(bound) for bound, test in bounds if bound is not None])


class RegexRule(Rule):
    kind: Literal["regex"]
    must_match: str | None = None
    must_not_match: str | None = None

    _v = field_validator("must_match", "must_not_match")(lambda cls, v: v if v is None else check_regex(v))

    @model_validator(mode="after")
    def _one(self):
        if self.must_match is None and self.must_not_match is None:
            raise ValueError("a regex rule needs must_match or must_not_match")
        return self

    def expr(self) -> pl.Expr:
        parts = []
        if self.must_match is not None:
            parts.append(pl.when(~self.text.str.contains(self.must_match)).then(
                pl.lit(f"{self.field} does not match /{self.must_match}/")))
        if self.must_not_match is not None:
            hit = self.text.str.extract(self.must_not_match, 0)
            parts.append(pl.when(hit.is_not_null()).then(message(f"{self.field} matches /{self.must_not_match}/: '", snippet(hit), "'")))
        return first_reason(*parts)

    def reasons(self, frame: pl.DataFrame) -> pl.Series:
        # Most regexes cost their engine's set-up on every text (~0.1 µs) however fast they
        # fail. Where every match of a must_not_match holds one of a few literals
        # (url_only: "http", "www."), a search for them finds the rows it may match.
        rows = None if self.must_match is not None else candidates(frame[text_column(self.field)],
                                                                   self.must_not_match, most=FEW)
        return on_rows(frame, rows, self.expr())


class KeywordsRule(Rule):
    kind: Literal["keywords"]
    phrases: list[str] | None = None
    file: str | None = None
    _path: Path | None = PrivateAttr(None)  # the file found, a config file of the rule set (RuleSet.files)

    @model_validator(mode="after")
    def _load(self, info: ValidationInfo):
        if (self.phrases is None) == (self.file is None):
            raise ValueError("a keywords rule needs exactly one of phrases or file")
        if self.file is not None:
            base = Path((info.context or {}).get("path", ".")).parent
            found = _include(base, self.file, "keyword file")
            self._path = found
            self.phrases = [ln.strip() for ln in found.read_text(encoding="utf-8").splitlines()
                            if ln.strip() and not ln.lstrip().startswith("#")]
        if not self.phrases or any(not p.strip() for p in self.phrases):
            raise ValueError("keywords must be a non-empty list of non-empty phrases")
        # Typographic apostrophes are as common as straight ones in scraped and model text.
        self.phrases = list(dict.fromkeys(
            v for p in self.phrases for v in (p, p.replace("'", "\u2019"))))
        return self

    def _regex(self) -> str:
        # Word-bounded where the phrase begins/ends with a word character; "<No Output>"
        # has no word boundary before '<', so \b there would never match.
        alts = []
        for p in sorted({p.strip() for p in self.phrases}, key=lambda s: (-len(s), s)):
            body = r"\s+".join(re.escape(w) for w in p.split())
            alts.append((r"\b" if re.match(r"\w", p) else "") + body + (r"\b" if re.search(r"\w$", p) else ""))
        return "(?i)(?:" + "|".join(alts) + ")"

    def reasons(self, frame: pl.DataFrame) -> pl.Series:
        text = frame[text_column(self.field)]
        phrases = sorted({p.strip().lower() for p in self.phrases})
        # Aho-Corasick prefilter over all phrases at once; only its hits pay for the
        # word-bounded regex that confirms them and says which phrase matched.
        # ASCII case folding is exact when every non-ASCII character has no case, such as
        # the typographic apostrophe every phrase with "'" gets a variant with: lowering a
        # copy of the whole column first costs twice the search
        if all(c.isascii() or c.lower() == c.upper() for p in phrases for c in p):
            from .bytescan import folded_any

            cand = folded_any(text, phrases)
            if cand is None:  # a phrase shorter than its search window
                cand = ascii_folded_any(text, phrases)
        else:
            cand = text.str.to_lowercase().str.contains_any(phrases)
        out = no_reasons(frame.height)
        idx = cand.arg_true()
        if len(idx):
            hits = text.gather(idx).str.extract(self._regex(), 0)
            msg = (pl.select(message(f"{self.field} contains '", snippet(pl.lit(hits)), "'"))
                   .to_series())
            out = out.scatter(idx, msg)
        return out


class RolesRule(Rule):
    kind: Literal["roles"]
    field: Literal["conversation"] = "conversation"
    first_role: list[Role] | None = ["system", "user"]
    alternate: bool = True
    ends_with: Role | None = "assistant"
    no_empty_turns: bool = True

    def text_fields(self) -> set[str]:
        return self.condition_fields()

    def reasons(self, frame: pl.DataFrame) -> pl.Series:
        # One signature string per conversation, a letter a turn (s/u/a); every shape check
        # is then a cheap string op. Which check fired, and the sentence that says so, are
        # worked out only for the (few) conversations that fail one.
        content = turn_text_of(frame["messages"]).str.strip_chars()  # a turn that only calls tools is not empty
        letter = pl.element().struct.field("role").str.slice(0, 1)
        low = pl.col("low")
        fails = [low == ""]
        if self.first_role:
            fails.append(~low.str.slice(0, 1).is_in([r[0] for r in self.first_role]))
        if self.alternate:
            fails.append(low.str.slice(1).str.contains("s", literal=True))
            fails.append(low.str.replace_all("s", "", literal=True).str.contains("uu|aa"))
        if self.ends_with:
            fails.append(low.str.slice(-1) != self.ends_with[0])
        sigs = frame[SIGNATURE] if SIGNATURE in frame.columns else signature(frame["messages"])
        # a data set has a handful of shapes ("ua", "sua", "uaua"...): check each once
        bad = evaluate(pl.DataFrame({"low": sigs.unique()}).filter(pl.any_horizontal(fails)), low)
        hit = sigs.is_in(bad.implode())
        if self.no_empty_turns:
            from .bytescan import blank_turns

            blank = blank_turns(frame["messages"])
            hit = hit | (frame["messages"].list.eval(content == "").list.any() if blank is None else blank)
        idx = hit.arg_true()
        out = no_reasons(frame.height)
        if len(idx):
            sig = pl.col("messages").list.eval(
                pl.when(content == "").then(letter.str.to_uppercase()).otherwise(letter)).list.join("")
            sigs = frame[idx].select(sig.alias("sig"), sig.str.to_lowercase().alias("low"))
            out = out.scatter(idx, evaluate(sigs, self.expr()))
        return out

    def expr(self) -> pl.Expr:
        sig, low = pl.col("sig"), pl.col("low")
        name = {"s": "system", "u": "user", "a": "assistant"}

        def role_of(ch: pl.Expr) -> pl.Expr:
            return ch.str.to_lowercase().replace_strict(name, default="?")

        parts = [pl.when(sig == "").then(pl.lit("conversation has no turns"))]
        if self.first_role:
            allowed = "".join(r[0] for r in self.first_role)
            parts.append(pl.when(~low.str.slice(0, 1).str.contains(f"^[{allowed}]")).then(message(
                "conversation starts with ", role_of(low.str.slice(0, 1)), f", not {' or '.join(self.first_role)}")))
        if self.alternate:
            parts.append(pl.when(low.str.slice(1).str.contains("s")).then(pl.lit("system turn after the first turn")))
            twice = low.str.replace_all("s", "").str.extract("(uu|aa)", 1)
            parts.append(pl.when(twice.is_not_null()).then(
                message("two ", role_of(twice.str.slice(0, 1)), " turns in a row")))
        if self.ends_with:
            last = low.str.slice(-1)
            parts.append(pl.when(last != self.ends_with[0]).then(
                message("conversation ends with ", role_of(last), f", not {self.ends_with}")))
        if self.no_empty_turns:
            at = sig.str.find("[SUA]")
            parts.append(pl.when(at.is_not_null()).then(
                message("turn ", at + 1, " (", role_of(sig.str.slice(at, 1)), ") is empty")))
        return first_reason(*parts)


from .textchecks import FormatRule, RepetitionRule  # noqa: E402

AnyRule = Annotated[
    Union[LengthRule, RegexRule, KeywordsRule, RolesRule, FormatRule, RepetitionRule],
    PField(discriminator="kind"),
]


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[AnyRule] = PField(min_length=1)

    @model_validator(mode="after")
    def _unique(self):
        seen = set()
        for r in self.rules:
            if r.name in seen:
                raise ValueError(f"two rules are named '{r.name}'")
            seen.add(r.name)
        return self

    def files(self) -> list[Path]:
        """The files the rules read (keyword lists), besides the rule set files themselves."""
        return [r._path for r in self.rules if getattr(r, "_path", None) is not None]

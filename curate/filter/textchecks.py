"""Rules about what the text is: format validity (JSON, Python, fences, control
characters) and runaway repetition (Gopher's duplicate-line/paragraph/n-gram fractions)."""
from __future__ import annotations

import ast
import json
import re
import textwrap
import warnings
from typing import ClassVar, Literal

import numpy as np
import polars as pl
from pydantic import Field as PField, field_validator

from .. import jsonsafe
from .base import MAX_COUNT, Rule, evaluate, message, no_reasons, on_rows
from .fields import text_column

CONTROL_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"
FENCE_LINE = r"(?m)^[ \t]*```"
FENCE_BLOCK = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)
PY_LANGS = {"python", "py", "python3", "py3"}
JSON_LANGS = {"json", "jsonc", "json5"}
PY_START = re.compile(
    r"^(def |class |import |from \S+ import |async def |@\w|for .+:\s*$|while .+:\s*$|if .+:\s*$|"
    r"try:\s*$|with .+:\s*$|print\(|[A-Za-z_][\w.]*\s*=[^=])"
)


def json_problem(text: str) -> str | None:
    blocks = FENCE_BLOCK.findall(text)
    bodies = [b for lang, b in blocks if lang.lower() in JSON_LANGS] or [b for lang, b in blocks if not lang]
    if not bodies:
        stripped = text.strip()
        starts = [i for i in (stripped.find("{"), stripped.find("[")) if i >= 0]
        if not starts:
            return "no JSON found"
        # Accept JSON introduced by prose ("Here is the object: {...}"), as models write it.
        bodies = [stripped[min(starts): max(stripped.rfind("}"), stripped.rfind("]")) + 1]]
    for body in bodies:
        try:
            jsonsafe.loads(body)  # deep nesting is a verdict, not json's RecursionError
        except json.JSONDecodeError as e:
            return f"JSON does not parse: {e.msg} at line {e.lineno} column {e.colno}"
        except jsonsafe.TooDeep:  # measured before parsing: the same verdict at any stack depth
            return f"JSON nests too deeply to parse (more than {jsonsafe.MAX_DEPTH} levels)"
    return None


def python_problem(text: str) -> str | None:
    blocks = FENCE_BLOCK.findall(text)
    if blocks:
        bodies = [b for lang, b in blocks if lang.lower() in PY_LANGS]
        bodies += [b for lang, b in blocks if not lang and _looks_like_python(b)]
    else:
        bodies = [text] if _looks_like_python(text) else []
    for body in bodies:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ast.parse(textwrap.dedent(body))
        except SyntaxError as e:
            return f"Python code does not parse: {e.msg} (line {e.lineno})"
        except (ValueError, RecursionError, MemoryError) as e:
            return f"Python code does not parse: {type(e).__name__}"
    return None


def _looks_like_python(text: str) -> bool:
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    return bool(PY_START.match(first.strip()))


PARSERS = {"json": json_problem, "python": python_problem}


class FormatRule(Rule):
    kind: Literal["format"]
    check: Literal["json", "python", "markdown_fences", "control_chars"]
    applies_itself: ClassVar[bool] = True  # parsers run only where when/unless allow

    def reasons(self, frame: pl.DataFrame) -> pl.Series:
        t = self.text
        if self.check == "control_chars":
            from .bytescan import control_mask

            hit = pl.Series(control_mask(frame[text_column(self.field)]))
            if self.when is not None or self.unless is not None:
                hit = hit & evaluate(frame, self.applies())
            idx = hit.arg_true()
            out = no_reasons(frame.height)
            if len(idx):  # say which character only for the (rare) hits
                hits = evaluate(frame[idx], message(
                    f"{self.field} contains control character 0x", t.str.extract(CONTROL_CHARS, 0).str.encode("hex")))
                out = out.scatter(idx, hits)
            return out
        if self.check == "markdown_fences":
            n = t.str.count_matches(FENCE_LINE)
            expr = pl.when(self.applies() & (n % 2 == 1)).then(
                message(f"{self.field} has an unclosed ``` fence (", n, " fence lines)"))
            # a fence line holds ``` (and most texts none)
            fenced = frame[text_column(self.field)].str.contains("```", literal=True).fill_null(False)
            return on_rows(frame, fenced, expr)
        # Parser checks go row by row, but only over rows the `when` selects (its regex
        # only over rows holding a literal it needs).
        todo = on_rows(frame, self.may_apply(frame), pl.when(self.applies() & (t != "")).then(pl.lit("")))
        todo = todo.is_not_null().arg_true()
        out = no_reasons(frame.height)
        if len(todo):
            parse = PARSERS[self.check]
            texts = frame[text_column(self.field)].gather(todo).to_list()
            found = [parse(x) for x in texts]
            out = out.scatter(todo, pl.Series([f"{self.field} {p}" if p else None for p in found], dtype=pl.String))
        return out


class RepetitionRule(Rule):
    """Gopher (Rae et al. 2021) repetition filters, with Gopher's published thresholds.
    The top n-gram share is checked only from ``min_words`` words up."""

    kind: Literal["repetition"]
    max_duplicate_line_fraction: float | None = PField(0.30, ge=0, le=1)
    max_duplicate_paragraph_fraction: float | None = PField(0.30, ge=0, le=1)
    max_top_ngram_fraction: dict[int, float] | None = {2: 0.20, 3: 0.18, 4: 0.16}
    min_words: int = PField(50, ge=1, le=MAX_COUNT, description="n-gram fractions are noise on shorter texts; Gopher also drops them")

    @field_validator("max_top_ngram_fraction")
    @classmethod
    def _ngrams(cls, v):
        if v and any(not (2 <= n <= 10) or not (0 <= f <= 1) for n, f in v.items()):
            raise ValueError("max_top_ngram_fraction maps n (2..10) to a fraction (0..1)")
        return v

    def reasons(self, frame: pl.DataFrame) -> pl.Series:
        # One compiled pass over the whole column (curate.textkernels): per-text counting
        # of lines, paragraphs and n-grams is what polars can only do by exploding words.
        from ..textkernels import repetition, repetition_serial, threads, utf8_spans

        column = frame[text_column(self.field)]
        n = column.len()
        kind = np.zeros(n, dtype=np.int8)
        value = np.zeros(n, dtype=np.float64)
        which = np.zeros(n, dtype=np.int64)
        grams = sorted((self.max_top_ngram_fraction or {}).items())
        if n:
            addresses, lengths, owner = utf8_spans(column)
            lines, paras = self.max_duplicate_line_fraction, self.max_duplicate_paragraph_fraction
            (repetition if threads() > 1 else repetition_serial)(
                addresses, lengths, min(n, 64), lines is not None, lines or 0.0, paras is not None, paras or 0.0,
                np.array([g for g, _ in grams], dtype=np.int64), np.array([f for _, f in grams], dtype=np.float64),
                self.min_words, kind, value, which)
            del owner  # the bytes read above belong to it
        limits = dict(grams)
        out: list[str | None] = [None] * n
        for i in np.flatnonzero(kind).tolist():
            f = float(value[i])
            if kind[i] == 3:
                g = int(which[i])
                out[i] = f"{self.field} top {g}-gram covers {f:.0%} of its characters, more than {limits[g]:.0%}"
            else:
                what, limit = (("lines", self.max_duplicate_line_fraction) if kind[i] == 1
                               else ("paragraphs", self.max_duplicate_paragraph_fraction))
                out[i] = f"{self.field} repeats {f:.0%} of its {what}, more than {limit:.0%}"
        return pl.Series("reason", out, dtype=pl.String)

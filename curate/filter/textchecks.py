"""Rules about what the text is: format validity (JSON, Python, fences, control
characters) and runaway repetition (Gopher's duplicate-line/paragraph/n-gram fractions)."""
from __future__ import annotations

import ast
import json
import re
import textwrap
import warnings
from typing import Literal

import polars as pl
from pydantic import Field as PField, field_validator

from .base import Rule, evaluate, first_reason, message
from .fields import Field, field_messages, text_column

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
            json.loads(body)
        except json.JSONDecodeError as e:
            return f"JSON does not parse: {e.msg} at line {e.lineno} column {e.colno}"
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

    def reasons(self, frame: pl.DataFrame) -> pl.Series:
        t = self.text
        if self.check == "control_chars":
            # on the raw turns: stripping would hide a control character at either end
            raw = field_messages(self.field).list.eval(pl.element().struct.field("content")).list.join("\n")
            idx = evaluate(frame, self.applies() & raw.str.contains(CONTROL_CHARS)).arg_true()
            out = pl.Series("reason", [None] * frame.height, dtype=pl.String)
            if len(idx):  # say which character only for the (rare) hits
                hits = evaluate(frame[idx], message(
                    f"{self.field} contains control character 0x", raw.str.extract(CONTROL_CHARS, 0).str.encode("hex")))
                out = out.scatter(idx, hits)
            return out
        if self.check == "markdown_fences":
            n = t.str.count_matches(FENCE_LINE)
            expr = pl.when(self.applies() & (n % 2 == 1)).then(
                message(f"{self.field} has an unclosed ``` fence (", n, f" fence lines)"))
            return evaluate(frame, expr)
        # Parser checks go row by row, but only over rows the `when` selects.
        todo = evaluate(frame, self.applies() & (t != "")).arg_true()
        out = pl.Series("reason", [None] * frame.height, dtype=pl.String)
        if len(todo):
            parse = PARSERS[self.check]
            texts = frame[text_column(self.field)].gather(todo).to_list()
            found = [parse(x) for x in texts]
            out = out.scatter(todo, pl.Series([f"{self.field} {p}" if p else None for p in found], dtype=pl.String))
        return out


class RepetitionRule(Rule):
    """Gopher (Rae et al. 2021) repetition filters, with Gopher's published thresholds."""

    kind: Literal["repetition"]
    max_duplicate_line_fraction: float | None = PField(0.30, ge=0, le=1)
    max_duplicate_paragraph_fraction: float | None = PField(0.30, ge=0, le=1)
    max_top_ngram_fraction: dict[int, float] | None = {2: 0.20, 3: 0.18, 4: 0.16}
    min_words: int = PField(50, ge=1, description="n-gram fractions are noise on shorter texts; Gopher also drops them")

    @field_validator("max_top_ngram_fraction")
    @classmethod
    def _ngrams(cls, v):
        if v and any(not (2 <= n <= 10) or not (0 <= f <= 1) for n, f in v.items()):
            raise ValueError("max_top_ngram_fraction maps n (2..10) to a fraction (0..1)")
        return v

    def reasons(self, frame: pl.DataFrame) -> pl.Series:
        t = self.text
        # Trim and drop blank items in the string domain (one regex pass) rather than per
        # list element, and count each list once: several times faster on polars.
        counts, parts = [], []
        for key, what, sep, splitter in (
                ("max_duplicate_line_fraction", "lines", "\n", r"[^\S\n]*\n\s*"),
                ("max_duplicate_paragraph_fraction", "paragraphs", "\x00", r"\s*\n[^\S\n]*\n\s*")):
            limit = getattr(self, key)
            if limit is None:
                continue
            items = t.str.replace_all(splitter, sep).str.split(sep)
            counts += [items.list.len().alias(f"n_{what}"), items.list.n_unique().alias(f"u_{what}")]
            n = pl.col(f"n_{what}")
            frac = (n - pl.col(f"u_{what}")) / n
            parts.append(pl.when((n > 1) & (frac > limit)).then(message(
                f"{self.field} repeats ", (frac * 100).round(0).cast(pl.Int64), f"% of its {what}, more than {limit:.0%}")))
        out = evaluate(frame.select(counts), first_reason(*parts)) if parts else \
            pl.Series("reason", [None] * frame.height, dtype=pl.String)
        if self.max_top_ngram_fraction:
            out = out.fill_null(self._top_ngrams(frame))
        return out

    def _top_ngrams(self, frame: pl.DataFrame) -> pl.Series:
        """Share of characters covered by the most frequent n-gram (ties: the longest), for
        texts of at least ``min_words`` words.

        Vectorised: words exploded once and hashed to u64; one (row, word) count gives
        each row a bound that no n-gram can beat -- the top n-gram's c occurrences need
        c copies of each of its words, so c * chars <= n * U + (n - 1) * K, with U the
        largest count*length of a single word and K the largest word count. Only rows
        whose bound passes the threshold pay for the n-gram pass.
        """
        col = text_column(self.field)
        result = pl.Series("reason", [None] * frame.height, dtype=pl.String)
        base = (frame.select(col).with_row_index("row")
                .with_columns(total=pl.col(col).str.len_chars())
                .filter(pl.col("total") >= 2 * self.min_words - 1)  # n words need 2n-1 chars
                # ...and n-1 separators: count ASCII ones (cheap) before splitting; a row
                # with other characters may have Unicode separators, so it always passes
                .filter((pl.col(col).str.len_bytes() != pl.col("total"))
                        | (pl.col(col).str.count_matches(r"[ \t\n\x0B\x0C\r]") >= self.min_words - 1))
                .with_columns(w=pl.col(col).str.extract_all(r"\S+"))
                .filter(pl.col("w").list.len() >= self.min_words))
        if base.height == 0:
            return result
        words = (base.select("row", "w").explode("w")
                 .select("row", pl.col("w").hash(seed=0).alias("h"), pl.col("w").str.len_chars().alias("ln")))
        mix = pl.col("row").cast(pl.UInt64) * pl.lit(0x9E3779B97F4A7C15, pl.UInt64)
        bound = (words.group_by((pl.col("h") ^ mix).alias("key"))
                 .agg(pl.first("row"), pl.len().alias("c"), pl.first("ln"))
                 .group_by("row").agg((pl.col("c") * pl.col("ln")).max().alias("U"), pl.max("c").alias("K"))
                 .join(base.select("row", "total"), on="row"))
        found: dict[int, str] = {}
        for n, limit in sorted(self.max_top_ngram_fraction.items()):
            rows = bound.filter((n * pl.col("U") + (n - 1) * pl.col("K")) / pl.col("total") > limit)["row"]
            if rows.len() == 0:
                continue
            sub = words.filter(pl.col("row").is_in(rows.implode()))
            key, length = pl.col("h"), pl.col("ln")
            for j in range(1, n):
                key = key * pl.lit(0x100000001B3, pl.UInt64) + pl.col("h").shift(-j)
                length = length + pl.col("ln").shift(-j) + 1
            top = (sub.select("row", (key ^ mix).alias("k"), length.alias("len"),
                              (pl.col("row").shift(-(n - 1)) == pl.col("row")).alias("whole"))
                   .filter("whole")
                   .group_by("k").agg(pl.first("row"), pl.len().alias("c"), pl.first("len"))
                   .filter(pl.col("c") > 1)
                   # Gopher's measure: the most frequent n-gram (ties: the longest) and
                   # the characters its occurrences cover
                   .sort(["row", "c", "len"], descending=[False, True, True])
                   .group_by("row", maintain_order=True).first()
                   .join(base.select("row", "total"), on="row")
                   .with_columns(frac=pl.col("c") * pl.col("len") / pl.col("total"))
                   .filter(pl.col("frac") > limit))
            for row, frac in top.select("row", "frac").iter_rows():
                found.setdefault(row, f"{self.field} top {n}-gram covers {frac:.0%} of its characters, more than {limit:.0%}")
        if found:
            idx = sorted(found)
            result = result.scatter(idx, pl.Series([found[i] for i in idx], dtype=pl.String))
        return result

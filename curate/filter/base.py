"""The rule base class: a rule says, per record, nothing (keep) or a reason (reject)."""
from __future__ import annotations

from typing import ClassVar, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field as PField, field_validator

from .fields import Field, text_column

Role = Literal["system", "user", "assistant"]
NAME_RE = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$"
# The largest count (characters, words, lines, turns) a rule may name. Validation bounds
# every number a rule hands to polars or to a compiled kernel (int64 there), so what
# `curate validate` accepts, `curate filter` runs; no text holds a trillion of anything.
MAX_COUNT = 10 ** 12


def check_regex(pattern: str) -> str:
    """Validate with the engine that will run it (Rust regex: no look-around, no backrefs).

    Compiled in a lazy query, as the rules run theirs: polars keeps the regexes it compiled
    per thread, and an eager ``pl.select`` compiles on the calling thread, so the rule's
    own query compiled the same regex a second time (url_only's: 0.02 CPU-s). The message
    of a bad pattern is the eager form's, as before (a lazy error adds the query plan)."""
    try:
        pl.LazyFrame({"t": [""]}).select(pl.col("t").str.contains(pattern)).collect()
        return pattern
    except Exception:
        pass
    try:
        pl.select(pl.lit("").str.contains(pattern))
    except Exception as e:
        first = [ln for ln in str(e).splitlines() if ln.strip()]
        detail = first[-1].strip() if first else "invalid"
        raise ValueError(f"invalid regex {pattern!r}: {detail}") from None
    return pattern


class When(BaseModel):
    """A condition on another field: ``when`` limits a rule to records that match,
    ``unless`` exempts them."""

    model_config = ConfigDict(extra="forbid")
    field: Field
    matches: str

    _v = field_validator("matches")(lambda cls, v: check_regex(v))

    def expr(self) -> pl.Expr:
        return pl.col(text_column(self.field)).str.contains(self.matches)

    def candidates(self, frame: pl.DataFrame) -> pl.Series | None:
        """A cheap superset of where it matches (None: no cheaper test than the regex)."""
        from .literals import candidates

        return candidates(frame[text_column(self.field)], self.matches)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = PField(pattern=NAME_RE)
    field: Field = "conversation"
    when: When | None = None
    unless: When | None = None

    @property
    def text(self) -> pl.Expr:
        return pl.col(text_column(self.field))

    def text_fields(self) -> set[str]:
        return {self.field} | self.condition_fields()

    def condition_fields(self) -> set[str]:
        return {c.field for c in (self.when, self.unless) if c is not None}

    def applies(self) -> pl.Expr:
        """Where the rule is in force (``when`` matches and ``unless`` does not)."""
        cond = pl.lit(True)
        if self.when is not None:
            cond = cond & self.when.expr()
        if self.unless is not None:
            cond = cond & ~self.unless.expr()
        return cond

    def turn_fields(self) -> set[str]:
        return set()

    def may_apply(self, frame: pl.DataFrame) -> pl.Series | None:
        """A cheap superset of the rows where the rule is in force (None: all of them):
        only rows where ``when`` may match (``unless`` only takes rows away)."""
        return None if self.when is None else self.when.candidates(frame)

    def expr(self) -> pl.Expr:  # vectorised rules override this
        raise NotImplementedError

    def reasons(self, frame: pl.DataFrame) -> pl.Series:
        return evaluate(frame, self.expr())

    # rules whose reasons() already honour when/unless (to skip work where they do not apply)
    applies_itself: ClassVar[bool] = False

    def checked_reasons(self, frame: pl.DataFrame) -> pl.Series:
        """Reasons with ``when``/``unless`` applied: what the engine uses."""
        out = self.reasons(frame)
        if self.applies_itself or (self.when is None and self.unless is None):
            return out
        # the condition only matters where the rule fired (few rows): an `unless` regex over
        # every prompt cost more than the rule itself
        idx = out.is_not_null().arg_true()
        if len(idx) == 0:
            return out
        mask = evaluate(frame[idx], self.applies())
        fired = pl.select(pl.when(mask).then(out.gather(idx)).otherwise(None)).to_series()
        return out.scatter(idx, fired)


def no_reasons(n: int) -> pl.Series:
    """A reason column with no reason yet, to scatter the few hits into."""
    return pl.repeat(None, n, dtype=pl.String, eager=True).alias("reason")


def first_reason(*exprs: pl.Expr) -> pl.Expr:
    return pl.coalesce(*exprs) if len(exprs) > 1 else exprs[0]


def snippet(expr: pl.Expr, n: int = 60) -> pl.Expr:
    return expr.str.replace_all(r"\s+", " ").str.slice(0, n)


def message(*parts) -> pl.Expr:
    """Concatenate literal strings and expressions into a reason (no format-string parsing,
    so rule text such as regexes with braces is safe)."""
    return pl.concat_str([pl.lit(p, pl.String) if isinstance(p, str) else p.cast(pl.String) for p in parts])


def on_rows(frame: pl.DataFrame, rows: pl.Series | None, expr: pl.Expr) -> pl.Series:
    """``evaluate(frame, expr)`` where ``rows`` (a mask) holds, null elsewhere: for an
    expression known to be null outside them (``rows`` None: every row)."""
    if rows is None:
        return evaluate(frame, expr)
    idx = rows.arg_true()
    out = no_reasons(frame.height)
    if len(idx):  # gather only the columns it reads (the frame holds every field's text)
        out = out.scatter(idx, evaluate(frame.select(list(dict.fromkeys(expr.meta.root_names())))[idx], expr))
    return out


def evaluate(frame: pl.DataFrame, expr: pl.Expr) -> pl.Series:
    """Evaluate one expression lazily, so polars computes shared sub-expressions (a
    signature or a split used by several checks) once instead of once per use."""
    return frame.lazy().select(expr.alias("reason")).collect().to_series()

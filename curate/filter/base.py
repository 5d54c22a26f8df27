"""The rule base class: a rule says, per record, nothing (keep) or a reason (reject)."""
from __future__ import annotations

from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field as PField

from .fields import Field, text_column

Role = Literal["system", "user", "assistant"]
NAME_RE = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$"


def check_regex(pattern: str) -> str:
    """Validate with the engine that will run it (Rust regex: no look-around, no backrefs)."""
    try:
        pl.select(pl.lit("").str.contains(pattern))
    except Exception as e:
        first = [ln for ln in str(e).splitlines() if ln.strip()]
        detail = first[-1].strip() if first else "invalid"
        raise ValueError(f"invalid regex {pattern!r}: {detail}") from None
    return pattern


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = PField(pattern=NAME_RE)
    field: Field = "conversation"

    @property
    def text(self) -> pl.Expr:
        return pl.col(text_column(self.field))

    def text_fields(self) -> set[str]:
        return {self.field}

    def turn_fields(self) -> set[str]:
        return set()

    def expr(self) -> pl.Expr:  # vectorised rules override this
        raise NotImplementedError

    def reasons(self, frame: pl.DataFrame) -> pl.Series:
        return frame.select(self.expr().alias("reason")).to_series()


def first_reason(*exprs: pl.Expr) -> pl.Expr:
    return pl.coalesce(*exprs) if len(exprs) > 1 else exprs[0]


def snippet(expr: pl.Expr, n: int = 60) -> pl.Expr:
    return expr.str.replace_all(r"\s+", " ").str.slice(0, n)


def message(*parts) -> pl.Expr:
    """Concatenate literal strings and expressions into a reason (no format-string parsing,
    so rule text such as regexes with braces is safe)."""
    return pl.concat_str([pl.lit(p, pl.String) if isinstance(p, str) else p.cast(pl.String) for p in parts])

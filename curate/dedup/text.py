"""The text that dedup compares, and its normalisation."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import polars as pl

from ..filter.fields import field_text

ON = {"conversation": "conversation", "prompt": "prompt", "response": "assistant"}
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def select_text(records: pl.DataFrame, on: str) -> list[str]:
    return select_column(records, on).to_list()


def select_column(records: pl.DataFrame, on: str) -> pl.Series:
    """select_text as a polars column (MinHash reads it in place)."""
    return records.select(field_text(ON[on]).alias("t"))["t"]


@dataclass
class Conversations:
    """Each record's conversation text (``on: conversation``), not joined yet: MinHash's
    word shingles read its words from the turns in place (minhash.sign_conversations);
    everything else asks for the joined column, built on demand."""
    messages: pl.Series

    def __len__(self) -> int:
        return len(self.messages)

    def column(self) -> pl.Series:
        return select_column(pl.DataFrame([self.messages.alias("messages")]), "conversation")

    def to_list(self) -> list[str]:
        return self.column().to_list()


def normalise(text: str, strip_punct: bool = False, collapse: bool = True) -> str:
    """NFKC, casefold, collapse white space: what exact and MinHash dedup compare, so
    case, width and spacing variants are the same document. (``collapse=False`` for
    callers that split on any run of white space themselves.)"""
    # ASCII is already NFKC, and its casefold is lower(): skip the Unicode tables
    text = text.lower() if text.isascii() else unicodedata.normalize("NFKC", text).casefold()
    if strip_punct:
        text = _PUNCT.sub(" ", text)
    return " ".join(text.split()) if collapse else text

"""The record every stage reads and writes, and its stable id.

A record is one row: ``id``, ``messages`` (list of {role, content}), ``source``, ``meta``
(the input fields the reader did not map, as JSON). Stages may add columns.

``id`` is the hash of the conversation, so identical conversations share it (the same
conversation read from any format, in any run, has the same id; a record's train/eval side
follows it, so copies never straddle the split). ``source`` (input file and line, or row) is
the row's key: unique within a read, and so within a build (:func:`unique_sources`), and
stable across runs; dedup reasons and clusters name it to say which copy was kept. A new
key column would have changed every table's layout for what ``source`` already says.
"""
from __future__ import annotations

import hashlib
import json
import math
import unicodedata

import polars as pl

from .turns import EXTRA

# weight, name, tool_calls: optional turn fields (curate.turns), null when the input had none
MESSAGE_TYPE = pl.List(pl.Struct({"role": pl.String, "content": pl.String, "weight": pl.Int64, "name": pl.String,
                                  "tool_calls": pl.String}))
# the layout of record tables written before turns had optional fields: read as MESSAGE_TYPE
OLD_MESSAGE_TYPE = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
RECORD_SCHEMA = {
    "id": pl.String,
    "messages": MESSAGE_TYPE,
    "source": pl.String,
    "meta": pl.String,
}
REJECT_COLUMNS = {"stage": pl.String, "rule": pl.String, "reason": pl.String}


def _normalise_content(text: str) -> str:
    # NFC, newline folding and outer blanks only: the id must not merge conversations
    # that differ in anything else a model would see, so no casefolding, no whitespace
    # collapsing (exact dedup's job, on a copy) and no str.strip(), which would also eat
    # form feeds and other control characters.
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")).strip(" \t\n")


def record_id(messages: list[dict]) -> str:
    """128-bit hex id of the normalised conversation; identical on every machine and run."""
    # a turn's optional fields count only where present, so the id of a conversation without
    # them is what it always was (and the same from every input format)
    canon = []
    for m in messages:
        extra = {k: m[k] for k in EXTRA if m.get(k) is not None}
        canon.append([m["role"], _normalise_content(m["content"])] + ([extra] if extra else []))
    return id_of(json.dumps(canon, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def id_of(canonical: bytes) -> str:
    """The id of a conversation's canonical JSON (UTF-8): what the fast readers hash too."""
    return hashlib.sha256(canonical).hexdigest()[:32]


def unique_sources(*frames: pl.DataFrame) -> list[pl.DataFrame]:
    """The frames with ``source`` made unique across all of them, in order: a second row from
    the same place (a file given twice, a table whose source column repeats) becomes
    ``SOURCE #2``, a third ``SOURCE #3``; the first keeps its name, so data without repeats
    (nearly all) is unchanged."""
    sizes = [f.height for f in frames]
    sources = pl.concat([f["source"] for f in frames]) if frames else pl.Series("source", [], pl.String)
    if sources.n_unique() == len(sources):
        return list(frames)
    nth = sources.to_frame().select(pl.int_range(pl.len()).over("source")).to_series()
    fixed = (pl.DataFrame({"s": sources, "n": nth})
             .select(pl.when(pl.col("n") == 0).then(pl.col("s"))
                     .otherwise(pl.col("s") + " #" + (pl.col("n") + 1).cast(pl.String))).to_series())
    out, at = [], 0
    for f, n in zip(frames, sizes):
        out.append(f.with_columns(fixed.slice(at, n).alias("source")))
        at += n
    return out


def raw_id(raw: bytes | str) -> str:
    """Id for an input that never became a conversation (a line that did not parse)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    return "raw-" + hashlib.sha256(raw).hexdigest()[:28]


def finite(value):
    """``value`` with NaN and +/-Infinity replaced by None: JSON has no words for them
    (Python's ``json`` writes NaN, which no other parser reads), and null is what
    JavaScript's JSON.stringify writes for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def to_json(value, **kw) -> str:
    """Standard JSON text (non-finite numbers become null, see :func:`finite`); the same
    bytes as ``json.dumps`` for everything else."""
    kw = {"ensure_ascii": False, "default": str, **kw}
    try:
        return json.dumps(value, allow_nan=False, **kw)
    except ValueError:  # only non-finite floats get here: parsed JSON has no cycles
        return json.dumps(finite(value), allow_nan=False, **kw)


def meta_json(fields: dict) -> str:
    return to_json(fields) if fields else "{}"


def empty_records() -> pl.DataFrame:
    return pl.DataFrame(schema=RECORD_SCHEMA)


def records_frame(rows: list[dict]) -> pl.DataFrame:
    if not rows:
        return empty_records()
    return pl.DataFrame(rows, schema=RECORD_SCHEMA)


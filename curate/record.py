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

from .nfc_table import regex_class
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
    blob = json.dumps(canon, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:32]


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


# ---- the same ids, column-wise (the JSON Lines fast path, curate.jsonl_fast) ---------------------

def _encoded(value: pl.Expr) -> pl.Expr:
    """``value`` as JSON text, written by polars: it escapes exactly as ``json.dumps(x,
    ensure_ascii=False)`` does (the quote, the backslash, \\b \\f \\n \\r \\t, other characters
    below U+0020 as lowercase \\u00XX, nothing else), which tests/curate/test_record.py
    checks character by character."""
    return pl.struct(v=value).struct.json_encode().str.strip_prefix('{"v":').str.strip_suffix("}")


def json_strings(s: pl.Series) -> pl.Series:
    """Each string as ``json.dumps(x, ensure_ascii=False)`` writes it, byte for byte (null stays null)."""
    return s.to_frame("s").select(pl.when(pl.col("s").is_not_null()).then(_encoded(pl.col("s")))).to_series()


def normalised_contents(s: pl.Series) -> pl.Series:
    """:func:`_normalise_content` of each string. NFC is Python's own (unicodedata), called
    only on the strings with a character that can change under it (curate.nfc_table), so the
    result does not depend on which Unicode version polars was built with."""
    folded = s.str.replace_all(r"\r\n?", "\n")
    wide = folded.str.contains(regex_class() or "[^\x00-\x7f]").fill_null(False)
    if wide.any():
        idx = wide.arg_true()
        folded = folded.scatter(idx, [unicodedata.normalize("NFC", x) for x in folded.gather(idx).to_list()])
    return folded.str.strip_chars(" \t\n")


def record_ids(turns: pl.DataFrame, key: str) -> pl.DataFrame:
    """:func:`record_id` of every conversation in ``turns`` (one row per turn: ``key``, role,
    content and the optional weight/name/tool_calls, in turn order, grouped by ``key``):
    the same canonical JSON built column-wise, then one sha256 each. Returns ``key``, ``id``
    in the order the conversations first appear."""
    extras = [pl.when(pl.col("weight").is_not_null()).then('"weight":' + pl.col("weight").cast(pl.String)),
              pl.when(pl.col("name").is_not_null()).then('"name":' + _encoded(pl.col("name"))),
              pl.when(pl.col("tool_calls").is_not_null()).then('"tool_calls":' + _encoded(pl.col("tool_calls")))]
    t = turns.with_columns(_content=normalised_contents(turns["content"]),
                           _x=pl.concat_str(extras, separator=",", ignore_nulls=True))
    # nearly every conversation has no optional turn fields: its canonical JSON is the list of
    # [role, content] pairs as polars writes it; the others are put together turn by turn
    per = (t.lazy().group_by(key, maintain_order=True)
           .agg(_pairs=pl.concat_list("role", "_content"), _any=(pl.col("_x") != "").any()).collect())
    blob = _encoded(pl.col("_pairs"))
    if per["_any"].any():
        pair = _encoded(pl.concat_list("role", "_content"))
        turn = pl.when(pl.col("_x") != "").then(pair.str.strip_suffix("]") + ",{" + pl.col("_x") + "}]").otherwise(pair)
        rich = (t.join(per.filter("_any").select(key), on=key, maintain_order="left").group_by(key, maintain_order=True)
                .agg(_rich="[" + turn.str.join(",") + "]"))
        per = per.join(rich, on=key, how="left", maintain_order="left")
        blob = pl.when(pl.col("_any")).then(pl.col("_rich")).otherwise(blob)
    blobs = per.select(blob.cast(pl.Binary)).to_series().to_list()
    sha = hashlib.sha256
    return per.select(key).with_columns(id=pl.Series([sha(b).hexdigest()[:32] for b in blobs], dtype=pl.String))

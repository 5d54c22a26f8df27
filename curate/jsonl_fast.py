"""JSON Lines in the common chat/instruction layouts, read fast: each line decoded by msgspec
(a C JSON decoder), converted and hashed in one tight loop, the record table built from flat
lists (Arrow), with no per-record dict or DataFrame row. This is the second of three tiers:
the native scan (:mod:`curate.jsonl_native`) reads first and hands this tier the lines it
cannot prove (:func:`read_numbered`); what this tier cannot prove goes to the per-line path.

A line is read here only when it is *proven* to be one this path handles exactly as the
per-line path (``curate.readers._iter_jsonl`` + ``curate.layouts.read.convert``) would; every
other non-blank line goes back to the caller by number and is read one line at a time, so
results are identical (tests/curate/test_readers_fast.py holds the two paths equal on a
hostile corpus). msgspec itself refuses much of what needs the per-line path: invalid
UTF-8, a byte order mark, a raw control character in a string, a lone surrogate escape,
NaN/Infinity, a number out of float range, nesting past Python's recursion limit (each a
decode error here). Where it accepts, it gives what ``json.loads`` gives (duplicate keys:
the last value, in the first key's place; integers exact; msgspec refuses those past 64
bits, which so take the per-line path). On top of that a line
goes to the per-line path when it is not an object; its turns are not a non-empty list of
objects with exactly the role and text keys, both strings, the role a known one; a flat
format's converter refuses it; its conversation is blank (a rejection); or a ``meta`` value
is a list or object (strings, numbers, booleans and null are written here, with
:func:`curate.record.meta_json`, the per-line path's own writer).

Ids: :func:`curate.record.record_id`'s canonical JSON (``[[role, content], ...]``, content
normalised as :func:`curate.record._normalise_content` does, by the same Python calls)
written by ``msgspec.json.encode``, which escapes exactly as ``json.dumps(ensure_ascii=False,
separators=(",", ":"))`` (the quote, the backslash, \\b \\f \\n \\r \\t, other characters
below U+0020 as lowercase \\u00XX, nothing else; tests/curate/test_readers_fast.py checks
every character), then one sha256.
"""
from __future__ import annotations

import io
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

from .errors import RecordError
from .layouts.read import CONVERTERS, OPENAI_ROLES, SHAREGPT_ROLES, SIGNATURE
from .record import MESSAGE_TYPE, id_of, meta_json

# format -> (turns key, role key, text key, role names)
_CHAT = {"openai": ("messages", "role", "content", OPENAI_ROLES),
         "sharegpt": ("conversations", "from", "value", SHAREGPT_ROLES)}
# meta values written here (bool is its own type: type(True) is not int). Floats: msgspec and
# Python both round correctly, so they give the same float (and 1e400, NaN are decode errors).
# Lists and objects go to the per-line path: where msgspec's and json's nesting limits differ
# a value could be read here that json.loads refuses as too deep.
_SIMPLE = frozenset({str, int, float, bool, type(None)})


class _Slow(Exception):
    """This line is for the per-line path."""


@dataclass
class FastRead:
    records: pl.DataFrame  # id, messages, source, meta and _line (the line number), in line order
    slow: list[tuple[int, bytes]]  # (number, bytes) of the lines for the per-line path, in order


@dataclass
class _Columns:
    """The records read so far, as flat lists (turns flattened, ``offsets`` into them)."""
    lines: list[int]
    ids: list[str]
    metas: list[str]
    roles: list[str]
    contents: list[str]
    offsets: list[int]


def read_lines(data: bytes, label: str, fmt: str | None) -> FastRead:
    """Records for the lines of ``data`` (a JSON Lines file's bytes) this path can prove it
    reads exactly; the other non-blank lines in ``slow``, as a file iterates them (each with
    its newline, if any: the per-line path parses them so)."""
    return read_numbered(enumerate(io.BytesIO(data), 1), label, fmt)


def read_numbered(lines: Iterable[tuple[int, bytes]], label: str, fmt: str | None) -> FastRead:
    """:func:`read_lines` for some lines of a file, each with its number (1-based): the
    lines the native tier (:mod:`curate.jsonl_native`) handed on."""
    import msgspec

    decode, encode = msgspec.json.Decoder().decode, msgspec.json.Encoder().encode
    cols, slow = _Columns([], [], [], [], [], [0]), []
    for lineno, line in lines:
        if not line.strip():  # the per-line path skips blank lines (bytes.strip, as there)
            continue
        try:
            record = decode(line)
            if type(record) is not dict:
                raise _Slow
            chosen = fmt or _detect(record)
            roles, texts, used = _chat(record, chosen) if chosen in _CHAT else _flat(record, chosen)
            meta = {k: v for k, v in record.items() if k not in used}
            if not all(type(v) in _SIMPLE for v in meta.values()):
                raise _Slow
            canon = [[role, _normalise(text)] for role, text in zip(roles, texts)]
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, _Slow):
            slow.append((lineno, line))
            continue
        cols.lines.append(lineno)
        cols.ids.append(id_of(encode(canon)))
        cols.metas.append(meta_json(meta))
        cols.roles += roles
        cols.contents += texts
        cols.offsets.append(len(cols.roles))
    return FastRead(_table(cols, label), slow)


def _detect(record: dict) -> str:
    """:func:`curate.layouts.read.detect`; no format known is a rejection (per-line path)."""
    for key, name in SIGNATURE:
        if key in record:
            return name
    raise _Slow


def _chat(record: dict, fmt: str) -> tuple[list[str], list[str], set[str]]:
    """Roles and texts of an OpenAI or ShareGPT record whose every turn is exactly a known
    role and a text (both strings): what ``layouts.read._turns`` gives for it, with no optional
    turn fields; any other record is for the per-line path."""
    key, role_key, text_key, names = _CHAT[fmt]
    turns = record.get(key)
    if type(turns) is not list or not turns:
        raise _Slow
    roles, texts = [], []
    for turn in turns:
        if type(turn) is not dict or len(turn) != 2:
            raise _Slow
        role, text = turn.get(role_key), turn.get(text_key)
        if type(role) is not str or type(text) is not str:
            raise _Slow
        role = names.get(role.strip().lower())
        if role is None:
            raise _Slow
        roles.append(role)
        texts.append(text)
    if not any(text.strip() for text in texts):  # convert() rejects a conversation with no text
        raise _Slow
    return roles, texts, {key}


def _flat(record: dict, fmt: str) -> tuple[list[str], list[str], set[str]]:
    """A flat format (alpaca, prompt_completion, qa) by its own converter."""
    try:
        messages, used = CONVERTERS[fmt](record)
    except RecordError:
        raise _Slow from None
    texts = [m["content"] for m in messages]
    if not any(text.strip() for text in texts):
        raise _Slow
    return [m["role"] for m in messages], texts, used


def _normalise(text: str) -> str:
    """:func:`curate.record._normalise_content`, by the same calls (``unicodedata.normalize``
    returns at once for a string already NFC, so only the rare others cost)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return text.strip(" \t\n")


def _offsets(offsets: list[int]):
    """The list offsets as an Arrow int64 array, through polars: ``pa.array`` on a Python
    list imports pandas (pyarrow's array-like check), ~0.2 CPU-s of start-up per command."""
    return pl.Series(offsets, dtype=pl.Int64).to_arrow()


def _table(cols: _Columns, label: str) -> pl.DataFrame:
    """The record table from the flat lists. Strings go in through polars (about 10x faster
    than pyarrow's converter for non-ASCII text), zero-copy to Arrow."""
    return record_table(pl.Series(cols.roles, dtype=pl.String).to_arrow(),
                        pl.Series(cols.contents, dtype=pl.String).to_arrow(), _offsets(cols.offsets),
                        pl.Series(cols.ids, dtype=pl.String), pl.Series(cols.metas, dtype=pl.String), cols.lines, label)


class _ArrowArray:
    """An Arrow array seen only through the Arrow C data interface: polars takes it as it is,
    where ``pl.from_arrow`` first runs a coercion step that imports ``pyarrow.compute``
    (~23 ms a command, for chunked dictionary arrays this reader never makes)."""
    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array

    def __arrow_c_array__(self, requested_schema=None):
        return self.array.__arrow_c_array__(requested_schema)


def arrow_series(array) -> pl.Series:
    return pl.Series(_ArrowArray(array))


def record_table(roles, contents, offsets, ids: pl.Series, metas: pl.Series, lines, label: str) -> pl.DataFrame:
    """The record table (id, messages, source, meta, _line) of a fast tier: the turns' roles
    and contents (Arrow string arrays) cut into records by ``offsets`` (Arrow int64), as one
    Arrow list-of-struct column: no per-record object. Both fast tiers build theirs here."""
    import pyarrow as pa

    n = len(roles)
    # the optional turn fields all null: as string_view (polars' own string layout), which
    # pyarrow builds over one shared zero buffer and polars takes as it is (large_string
    # nulls polars converts: ~3k fresh pages a column per 400k turns)
    turns = pa.StructArray.from_arrays(
        [roles, contents, pa.nulls(n, pa.int64()), pa.nulls(n, pa.string_view()), pa.nulls(n, pa.string_view())],
        names=["role", "content", "weight", "name", "tool_calls"])
    messages = arrow_series(pa.LargeListArray.from_arrays(offsets, turns))
    table = pl.DataFrame({"id": ids, "messages": messages, "meta": metas,
                          "_line": pl.Series(lines, dtype=pl.UInt32)})
    return table.select("id", pl.col("messages").cast(MESSAGE_TYPE),
                        source=pl.lit(f"{label}:") + pl.col("_line").cast(pl.String), meta="meta", _line="_line")

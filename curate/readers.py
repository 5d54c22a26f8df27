"""Read any supported input into records plus ``read.*`` rejections.

Files: JSONL, JSON (array, single object, or JSONL saved as .json), Parquet, CSV; folders:
a Hugging Face ``save_to_disk`` dataset (or DatasetDict), an earlier stage's output
(``kept.parquet``), or any folder of such files. A bad line or record becomes a rejected
row naming file and line; only a missing file or an unreadable kind of input is fatal
(:class:`InputError`, one line).

Hostile input: a UTF-8 byte order mark is skipped (at the start of a file, and of any JSON
line); UTF-16/32 text is refused in one line. A value nested deeper than Python's JSON
parser goes (about 990 levels) is a ``read.too_deep`` row; a Parquet file with a column
type nested more than :data:`MAX_NESTING` levels is refused in one line (polars crashes
reading a schema a few hundred levels deep). A CSV row with an unterminated quote, invalid UTF-8 or too many fields is one
rejected row; the rows around it are read. A folder is walked following each file and
folder once (by resolved path): a symlink loop or a second link to the same file is
skipped with a notice. A Parquet file already in the record layout is checked like any
other input (null or empty messages, unknown roles, null fields become rejected rows).

JSON Lines in the common layouts is read by two fast tiers: a compiled scan of the whole
file (:mod:`curate.jsonl_native`, numba), then msgspec (:mod:`curate.jsonl_fast`) for the
lines the scan cannot prove it reads exactly; the lines neither can prove are read here one
at a time, with the same result.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import polars as pl

from .errors import InputError, RecordError
from .layouts.read import FORMATS, convert
from .record import (
    MESSAGE_TYPE, OLD_MESSAGE_TYPE, RECORD_SCHEMA, REJECT_COLUMNS, empty_records, meta_json, raw_id, record_id, records_frame, to_json,
    unique_sources,
)

FILE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
BOM = b"\xef\xbb\xbf"
# A column type nested deeper than this is refused (polars segfaults reading a Parquet
# schema a few hundred levels deep); chat data nests two levels (a list of turns).
MAX_NESTING = 100
ROLES = ("system", "user", "assistant")


@dataclass
class ReadResult:
    records: pl.DataFrame
    rejected: pl.DataFrame
    notices: list[str] = field(default_factory=list)  # what was skipped and why (not records)


@dataclass
class _Raw:
    source: str
    value: object = None  # the parsed record
    raw: str | None = None  # set when parsing failed: the raw text
    rule: str | None = None
    reason: str | None = None
    text: str | None = None  # the record's own text, where there is one (a JSON line)


TOO_DEEP = "nested too deeply for the JSON parser (about 990 levels)"


def _too_deep(src: str, raw: str) -> _Raw:
    return _Raw(src, raw=raw, rule="read.too_deep", reason=f"{src}: {TOO_DEEP}")


def _check_text_encoding(path: Path, label: str) -> bytes:
    """The first bytes of a text file; UTF-16/32 (a byte order mark says so) is refused."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or head in (b"\x00\x00\xfe\xff",):
        raise InputError(f"{label}: UTF-16 or UTF-32 text (it starts with a byte order mark); save it as UTF-8")
    return head


def _has_surrogates(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _too_long(e: ValueError) -> str:
    # Python's int-from-text limit (sys.get_int_max_str_digits): the number's own text is not echoed
    return "a number too long to read (" + str(e).split(";")[0].split(": ", 1)[-1] + ")"


def _iter_jsonl(path: Path, label: str) -> Iterator[_Raw]:
    """Each line of a JSON Lines file parsed."""
    _check_text_encoding(path, label)
    with open(path, "rb") as fh:
        yield from _parse_lines(enumerate(fh, 1), label)


def _parse_lines(numbered: Iterable[tuple[int, bytes]], label: str) -> Iterator[_Raw]:
    """Lines of a JSON Lines file, each with its number (1-based), parsed one at a time."""
    for lineno, line in numbered:
        if line.startswith(BOM):  # a file's first line, or files concatenated with cat
            line = line[3:]
        if not line.strip():
            continue
        src = f"{label}:{lineno}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            yield _Raw(src, raw=line.decode("utf-8", "backslashreplace").rstrip("\n"),
                       rule="read.invalid_utf8", reason=f"{src}: invalid UTF-8 at column {e.start + 1}")
            continue
        try:
            value = json.loads(text)
            # "\ud800" is valid JSON but decodes to a lone surrogate, which is not text
            bad_escape = "\\u" in text and _has_surrogates(value)
        except json.JSONDecodeError as e:
            yield _Raw(src, raw=text.rstrip("\n"), rule="read.parse_error",
                       reason=f"{src}: {e.msg} at column {e.colno}")
            continue
        except ValueError as e:  # valid JSON Python will not take: an integer of over 4,300 digits
            yield _Raw(src, raw=text.rstrip("\n"), rule="read.parse_error", reason=f"{src}: {_too_long(e)}")
            continue
        except RecursionError:
            yield _too_deep(src, text.rstrip("\n"))
            continue
        if bad_escape:
            yield _Raw(src, raw=text.rstrip("\n"), rule="read.invalid_utf8",
                       reason=f"{src}: a \\u escape decodes to a lone surrogate, not a character")
            continue
        yield _Raw(src, value=value, text=text)


def _iter_json(path: Path, label: str) -> Iterator[_Raw]:
    _check_text_encoding(path, label)
    data = path.read_bytes()
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    try:
        parsed = json.loads(text)
    except RecursionError:  # one value nests too deeply: read the others one at a time
        yield from _iter_json_items(text, path, label)
        return
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # JSON Lines saved with a .json name: common, so accept it
            yield from _iter_jsonl(path, label)
            return
        yield _Raw(f"{label}:{e.lineno}", raw=text[:2000], rule="read.parse_error",
                   reason=f"{label}:{e.lineno}: {e.msg} at column {e.colno}; the whole file is unreadable")
        return
    except ValueError as e:  # a number Python will not read (JSONDecodeError is caught above)
        if text.lstrip().startswith("["):  # the other records one at a time
            yield from _iter_json_items(text, path, label)
        else:
            yield _Raw(f"{label}:1", raw=text[:2000], rule="read.parse_error", reason=f"{label}:1: {_too_long(e)}")
        return
    items = parsed if isinstance(parsed, list) else [parsed]
    for i, item in enumerate(items, 1):
        yield _json_item(item, f"{label}:{i}", i)


def _json_item(item, src: str, i: int, text: str | None = None) -> _Raw:
    try:
        if not _has_surrogates(item):
            return _Raw(src, value=item, text=text)
        return _Raw(src, raw=json.dumps(item, ensure_ascii=True), rule="read.invalid_utf8",
                    reason=f"{src}: record {i} contains invalid UTF-8")
    except RecursionError:
        return _too_deep(src, text if text is not None else _safe_raw(item))


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


def _skip_value(text: str, i: int) -> int:
    """The end of the JSON value starting at ``i``, found without recursion (brackets
    outside strings); used only for a value too deep to parse."""
    depth = 0
    for m in _TOKEN.finditer(text, i):
        tok = m.group()
        if tok in "[{":
            depth += 1
        elif tok in "]}":
            depth -= 1
        if depth == 0:
            return m.end()
    return len(text)


def _ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _line_of(text: str, i: int) -> int:
    return text.count("\n", 0, i) + 1


def _iter_json_items(text: str, path: Path, label: str) -> Iterator[_Raw]:
    """A JSON file holding a value too deep for ``json.loads`` (or a number it will not read):
    an array is read element by element (those become ``read.too_deep`` / ``read.parse_error``
    rows), JSON Lines as lines."""
    decoder = json.JSONDecoder()
    i = _ws(text, 0)
    if not text.startswith("[", i):
        end = _skip_value(text, i)
        if _ws(text, end) < len(text):  # more values follow: JSON Lines with a .json name
            yield from _iter_jsonl(path, label)
        else:
            yield _too_deep(f"{label}:1", text[i:end])
        return
    i, n = _ws(text, i + 1), 0
    if text.startswith("]", i):
        return
    while True:
        n += 1
        src = f"{label}:{n}"
        try:
            item, end = decoder.raw_decode(text, i)
        except RecursionError:
            end = _skip_value(text, i)
            yield _too_deep(src, text[i:end])
        except json.JSONDecodeError as e:
            yield _Raw(src, raw=text[i:i + 2000], rule="read.parse_error",
                       reason=f"{label}:{e.lineno}: {e.msg} at column {e.colno}; the rest of the file is unreadable")
            return
        except ValueError as e:  # valid JSON, but a number Python will not read: this item only
            end = _skip_value(text, i)
            yield _Raw(src, raw=text[i:end][:2000], rule="read.parse_error", reason=f"{src}: {_too_long(e)}")
        else:
            yield _json_item(item, src, n, text[i:end])
        i = _ws(text, end)
        if text.startswith(",", i):
            i = _ws(text, i + 1)
            continue
        if not text.startswith("]", i) or _ws(text, i + 1) < len(text):
            yield _Raw(f"{label}:{n + 1}", raw=text[i:i + 2000], rule="read.parse_error",
                       reason=f"{label}:{_line_of(text, i)}: expected ',' or ']' after record {n}; "
                              "the rest of the file is unreadable")
        return


def _safe_raw(value) -> str:
    """The value as JSON text, or (nested too deeply for that) a shortened repr."""
    try:
        return to_json(value)
    except RecursionError:
        import reprlib

        short = reprlib.Repr()
        short.maxlevel, short.maxstring, short.maxother = 20, 2000, 200
        return short.repr(value)


def _iter_table(df: pl.DataFrame, label: str) -> Iterator[_Raw]:
    for i, row in enumerate(df.iter_rows(named=True), 1):
        yield _Raw(f"{label}:{i}", value=row)


# ---- CSV ---------------------------------------------------------------------------------

def _csv_chunks(text: str) -> Iterator[tuple[int, int, int, bool]]:
    """Split CSV text into rows without parsing them: (start, end, line, closed) per row,
    a newline inside a quoted field staying in its row. A quote that never closes makes
    its row ``closed=False`` and ends at its own line, so the rows after it are read."""
    n, pos, line = len(text), 0, 1
    while pos < n:
        i, closed = pos, True
        while True:
            nl, q = text.find("\n", i), text.find('"', i)
            if q == -1 or (nl != -1 and nl < q):
                end = n if nl == -1 else nl + 1
                break
            close = q + 1
            while True:  # the closing quote; "" inside quotes is an escaped quote
                close = text.find('"', close)
                if close == -1 or not text.startswith('"', close + 1):
                    break
                close += 2
            # a field's closing quote is followed by a comma or the end of the line; one that
            # is not belongs to another row's quoted field, so this quote is never closed
            if close == -1 or text[close + 1:close + 2] not in ("", ",", "\n", "\r"):
                closed = False
                end = n if text.find("\n", pos) == -1 else text.find("\n", pos) + 1
                break
            i = close + 1
        yield pos, end, line, closed
        line += text.count("\n", pos, end)
        pos = end


def _parse_csv(data: bytes) -> pl.DataFrame:
    return pl.read_csv(data, infer_schema=False)


def _iter_csv_slowly(path: Path, label: str) -> Iterator[_Raw]:
    """A CSV polars cannot read as a whole: find the rows that break it (an unterminated
    quote, invalid UTF-8, a row polars refuses), reject each one, read the rest with polars.
    Rows are numbered as polars numbers them, blank lines left out."""
    text = path.read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    chunks = [c for c in _csv_chunks(text) if text[c[0]:c[1]].strip()]
    if not chunks:
        raise InputError(f"{label}: cannot read as CSV: the file is empty")
    start, end, _, closed = chunks[0]
    header = text[start:end]
    if not closed or _BAD_UTF8.search(header):
        raise InputError(f"{label}: cannot read as CSV: the header line "
                         + ("has an unterminated quote" if not closed else "is not valid UTF-8"))
    header_bytes = header.rstrip("\r\n").encode("utf-8") + b"\n"
    out: list[_Raw | None] = []
    good: list[tuple[int, str]] = []  # (index in out, row text)
    for i, (start, end, line, closed) in enumerate(chunks[1:], 1):
        src, body = f"{label}:{i}", text[start:end]
        bad = _BAD_UTF8.search(body)
        shown = _printable(body).rstrip("\r\n")
        if not closed:
            out.append(_Raw(src, raw=shown, rule="read.parse_error",
                            reason=f"{src}: line {line}: a quote opened here is never closed"))
        elif bad:
            at = line + body.count("\n", 0, bad.start())
            col = bad.start() - (body.rfind("\n", 0, bad.start()) + 1) + 1
            out.append(_Raw(src, raw=shown, rule="read.invalid_utf8",
                            reason=f"{src}: line {at}: invalid UTF-8 at column {col}"))
        else:
            out.append(None)
            good.append((i - 1, body if body.endswith("\n") else body + "\n"))

    def parse(part: list[tuple[int, str]]) -> None:
        # one polars call for all rows; only a part that still fails is split (bisection)
        try:
            df = _parse_csv(header_bytes + "".join(b for _, b in part).encode("utf-8"))
            if df.height != len(part):
                raise ValueError(f"{len(part)} row(s) gave {df.height}")
        except Exception as e:  # polars raises several types; all mean "not CSV"
            if len(part) > 1:
                mid = len(part) // 2
                parse(part[:mid])
                parse(part[mid:])
                return
            k, body = part[0]
            src, line = f"{label}:{k + 1}", chunks[k + 1][2]
            out[k] = _Raw(src, raw=body.rstrip("\r\n"), rule="read.parse_error",
                          reason=f"{src}: line {line}: not a CSV row: {str(e).splitlines()[0][:200]}")
            return
        for (k, _), row in zip(part, df.iter_rows(named=True)):
            out[k] = _Raw(f"{label}:{k + 1}", value=row)

    if good:
        parse(good)
    yield from out


_BAD_UTF8 = re.compile("[\udc80-\udcff]")


def _printable(text: str) -> str:
    """Text decoded with surrogateescape, its undecodable bytes shown as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# ---- Parquet and record tables -------------------------------------------------------------

def _nesting(dtype) -> int:
    """How many list/array/struct levels a column type has (walked without recursion)."""
    depth, todo = 0, [(dtype, 0)]
    while todo:
        t, d = todo.pop()
        depth = max(depth, d)
        if isinstance(t, pl.Struct):
            todo.extend((f.dtype, d + 1) for f in t.fields)
        elif isinstance(t, (pl.List, pl.Array)):
            todo.append((t.inner, d + 1))
    return depth


def _read_parquet(path: Path, label: str) -> pl.DataFrame:
    """Read a Parquet file, first checking from its schema alone that no column nests
    deeper than MAX_NESTING: polars (and pyarrow) crash or refuse on a schema a few hundred
    levels deep even when the column is not selected, so such a file is unreadable."""
    schema = pl.read_parquet_schema(path)
    deep = {name: d for name, t in schema.items() if (d := _nesting(t)) > MAX_NESTING}
    if deep:
        cols = ", ".join(f"'{c}' is nested {d} levels deep" for c, d in deep.items())
        raise InputError(f"{label}: column {cols} (more than {MAX_NESTING}); polars cannot read "
                         "such a file: flatten the column, or drop it")
    return pl.read_parquet(path)


def _read_arrow_dataset(folder: Path) -> pl.DataFrame:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    state = json.loads((folder / "state.json").read_text())
    tables = []
    for entry in state.get("_data_files", []):
        with pa.memory_map(str(folder / entry["filename"])) as src:
            tables.append(ipc.open_stream(src).read_all())
    if not tables:
        return pl.DataFrame()
    return pl.from_arrow(pa.concat_tables(tables))


def _is_record_table(df: pl.DataFrame) -> bool:
    return all(c in df.schema and (df.schema[c] == t or c == "messages" and df.schema[c] == OLD_MESSAGE_TYPE)
               for c, t in RECORD_SCHEMA.items())


def _current_layout(df: pl.DataFrame) -> pl.DataFrame:
    """A record table written before turns had optional fields, with them (null)."""
    return df.with_columns(pl.col("messages").cast(MESSAGE_TYPE)) if df.schema["messages"] != MESSAGE_TYPE else df


def _record_table_suspects(df: pl.DataFrame) -> pl.Series:
    """Rows of a table in the record layout that may be bad (a null field, no turns, a role
    other than system/user/assistant, a null content, a blank last turn): one cheap
    vectorised pass; :func:`_record_problem` then judges only these (rare) rows."""
    turn = pl.element().struct
    messages = pl.col("messages")
    return df.lazy().select(pl.any_horizontal(
        pl.col("id").is_null(), pl.col("source").is_null(), pl.col("meta").is_null(),
        ~messages.list.eval((turn.field("role").is_in(ROLES) & turn.field("content").is_not_null())
                            .fill_null(False)).list.all(),
        # the last turn is nearly always the answer: only a blank one needs the others read
        ~messages.list.last().struct.field("content").str.contains(r"\S"),
    ).fill_null(True)).collect().to_series()


def _record_problem(row: dict) -> tuple[str, str] | None:
    """What is wrong with one row of a record-layout table (None: nothing), by the rules
    :func:`curate.layouts.read.convert` applies to any other input."""
    for key in ("id", "source", "meta", "messages"):
        if row[key] is None:
            return "read.missing_field", f"field '{key}' is null"
    messages = row["messages"]
    for i, m in enumerate(messages):
        if m is None:
            return "read.bad_field", f"messages[{i}] is null, expected an object"
        if m["role"] not in ROLES:
            return "read.bad_role", f"messages[{i}] has role {m['role']!r}, not one of {list(ROLES)}"
        if m["content"] is None:
            return "read.missing_field", f"messages[{i}] has no 'content'"
    if all(not m["content"].strip() for m in messages):
        return "read.empty_conversation", "the conversation has no text"
    return None


# ---- folders -------------------------------------------------------------------------------

class _Walk:
    """One input's walk: each file and folder is followed once, by resolved path."""

    def __init__(self):
        self.seen: dict[Path, str] = {}
        self.notices: list[str] = []

    def first_visit(self, path: Path, label: str, ancestors: dict[Path, str]) -> bool:
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # a link that loops onto itself
            self.notices.append(f"skipped {label}: a symbolic link that loops onto itself")
            return False
        if real in ancestors:
            self.notices.append(f"skipped {label}: a link back to {ancestors[real]} (a folder loop)")
            return False
        if real in self.seen:
            self.notices.append(f"skipped {label}: the same {'folder' if path.is_dir() else 'file'} "
                                f"as {self.seen[real]}")
            return False
        self.seen[real] = label
        return True


def _expand(path: Path, label: str, walk: _Walk | None = None,
            ancestors: dict[Path, str] | None = None) -> Iterator[tuple[str, Path, str]]:
    """Yield (kind, path, label) for every readable unit under ``path``."""
    walk = walk or _Walk()
    ancestors = ancestors or {}
    if not path.exists():
        if path.is_symlink():
            raise InputError(f"{label}: a symbolic link to nothing ({path.readlink()})")  # or a loop of links
        raise InputError(f"{label}: no such file or folder")
    if not walk.first_visit(path, label, ancestors):
        return
    if path.is_file():
        kind = FILE_KINDS.get(path.suffix.lower())
        if kind is None:
            raise InputError(
                f"{label}: unknown input kind '{path.suffix or path.name}' "
                f"(expected one of {', '.join(sorted(FILE_KINDS))}, or a folder)"
            )
        yield kind, path, label
        return
    if not path.is_dir():  # a pipe, device or socket: the reader opens a file twice (its encoding first)
        raise InputError(f"{label}: not a regular file nor a folder (a pipe or device?): save the data to a file first")
    if (path / "kept.parquet").is_file():
        yield "stage", path / "kept.parquet", f"{label}/kept.parquet"
        return
    if (path / "dataset_dict.json").is_file():
        for split in _splits(path, label):
            yield "hf", path / split, f"{label}/{split}"
        return
    if (path / "state.json").is_file() and any(path.glob("*.arrow")):
        yield "hf", path, label
        return
    found = False
    inner = {**ancestors, path.resolve(): label}
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_symlink() and not child.exists():  # dangling, or a loop of links
            walk.notices.append(f"skipped {label}/{child.name}: a symbolic link to nothing ({child.readlink()})")
            continue
        if child.is_dir() or child.suffix.lower() in FILE_KINDS:
            found = True
            yield from _expand(child, f"{label}/{child.name}", walk, inner)
    if not found:
        raise InputError(f"{label}: folder has no readable input files")


def _splits(path: Path, label: str) -> list[str]:
    """The split folders a Hugging Face ``dataset_dict.json`` names, each a folder beside it;
    a file that does not say so is refused in one line naming it."""
    from .jsonfile import read_json

    where = f"{label}/dataset_dict.json"
    try:
        splits = read_json(path / "dataset_dict.json", "Hugging Face dataset_dict.json", {"splits": [str]},
                           error=InputError)["splits"]
    except InputError as e:
        raise InputError(where + str(e)[len(str(path / "dataset_dict.json")):]) from None
    for split in splits:
        if split in ("", ".", "..") or "/" in split or "\\" in split or not (path / split).is_dir():
            raise InputError(f"{where}: split {split!r} is not a folder beside it")
    return splits


def read_inputs(paths, fmt: str | None = None, mapping: dict[str, str] | None = None,
                labels: list[str] | None = None) -> ReadResult:
    """Read files, folders and URLs (fsspec: s3://...) into records and rejected rows.
    ``labels`` name the inputs in ``source`` (default: the paths as given)."""
    from .storage import local_copy

    labels = [str(p) for p in paths] if labels is None else list(labels)
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")
    out, notices = _Collector(fmt, mapping), []
    for p, label in zip(paths, labels):
        with local_copy(p) as local:
            walk = _Walk()
            for kind, path, sub in _expand(local, label, walk):
                _read_one(out, kind, path, sub)
            notices += walk.notices
    out.flush()
    records = pl.concat(out.frames, how="diagonal_relaxed") if out.frames else empty_records()
    rejected = pl.DataFrame(out.rejects or None, schema={**RECORD_SCHEMA, **REJECT_COLUMNS})
    records, rejected = unique_sources(records, rejected)  # the row key (see curate.record)
    return ReadResult(records, rejected, notices)


def _read_one(out: "_Collector", kind: str, path: Path, sub: str) -> None:
    """One readable unit (a file, or a dataset folder) into ``out``."""
    if kind == "jsonl":
        _read_jsonl(out, path, sub)
    elif kind == "json":
        out.take(_iter_json(path, sub), sub)
    elif kind == "csv":
        _check_text_encoding(path, sub)
        try:
            df = pl.read_csv(path, infer_schema=False)
            # polars takes a header with an unclosed quote, and the whole file
            # after it, for one column name: no rows, no error
            broken = any("\n" in c for c in df.columns)
        except Exception:  # polars raises several types; all mean "not CSV"
            broken = True
        # find the rows that broke it, reject them, read the others
        out.take(_iter_csv_slowly(path, sub) if broken else _iter_table(df, sub), sub)
    else:
        try:
            df = _read_arrow_dataset(path) if kind == "hf" else _read_parquet(path, sub)
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"{sub}: cannot read: {str(e).splitlines()[0]}") from None
        if _is_record_table(df) and out.fmt is None and not out.mapping:
            out.take_records(_current_layout(df), sub)
        else:
            out.take(_iter_table(df, sub), sub)


# The fast JSON Lines tiers (curate.jsonl_native, then curate.jsonl_fast) are on unless a
# test compares them with the per-line path, which reads every line when _FAST_JSONL is
# False; _NATIVE_JSONL False skips the native tier (the msgspec tier reads every line first).
_FAST_JSONL = True
# (and only on little-endian machines: the scan reads 8 bytes at a time as a little-endian word)
_NATIVE_JSONL = sys.byteorder == "little"
# lines read by each tier since the process started (tests and benchmarks read it)
TIER_LINES = {"native": 0, "msgspec": 0, "per_line": 0}
# The native tier pays numba's start-up once a run (about 0.07 s to load the cached kernel
# where a stage has started numba anyway, as dedup and filter do; about 0.6 s where nothing
# else uses numba) and saves about 6 ms a MiB: a smaller file, unless the kernel is already
# loaded, is read by the msgspec tier first.
_NATIVE_MIN_BYTES = 8 << 20



def _read_native(path: Path, label: str, fmt: str | None):
    """The native tier's reading of a file, a chunk at a time (jsonl_native._chunks), not
    memory-mapped: a map of a file another program truncates meanwhile kills the process
    (SIGBUS inside the scan, no message); read() gets what is there. Unbuffered: the
    chunks are read straight into the scan's buffer."""
    from .jsonl_native import read_native

    try:
        with open(path, "rb", buffering=0) as fh:
            return read_native(fh, label, fmt, os.fstat(fh.fileno()).st_size)
    except MemoryError:  # its buffers are sized for the whole file
        raise InputError(f"{label}: too big to read in the memory this process may use "
                         f"({path.stat().st_size:,} bytes)") from None
    except OSError as e:  # a failing disk between chunks: say which input
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise

def _read_jsonl(out: "_Collector", path: Path, label: str) -> None:
    """A JSON Lines file: the lines the native scan proves it reads exactly are read there,
    the lines it hands on by the msgspec reader where it can prove it, the rest one at a
    time, as before; records stay in line order."""
    if not _FAST_JSONL or out.mapping:
        out.take(_iter_jsonl(path, label), label)
        return
    from .jsonl_fast import read_lines, read_numbered

    _check_text_encoding(path, label)
    frames, fast = [], None
    if _NATIVE_JSONL and (path.stat().st_size >= _NATIVE_MIN_BYTES or "curate.jsonl_native_kernel" in sys.modules):
        native = _read_native(path, label, out.fmt)
        frames.append(native.records)
        TIER_LINES["native"] += native.records.height
        if native.punted:  # (a file the native tier read whole has none left)
            fast = read_numbered(native.punted, label, out.fmt)
    else:
        fast = read_lines(path.read_bytes(), label, out.fmt)
    slow = []
    if fast is not None:
        frames.append(fast.records)
        slow = fast.slow
        TIER_LINES["msgspec"] += fast.records.height
    TIER_LINES["per_line"] += len(slow)
    out.flush()
    if slow:  # the lines the fast tiers hand on, from the bytes they read: never the path
        # again (a file replaced or rewritten meanwhile would give lines of another version)
        out.take(_parse_lines(slow, label), label, sum(f.height for f in frames))
    lines_col = pl.col("source").str.extract(r":(\d+)$").cast(pl.UInt32).alias("_line")
    frames.append(records_frame(out.rows).with_columns(lines_col))
    out.rows.clear()
    # each tier's records are in line order: only records from two or more need sorting
    # (tried: slices of the tables in turn, one rechunk: ~5k fewer faults here on real.jsonl's
    # five punted lines, ~6k more in the filter stage after it)
    full = [f for f in frames if f.height] or frames[-1:]
    merged = full[0] if len(full) == 1 else pl.concat(full).sort("_line")
    out.frames.append(merged.drop("_line"))


class _Collector:
    """What one :func:`read_inputs` call has read so far: record tables in input order
    (raw rows waiting in ``rows`` go before the next table), and rejected rows."""

    def __init__(self, fmt: str | None, mapping: dict[str, str] | None):
        self.fmt, self.mapping = fmt, mapping
        self.frames: list[pl.DataFrame] = []
        self.rows: list[dict] = []
        self.rejects: list[dict] = []

    def take(self, raws: Iterator[_Raw], label: str, n_ok: int = 0) -> None:
        """Convert parsed records into rows, and the others into rejected rows; ``n_ok``:
        records of this file already read elsewhere (the fast JSON Lines reader)."""
        n_seen, first_error = n_ok, None
        for r in raws:
            n_seen += 1
            if r.rule is None:
                try:
                    messages, meta = convert(r.value, self.fmt, self.mapping)
                    row = {"id": record_id(messages), "messages": messages,
                           "source": r.source, "meta": meta_json(meta)}
                except RecordError as e:
                    raw = _safe_raw(r.value)
                    first_error = first_error or e
                    self.rejects.append(_reject(raw_id(raw), r.source, raw, e.rule, f"{r.source}: {e.reason}"))
                    continue
                except RecursionError:  # parsed, but too deep to write back as JSON
                    r = _too_deep(r.source, r.text.rstrip("\n") if r.text is not None else _safe_raw(r.value))
                else:
                    n_ok += 1
                    self.rows.append(row)
                    continue
            self.rejects.append(_reject(raw_id(r.raw), r.source, meta_json({"raw": r.raw}), r.rule, r.reason))
        # A file none of whose records fits a format is a usage error, not N rejections.
        if n_seen and not n_ok and first_error is not None and first_error.rule == "read.unknown_format":
            raise InputError(f"{label}: {first_error.reason}")

    def take_records(self, df: pl.DataFrame, label: str) -> None:
        """A table already in the record layout: only its suspect rows are looked at."""
        suspects = _record_table_suspects(df)
        if suspects.any():
            bad = []
            for i in suspects.arg_true().to_list():
                row = df.row(i, named=True)
                problem = _record_problem(row)
                if problem is None:
                    continue
                bad.append(i)
                raw, src = _safe_raw(row), f"{label}:{i + 1}"
                self.rejects.append(_reject(row["id"] or raw_id(raw), src, meta_json({"raw": raw}), problem[0],
                                            f"{src}: {problem[1]}"))
            if bad:
                df = df.with_row_index("_i").filter(~pl.col("_i").is_in(bad)).drop("_i")
        self.flush()
        self.frames.append(df)

    def flush(self) -> None:
        # Keep input order across mixed inputs: raw rows read so far go before the next table.
        if self.rows:
            self.frames.append(records_frame(self.rows))
            self.rows.clear()


def _reject(rid: str, source: str, meta: str, rule: str, reason: str) -> dict:
    return {"id": rid, "messages": [], "source": source, "meta": meta,
            "stage": "read", "rule": rule, "reason": reason}

"""Read any supported input into records plus ``read.*`` rejections.

Files: JSONL, JSON (array, single object, or JSONL saved as .json), Parquet, CSV; folders:
a Hugging Face ``save_to_disk`` dataset (or DatasetDict), an earlier stage's output
(``kept.parquet``), or any folder of such files. A bad line or record becomes a rejected
row naming file and line; only a missing file or an unreadable kind of input is fatal
(:class:`InputError`, one line).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import polars as pl

from .formats import FORMATS, RecordError, convert
from .record import (
    RECORD_SCHEMA, REJECT_COLUMNS, empty_records, meta_json, raw_id, record_id, records_frame,
)

FILE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


class InputError(Exception):
    """A user mistake about the input as a whole: reported as one line, exit status 2."""


@dataclass
class ReadResult:
    records: pl.DataFrame
    rejected: pl.DataFrame


@dataclass
class _Raw:
    source: str
    value: object = None  # the parsed record
    raw: str | None = None  # set when parsing failed: the raw text
    rule: str | None = None
    reason: str | None = None


def _has_surrogates(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _iter_jsonl(path: Path, label: str) -> Iterator[_Raw]:
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
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
            except json.JSONDecodeError as e:
                yield _Raw(src, raw=text.rstrip("\n"), rule="read.parse_error",
                           reason=f"{src}: {e.msg} at column {e.colno}")
                continue
            # "\ud800" is valid JSON but decodes to a lone surrogate, which is not text
            if "\\u" in text and _has_surrogates(value):
                yield _Raw(src, raw=text.rstrip("\n"), rule="read.invalid_utf8",
                           reason=f"{src}: a \\u escape decodes to a lone surrogate, not a character")
                continue
            yield _Raw(src, value=value)


def _iter_json(path: Path, label: str) -> Iterator[_Raw]:
    data = path.read_bytes()
    text = data.decode("utf-8", "surrogateescape")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # JSON Lines saved with a .json name: common, so accept it
            yield from _iter_jsonl(path, label)
            return
        yield _Raw(f"{label}:{e.lineno}", raw=text[:2000], rule="read.parse_error",
                   reason=f"{label}:{e.lineno}: {e.msg} at column {e.colno}; the whole file is unreadable")
        return
    items = parsed if isinstance(parsed, list) else [parsed]
    for i, item in enumerate(items, 1):
        src = f"{label}:{i}"
        if _has_surrogates(item):
            yield _Raw(src, raw=json.dumps(item, ensure_ascii=True), rule="read.invalid_utf8",
                       reason=f"{src}: record {i} contains invalid UTF-8")
        else:
            yield _Raw(src, value=item)


def _iter_table(df: pl.DataFrame, label: str) -> Iterator[_Raw]:
    for i, row in enumerate(df.iter_rows(named=True), 1):
        yield _Raw(f"{label}:{i}", value=row)


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
    return all(c in df.schema and df.schema[c] == t for c, t in RECORD_SCHEMA.items())


def _expand(path: Path, label: str) -> Iterator[tuple[str, Path, str]]:
    """Yield (kind, path, label) for every readable unit under ``path``."""
    if not path.exists():
        raise InputError(f"{label}: no such file or folder")
    if path.is_file():
        kind = FILE_KINDS.get(path.suffix.lower())
        if kind is None:
            raise InputError(
                f"{label}: unknown input kind '{path.suffix or path.name}' "
                f"(expected one of {', '.join(sorted(FILE_KINDS))}, or a folder)"
            )
        yield kind, path, label
        return
    if (path / "kept.parquet").is_file():
        yield "stage", path / "kept.parquet", f"{label}/kept.parquet"
        return
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        for split in splits:
            yield "hf", path / split, f"{label}/{split}"
        return
    if (path / "state.json").is_file() and any(path.glob("*.arrow")):
        yield "hf", path, label
        return
    found = False
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir() or child.suffix.lower() in FILE_KINDS:
            found = True
            yield from _expand(child, f"{label}/{child.name}")
    if not found:
        raise InputError(f"{label}: folder has no readable input files")


def read_inputs(paths, fmt: str | None = None, mapping: dict[str, str] | None = None,
                labels: list[str] | None = None) -> ReadResult:
    """Read files, folders and URLs (fsspec: s3://...) into records and rejected rows.
    ``labels`` name the inputs in ``source`` (default: the paths as given)."""
    from .storage import local_copy

    labels = [str(p) for p in paths] if labels is None else list(labels)
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")
    frames, rows, rejects = [], [], []

    def take(raws: Iterator[_Raw], label: str) -> None:
        n_ok = n_seen = 0
        first_error = None
        for r in raws:
            n_seen += 1
            if r.rule is None:
                try:
                    messages, meta = convert(r.value, fmt, mapping)
                except RecordError as e:
                    raw = json.dumps(r.value, ensure_ascii=False, default=str)
                    first_error = first_error or e
                    rejects.append(_reject(raw_id(raw), r.source, raw, e.rule, f"{r.source}: {e.reason}"))
                    continue
                n_ok += 1
                rows.append({"id": record_id(messages), "messages": messages,
                             "source": r.source, "meta": meta_json(meta)})
            else:
                rejects.append(_reject(raw_id(r.raw), r.source, meta_json({"raw": r.raw}), r.rule, r.reason))
        # A file none of whose records fits a format is a usage error, not N rejections.
        if n_seen and not n_ok and first_error is not None and first_error.rule == "read.unknown_format":
            raise InputError(f"{label}: {first_error.reason}")

    for p, label in zip(paths, labels):
        with local_copy(p) as local:
            for kind, path, sub in _expand(local, label):
                if kind == "jsonl":
                    take(_iter_jsonl(path, sub), sub)
                elif kind == "json":
                    take(_iter_json(path, sub), sub)
                elif kind == "csv":
                    try:
                        df = pl.read_csv(path, infer_schema=False)
                    except Exception as e:  # polars raises several types; all mean "not CSV"
                        raise InputError(f"{sub}: cannot read as CSV: {str(e).splitlines()[0]}") from None
                    take(_iter_table(df, sub), sub)
                else:
                    try:
                        df = _read_arrow_dataset(path) if kind == "hf" else pl.read_parquet(path)
                    except Exception as e:
                        raise InputError(f"{sub}: cannot read: {str(e).splitlines()[0]}") from None
                    if _is_record_table(df) and fmt is None and not mapping:
                        _flush(rows, frames)
                        frames.append(df)
                    else:
                        take(_iter_table(df, sub), sub)
    _flush(rows, frames)
    records = pl.concat(frames, how="diagonal_relaxed") if frames else empty_records()
    rejected = pl.DataFrame(rejects or None, schema={**RECORD_SCHEMA, **REJECT_COLUMNS})
    return ReadResult(records, rejected)


def _flush(rows: list, frames: list) -> None:
    # Keep input order across mixed inputs: raw rows read so far go before the next table.
    if rows:
        frames.append(records_frame(rows))
        rows.clear()


def _reject(rid: str, source: str, meta: str, rule: str, reason: str) -> dict:
    return {"id": rid, "messages": [], "source": source, "meta": meta,
            "stage": "read", "rule": rule, "reason": reason}

"""What a lock records of a table: hashes of its content, not of the file's bytes.

A Parquet file's bytes depend on its writer (polars writes its own version into every
file's metadata; compression, page and row-group sizes, chunking), so a byte hash changes
with a library release while the data does not. A lock therefore records, for each table:

- ``content``: sha256 of a canonical encoding of the rows (below). The same rows written
  by another polars or pyarrow, with other compression or chunking, hash the same; one
  changed value does not.
- ``decisions``: the same encoding without the floating-point columns, and with the
  decimal numbers inside ``reason`` texts masked. Which records are on which side, by
  which rule, in which cluster: what a rebuild on another CPU must reproduce exactly.
- ``values``: the floating-point columns themselves (a summary for large tables), so a
  rebuild whose floats moved in their last bits can be told apart from one that changed.

Canonical encoding (version ``sft-curate-table/1``): the row count, then the columns
sorted by name; each column is its name, a type tag and its values, every part
length-prefixed. Values by type: validity as one byte per row; integers as int64 (uint64
for unsigned); floats as float64, with one NaN and 0.0 for -0.0; booleans as one byte;
strings and binaries as their lengths (int64) followed by their bytes; lists as their
lengths, then their items; structs as their fields sorted by name. Nulls encode as zero
or empty, after the validity that marks them. Dictionary-encoded columns are decoded
first, dates and times become int64 in their unit. Little-endian throughout.
"""
from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import numpy as np

ENCODING = "sft-curate-table/1"
# Floats that reach a lock are compared within this tolerance (absolute, or relative
# above 1): ~100x the movement seen between CPUs (MiniLM vectors move by ~1e-7).
TOLERANCE = 1e-5
# Up to this many values per float column the lock lists them all; beyond, a summary.
VALUES_LISTED = 2_000
_NUMBER = re.compile(rb"\d+\.\d+(?:e[-+]?\d+)?")


def table_digest(path: Path) -> dict:
    """``{"rows", "content", "decisions", "values"}`` for a Parquet file."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return digest_arrow(table)


def digest_arrow(table) -> dict:
    content = hashlib.sha256(ENCODING.encode())
    decisions = hashlib.sha256((ENCODING + "/decisions").encode())
    rows = struct.pack("<q", table.num_rows)
    content.update(rows)
    decisions.update(rows)
    values = {}
    for name in sorted(table.column_names):
        column = table.column(name).combine_chunks() if table.column(name).num_chunks != 1 else table.column(name).chunk(0)
        parts = _encode(column, name)
        for part in parts:
            content.update(part)
        if not _has_float(column.type):  # the same bytes, but for the numbers inside reasons
            for part in (_encode(column, name, mask_numbers=True) if name == "reason" else parts):
                decisions.update(part)
        values.update(_float_values(column, name))
    return {"rows": table.num_rows, "content": content.hexdigest(), "decisions": decisions.hexdigest(),
            "values": values}


def _bytes(b: bytes) -> list[bytes]:
    return [struct.pack("<q", len(b)), b]


def _encode(arr, name: str, mask_numbers: bool = False) -> list[bytes]:
    import pyarrow as pa

    arr = _plain(arr)
    t = arr.type
    out = _bytes(name.encode()) + _bytes(_tag(t).encode())
    valid = np.asarray(arr.is_valid(), dtype=np.uint8) if arr.null_count else np.ones(len(arr), np.uint8)
    out += _bytes(valid.tobytes())
    if pa.types.is_null(t):
        return out
    if pa.types.is_boolean(t):
        v = np.asarray(arr.fill_null(False), dtype=np.uint8)
        return out + _bytes(v.tobytes())
    if pa.types.is_integer(t):
        target = pa.uint64() if pa.types.is_unsigned_integer(t) else pa.int64()
        v = arr.cast(target).fill_null(0).to_numpy(zero_copy_only=False)
        return out + _bytes(np.ascontiguousarray(v, dtype="<u8" if target == pa.uint64() else "<i8").tobytes())
    if pa.types.is_floating(t):
        return out + _bytes(_canonical_floats(arr).tobytes())
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        if mask_numbers:
            items = [b"" if x is None else _NUMBER.sub(b"#", x) for x in arr.cast(pa.large_binary()).to_pylist()]
            lengths, data = np.array([len(x) for x in items], dtype="<i8"), b"".join(items)
        else:
            lengths, data = _string_parts(arr)
        return out + _bytes(lengths.tobytes()) + _bytes(data)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        lengths = np.asarray(arr.value_lengths().fill_null(0), dtype="<i8")
        child = arr.flatten()  # the items of the valid lists, offsets applied
        return out + _bytes(lengths.tobytes()) + _encode(child, "item", mask_numbers)
    if pa.types.is_struct(t):
        fields = arr.flatten()  # the struct's own offset and nulls applied to each field
        for i in sorted(range(t.num_fields), key=lambda i: t.field(i).name):
            out += _encode(fields[i], t.field(i).name, mask_numbers)
        return out
    raise TypeError(f"column {name}: type {t} has no canonical encoding")


def _plain(arr):
    """Decode dictionaries and views; dates, times and durations as int64 in their unit."""
    import pyarrow as pa

    t = arr.type
    if pa.types.is_dictionary(t):
        return _plain(arr.dictionary_decode())
    if hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t):
        return arr.cast(pa.large_string())
    if hasattr(pa.types, "is_binary_view") and pa.types.is_binary_view(t):
        return arr.cast(pa.large_binary())
    if hasattr(pa.types, "is_list_view") and (pa.types.is_list_view(t) or pa.types.is_large_list_view(t)):
        return arr.cast(pa.large_list(t.value_type))
    if pa.types.is_temporal(t):
        return arr.cast(pa.int64() if t.bit_width == 64 else pa.int32())
    if pa.types.is_decimal(t):
        return arr.cast(pa.large_string())
    return arr


def _tag(t) -> str:
    """A type's name as the encoding sees it: every string kind is "string", every signed
    integer "int", every float "float", so a writer's choice of width or layout is no change."""
    import pyarrow as pa

    if pa.types.is_null(t):
        return "null"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "uint" if pa.types.is_unsigned_integer(t) else "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return f"list<{_tag(_plain_type(t.value_type))}>"
    if pa.types.is_struct(t):
        fields = sorted((t.field(i).name, _tag(_plain_type(t.field(i).type))) for i in range(t.num_fields))
        return "struct<" + ",".join(f"{n}:{k}" for n, k in fields) + ">"
    return str(t)


def _plain_type(t):
    import pyarrow as pa

    return _plain(pa.array([], type=t)).type


def _string_parts(arr) -> tuple[np.ndarray, bytes]:
    import pyarrow as pa

    arr = arr.cast(pa.large_binary())
    lengths = np.asarray(pa.compute.binary_length(arr).fill_null(0), dtype="<i8")
    offsets = np.frombuffer(arr.buffers()[1], dtype="<i8")[arr.offset:arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    raw = memoryview(data)[offsets[0]:offsets[-1]].tobytes() if data is not None and len(arr) else b""
    if arr.null_count:  # a null slot may still hold bytes in the buffer: leave them out
        valid = np.asarray(arr.is_valid(), dtype=bool)
        starts, ends = offsets[:-1] - offsets[0], offsets[1:] - offsets[0]
        raw = b"".join(raw[s:e] for s, e, ok in zip(starts, ends, valid) if ok)
    return lengths, raw


def _canonical_floats(arr) -> np.ndarray:
    import pyarrow as pa

    v = np.array(arr.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False), dtype="<f8")
    v[np.isnan(v)] = np.nan  # one NaN
    v[v == 0] = 0.0          # no -0.0
    return v


def _has_float(t) -> bool:
    import pyarrow as pa

    if pa.types.is_floating(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _has_float(t.value_type)
    if pa.types.is_struct(t):
        return any(_has_float(t.field(i).type) for i in range(t.num_fields))
    return False


def _float_values(arr, name: str) -> dict:
    """Each float column (struct fields by dotted path, list items flattened) as listed
    values or a summary."""
    import pyarrow as pa

    t = arr.type
    if pa.types.is_floating(t):
        entry = {"n": len(arr), "nulls": arr.null_count}
        if len(arr) <= VALUES_LISTED:
            v = arr.cast(pa.float64()).to_pylist()
            entry["values"] = [None if x is None else (x if np.isfinite(x) else str(x)) for x in v]
        else:  # a summary, in numpy: no Python float per value
            v = arr.cast(pa.float64()).drop_null().to_numpy(zero_copy_only=False)
            finite = v[np.isfinite(v)]
            entry.update(sum=float(np.sum(finite)) if len(finite) else 0.0,
                         min=float(finite.min()) if len(finite) else None,
                         max=float(finite.max()) if len(finite) else None, nonfinite=int(len(v) - len(finite)))
        return {name: entry}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _float_values(arr.flatten(), f"{name}[]")
    if pa.types.is_struct(t):
        out = {}
        fields = arr.flatten()
        for i in range(t.num_fields):
            out.update(_float_values(fields[i], f"{name}.{t.field(i).name}"))
        return out
    return {}


def close(a, b, tol: float = TOLERANCE) -> bool:
    if a is None or b is None or isinstance(a, str) or isinstance(b, str):
        return a == b
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def values_within(old: dict, new: dict, tol: float = TOLERANCE) -> tuple[bool, float]:
    """Whether two ``values`` records agree within ``tol``; also the largest difference."""
    if old.keys() != new.keys():
        return False, float("inf")
    worst = 0.0
    for col, a in old.items():
        b = new[col]
        if a.get("n") != b.get("n") or a.get("nulls") != b.get("nulls"):
            return False, float("inf")
        if "values" in a and "values" in b:
            pairs = list(zip(a["values"], b["values"]))
        else:
            n = max(a.get("n", 1), 1)
            pairs = [(a.get("min"), b.get("min")), (a.get("max"), b.get("max"))]
            sa, sb = a.get("sum"), b.get("sum")
            if not close(sa, sb, tol * n) or a.get("nonfinite") != b.get("nonfinite"):
                return False, float("inf")
            if isinstance(sa, float) and isinstance(sb, float):
                # values that moved inside the range move the sum: a move the lock can see is
                # what tells float noise from other content (compare._step_verdict)
                worst = max(worst, abs(sa - sb) / n)
        for x, y in pairs:
            if not close(x, y, tol):
                return False, float("inf")
            if isinstance(x, float) and isinstance(y, float):
                worst = max(worst, abs(x - y))
    return True, worst

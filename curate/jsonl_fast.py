"""JSON Lines in the common chat/instruction layouts, read column-wise (polars): parse,
convert to records and hash their ids without a Python call per line.

A line is read here only when it is *proven* to be one this path handles exactly as the
per-line path (``curate.readers._iter_jsonl`` + ``curate.formats.convert``) would: one
regex over the whole line checks a strict grammar first, and every later check can only
send more lines away. Everything else - a parse error, a number or list where text is
expected, a lone surrogate escape, a duplicate key, a key with escapes, a float or nested
value in ``meta``, a turn field other than role/content/name/weight, a role not known, text
that is blank or only maybe blank, a byte order mark - goes back to the caller by line
number and is read one line at a time, so results are identical (tests/curate/
test_readers_fast.py holds the two paths equal on a hostile corpus).

The grammar: a line is an object of members; a member is ``"messages"`` with an array of
OpenAI turns, ``"conversations"`` with an array of ShareGPT turns, or a plain key
(letters, digits, ``_ . -`` and space) with a string, an integer of up to 18 digits,
true, false or null. A turn is role and content (from and value) in either order, then
optionally name (string or null) and weight (0, 1 or null), each at most once.

Then, column-wise: the members of each line in order (keys, and values as JSON text), the
format as ``detect`` picks it, the turns (arrays decoded by polars' JSON reader, flat fields
unescaped), ``meta`` written as ``json.dumps`` writes it, and ids by
:func:`curate.record.record_ids`.
"""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from .formats import CONVERTERS, FORMATS, OPENAI_ROLES, SHAREGPT_ROLES, SIGNATURE
from .record import MESSAGE_TYPE, json_strings, record_ids

_WS = r"[ \t\r\n]*"
# a JSON string: no raw control character; \u escapes of surrogates only as a valid pair
# (polars turns a lone one into NUL, Python's reader rejects it)
_STR = (r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u(?:[0-9a-cA-Ce-fE-F][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2}'
        r'|[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}))*"')
_SCALAR = rf"(?:{_STR}|0|-?[1-9][0-9]{{0,17}}|true|false|null)"
_KEY = r'"[A-Za-z0-9_. \-]*"'


def _member(key: str, value: str) -> str:
    return rf'"{key}"{_WS}:{_WS}{value}'


def _turns(role_key: str, text_key: str) -> str:
    role = _member(role_key, r'"[A-Za-z]{1,20}"')
    text = _member(text_key, _STR)
    name = _member("name", rf"(?:{_STR}|null)")
    weight = _member("weight", "(?:0|1|null)")
    sep = f"{_WS},{_WS}"
    turn = (rf"\{{{_WS}(?:{role}{sep}{text}|{text}{sep}{role})"
            rf"(?:{sep}{name}(?:{sep}{weight})?|{sep}{weight}(?:{sep}{name})?)?{_WS}\}}")
    return rf"\[{_WS}{turn}(?:{sep}{turn})*{_WS}\]"


_MEMBER = (rf"(?:{_member('messages', _turns('role', 'content'))}|{_member('conversations', _turns('from', 'value'))}"
           rf"|{_KEY}{_WS}:{_WS}{_SCALAR})")
_LINE = rf"^{_WS}\{{{_WS}{_MEMBER}(?:{_WS},{_WS}{_MEMBER})*{_WS}\}}{_WS}$"
# turns arrays are cut out of a proven line before its members are listed (they are decoded
# from the line itself); "[]" marks where one was (a proven line has no empty array)
_CUT = {key: _member(key, _turns(r, t)) for key, r, t in (("messages", "role", "content"), ("conversations", "from", "value"))}
_SKELETON_MEMBER = rf'(?:"(?:messages|conversations)"{_WS}:{_WS}\[\]|{_KEY}{_WS}:{_WS}{_SCALAR})'

# the blanks Python's str.strip() removes are all in this class (tests check every one), so
# a string with a character outside it is surely not blank; one of " \t\r\n" only surely is
_WIDE_BLANK = r"[\s\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_CHAT = {"openai": ("messages", "role", "content", OPENAI_ROLES),
         "sharegpt": ("conversations", "from", "value", SHAREGPT_ROLES)}
_FLAT = {"alpaca": ("instruction", "output"), "prompt_completion": ("prompt", "completion"),
         "qa": ("question", "answer")}


@dataclass
class FastRead:
    records: pl.DataFrame  # id, messages, source, meta and _line (the line number), in line order
    slow: list[int]  # line numbers (1-based) for the per-line path, in order


def read_lines(data: bytes, label: str, fmt: str | None) -> FastRead:
    """Records for the lines of ``data`` (a JSON Lines file's bytes) this path can prove it
    reads exactly; the other non-blank lines' numbers in ``slow``."""
    lines, slow = _split(data)
    lines = lines.filter(pl.col("text").str.contains(r"[^ \t\n\r\x0b\x0c]"))  # both paths skip blank lines
    proven = lines["text"].str.contains(_LINE)
    slow |= set(lines.filter(~proven)["_line"].to_list())
    lines = lines.filter(proven)
    members = _members(lines)
    kind = _line_formats(members, fmt)
    slow |= set(kind.filter(pl.col("fmt").is_null())["_line"].to_list())
    members = _mark_used(members.join(kind.filter(pl.col("fmt").is_not_null()), on="_line"))
    # a turns array the format does not read is meta: json.dumps would write it, here it is cut out
    slow |= set(members.filter(~pl.col("_used") & (pl.col("value") == "[]"))["_line"].to_list())
    parts = [_chat_turns(members, lines, f) for f in _CHAT] + [_flat_turns(members)]
    turns = pl.concat([p[0] for p in parts])
    for p in parts:
        slow |= p[1]
    # a conversation with no text is a rejection, so only one surely not blank stays here
    texty = turns.group_by("_line").agg(pl.col("content").str.contains(f"[^{_WIDE_BLANK[1:-1]}]").any())
    slow |= set(texty.filter(~pl.col("content"))["_line"].to_list())
    # a line that got no turns (none of the cases above should leave one) is read per line
    slow |= set(members.select("_line").unique().join(turns, on="_line", how="anti")["_line"].to_list())
    good = turns.select("_line").unique().filter(~pl.col("_line").is_in(list(slow)))
    turns = turns.join(good, on="_line").sort("_line", "_turn")
    return FastRead(_records(turns, _meta(members.join(good, on="_line")), label), sorted(slow))


def _split(data: bytes) -> tuple[pl.DataFrame, set[int]]:
    """_line (from 1), text: the file's lines, each with its newline, cut without copying
    (numpy finds the newlines, Arrow takes the offsets); and the numbers of the lines that
    are not UTF-8, left out of the table (blank there) for the per-line path to reject."""
    import numpy as np
    import pyarrow as pa

    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1
    offsets = np.concatenate(([0], ends, [] if ends.size and ends[-1] == len(data) else [len(data)])).astype(np.int64)
    n = len(offsets) - 1
    raw = pl.from_arrow(pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]))
    bad: set[int] = set()
    try:
        text = raw.cast(pl.String)
    except pl.exceptions.ComputeError:  # invalid UTF-8 somewhere: find the lines (rare)
        blanked = bytearray(data)
        for i in range(n):
            a, b = int(offsets[i]), int(offsets[i + 1])
            try:
                data[a:b].decode("utf-8")
            except UnicodeDecodeError:
                bad.add(i + 1)
                newline = data[b - 1:b] == b"\n"
                blanked[a:b] = b" " * (b - a - newline) + b"\n" * newline
        blank = bytes(blanked)
        text = pl.from_arrow(pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets),
                                                                          pa.py_buffer(blank)]))
    return pl.DataFrame({"text": text}).with_row_index("_line", 1), bad


def _members(lines: pl.DataFrame) -> pl.DataFrame:
    """One row per top-level member of each proven line: _line, _pos, key, value (its JSON
    text; "[]" for a turns array), in order. Each match starts at a key: the grammar leaves
    no other place where the member regex could start (a string value is consumed whole)."""
    skeleton = pl.col("text")
    for key, pattern in _CUT.items():
        skeleton = skeleton.str.replace_all(pattern, f'"{key}": []')
    m = (lines.select("_line", member=skeleton.str.extract_all(_SKELETON_MEMBER)).explode("member")
         .with_columns(_pos=pl.int_range(pl.len()).over("_line")))
    # the key has no quote or colon: the value starts after the first colon
    member = pl.col("member")
    return m.select("_line", "_pos", key=member.str.extract(r'^"([^"]*)"'),
                    value=member.str.slice(member.str.find(":", literal=True) + 1).str.strip_chars_start(" \t\r\n"))


def _line_formats(members: pl.DataFrame, fmt: str | None) -> pl.DataFrame:
    """_line, fmt: each line's format as :func:`curate.formats.detect` picks it (or the one
    given); null for a line with a duplicate key (Python keeps the last, polars the first)."""
    prio = {key: i for i, (key, _) in enumerate(SIGNATURE)}
    names = [name for _, name in SIGNATURE]
    agg = members.group_by("_line").agg(
        dup=pl.col("key").n_unique() < pl.len(),
        p=pl.col("key").replace_strict(prio, default=None, return_dtype=pl.Int64).min())
    chosen = pl.lit(fmt) if fmt else pl.col("p").replace_strict(dict(enumerate(names)), default=None,
                                                                  return_dtype=pl.String)
    return agg.select("_line", fmt=pl.when(~pl.col("dup")).then(chosen))


def _field(members: pl.DataFrame, key: str) -> pl.DataFrame:
    return members.filter(pl.col("key") == key).select("_line", pl.col("value").alias(key))


def _chat_turns(members: pl.DataFrame, text: pl.DataFrame, fmt: str) -> tuple[pl.DataFrame, set[int]]:
    """The turn table (_line, _turn, role, content, weight, name, tool_calls) of the lines in
    ``fmt`` (openai or sharegpt), decoded from the lines' ``text``, and the lines that need
    the per-line path."""
    key, role_key, text_key, roles = _CHAT[fmt]
    lines = members.filter(pl.col("fmt") == fmt)
    arrays = _field(lines, key).filter(pl.col(key) == "[]")
    # no array (absent, or a scalar in its place): convert() rejects the line
    slow = set(lines.select("_line").unique().join(arrays, on="_line", how="anti")["_line"].to_list())
    turn = pl.Struct({role_key: pl.String, text_key: pl.String, "name": pl.String, "weight": pl.Int64})
    # the other members are skipped by the decoder: the grammar proved them scalars, and the
    # key unique, so this array is the one convert() reads
    t = (text.join(arrays.select("_line"), on="_line").select("_line", t=pl.col("text").str.json_decode(
        pl.Struct({key: pl.List(turn)})).struct.field(key)).explode("t").unnest("t")
         .with_columns(_turn=pl.int_range(pl.len()).over("_line")))
    t = t.select("_line", "_turn",
                 role=pl.col(role_key).str.to_lowercase().replace_strict(roles, default=None, return_dtype=pl.String),
                 content=pl.col(text_key), weight="weight",
                 name=pl.when(pl.col("name") != "").then(pl.col("name")), tool_calls=pl.lit(None, pl.String))
    # an unknown role, or weight 1 on a turn that is not trained: convert() rejects the line
    bad = pl.col("role").is_null() | ((pl.col("weight") == 1) & (pl.col("role") != "assistant"))
    slow |= set(t.filter(bad)["_line"].to_list())
    return t, slow


def _flat_turns(members: pl.DataFrame) -> tuple[pl.DataFrame, set[int]]:
    """The turn table of the lines in the flat formats (alpaca, prompt_completion, qa), all
    at once, and the lines that need the per-line path (a required field missing or not
    text, an optional one neither text nor null, text whose blankness Python might judge
    differently)."""
    keys = sorted({k for f in _FLAT for k in _USED[f]})
    v, fmt = pl.col("value"), pl.col("fmt")
    lines = (members.filter(fmt.is_in(list(_FLAT)))
             .group_by("_line").agg(pl.first("fmt"), *(v.filter(pl.col("key") == k).first().alias(k) for k in keys)))
    # a field's kind: "str", null (absent or null), "other" (a number, true, false)
    kinds = {k: pl.when(pl.col(k).str.starts_with('"')).then(pl.lit("str")).when(pl.col(k) != "null").then(pl.lit("other"))
             for k in keys}
    lines = lines.select("_line", "fmt", *(_unquote(pl.when(kinds[k] == "str").then(pl.col(k))).alias(k) for k in keys),
                         *(kinds[k].alias(f"_{k}") for k in keys))
    user, answer, ok = pl.lit(None, pl.String), pl.lit(None, pl.String), pl.lit(False)
    for f, (u, a) in _FLAT.items():
        user, answer = pl.when(fmt == f).then(pl.col(u)).otherwise(user), pl.when(fmt == f).then(pl.col(a)).otherwise(answer)
        ok = pl.when(fmt == f).then(pl.col(f"_{u}").eq("str") & pl.col(f"_{a}").eq("str")).otherwise(ok)
    surely = {k: _blankness(pl.col(k)) for k in ("system", "input")}
    for k in surely:  # input only counts in alpaca; elsewhere it is meta, never read here
        fine = pl.col(f"_{k}").is_null() | pl.col(f"_{k}").eq("str") & surely[k].is_not_null()
        ok &= fine if k == "system" else (fmt != "alpaca") | fine
    slow = set(lines.filter(~ok.fill_null(False))["_line"].to_list())
    lines = lines.filter(ok.fill_null(False))
    user = pl.when((fmt == "alpaca") & ~surely["input"].fill_null(True)).then(user + "\n\n" + pl.col("input")).otherwise(user)
    system = pl.when(~surely["system"].fill_null(True)).then(pl.col("system"))
    t = lines.select("_line", turns=pl.concat_list(
        pl.struct(role=pl.lit("system"), content=system), pl.struct(role=pl.lit("user"), content=user),
        pl.struct(role=pl.lit("assistant"), content=answer)))
    t = (t.explode("turns").unnest("turns").filter(pl.col("content").is_not_null())
         .with_columns(_turn=pl.int_range(pl.len()).over("_line")))
    return t.select("_line", "_turn", "role", "content", weight=pl.lit(None, pl.Int64),
                    name=pl.lit(None, pl.String), tool_calls=pl.lit(None, pl.String)), slow


_ESCAPES = {"\\n": "\n", '\\"': '"', "\\\\": "\\", "\\t": "\t", "\\r": "\r", "\\/": "/", "\\b": "\b", "\\f": "\f"}


def _unquote(token: pl.Expr) -> pl.Expr:
    """A JSON string token (as the grammar admits it) decoded. Without a \\u escape every
    backslash starts one of eight two-character escapes, so one left-to-right replace decodes
    it (about 6x faster than json_decode); a token with one goes through json_decode."""
    simple = token.str.slice(1).str.strip_suffix('"').str.replace_many(list(_ESCAPES), list(_ESCAPES.values()))
    has_u = token.str.contains("\\u", literal=True)
    return pl.when(has_u).then(pl.when(has_u).then(token).str.json_decode(pl.String)).otherwise(simple)


def _blankness(text: pl.Expr) -> pl.Expr:
    """True: blank to Python's str.strip(); False: surely not; null: maybe (the per-line
    path decides)."""
    return (pl.when(~text.str.contains(r"[^ \t\r\n]")).then(True)
            .when(text.str.contains(f"[^{_WIDE_BLANK[1:-1]}]")).then(False))


def _mark_used(members: pl.DataFrame) -> pl.DataFrame:
    """members with _used: whether the line's format reads the member (else it is meta)."""
    used = pl.lit(False)
    for fmt, keys in _USED.items():
        used = pl.when(pl.col("fmt") == fmt).then(pl.col("key").is_in(keys)).otherwise(used)
    return members.with_columns(_used=used)


def _meta(members: pl.DataFrame) -> pl.DataFrame:
    """_line, meta: the members the format did not use, as ``json.dumps`` writes them
    (", " and ": " between, keys in input order). A string with no escape is already in
    Python's form (no raw quote, backslash or control character); one with an escape is
    decoded and written again."""
    rest = members.filter(~pl.col("_used")).sort("_line", "_pos")
    v = rest["value"]
    escaped = v.str.starts_with('"') & v.str.contains("\\", literal=True)
    if escaped.any():
        idx = escaped.arg_true()
        v = v.scatter(idx, json_strings(v.gather(idx).to_frame().select(_unquote(pl.first())).to_series()))
    pieces = rest.select("_line", p='"' + pl.col("key") + '": ' + v)
    return pieces.group_by("_line", maintain_order=True).agg(meta="{" + pl.col("p").str.join(", ") + "}")


# the fields each format reads (curate.formats): everything else is meta
_USED = {"openai": ["messages"], "sharegpt": ["conversations"], "alpaca": ["instruction", "input", "output", "system"],
         "prompt_completion": ["prompt", "completion", "system"], "qa": ["question", "answer", "system"]}
assert set(_USED) == set(FORMATS) == set(CONVERTERS)


def _records(turns: pl.DataFrame, meta: pl.DataFrame, label: str) -> pl.DataFrame:
    ids = record_ids(turns, "_line")
    messages = (turns.group_by("_line", maintain_order=True)
                .agg(messages=pl.struct("role", "content", "weight", "name", "tool_calls")))
    out = (messages.join(ids, on="_line").join(meta, on="_line", how="left")
           .select("_line", "id", pl.col("messages").cast(MESSAGE_TYPE), source=pl.lit(f"{label}:") + pl.col("_line").cast(pl.String),
                   meta=pl.col("meta").fill_null("{}")))
    return out.sort("_line").select("id", "messages", "source", "meta", "_line")

"""The text a rule reads, as polars expressions over the ``messages`` column.

Each turn's content is trimmed of blanks; turns of a field are joined with a blank line.
"""
from __future__ import annotations

from typing import Literal

import polars as pl

from .turnrows import flat_turns  # noqa: F401 (the MinHash dedup takes it from here)

Field = Literal["system", "user", "assistant", "last_assistant", "prompt", "conversation"]
FIELDS: tuple[str, ...] = ("system", "user", "assistant", "last_assistant", "prompt", "conversation")


def _role() -> pl.Expr:
    return pl.element().struct.field("role")


def field_messages(field: str) -> pl.Expr:
    m = pl.col("messages")
    if field == "conversation":
        return m
    if field == "prompt":
        return m.list.filter(_role() != "assistant")
    if field == "last_assistant":
        return m.list.filter(_role() == "assistant").list.tail(1)
    return m.list.filter(_role() == field)


# Only these are trimmed: a form feed or other control character at a turn's edge must
# stay visible to the control-character check, which reads the same text.
TRIM = " \t\n\r"


def turn_text(turn: pl.Expr) -> pl.Expr:
    """What a turn says: its content, and the tool calls it makes (JSON) where it makes any, so
    rules and dedup see a tool-calling turn as the calls it is, not as an empty turn."""
    content, calls = turn.struct.field("content"), turn.struct.field("tool_calls")
    # one string kernel: "\n" + null is null, and ignore_nulls then leaves the content alone
    return pl.when(content.is_null()).then(content).otherwise(
        pl.concat_str([content, pl.lit("\n") + calls], ignore_nulls=True))


def field_text(field: str) -> pl.Expr:
    if field == "last_assistant":  # one turn: no list to strip and join (half the time)
        last = pl.col("messages").list.filter(_role() == "assistant").list.last()
        return turn_text(last).str.strip_chars(TRIM).fill_null("")
    contents = field_messages(field).list.eval(turn_text(pl.element()).str.strip_chars(TRIM))
    return contents.list.join("\n\n").fill_null("")


def text_column(field: str) -> str:
    return f"__text_{field}"


def turns_column(field: str) -> str:
    return f"__turns_{field}"


ROLES = ("system", "user", "assistant")
SIGNATURE = "__sig"
# the turns a field takes, as letters of the signature (prompt: every turn but the answers)
LETTERS = {"system": "s", "user": "u", "assistant": "a", "prompt": "[su]"}


def signature(messages: pl.Series) -> pl.Series:
    """A letter a turn, its role's first (s/u/a): one string per conversation that says its
    shape. Null where a turn or its role is null."""
    return messages.list.eval(_role().str.slice(0, 1)).list.join("")


def build_frame(records: pl.DataFrame, fields: set[str], turn_fields: set[str]) -> pl.DataFrame:
    """One column of text per field in use (computed once, shared by every rule), the
    conversation's signature, and the messages."""
    messages = records.select("messages")
    if messages["messages"].n_chunks() > 1:  # list kernels run ~15% faster on one chunk than on many
        messages = messages.rechunk()
    m = messages["messages"]
    sig = signature(m)
    columns = {}
    if fields:
        texts = turn_texts(m)
        # rows whose letters name their roles exactly take the fast paths below
        # (a null turn leaves no letter: the letters' length must be the turns' count)
        exact = (m.list.eval(_role().is_in(ROLES)).list.all().fill_null(False)
                 & (sig.str.len_bytes() == m.list.len()).fill_null(False))
        shared = _shared(fields, sig, exact)
        for f in sorted(fields, key=lambda f: f in shared):  # a shared field after the one it shares
            columns[text_column(f)] = (columns[text_column(shared[f])] if f in shared
                                       else _field(f, m, texts, sig, exact))
        columns = {text_column(f): columns[text_column(f)] for f in sorted(fields)}
    out = [s.alias(name) for name, s in columns.items()]
    if turn_fields:
        out += messages.select(
            [field_messages(f).list.len().alias(turns_column(f)) for f in sorted(turn_fields)]).get_columns()
    return pl.DataFrame(out + [sig.alias(SIGNATURE), m])


# field -> (the field it equals, letters no signature holds then): with no system turn the
# prompt is the user's turns; with one answer at most the last answer is the answers
SAME = {"prompt": ("user", "s"), "last_assistant": ("assistant", "a.*a")}


def _shared(fields: set[str], sig: pl.Series, exact: pl.Series) -> dict[str, str]:
    """The fields whose text is another's on every row (every row's roles exact, and the
    letters that would tell them apart in no signature): built once, not twice (0.005 s
    each on 100k conversations)."""
    todo = {f: same for f, same in SAME.items() if f in fields and same[0] in fields}
    if not todo or not exact.all():
        return {}
    return {f: other for f, (other, letters) in todo.items() if not sig.str.contains(letters).any()}


def turn_text_of(m: pl.Series) -> pl.Expr:
    """turn_text(pl.element()) for the turns of ``m``: where no turn calls a tool, the
    content alone (the same text, twice as fast)."""
    calls = m.explode().struct.field("tool_calls")
    if calls.null_count() == calls.len():
        return pl.element().struct.field("content")
    return turn_text(pl.element())


def turn_texts(m: pl.Series) -> pl.Series:
    """Each turn's text, trimmed, as a list per conversation (what field_text joins)."""
    from .bytescan import trimmed_contents  # numba: not for the dedup, which imports this module

    made = trimmed_contents(m)
    return m.list.eval(turn_text_of(m).str.strip_chars(TRIM)) if made is None else made


def _field(field: str, m: pl.Series, texts: pl.Series, sig: pl.Series, exact: pl.Series) -> pl.Series:
    """field_text(field), built from the turn texts computed once for all fields: every
    turn joined (conversation), or the one turn the field takes, picked by position.
    Rows where the field takes several turns (or whose roles are not all known) take
    field_text itself."""
    if field == "conversation":  # field_text's own expression, from the shared turn texts
        return texts.list.join("\n\n").fill_null("")
    frame = pl.DataFrame({"t": texts, "sig": sig})
    if field == "last_assistant":
        count = sig.str.count_matches("a", literal=True)
        at = sig.str.find("a", literal=True)
        if (count > 1).any():  # the last of several: find it from the end
            at = sig.str.len_bytes().cast(pl.Int64) - 1 - sig.str.reverse().str.find("a", literal=True)
        slow = ~exact
    else:
        letter = LETTERS[field]
        literal = len(letter) == 1
        count = sig.str.count_matches(letter, literal=literal)
        at = sig.str.find(letter, literal=literal)
        slow = ~exact | (count > 1)
    picked = frame.select(pl.when(pl.lit(count) == 0).then(pl.lit("", pl.String))
                          .otherwise(pl.col("t").list.get(pl.lit(at), null_on_oob=True)).fill_null("")).to_series()
    idx = slow.arg_true()
    if len(idx):
        general = pl.DataFrame({"messages": m.gather(idx)}).select(field_text(field)).to_series()
        picked = picked.scatter(idx, general)
    return picked

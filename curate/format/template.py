"""Chat templates: which one, its {% generation %} markers, and an independent check.

The trained part of a conversation is found by rendering with a template whose assistant
content and closing end-of-turn token sit inside ``{% generation %}`` (what TRL's
``assistant_only_loss`` reads). Shipped templates carry the markers; a tokenizer's own
template without them gets them added (:func:`add_generation_markers`), and the result
is checked against a second method that needs no markers at all: rendering prefixes of
the conversation (:func:`prefix_spans`).
"""
from __future__ import annotations

import functools
import re

from ..config import ConfigError
from ..shipped import RULES, resolve

TEMPLATES = RULES / "templates"
SHIPPED = ("chatml", "llama3", "mistral", "alpaca")
MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")
CONTENT = re.compile(r"""message(?:\[['"]content['"]\]|\.content)""")


class NoMarkers(ConfigError):
    """The template prints assistant content in a way the marker pass cannot rewrite."""


def refusal(e: Exception) -> str:
    """Why a template would not render a conversation: jinja's own message (raise_exception,
    undefined names), or the Python error an expression in it ran into."""
    from jinja2 import TemplateError

    return str(e) if isinstance(e, TemplateError) else f"{type(e).__name__}: {e}"


def compile_check(text: str, label: str) -> None:
    """A template that cannot compile is a config error before any record: one line naming
    it and the Jinja line (rendering would otherwise reject every record with the same error)."""
    from jinja2 import TemplateSyntaxError

    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError:  # pragma: no cover - a transformers without it compiles at render time
        return
    try:
        _compile_jinja_template(text)
    except TemplateSyntaxError as e:
        raise ConfigError(f"{label}: the chat template does not compile: line {e.lineno}: {e.message}") from None


def template_kwargs(tokenizer) -> dict:
    return {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}


def render_many(template: str, conversations: list[list[dict]], tokenizer) -> list[tuple[str, list]]:
    """Render many conversations with their generation spans: the compiled template is
    driven directly (transformers' per-call wrapper costs as much as the rendering)."""
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template, _render_with_assistant_indices
    except ImportError:  # a transformers without these helpers: the public path, slower
        return [_guarded(lambda m=m: render(template, m, tokenizer, spans=True)) for m in conversations]
    compiled = _compile_jinja_template(template)
    kwargs = template_kwargs(tokenizer)
    specials = end_of_turn_tokens(tokenizer)  # once per batch (Gemma has thousands)
    parts = wants_parts(template, tokenizer)
    out = []
    for messages in conversations:
        if parts:
            messages = _as_parts(messages)
        try:
            text, indices = _render_with_assistant_indices(compiled, messages, None, None, False, **kwargs)
        except Exception as e:  # the template refuses this conversation (roles, say), or fails on it
            out.append((None, refusal(e)))
            continue
        out.append((text, settle(text, [tuple(x) for x in indices], tokenizer, specials)))
    return out


def _guarded(fn):
    try:
        return fn()
    except ConfigError:
        raise
    except Exception as e:
        return None, refusal(e)


def render(template: str, messages: list[dict], tokenizer, add_generation_prompt: bool = False,
           spans: bool = False):
    if wants_parts(template, tokenizer):
        messages = _as_parts(messages)
    return _render_one(template, messages, tokenizer, add_generation_prompt, spans)


def _render_one(template: str, messages: list[dict], tokenizer, add_generation_prompt: bool = False,
                spans: bool = False):
    from transformers.utils.chat_template_utils import render_jinja_template

    texts, indices = render_jinja_template(
        conversations=[messages], chat_template=template, return_assistant_tokens_mask=spans,
        add_generation_prompt=add_generation_prompt, **template_kwargs(tokenizer))
    return (texts[0], settle(texts[0], [tuple(x) for x in indices[0]], tokenizer)) if spans else texts[0]


_SENTINEL = "\ue000system\ue001"  # private-use characters: in no template's own text


def default_system(template: str, tokenizer) -> tuple[str | None, bool]:
    """(the text the template puts in a system turn when a conversation has none, else None;
    whether an empty system turn keeps that text out). SmolLM2's template, for one, writes "You
    are a helpful AI assistant named SmolLM, trained by Hugging Face" into every conversation
    without a system turn: text the data does not have, trained on as context. Found by rendering
    one conversation with no system turn and with a placeholder one: what the first has where
    the second has the placeholder is the default."""
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    try:
        bare = render(template, chat, tokenizer)
        marked = render(template, [{"role": "system", "content": _SENTINEL}] + chat, tokenizer)
    except Exception:  # noqa: BLE001 (a template that refuses system turns: nothing to compare)
        return None, True
    if _SENTINEL not in marked:
        return None, True
    p = 0
    while p < min(len(bare), len(marked)) and bare[p] == marked[p]:
        p += 1
    s = 0
    while s < min(len(bare), len(marked)) - p and bare[-1 - s] == marked[-1 - s]:
        s += 1
    added = bare[p:len(bare) - s].strip()
    if not added:
        return None, True
    try:
        empty = render(template, [{"role": "system", "content": ""}] + chat, tokenizer)
    except Exception:  # noqa: BLE001
        return added, False
    return added, added not in empty


def settle(text: str, spans: list[tuple[int, int]], tokenizer, specials: list[str] | None = None) -> list[tuple[int, int]]:
    """Spans that end on their closing special token: whitespace a template's markers also
    cover after it (TRL's gemma3_training.jinja marks '<end_of_turn>\\n') is formatting, which
    generation never produces (it stops at the token), so it is not trained. Adjacent spans are one
    (diffusion_gemma_training marks the content and its <turn|> apart)."""
    out = []
    for s, e in _merged(spans):
        if e > s and text[e - 1].isspace():
            specials = specials if specials is not None else end_of_turn_tokens(tokenizer)
            core = text[s:e].rstrip()
            if core and any(core.endswith(t) for t in specials):
                e = s + len(core)
        out.append((s, e))
    return out


def template_file(template: str):
    """The file ``--template`` names: a shipped template, a file, or TRL's template of that
    family (its marked copy where TRL has one); None when there is none. The one place this
    is decided: the format stage reads it, a pipeline hashes it (FormatConfig.files)."""
    if template in SHIPPED:
        return TEMPLATES / f"{template}.jinja"
    path = resolve(template)
    if not path.is_file():
        path = family_template(template) or path
    return path if path.is_file() else None


def choose(template: str | None, tokenizer) -> tuple[str, str, str | None]:
    """(name, template text with generation markers, the unmarked original when the
    markers were added here)."""
    if template in SHIPPED:
        return template, template_file(template).read_text(encoding="utf-8"), None
    if template is not None:
        path = template_file(template)
        if path is None:
            raise ConfigError(f"--template {template}: not a file, nor one of {', '.join(SHIPPED)}, nor a chat "
                              f"template TRL ships ({', '.join(sorted(trl_templates())[:6]) or 'trl is not installed'}"
                              ", ...; see docs/templates.md)")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"chat template {path}: not UTF-8 text") from None
        name, label = str(path), f"chat template {path}"
    else:
        text = tokenizer.chat_template
        if not text or not isinstance(text, str):
            raise ConfigError("the tokenizer has no chat template: pass --template with a family name (gemma3, "
                              f"qwen2_5, llama3, ...: TRL's set, see docs/templates.md), {', '.join(SHIPPED)} "
                              "or a .jinja file")
        name, label = "tokenizer", "the tokenizer's chat template"
        copy = marked_copy(text)
        if copy is not None:  # a published template TRL keeps a marked copy of: the copy marks its turns
            return f"tokenizer ({copy.stem})", copy.read_text(encoding="utf-8"), None
    compile_check(text, label)
    if MARKER.search(text):
        return name, text, None
    try:
        marked = add_generation_markers(text, end_of_turn_tokens(tokenizer), name)
        compile_check(marked, label)
        if not _markers_hold(marked, text, tokenizer):
            raise NoMarkers(f"the markers added to the {name} chat template do not mark its assistant turns")
        return name, marked, text
    except NoMarkers:
        return name, text, text  # no markers: masks come from prefix rendering alone
    except ConfigError:
        return name, text, text  # the rewrite did not compile: prefix rendering alone, as above


@functools.lru_cache(maxsize=1)
def trl_templates() -> dict:
    """name -> file of the chat templates TRL ships (located, not imported: importing trl is slow)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        return {}
    folder = Path(list(spec.submodule_search_locations)[0]) / "chat_templates"
    return {p.stem: p for p in sorted(folder.glob("*.jinja"))}


def family_template(name: str):
    """The file for ``--template NAME``: TRL's template of that name, its marked copy
    (``NAME_training``) where TRL ships one; None when TRL has no such template."""
    found = trl_templates()
    if name not in found:
        return None
    return found.get(f"{name}_training", found[name])


def marked_copy(text: str):
    """TRL's marked copy of a published template identical to ``text``, or None."""
    return _published_with_copies().get(text)


@functools.lru_cache(maxsize=1)
def _published_with_copies() -> dict:
    """{the text of a TRL template that has a marked copy: that copy's file}, read once."""
    found = trl_templates()
    out = {}
    for name, path in found.items():
        copy = found.get(f"{name}_training")
        if copy is not None and not name.endswith("_training"):
            out.setdefault(path.read_text(encoding="utf-8"), copy)
    return out


def _markers_hold(marked: str, original: str, tokenizer) -> bool:
    """Markers added by :func:`add_generation_markers` are kept only where, on the probes the
    template renders, they change nothing in the text and each assistant content lies in its own
    span (a template that prints content in more than one place, or elsewhere, defeats the rewrite)."""
    tried = 0
    for messages in PROBES:
        try:
            text = render(original, messages, tokenizer)
        except Exception:
            continue
        tried += 1
        try:
            again, spans = render(marked, messages, tokenizer, spans=True)
        except Exception:
            return False
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        if again != text or len(spans) != len(answers) or any(
                a.strip() not in again[s:e] for a, (s, e) in zip(answers, spans)):
            return False
    return tried > 0


def end_of_turn_tokens(tokenizer) -> list[str]:
    """The tokenizer's special-token strings (longest first): what message text is shielded
    from, and what a turn's end is looked for among. Which of them the template really closes
    assistant turns with is :func:`closing_tokens`."""
    names = set(tokenizer.all_special_tokens) | {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    return sorted((n for n in names if n), key=len, reverse=True)


def spans_of(template: str, conversations: list[list[dict]], tokenizer) -> list[tuple]:
    """(text, spans) per conversation, from the markers when the template has them, else by
    prefix rendering; (None, reason) where it refuses or cannot be measured."""
    many = render_many if MARKER.search(template) else prefix_render_many
    return many(template, conversations, tokenizer)


def closing_tokens(template: str, tokenizer, probes: list[list[dict]] | None = None) -> list[str]:
    """The special tokens this template closes assistant turns with (longest first), read off
    the trained spans of the built-in probes (and ``probes``): a trained turn must end on one of
    these, and generation stops at them. Never the tokenizer's other special tokens (Gemma has
    thousands: <pad>, <unusedNN>, ...), which would let a turn that does not end pass as ended."""
    specials = end_of_turn_tokens(tokenizer)
    found = set()
    for batch in (PROBES, list(probes or [])):  # the records only where the template refuses every probe
        for text, spans in spans_of(template, batch, tokenizer) if batch else ():
            if text is None:
                continue
            for s, e in spans:
                token = next((t for t in specials if text[s:e].endswith(t)), None)
                if token:
                    found.add(token)
        if found:
            break
    return sorted(found, key=len, reverse=True)


def stop_token_ids(template: str | None, tokenizer) -> list[int]:
    """Token ids generation stops at: the template's closing tokens and the end-of-sequence token
    (they differ for Gemma: <end_of_turn> and <eos>)."""
    ids = set(tokenizer.convert_tokens_to_ids(closing_tokens(template or tokenizer.chat_template, tokenizer)))
    ids.add(tokenizer.eos_token_id)
    return sorted(ids - {None, tokenizer.unk_token_id})


def _split_terms(expr: str) -> list[str]:
    """Split a Jinja expression on top-level '+' (outside quotes and brackets)."""
    terms, depth, quote, cur = [], 0, None, ""
    for ch in expr:
        if quote:
            cur += ch
            if ch == quote and not cur.endswith("\\" + quote):
                quote = None
        elif ch in "'\"":
            quote, cur = ch, cur + ch
        elif ch in "([{":
            depth, cur = depth + 1, cur + ch
        elif ch in ")]}":
            depth, cur = depth - 1, cur + ch
        elif ch == "+" and depth == 0:
            terms.append(cur.strip())
            cur = ""
        else:
            cur += ch
    terms.append(cur.strip())
    return terms


def _literal(term: str) -> str | None:
    m = re.fullmatch(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)\"""", term)
    if not m:
        return None
    raw = m.group(1) if m.group(1) is not None else m.group(2)
    return raw.encode("utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")


def add_generation_markers(template: str, eot_tokens: list[str], name: str) -> str:
    """Wrap the assistant content and the end-of-turn token that follows it in
    ``{% generation %}``, for templates that print ``message['content'] + '<eot>' ...``
    in one ``{{ }}`` expression (ChatML, SmolLM2, Qwen and most others)."""
    out, changed = [], False
    pos = 0
    for m in re.finditer(r"\{\{(-?)(.*?)(-?)\}\}", template, flags=re.S):
        expr = m.group(2)
        if not CONTENT.search(expr):
            continue
        terms = _split_terms(expr)
        idx = next((i for i, t in enumerate(terms) if CONTENT.fullmatch(t)), None)
        if idx is None or idx + 1 >= len(terms):
            continue
        first = terms[idx + 1]
        lit = _literal(first)
        if first == "eos_token":
            eot_expr, rest = "eos_token", terms[idx + 2:]
        elif lit is not None and any(lit.startswith(t) for t in eot_tokens):
            tok = next(t for t in eot_tokens if lit.startswith(t))
            eot_expr = repr(tok)
            tail = lit[len(tok):]
            rest = ([repr(tail)] if tail else []) + terms[idx + 2:]
        else:
            continue
        prefix = terms[:idx]
        content = terms[idx]
        before = "{{ " + " + ".join(prefix) + " }}" if prefix else ""
        after = "{{ " + " + ".join(rest) + " }}" if rest else ""
        replacement = (before + "{% if message['role'] == 'assistant' %}{% generation %}{{ " + content + " + "
                       + eot_expr + " }}{% endgeneration %}" + after + "{% else %}{{ " + " + ".join(terms[idx:])
                       + " }}{% endif %}")
        out.append(template[pos:m.start()] + replacement)
        pos = m.end()
        changed = True
    if not changed:
        raise NoMarkers(f"cannot add {{% generation %}} markers to the {name} chat template automatically")
    return "".join(out) + template[pos:]


def prefix_spans(template: str, messages: list[dict], tokenizer) -> list[tuple[int, int]] | None:
    """Character spans of each assistant content plus its end-of-turn token, found by
    rendering prefixes (no markers needed). None when the template does not render
    prefix-consistently, so the method cannot say."""
    full = render(template, messages, tokenizer)
    eots = end_of_turn_tokens(tokenizer)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(template, messages[:i], tokenizer, add_generation_prompt=True)
        upto = render(template, messages[: i + 1], tokenizer)
        if not (full.startswith(upto) and upto.startswith(before)):
            return None
        start = len(before)
        content = m["content"] if isinstance(m["content"], str) else ""
        if not upto.startswith(content, start):
            # a template that trims message content (Gemma's `| trim`), or puts a space between the generation
            # prompt and the answer (SmolVLM's "Assistant:" + " " + text)
            content = content.strip()
            start += len(upto[start:]) - len(upto[start:].lstrip())
            if not upto.startswith(content, start):
                return None
        end = start + len(content)
        if m.get("tool_calls"):  # the template prints the calls after the content: the turn ends at its end-of-turn
            found = [(upto.find(t, end), t) for t in eots if upto.find(t, end) != -1]
            end, eot = min(found) if found else (len(upto), None)
        else:
            eot = next((t for t in eots if upto.startswith(t, end)), None)
        spans.append((start, end + len(eot) if eot else end))
    return spans


NOT_PREFIX_CONSISTENT = (
    "the template renders this conversation's earlier turns differently once later turns follow (or changes an "
    "assistant turn's text beyond trimming it), so its trained tokens cannot be measured without {% generation %} "
    "markers: pass --template with a marked copy (see rules/templates/)")


def prefix_render_many(template: str, conversations: list[list[dict]], tokenizer) -> list[tuple[str, list]]:
    """render_many for templates without markers: spans by prefix rendering."""
    out = []
    for messages in conversations:
        try:
            spans = prefix_spans(template, messages, tokenizer)
        except ConfigError:
            raise
        except Exception as e:
            out.append((None, refusal(e)))
            continue
        if spans is None:
            out.append((None, NOT_PREFIX_CONSISTENT))
            continue
        out.append((render(template, messages, tokenizer), spans))
    return out


def check_template(template: str, original: str | None, tokenizer, probes: list[list[dict]]) -> None:
    """The marked template must render as the original and mark what prefix rendering finds; and
    a template that fails on every probe (the built-in ones and the first records) is refused,
    rather than rejecting every record for the same reason."""
    marked = bool(MARKER.search(template))
    if _drops_text(template, tokenizer):
        raise ConfigError(PARTS)
    if not marked:  # nothing to compare with: prefix rendering is then the only method
        _prefix_consistent(template, tokenizer)
    failures = []
    for messages in probes:
        try:
            if not marked:
                render(template, messages, tokenizer)
                break
            text, spans = render(template, messages, tokenizer, spans=True)
        except Exception as e:
            failures.append(refusal(e))
            continue  # a conversation this template refuses proves nothing either way
        if original is not None and text != render(original, messages, tokenizer):
            raise ConfigError("adding generation markers changed what the template renders: pass --template")
        if not _plain(messages):  # tool calls, content parts: what prefix rendering cannot see, markers can
            continue
        try:
            expected = prefix_spans(template, messages, tokenizer)
        except Exception:  # a prefix the template refuses: prefix rendering cannot say
            expected = None
        if expected is None:
            continue
        specials = end_of_turn_tokens(tokenizer)
        # a span of special tokens alone (phi3_training marks the final <|endoftext|>) adds no answer text;
        # but an empty answer's span is one too ("<|im_end|>" alone): kept where it covers a span prefix
        # rendering finds, so that an empty turn in a probe record trains its end-of-turn token (as it
        # does past the probes) instead of failing the run on a count of spans
        spans = [(a, b) for a, b in spans if _strip_specials(text[a:b], specials).strip()
                 or any(a <= c and b >= d for c, d in expected)] or spans
        if len(spans) == len(expected) and all(a <= c and b >= d for (a, b), (c, d) in zip(spans, expected)):
            heads = [text[a:c] for (a, _), (c, _) in zip(spans, expected)]
            tails = [text[d:b] for (_, b), (_, d) in zip(spans, expected)]
            odd = next((t for t in tails if _strip_specials(t, specials).strip()), None)
            # equal; or the markers also cover closing special tokens after the one prefix rendering stops at
            # (Cohere 2), or text of the generation prompt that holds no special token (Qwen's "\n", Qwen 3.5's
            # empty <think></think>): what TRL's marked copies train, kept as they mark it
            if odd is None and not any(_strip_specials(h, specials) != h for h in heads):
                continue
            if odd is None:
                raise ConfigError(f"the template's generation markers cover characters {spans}, prefix rendering "
                                  f"finds {expected}: the markers would train the turn header {heads!r}")
            raise ConfigError(f"the template closes assistant turns with {odd!r}, which is not a special token of "
                              "this tokenizer, so the model could not learn to stop: use a template made for this "
                              "tokenizer, or add the token to it")
        raise ConfigError(f"the template's generation markers cover characters {spans}, prefix rendering finds "
                          f"{expected}: the trained tokens would not be exactly the assistant turns")
    if probes and len(failures) == len(probes):
        raise ConfigError(f"the chat template fails on every conversation it was tried on ({len(probes)}: simple "
                          f"user/assistant probes and the first records), so it would reject every record: "
                          f"{' '.join(failures[0].split())[:300]}")


PARTS = ("the chat template does not render the text of a simple user/assistant conversation, neither as text "
         "content nor as a list of parts ({'type': 'text', 'text': ...}): use the family's text template")

_PARTS_CACHE: dict = {}


def _as_parts(messages: list[dict]) -> list[dict]:
    """Text content as one text part, for templates that read content as a list of parts."""
    return [dict(m, content=[{"type": "text", "text": m["content"]}]) if isinstance(m.get("content"), str) else m
            for m in messages]


def wants_parts(template: str, tokenizer) -> bool:
    """A vision-language template (SmolVLM, Idefics3, LLaVA-NeXT) that reads message content as a
    list of parts and fails on, or drops, text content: records are then rendered with their text
    as one text part. Decided once per template and tokenizer on a probe."""
    key = (template, id(tokenizer))
    if key not in _PARTS_CACHE:
        messages = PROBES[0]
        try:
            text = _render_one(template, messages, tokenizer)
            plain_ok = all(m["content"].strip() in text for m in messages)
        except Exception:
            plain_ok = False
        parts_ok = False
        if not plain_ok:
            try:
                text = _render_one(template, _as_parts(messages), tokenizer)
                parts_ok = all(m["content"].strip() in text for m in messages)
            except Exception:
                parts_ok = False
        if len(_PARTS_CACHE) > 64:
            _PARTS_CACHE.clear()
        _PARTS_CACHE[key] = parts_ok
    return _PARTS_CACHE[key]


def _drops_text(template: str, tokenizer) -> bool:
    """The template renders a simple conversation without its text, whatever the content's shape."""
    messages = PROBES[0]
    try:
        text = render(template, messages, tokenizer)
    except Exception:
        return False
    return any(m["content"].strip() not in text for m in messages)


def _plain(messages: list[dict]) -> bool:
    """Only role and string content: what prefix rendering measures."""
    return all(isinstance(m.get("content"), str) and not m.get("tool_calls") for m in messages)


def _merged(spans):
    out = []
    for s, e in spans:
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _strip_specials(text: str, specials: list[str]) -> str:
    for t in specials:
        text = text.replace(t, "")
    return text


def _prefix_consistent(template: str, tokenizer) -> None:
    """An unmarked template must be measurable by prefix rendering on the built-in probes (a
    record it cannot measure is then that record's rejection, not the run's end)."""
    for messages in PROBES:
        try:
            spans = prefix_spans(template, messages, tokenizer)
        except ConfigError:
            raise
        except Exception:  # a probe this template refuses (roles, say) proves nothing
            continue
        if spans is None:
            raise ConfigError("the chat template does not render conversations prefix-consistently (an assistant "
                              "turn is not the text a generation prompt continues into) and has no {% generation %} "
                              "markers: pass --template with a marked copy (TRL's *_training templates by name, e.g. "
                              "--template qwen3_training; see docs/templates.md)")


PROBES = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6, of course."}],
    [{"role": "user", "content": "Ünïcödé ✓ 漢字"}, {"role": "assistant", "content": "Très bien — 好的"}],
]

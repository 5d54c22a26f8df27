"""Chat templates: which one, its {% generation %} markers, and an independent check.

The trained part of a conversation is found by rendering with a template whose assistant
content and closing end-of-turn token sit inside ``{% generation %}`` (what TRL's
``assistant_only_loss`` reads). Shipped templates carry the markers; a tokenizer's own
template without them gets them added (:func:`add_generation_markers`), and the result
is checked against a second method that needs no markers at all: rendering prefixes of
the conversation (:func:`prefix_spans`).
"""
from __future__ import annotations

import re

from ..config import ConfigError, note_read
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
    out = []
    for messages in conversations:
        try:
            text, indices = _render_with_assistant_indices(compiled, messages, None, None, False, **kwargs)
        except Exception as e:  # the template refuses this conversation (roles, say), or fails on it
            out.append((None, refusal(e)))
            continue
        out.append((text, [tuple(x) for x in indices]))
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
    from transformers.utils.chat_template_utils import render_jinja_template

    texts, indices = render_jinja_template(
        conversations=[messages], chat_template=template, return_assistant_tokens_mask=spans,
        add_generation_prompt=add_generation_prompt, **template_kwargs(tokenizer))
    return (texts[0], [tuple(x) for x in indices[0]]) if spans else texts[0]


def choose(template: str | None, tokenizer) -> tuple[str, str, str | None]:
    """(name, template text with generation markers, the unmarked original when the
    markers were added here)."""
    if template in SHIPPED:
        note_read(TEMPLATES / f"{template}.jinja")
        return template, (TEMPLATES / f"{template}.jinja").read_text(encoding="utf-8"), None
    if template is not None:
        path = resolve(template)
        if not path.is_file():
            raise ConfigError(f"--template {template}: not a file, nor one of {', '.join(SHIPPED)}")
        note_read(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"chat template {path}: not UTF-8 text") from None
        name, label = str(path), f"chat template {path}"
    else:
        text = tokenizer.chat_template
        if not text or not isinstance(text, str):
            raise ConfigError("the tokenizer has no chat template: pass --template "
                              f"({', '.join(SHIPPED)} or a .jinja file)")
        name, label = "tokenizer", "the tokenizer's chat template"
    compile_check(text, label)
    if MARKER.search(text):
        return name, text, None
    try:
        marked = add_generation_markers(text, end_of_turn_tokens(tokenizer), name)
        compile_check(marked, label)
        return name, marked, text
    except NoMarkers:
        return name, text, text  # no markers: masks come from prefix rendering alone
    except ConfigError:
        return name, text, text  # the rewrite did not compile: prefix rendering alone, as above


def end_of_turn_tokens(tokenizer) -> list[str]:
    """Special-token strings that can close a turn (longest first)."""
    names = set(tokenizer.all_special_tokens) | {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    return sorted((n for n in names if n), key=len, reverse=True)


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
        if not upto.startswith(m["content"], start):
            return None
        end = start + len(m["content"])
        if m.get("tool_calls"):  # the template prints the calls after the content: the turn ends at its end-of-turn
            found = [(upto.find(t, end), t) for t in eots if upto.find(t, end) != -1]
            end, eot = min(found) if found else (len(upto), None)
        else:
            eot = next((t for t in eots if upto.startswith(t, end)), None)
        spans.append((start, end + len(eot) if eot else end))
    return spans


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
            raise ConfigError("the chat template does not render conversations prefix-consistently and has no "
                              "{% generation %} markers: pass --template with a marked copy (see rules/templates/)")
        out.append((render(template, messages, tokenizer), spans))
    return out


def check_template(template: str, original: str | None, tokenizer, probes: list[list[dict]]) -> None:
    """The marked template must render as the original and mark what prefix rendering finds; and
    a template that fails on every probe (the built-in ones and the first records) is refused,
    rather than rejecting every record for the same reason."""
    marked = bool(MARKER.search(template))
    failures = []
    for messages in probes:
        try:
            if not marked:  # nothing to compare with: prefix rendering is then the only method
                render(template, messages, tokenizer)
                break
            text, spans = render(template, messages, tokenizer, spans=True)
        except Exception as e:
            failures.append(refusal(e))
            continue  # a conversation this template refuses proves nothing either way
        if original is not None and text != render(original, messages, tokenizer):
            raise ConfigError("adding generation markers changed what the template renders: pass --template")
        try:
            expected = prefix_spans(template, messages, tokenizer)
        except Exception:  # a prefix the template refuses: prefix rendering cannot say
            expected = None
        if expected is None or spans == expected:
            continue
        if len(spans) == len(expected) and all(a == c and b > d for (a, b), (c, d) in zip(spans, expected)):
            tail = text[expected[0][1]:spans[0][1]]
            raise ConfigError(f"the template closes assistant turns with {tail!r}, which is not a special token of "
                              "this tokenizer, so the model could not learn to stop: use a template made for this "
                              "tokenizer, or add the token to it")
        raise ConfigError(f"the template's generation markers cover characters {spans}, prefix rendering finds "
                          f"{expected}: the trained tokens would not be exactly the assistant turns")
    if probes and len(failures) == len(probes):
        raise ConfigError(f"the chat template fails on every conversation it was tried on ({len(probes)}: simple "
                          f"user/assistant probes and the first records), so it would reject every record: "
                          f"{' '.join(failures[0].split())[:300]}")


PROBES = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6, of course."}],
    [{"role": "user", "content": "Ünïcödé ✓ 漢字"}, {"role": "assistant", "content": "Très bien — 好的"}],
]

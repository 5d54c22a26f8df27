"""Render a rubric (a Jinja template) into the prompt each judge sees for a record."""
from __future__ import annotations

from ..config import ConfigError


def cut_middle(text: str, limit: int) -> str:
    """Keep the start and the end of an over-long message: both carry the task and the answer."""
    if len(text) <= limit:
        return text
    half = (limit - 40) // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


def compile_rubric(source: str, name: str):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                                        trim_blocks=True, lstrip_blocks=True)
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"{name}:{e.lineno}: rubric is not valid Jinja: {e.message}") from None


def render_prompts(messages_column: list[list[dict]], rubric_source: str, rubric_name: str,
                   scale: tuple[int, int], mode: str, max_chars: int) -> list[str]:
    """One prompt per record. Variables: ``messages`` (role/content, long ones cut), ``transcript``,
    ``instruction`` (the last user turn), ``response`` (the last assistant turn), ``scale_min``,
    ``scale_max``, ``mode`` (json or logprobs: how the judge must answer)."""
    import jinja2

    template = compile_rubric(rubric_source, rubric_name)
    lo, hi = scale
    out = []
    for messages in messages_column:
        shown = [{"role": m["role"], "content": cut_middle(m["content"] or "", max_chars)} for m in messages]
        last = lambda role: next((m["content"] for m in reversed(shown) if m["role"] == role), "")  # noqa: E731
        transcript = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in shown)
        try:
            text = template.render(messages=shown, transcript=transcript, instruction=last("user"),
                                   response=last("assistant"), scale_min=lo, scale_max=hi, mode=mode)
        except jinja2.TemplateError as e:
            raise ConfigError(f"{rubric_name}: rubric failed to render: {e}") from None
        except (ArithmeticError, ValueError, TypeError, LookupError, AttributeError, MemoryError) as e:
            # a Python error raised by the template's own expressions (1 / 0, the sandbox's
            # range limit): the rubric's fault, as a Jinja error is
            raise ConfigError(f"{rubric_name}: rubric failed to render: {type(e).__name__}: {e}") from None
        out.append(text.strip())
    return out

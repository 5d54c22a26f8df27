"""Secrets out of every text a judge server sends back (reasons, error messages) and out of
our own error texts, before anything is stored, cached or printed.

Servers echo what they were sent: an Authorization header in a 401 or 404 message, or, from a
hostile or careless judge, in the ``reason`` of an answer. The API key itself is replaced
wherever it appears (also URL-encoded), and so is anything shaped like a credential: bearer
tokens, ``api_key=...`` pairs, provider key formats, JWTs and passwords in URLs."""
from __future__ import annotations

import re
from urllib.parse import quote

MASK = "***"
_PATTERNS = [
    # Authorization: Bearer <token>, and a bearer token anywhere else (needs a digit: not prose)
    (re.compile(r"(?i)\b(bearer\s+)(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{12,}"), r"\1" + MASK),
    # key: value and key=value pairs (headers, query strings, JSON, env files)
    (re.compile(r"""(?ix)\b((?:proxy-)?authorization|x-api-key|api[-_]?key|access[-_]?token|auth[-_]?token
                    |client[-_]?secret|secret[-_]?key|password|passwd)
                    (["']?\s*[:=]\s*["']?)(?!\*\*\*)(?!bearer\s)[^\s"',;&}]{6,}"""), r"\1\2" + MASK),
    # provider key formats: OpenAI/Anthropic/others (sk-, pk-, rk-), Hugging Face, Groq, xAI,
    # GitHub, GitLab, Replicate, Google, AWS access key ids
    (re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"), MASK),
    (re.compile(r"\b(?:hf|gsk|xai|ghp|gho|ghu|ghs|ghr|github_pat|glpat|r8)[_-][A-Za-z0-9_]{16,}"), MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), MASK),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MASK),  # JWT
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + MASK + "@"),  # user:pass@host
]
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x80-\x9f]+")


def scrub(text: str, secrets=()) -> str:
    """``text`` with each of ``secrets`` (at least 4 characters) and anything credential-shaped
    replaced by ***."""
    for s in secrets:
        if s and len(s) >= 4:
            for form in {s, quote(s, safe="")}:
                text = text.replace(form, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def one_line(text: str, limit: int = 200) -> str:
    """A server's text fit for a one-line error: control characters (newlines, terminal
    escapes) become spaces, and it is cut to ``limit`` characters."""
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."

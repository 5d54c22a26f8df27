"""Literals a regex's every match contains: a cheap pass over a whole column (a substring
search) finds the few texts the regex itself then has to read.

Rules' regexes run in Rust's engine; this reads them with Python's parser, so it answers
only for the syntax both read alike and says "unknown" (None) for anything else (nested
or set-operation classes, \\< \\> \\b{...} word boundaries, verbose mode, a brace that is
not a counted repetition). Under case-insensitivity a literal is compared with ASCII
letters in either case; Rust also folds k and s with the Kelvin sign and the long s, so
texts holding either are always candidates, and a non-ASCII character ends a literal.
"""
from __future__ import annotations

import re

import polars as pl

try:  # Python 3.11+
    from re import _constants as C, _parser
except ImportError:  # 3.10: the same modules under their old names
    import sre_constants as C
    import sre_parse as _parser

# characters outside ASCII that Rust's (?i) equates with an ASCII letter (tests check the table)
FOLDS_TO_ASCII = {"k": "\u212a", "s": "\u017f"}
_UNSURE = re.compile(r"\\[<>]|\\[bB]\{|\(\?[a-zA-Z-]*x")
# a literal shorter than this is in nearly every text: searching for it costs more than it saves
MIN_LITERAL = 2
# up to this many literals Aho-Corasick finds a prefilter (memchr on their first bytes)
FEW = 3
_REPEAT = re.compile(r"\{\d+(,\d*)?\}")


def _plain(pattern: str) -> bool:
    """Whether Python's parser reads ``pattern`` as Rust's does, as far as literals go."""
    if _UNSURE.search(pattern):
        return False
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            if c == "[" or pattern[i:i + 2] in ("&&", "--", "~~"):
                return False  # nested classes and set operations: Rust only
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 1 + (pattern[i + 1:i + 2] == "^")
            i += pattern[i:i + 1] == "]"  # a ']' first in a class is itself, in both
            continue
        elif c == "{" and not _REPEAT.match(pattern, i):
            return False
        i += 1
    return True


def required(pattern: str) -> tuple[list[str], bool] | None:
    """Literals one of which every match of ``pattern`` contains, and whether they are
    compared case-insensitively (ASCII); None when there are none or it cannot tell."""
    if not _plain(pattern):
        return None
    try:
        tree = _parser.parse(pattern)
    except Exception:  # Rust-only syntax: no prefilter, the regex reads every text
        return None
    ci = bool(tree.state.flags & re.IGNORECASE)
    found = _seq(list(tree), ci)
    if found is None:
        return None
    lits, folded = found
    return (sorted(lits), folded) if min(map(len, lits)) >= MIN_LITERAL else None


def _better(a, b):
    """The stronger of two requirements: shortest literal up to 4 characters, then fewer
    literals, then longer."""
    if a is None or b is None:
        return a or b
    key = lambda r: (min(4, min(map(len, r[0]))), -len(r[0]), min(map(len, r[0])))  # noqa: E731
    return a if key(a) >= key(b) else b


def _seq(items, ci):
    best, run = None, ""
    for op, av in items + [(None, None)]:
        if op is C.LITERAL and (not ci or chr(av).isascii()):
            run += chr(av)
            continue
        if run:
            best = _better(best, ({run}, ci))
            run = ""
        if op is not None:
            best = _better(best, _node(op, av, ci))
    return best


def _node(op, av, ci):
    if op is C.SUBPATTERN:
        _, add, remove, sub = av
        return _seq(list(sub), (ci or bool(add & re.IGNORECASE)) and not remove & re.IGNORECASE)
    if op in (C.MAX_REPEAT, C.MIN_REPEAT):
        lo, _, sub = av
        return _seq(list(sub), ci) if lo >= 1 else None
    if op is C.BRANCH:
        lits, folded = set(), False
        for branch in av[1]:
            r = _seq(list(branch), ci)
            if r is None:
                return None  # a branch with no literal: the alternation has none
            lits |= r[0]
            folded = folded or r[1]
        return lits, folded
    return None  # classes, anchors, look-arounds (Rust has none): no literal


def candidates(texts: pl.Series, pattern: str, most: int | None = None) -> pl.Series | None:
    """True where ``pattern`` may match (every text it matches, and others); None when
    nothing cheaper than the regex itself says so.

    Only for patterns with a word boundary: Rust's lazy DFA gives up on a Unicode \\b in
    non-ASCII text and the slower engines read on (a `when` regex over every prompt:
    0.07 s on 100k records; its literals: 0.005 s). Without one the regex engine finds
    and searches for the literals itself, faster than a pass before it. ``most``: None
    where the pattern needs more than that many literals."""
    if not re.search(r"\\[bB]", pattern):
        return None
    found = required(pattern)
    if found is None or (most is not None and len(found[0]) > most):
        return None
    lits, folded = found
    if len(lits) <= FEW:
        extra = sorted({FOLDS_TO_ASCII[c] for lit in lits for c in lit.lower() if c in FOLDS_TO_ASCII}) if folded else []
        if folded and len(lits) > 1:
            # Aho-Corasick folding case finds a prefilter for one literal, not for two
            # ("```" or "python": 0.023 s on 100k conversations; the lazy DFA 0.011)
            return ascii_folded_any(texts, lits + extra).fill_null(False)
        return texts.str.contains_any(lits + extra, ascii_case_insensitive=folded).fill_null(False)
    if not folded:
        return texts.str.contains("(?-u)(?:" + "|".join(literal(p) for p in lits) + ")").fill_null(False)
    lits = lits + sorted({FOLDS_TO_ASCII[c] for lit in lits for c in lit.lower() if c in FOLDS_TO_ASCII})
    return ascii_folded_any(texts, lits).fill_null(False)


# Rust regex's meta characters (regex_syntax::is_meta_character): escaped, they match themselves
_META = frozenset("\\.+*?()|[]{}^$#&-~")
# an alternation this long compiles slower than Aho-Corasick searches (and nears the size limit)
MAX_ALTERNATION = 20_000


def literal(phrase: str) -> str:
    """A Rust regex matching ``phrase`` itself."""
    return "".join("\\" + c if c in _META else c for c in phrase)


def ascii_folded_any(text: pl.Series, phrases: list[str]) -> pl.Series:
    """Where a text contains one of ``phrases``, ASCII letters in either case: what
    ``str.contains_any(phrases, ascii_case_insensitive=True)`` says, three times as fast on
    a hundred phrases (the regex engine's lazy DFA; Aho-Corasick folding case finds no
    prefilter and walks every byte)."""
    if sum(len(p) for p in phrases) > MAX_ALTERNATION:
        return text.str.contains_any(phrases, ascii_case_insensitive=True)
    # (?-u): case folds ASCII letters only and the phrases' other characters match as bytes
    return text.str.contains("(?i-u)(?:" + "|".join(literal(p) for p in phrases) + ")")

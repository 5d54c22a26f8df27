"""`curate report`: one self-contained HTML page about a build (and training runs on it)."""
from __future__ import annotations

from pathlib import Path

from .collect import collect, summary


def write_report(build, out, train_dirs=None) -> list[str]:
    """Write the page for ``build`` to ``out``; returns the text summary."""
    from .html import render

    data = collect(Path(build), [Path(d) for d in train_dirs] if train_dirs else None)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(data), encoding="utf-8")
    return summary(data)


__all__ = ["collect", "summary", "write_report"]

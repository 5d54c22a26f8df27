"""`curate report`: one self-contained HTML page about a build (and training runs on it)."""
from __future__ import annotations

from pathlib import Path

from .collect import collect, summary


def write_report(build, out, train_dirs=None) -> list[str]:
    """Write the page for ``build`` to ``out``; returns the text summary."""
    from .html import render

    from ..storage import local_copies, local_copy, output_file

    from ..config import ConfigError

    with local_copy(build) as folder, local_copies(train_dirs or []) as trains:
        try:
            data = collect(Path(folder), [Path(d) for d in trains] if trains else None)
        except ConfigError as e:  # name the URL, not its scratch copy
            raise ConfigError(str(e).replace(str(folder), str(build).rstrip("/"))) from None
    data["build"] = str(build).rstrip("/")  # the URL, not its scratch copy
    with output_file(out) as page:
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(render(data), encoding="utf-8")
    return summary(data)


__all__ = ["collect", "summary", "write_report"]

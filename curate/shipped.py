"""The files the toolkit ships as package data: rule sets, keyword lists, chat templates,
rubrics and juries under ``curate/rules`` (the repository's ``rules/`` points there).

A path a user gives is used as it is when it exists. A relative ``rules/...`` path that
does not exist where the command runs names the shipped file, so a pipeline or a command
written in the repository (``--rules rules/default.yaml``, ``jury: rules/juries/offline.yaml``)
works from any folder after ``pip install``. Locks name shipped files ``rules/...`` wherever
the package is installed, so two installs agree.
"""
from __future__ import annotations

import os
from pathlib import Path

RULES = Path(__file__).resolve().parent / "rules"


def resolve(path, prefix: str = "rules", root: Path = RULES) -> Path:
    """``path`` itself when it exists (or is absolute), else the shipped file it names."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    parts = Path(os.path.normpath(p)).parts
    head = Path(prefix).parts
    if parts[:len(head)] == head and len(parts) > len(head):
        shipped = root.joinpath(*parts[len(head):])
        if shipped.exists():
            return shipped
    return p


def shipped_name(path, prefix: str = "rules", root: Path = RULES) -> str | None:
    """``rules/...`` for a file inside the shipped folder (however it was reached), else None."""
    try:
        rel = Path(path).resolve().relative_to(root)
    except ValueError:
        return None
    return (Path(prefix) / rel).as_posix()

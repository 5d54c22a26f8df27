"""The output folder of `curate run`: whose it is, who is building into it, and what may be
deleted in it.

The toolkit deletes only what it made. It marks the output folder with :data:`MARKER` (also
the lock file) and every step folder it writes with :data:`STEP_MARKER`; a folder without
the mark is the user's, so a non-empty output folder that is not a build is refused, and a
user's ``07-score/`` in a build is refused rather than replaced. One build at a time holds
an exclusive ``flock`` on the marker: a second run into the same folder waits for it (saying
who holds it) or gives up after a timeout, so two builds never delete each other's steps.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from ..config import ConfigError

MARKER = ".curate-build"
STEP_MARKER = ".curate-step"
# How long a second build waits for the first (seconds); CURATE_LOCK_TIMEOUT overrides it.
LOCK_TIMEOUT = 3600.0
POLL = 0.2
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _legacy_build(out: Path) -> bool:
    """A build folder written before markers existed: it has a step folder with its record
    (a manifest.json alone may be anyone's, and a build removes its manifest.json)."""
    return any(out.glob("[0-9][0-9]-*/step.json"))


def _marker(path: Path) -> bool:
    """A marker the toolkit wrote: a regular file, not a link (a link named like one, from an
    unpacked archive, may point at anyone's file: the build lock would truncate it)."""
    return path.is_file() and not path.is_symlink()


def claim(out: Path) -> None:
    """Make sure ``out`` is a build folder (or becomes one): refuse a non-empty folder the
    toolkit did not make, whose files a build would mix with or delete."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: output is a file, not a folder")
    if (out / MARKER).is_symlink():
        raise ConfigError(f"{out / MARKER}: a symbolic link where `curate run` keeps its build lock; "
                          "remove it (the build never writes through a link)")
    if out.is_dir() and not _marker(out / MARKER) and any(out.iterdir()) and not _legacy_build(out):
        raise ConfigError(f"{out}: output folder is not empty and was not made by `curate run` "
                          f"(no {MARKER}); choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)


def is_ours(folder: Path) -> bool:
    """A step folder (or its temporary) the toolkit wrote: marked, or (older builds) with a step record."""
    return _marker(folder / STEP_MARKER) or _marker(folder / "step.json")


def mark_step(folder: Path) -> None:
    (folder / STEP_MARKER).write_text("written by curate run; the folder is replaced when the step reruns\n",
                                      encoding="utf-8")


def remove_ours(path: Path) -> bool:
    """Delete a step folder or temporary the toolkit wrote (an empty folder too: a build killed
    before it marked it); leave anything else. Returns whether it was removed."""
    if path.is_dir() and not path.is_symlink():
        if is_ours(path):
            shutil.rmtree(path)
            return True
        with contextlib.suppress(OSError):
            path.rmdir()  # only if empty
            return True
    return False


def refuse_foreign_step(folder: Path) -> None:
    """A step is about to replace ``folder``: refuse when it is not the toolkit's."""
    if folder.is_symlink() or folder.exists() and not (folder.is_dir() and is_ours(folder)):
        raise ConfigError(f"{folder}: not written by `curate run` (no {STEP_MARKER}) but named like one of "
                          "its steps; move it out of the output folder")


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another build"


@contextlib.contextmanager
def locked(out: Path, echo=print, timeout: float | None = None):
    """Hold the build lock of ``out`` for the block (waiting for another build to finish)."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: build unlocked, as before
        yield
        return
    if timeout is None:
        timeout = float(os.environ.get("CURATE_LOCK_TIMEOUT", LOCK_TIMEOUT))
    path = out / MARKER
    try:  # never through a link (claim refuses one; this closes the gap between the two)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise ConfigError(f"{path}: a symbolic link where `curate run` keeps its build lock; remove it") from None
    try:
        deadline, told = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise ConfigError(f"{out}: another `curate run` is building into this folder ({_holder(path)}); "
                                  f"gave up after {timeout:g}s")
            if not told:
                echo(f"{out}: waiting for the build by {_holder(path)} to finish")
                told = True
            time.sleep(POLL)
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # nobody holds it now (and two finished builds' folders stay byte-equal)
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def writing(out: Path, what: str):
    """Turn a failed write under ``out`` (a full disk, a read-only mount, a quota) into one
    line naming the folder; the half-written step stays a temporary that no run trusts."""
    try:
        yield
    except OSError as e:
        # only a write's failure: a reader's or a judge's error (also OSErrors) says what it is
        inside = bool(e.filename) and Path(os.path.abspath(e.filename)).is_relative_to(os.path.abspath(out))
        if e.errno not in WRITE_ERRORS and not inside:
            raise
        why = "no space left on device" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
        where = f" ({e.filename})" if e.filename else ""
        raise ConfigError(f"{out}: cannot write {what}: {why}{where}") from None

"""Judge answers on disk: SQLite keyed by a hash of (model, prompt, parameters), where the
parameters are everything else that shapes a score: the judge's sampling and the jury's scale.

Only answers that became a score are stored, so a rerun retries failures and replays the
rest without a call. A stored answer is replayed only if it is still a score on the jury's
scale (a hand-edited or foreign row is asked again, never trusted). WAL mode and a busy timeout let several processes share one file;
one connection per thread inside a process.

A database SQLite finds corrupt (a malformed page, a damaged file that still starts as an
SQLite database) is moved aside to NAME.corrupt-TIME, never deleted, and an empty cache takes its place, with one line on
stderr saying so; anything else that stops the cache (a folder in its place, a database of
another schema, no permission, a file that is no SQLite database at all) is a one-line
ConfigError naming the file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sqlite3
import sys
import threading
import time
from pathlib import Path

from ..config import ConfigError

OPEN_TIMEOUT_S = 60.0


def cache_key(model: str, prompt: str, params: dict) -> str:
    # no judge name, URL or key: the same model asked the same way is the same answer,
    # whichever server or alias served it
    blob = json.dumps({"model": model, "prompt": prompt, "params": params}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def judge_params(judge, jury) -> dict:
    """The key's parameters for ``judge`` in ``jury``: its sampling (Judge.params), the scale,
    which bounds a JSON score and picks the digits a logprobs score is the expectation over,
    and for a JSON judge over HTTP whether it asks for JSON mode (constrained decoding on
    servers that have it: another answer)."""
    p = {**judge.params(), "scale": list(jury.scale)}
    if judge.backend == "openai" and judge.mode == "json":
        p["json_mode"] = judge.json_mode
    return p


_DIGITS = re.compile(r"digit probabilities ((?:\d:[0-9.]+ ?)+)\(scale mass")


def replayable(value, judge, scale: tuple[int, int], legacy: bool) -> tuple[float, str] | None:
    """(score, reason) of a stored answer if it may stand as this judge's score on ``scale``.

    ``legacy``: stored under the key without the scale (before it was part of the key). A JSON
    judge's answer does not depend on the scale unless the prompt does, and the prompt is in
    the key: it stands when it is on the scale. A logprobs score does depend on it, and its
    reason lists the digits it was the expectation over: it stands when they are the scale's."""
    if not isinstance(value, dict):
        return None
    score, reason = value.get("score"), value.get("reason")
    lo, hi = scale
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score) \
            or not lo <= score <= hi:
        return None
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        return None
    if legacy and judge.mode == "logprobs":
        m = _DIGITS.match(reason)
        if not m or [int(p.split(":")[0]) for p in m.group(1).split()] != list(range(lo, hi + 1)):
            return None
    return float(score), reason


SCHEMA = "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, model TEXT NOT NULL, value TEXT NOT NULL)"


class JudgeCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"judge cache {self.path}: cannot create its folder ({e.strerror or e})") from None
        self._local = threading.local()
        self._guard(lambda: _when_free(lambda: self._conn().execute(SCHEMA)))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=OPEN_TIMEOUT_S, isolation_level=None)
            try:
                # switching a new file to WAL takes an exclusive lock, and SQLite answers "database
                # is locked" at once, without the busy timeout, when another process (score actors
                # opening the same cache) holds it: retry until the file is in WAL mode
                _when_free(lambda: conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                           or conn.execute("PRAGMA journal_mode=WAL"))
                conn.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
        return conn

    def _guard(self, step):
        """Run ``step`` on the cache; a corrupt file is moved aside and ``step`` run again on a
        fresh one; any other failure is one line naming the file."""
        for attempt in range(2):
            try:
                if attempt:  # the file in place now (ours, or another process's) has the table
                    _when_free(lambda: self._conn().execute(SCHEMA))
                return step()
            except sqlite3.DatabaseError as e:
                if attempt == 0 and _corrupt(e):
                    self._move_aside(e)
                    continue
                if attempt == 0 and _io_error(e):
                    # another process set the corrupt file aside under this connection: open
                    # again, on what is in its place now (a real I/O error fails the second time)
                    self.close()
                    continue
                raise ConfigError(f"judge cache {self.path}: {_why(e)}") from None
            except OSError as e:  # sqlite3 reports most of these as OperationalError, but not all
                raise ConfigError(f"judge cache {self.path}: {e.strerror or e}") from None

    def _move_aside(self, err: sqlite3.DatabaseError) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, the second look below still applies
            fcntl = None

        self.close()
        # several processes (score actors) may find the same file corrupt: one moves it, under a
        # lock on the folder, and the others, finding a sound file there after the lock, use it
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            if fcntl is not None:
                fcntl.flock(folder, fcntl.LOCK_EX)
            if _sound(self.path):
                return
            if not _was_sqlite(self.path):
                # a file that never was a database (the cache path naming an input, a typo away
                # from a user's file) is not ours to move: said, left alone. Looked at under the
                # lock: another process's new cache (empty until its first write) is sound above
                raise ConfigError(f"judge cache {self.path}: the file there is not an SQLite database, "
                                  "nor a judge cache: point the jury's cache at another file")
            stamp = time.strftime("%Y%m%dT%H%M%S")
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
            n = 1
            while any(Path(f"{aside}{x}").exists() for x in ("", "-wal", "-shm", "-journal")):
                n += 1
                aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            try:
                for suffix in ("", "-wal", "-shm", "-journal"):  # its journal belongs to it, not to the new file
                    if Path(f"{self.path}{suffix}").exists():
                        os.rename(f"{self.path}{suffix}", f"{aside}{suffix}")
            except OSError as e:
                raise ConfigError(f"judge cache {self.path} is corrupt ({err}) and could not be moved aside "
                                  f"({e.strerror or e}): move or delete it") from None
        finally:
            os.close(folder)
        sys.stderr.write(f"warning: judge cache {self.path} was corrupt ({err}): moved aside to {aside.name}, "
                         f"starting an empty cache (answers in it are asked again)\n")

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        return self._guard(lambda: self._get_many(keys))

    def _get_many(self, keys: list[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        conn = self._conn()
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 500):
            chunk = unique[i:i + 500]
            rows = conn.execute(f"SELECT key, value FROM answers WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            for k, v in rows:
                try:
                    out[k] = json.loads(v)
                except (TypeError, ValueError, RecursionError):  # a row we did not write: asked again
                    continue
        return out

    def replay(self, judge, jury, keys: list[str], legacy_keys: list[str]) -> dict[str, tuple[float, str]]:
        """{key: (score, reason)} of the stored answers that stand for ``judge`` in ``jury``
        (see ``replayable``); ``legacy_keys[i]`` is ``keys[i]`` without the scale."""
        got = self.get_many(list(keys))
        out, misses = {}, []
        for key, old in zip(keys, legacy_keys):
            hit = replayable(got[key], judge, jury.scale, legacy=False) if key in got else None
            if hit is not None:
                out[key] = hit
            else:
                misses.append((key, old))
        old_got = self.get_many([old for _, old in misses]) if misses else {}  # the old keys of misses only
        for key, old in misses:
            hit = replayable(old_got[old], judge, jury.scale, legacy=True) if old in old_got else None
            if hit is not None:
                out[key] = hit
        return out

    def put(self, key: str, model: str, value: dict) -> None:
        self._guard(lambda: self._conn().execute("INSERT OR REPLACE INTO answers (key, model, value) VALUES (?, ?, ?)",
                                                 (key, model, json.dumps(value, sort_keys=True))))

    def put_many(self, rows: list[tuple[str, str, dict]]) -> None:
        self._guard(lambda: self._put_many(rows))

    def _put_many(self, rows: list[tuple[str, str, dict]]) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO answers (key, model, value) VALUES (?, ?, ?)",
                             [(k, m, json.dumps(v, sort_keys=True)) for k, m, v in rows])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _corrupt(e: sqlite3.DatabaseError) -> bool:
    name = getattr(e, "sqlite_errorname", "")
    return name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or (
        type(e) is sqlite3.DatabaseError and ("not a database" in str(e) or "malformed" in str(e)))


def _io_error(e: sqlite3.DatabaseError) -> bool:
    return getattr(e, "sqlite_errorname", "").startswith("SQLITE_IOERR") or "disk I/O error" in str(e)


def _was_sqlite(path: Path) -> bool:
    """Whether ``path`` starts as every SQLite database does (its 16-byte header string): a
    corrupt cache does, a user's file in its place does not."""
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _why(e: sqlite3.DatabaseError) -> str:
    text = str(e)
    if "no such column" in text or "has no column" in text or "no such table" in text:
        return f"not a judge cache ({text}); point the jury's cache at another file"
    if "locked" in text or "busy" in text:
        return f"{text} (another process held it for {OPEN_TIMEOUT_S:.0f} s)"
    return text


def _sound(path: Path) -> bool:
    """Whether ``path`` (gone counts) is a database SQLite reads through without corruption."""
    if not path.exists():
        return True
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=OPEN_TIMEOUT_S)
    except sqlite3.Error:
        return False
    try:
        return conn.execute("PRAGMA quick_check(1)").fetchone()[0] == "ok"
    except sqlite3.DatabaseError as e:
        return not _corrupt(e)
    finally:
        conn.close()


def _when_free(step):
    """Run ``step``, retrying while another process holds a lock the busy timeout does not cover."""
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    pause = 0.01
    while True:
        try:
            return step()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

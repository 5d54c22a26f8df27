"""Judge answers on disk: SQLite keyed by a hash of (model, prompt, parameters), where the
parameters are everything else that shapes a score: the judge's sampling and the jury's scale.

Only answers that became a score are stored, so a rerun retries failures and replays the
rest without a call. A stored answer is replayed only if it is still a score on the jury's
scale (a hand-edited or foreign row is asked again, never trusted). WAL mode and a busy timeout let several processes share one file;
one connection per thread inside a process.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
import threading
import time
from pathlib import Path

OPEN_TIMEOUT_S = 60.0


def cache_key(model: str, prompt: str, params: dict) -> str:
    # no judge name, URL or key: the same model asked the same way is the same answer,
    # whichever server or alias served it
    blob = json.dumps({"model": model, "prompt": prompt, "params": params}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def judge_params(judge, jury) -> dict:
    """The key's parameters for ``judge`` in ``jury``: its sampling (Judge.params) and the scale,
    which bounds a JSON score and picks the digits a logprobs score is the expectation over."""
    return {**judge.params(), "scale": list(jury.scale)}


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


class JudgeCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        _when_free(lambda: self._conn().execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, model TEXT NOT NULL, value TEXT NOT NULL)"))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=OPEN_TIMEOUT_S, isolation_level=None)
            # switching a new file to WAL takes an exclusive lock, and SQLite answers "database
            # is locked" at once, without the busy timeout, when another process (score actors
            # opening the same cache) holds it: retry until the file is in WAL mode
            _when_free(lambda: conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                       or conn.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get_many(self, keys: list[str]) -> dict[str, dict]:
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
        got = self.get_many(list(keys) + list(legacy_keys))
        out = {}
        for key, old in zip(keys, legacy_keys):
            hit = replayable(got.get(key), judge, jury.scale, legacy=False) if key in got else None
            if hit is None and old in got:
                hit = replayable(got[old], judge, jury.scale, legacy=True)
            if hit is not None:
                out[key] = hit
        return out

    def put(self, key: str, model: str, value: dict) -> None:
        self._conn().execute("INSERT OR REPLACE INTO answers (key, model, value) VALUES (?, ?, ?)",
                             (key, model, json.dumps(value, sort_keys=True)))

    def put_many(self, rows: list[tuple[str, str, dict]]) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO answers (key, model, value) VALUES (?, ?, ?)",
                             [(k, m, json.dumps(v, sort_keys=True)) for k, m, v in rows])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


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

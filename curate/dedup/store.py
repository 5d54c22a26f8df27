"""Embeddings as recorded inputs: a content-addressed store, as the judge cache is for answers.

A vector is stored under sha256(model identity, the exact text given to the model): never
under a record id, which an input file may set to anything (a forged id would otherwise
share another record's vector). The store is one SQLite file (WAL, a busy timeout) that
several processes may share, and that a pipeline step can name and commit
(``embeddings: pipelines/ci.embeddings.sqlite``) so that `curate verify` replays the
vectors instead of recomputing them on a CPU that gives other last bits.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..config import ConfigError

# Files of a model folder that are not the model: they may change without changing a vector.
_NOT_MODEL = ("readme", "license", ".gitattributes")


@lru_cache(maxsize=8)
def model_identity(model: str) -> str:
    """A model folder by the bytes of its files (weights, config, tokenizer), not its path:
    a moved or re-installed copy keeps its vectors, a changed file does not. A name that is
    not a folder (a hub id) is its own identity."""
    p = Path(model)
    if not p.is_dir():
        return "name:" + model
    h = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        rel = f.relative_to(p).as_posix()
        if rel.startswith(".") or "/." in rel or f.name.lower().startswith(_NOT_MODEL):
            continue
        h.update(rel.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return "files:" + h.hexdigest()


def text_key(model_id: str, text: str) -> str:
    return hashlib.sha256(model_id.encode() + b"\0" + text.encode("utf-8", "surrogatepass")).hexdigest()


class EmbeddingStore:
    """``get(keys) -> {key: vector}``, ``put({key: vector})``. ``readonly`` never writes
    (`curate verify` replaying a committed store); a missing read-only store is empty."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._conn = None

    def _open(self):
        if self._conn is not None:
            return self._conn
        if self.readonly and not self.path.is_file():
            return None
        if self.path.is_dir():
            raise ConfigError(f"{self.path}: not a readable embedding store (a folder; name a file in it, "
                              f"e.g. {self.path / 'vectors.sqlite'})")
        # connect too: SQLite refuses a path it cannot create (/proc/x.sqlite) or read
        with self._errors("open"):
            if self.readonly:
                from urllib.parse import quote

                # immutable: no -wal/-shm files beside a committed store, no lock taken; the path
                # %-quoted: a '?' or '#' in it cut the URI, and SQLite opened (created) another file
                conn = sqlite3.connect(f"file:{quote(str(self.path.resolve()))}?mode=ro&immutable=1", uri=True)
            else:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise ConfigError(f"{self.path}: cannot create the embedding store's folder "
                                      f"({e.strerror or e})") from None
                conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        with self._errors("read", conn):
            if not self.readonly:
                _retry(lambda: conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                       or conn.execute("PRAGMA journal_mode=WAL"))
                _retry(lambda: conn.execute("CREATE TABLE IF NOT EXISTS vectors "
                                            "(key TEXT PRIMARY KEY, dim INTEGER NOT NULL, vector BLOB NOT NULL)"))
            conn.execute("SELECT key, dim, vector FROM vectors LIMIT 1").fetchall()
        self._conn = conn
        return conn

    @contextmanager
    def _errors(self, doing: str, conn=None):
        """Every SQLite error while the store is used is one line naming the file, never a
        traceback (docs/hostile-input.md): the probe in ``_open`` reads one row, so a page
        damaged further in fails only when a query reaches it, in ``get`` or ``put``. Nothing
        is deleted or rewritten: the user moves the file away (a read-only store stays as committed)."""
        try:
            yield
        except sqlite3.DatabaseError as e:  # OperationalError, IntegrityError... are DatabaseErrors
            if conn is not None:
                conn.close()
                if conn is self._conn:
                    self._conn = None
            raise ConfigError(self._says(doing, e)) from None

    def _says(self, doing: str, e: sqlite3.DatabaseError) -> str:
        text = " ".join(str(e).split())
        if "locked" in text or "busy" in text:
            return f"{self.path}: embedding store locked by another process for over 60 s ({text}); try again"
        if doing == "open":
            return f"{self.path}: cannot open the embedding store ({text})"
        if doing == "write" and isinstance(e, sqlite3.OperationalError):  # disk full, read-only file system...
            return f"{self.path}: cannot write to the embedding store ({text})"
        return (f"{self.path}: not a readable embedding store ({text}); move it away or delete it "
                "and the vectors are computed again")

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        conn = self._open()
        out: dict[str, np.ndarray] = {}
        if conn is None:
            return out
        unique = list(dict.fromkeys(keys))
        with self._errors("read", conn):
            for i in range(0, len(unique), 500):
                chunk = unique[i:i + 500]
                rows = conn.execute(f"SELECT key, dim, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})",
                                    chunk)
                for key, dim, blob in rows:
                    # a value of another type or size (SQLite columns take any) is computed again
                    if isinstance(blob, bytes) and isinstance(dim, int) and len(blob) == 4 * dim > 0:
                        out[key] = np.frombuffer(blob, dtype="<f4")
        return out

    def put(self, vectors: dict[str, np.ndarray]) -> None:
        if self.readonly or not vectors:
            return
        conn = self._open()
        rows = [(k, int(v.shape[0]), np.ascontiguousarray(v, dtype="<f4").tobytes()) for k, v in sorted(vectors.items())]

        def write():
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR IGNORE INTO vectors (key, dim, vector) VALUES (?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        with self._errors("write", conn):
            _retry(write)

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _retry(fn, timeout: float = 60.0):
    """SQLite answers "database is locked" at once, without its busy timeout, for a switch to
    WAL or a write that races another process's: retry with backoff."""
    deadline, wait = time.monotonic() + timeout, 0.01
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(wait)
            wait = min(wait * 2, 0.5)


def default_store_path() -> Path:
    base = os.environ.get("CURATE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sft-curate")
    return Path(base) / "embeddings" / "vectors.sqlite"

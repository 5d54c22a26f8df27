"""`curate verify`: rebuild from the inputs into a scratch folder and compare with the lock
(:mod:`.compare` says how). The rebuild replays recorded model outputs (the judge cache, the
embedding store a step names, read only) and recomputes what is not recorded."""
from __future__ import annotations

import tempfile
from pathlib import Path

from .build import build
from .compare import Verdict, compare, diff, read_lock
from .spec import load_pipeline

__all__ = ["Verdict", "compare", "diff", "read_lock", "verify"]


def verify(pipeline_path, echo=print, engine: str | None = None, embeddings: str = "replay",
           compression: str | None = None) -> Verdict:
    """Rebuild and compare with the lock. ``embeddings``: ``replay`` reads the embedding
    store each semantic step names (never writing to it), ``recompute`` ignores it;
    ``compression`` overrides the pipeline's codec (the lock hashes content, not bytes)."""
    locked = read_lock(pipeline_path)
    old_build = Path(load_pipeline(pipeline_path).output)
    with tempfile.TemporaryDirectory(prefix="curate-verify-") as tmp:
        fresh = build(pipeline_path, force=True, output=Path(tmp) / "build", embed_cache=str(Path(tmp) / "embeddings"),
                      embed_store="readonly" if embeddings == "replay" else "none",
                      write_lock=False, engine=engine, compression=compression, echo=echo)
        return compare(locked, fresh, old_build=old_build if old_build.is_dir() else None,
                       new_build=Path(tmp) / "build")



"""Declarative, cached, locked builds: ``curate run`` and ``curate verify``."""
from .build import build
from .spec import Pipeline, load_pipeline, lock_path
from .verify import diff, read_lock, verify

__all__ = ["Pipeline", "build", "diff", "load_pipeline", "lock_path", "read_lock", "verify"]

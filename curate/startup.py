"""What the ``curate`` command does around its work to start and end quicker: nothing here
changes what a command computes or writes.

- numba probes for a BLAS when it first loads a kernel (``numba.np.arraymath`` imports
  ``scipy.linalg.cython_blas`` to decide how ``np.correlate``/``np.convolve`` are compiled):
  importing ``scipy.linalg`` costs 0.15-0.24 CPU-s per command, and no curate kernel uses
  BLAS. :func:`skip_numba_blas_probe` makes that one probe find no scipy; any other import
  of ``scipy.linalg`` (semantic dedup, a user's code) goes through as usual.
- Ending: once a command has written its outputs and printed its lines, Python's own
  shutdown (clearing thousands of modules: polars, numba, llvmlite, pyarrow...) costs
  ~0.17 CPU-s and changes nothing on disk. :func:`exit_now` runs the ``atexit`` handlers,
  flushes stdout and stderr and ends the process there.

Only the console command uses these (``curate.cli.run``); the library and ``CliRunner``
tests run as before.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading

_PROBE = ("numba.np.linalg", "ensure_blas")


class _NoBlasProbe:
    """A meta-path finder that refuses ``scipy.linalg`` to numba's BLAS probe only."""

    def find_spec(self, name, path=None, target=None):
        if name != "scipy.linalg":
            return None
        frame = sys._getframe(1)
        while frame is not None:
            if (frame.f_globals.get("__name__"), frame.f_code.co_name) == _PROBE:
                raise ModuleNotFoundError("scipy.linalg skipped for numba's BLAS probe (curate.startup)", name=name)
            frame = frame.f_back
        return None

    def invalidate_caches(self):
        pass


def skip_numba_blas_probe() -> None:
    if not any(isinstance(f, _NoBlasProbe) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoBlasProbe())


def exit_code(code) -> int:
    """What ``sys.exit(code)`` would exit with (a message is printed, as it prints one)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_now(code) -> None:
    """End the process with ``code`` (a SystemExit's code) without Python's module teardown.
    Falls back to a normal exit while other Python threads run (a normal exit waits for them)."""
    code = exit_code(code)
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what was lost is lost either way
            code = code or 120  # as Python does when its final flush fails
    os._exit(code)

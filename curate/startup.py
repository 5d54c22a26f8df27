"""What the ``curate`` command does around its work to start and end quicker: nothing here
changes what a command computes or writes.

- numba, when it first loads a kernel, imports optional libraries for features no curate
  kernel uses: ``scipy`` (a version check in ``numba/__init__``; ~0.02 CPU-s),
  ``scipy.linalg`` (its BLAS probe, ``numba.np.linalg``; 0.15-0.24 CPU-s) and ``cffi``
  (``numba.core.typing.cffi_utils``; ~0.015 CPU-s). :func:`skip_numba_extras`
  makes those imports, from those numba modules only, find nothing, as if the library
  were not installed (numba then compiles without BLAS or cffi support; cached kernels
  load as before). Any other import of them (semantic dedup, a user's code) goes through.
  Likewise ``yaml`` for ``numba.core.config`` (~0.01 CPU-s), which reads only a
  ``.numba_config.yaml`` in the current folder with it: refused only where there is none.
- Loading a cached kernel: numba's cache loader first "refreshes" its compiler context,
  importing and registering every implementation numba has (~0.12-0.25 CPU-s a process)
  although a cached kernel is machine code that needs none of them, only numba's runtime
  (NRT). :func:`lean_numba_cache` makes the loader initialise just the runtime; a kernel
  that is not in the cache compiles as before (numba's compiler refreshes the context
  itself), and a load that fails this way is retried numba's own way.
- Initialising numba's runtime (NRT), which every process that runs a kernel does, compiles
  a small LLVM module of its helpers (reference counts, atomics) anew: ~0.025 CPU-s.
  :func:`cached_numba_runtime` keeps that module's object code beside curate's cached
  kernels (``NUMBA_CACHE_DIR`` if set, else ``curate/__pycache__``), as numba keeps a
  kernel's, under a key of numba's and llvmlite's versions, the machine (numba's
  ``magic_tuple``: triple, CPU, features), the optimisation level and the module's IR text;
  a later process loads it (~0.006 CPU-s). A file it cannot read or use, or a folder it
  cannot write, means numba's own compile, as before.
- numpy asks the kernel for huge pages for every array over 4 MB (``madvise``); where
  memory is fragmented (after another memory-hungry process, as in a benchmark or a
  pipeline) each such fault compacts memory first: measured 0.9-1.07 s of system time
  against 0.49-0.54 without the advice on the 200k-document dedup, after a rensa run;
  no difference on a quiet machine. :func:`no_numpy_hugepages` turns the advice off
  (``NUMPY_MADVISE_HUGEPAGE=0``, numpy's own switch) unless the user set it.
- Python's cyclic garbage collector: importing polars, numpy, numba, pydantic and click
  allocates ~150,000 tracked objects, and at the default threshold (a young collection
  every 700 more allocations than frees) the collector ran ~230 times on a 100-record
  command, 0.05 CPU-s, to free ~1,300 objects; a 200,000-document dedup adds little
  (0.058 CPU-s in all). :func:`fewer_collections` raises the young generation's threshold
  to 200,000 (the older generations' stay), so that a short command collects never and a
  long one still collects its cyclic garbage every 200,000 net allocations.
- Ending: once a command has written its outputs and printed its lines, Python's own
  shutdown (clearing thousands of modules: polars, numba, llvmlite, pyarrow...) costs
  ~0.17 CPU-s and changes nothing on disk. :func:`exit_now` runs the ``atexit`` handlers,
  flushes stdout and stderr and ends the process there.

Only the console command uses these (``curate.cli.run``); the library and ``CliRunner``
tests run as before.
"""
from __future__ import annotations

import atexit
import gc
import hashlib
import importlib.machinery
import os
import pickle
import sys
import threading
from pathlib import Path

# library -> the numba modules that may not import it ("scipy" too for numba.np.linalg: its
# ``import scipy.linalg.cython_blas`` imports the parent package first)
_SKIPPED = {"scipy": ("numba", "numba.np.linalg"), "scipy.linalg": ("numba.np.linalg",),
            "cffi": ("numba.core.typing.cffi_utils",), "yaml": ("numba.core.config",)}
# library -> the file (relative to the current folder) whose presence lets numba import it anyway:
# numba.core.config reads ``.numba_config.yaml`` with yaml if the file is there, and only then
_UNLESS_FILE = {"yaml": ".numba_config.yaml"}


class _SkipNumbaExtras:
    """A meta-path finder: refuses a module of ``_SKIPPED`` to the numba modules named there."""

    def find_spec(self, name, path=None, target=None):
        importers = _SKIPPED.get(name)
        if importers is None or (name in _UNLESS_FILE and os.path.isfile(_UNLESS_FILE[name])):
            return None
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
            frame = frame.f_back  # up to the frame whose import statement asked
        if frame is not None and frame.f_globals.get("__name__") in importers:
            raise ModuleNotFoundError(f"{name} skipped for {frame.f_globals['__name__']} (curate.startup)", name=name)
        return None

    def invalidate_caches(self):
        pass


def skip_numba_extras() -> None:
    if not any(isinstance(f, _SkipNumbaExtras) for f in sys.meta_path):
        sys.meta_path.insert(0, _SkipNumbaExtras())


class _PatchOnImport:
    """Runs ``patch(module)`` right after ``name`` is first imported, so that nothing is
    imported early (a command that never loads a kernel never imports numba)."""

    def __init__(self, name: str, patch):
        self.name, self.patch = name, patch

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, self.patch)
        return spec

    def invalidate_caches(self):
        pass


class _PatchingLoader:  # the loader protocol; importlib.abc would import importlib.resources (~6 ms)
    def __init__(self, loader, patch):
        self.loader, self.patch = loader, patch

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.patch(module)


def _lean_load(caching) -> None:
    """numba.core.caching.Cache.load_overload without the context refresh (see the module
    docstring); numba's own method where anything goes wrong."""
    original = caching.Cache.load_overload
    if getattr(original, "_curate_lean", False):
        return

    def load_overload(self, sig, target_context):
        from numba.core.runtime import rtsys

        try:
            rtsys.initialize(target_context)
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)
        except Exception:  # noqa: BLE001 - numba's own, refreshing load decides
            return original(self, sig, target_context)

    load_overload._curate_lean = True
    caching.Cache.load_overload = load_overload


def _patch_on_import(name: str, patch) -> None:
    if name in sys.modules:
        patch(sys.modules[name])
    elif not any(isinstance(f, _PatchOnImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport(name, patch))


def lean_numba_cache() -> None:
    _patch_on_import("numba.core.caching", _lean_load)


def _runtime_key(ctx, ir_text: str) -> str:
    import llvmlite
    import numba
    from numba.core import config

    return repr((numba.__version__, llvmlite.__version__, ctx.codegen().magic_tuple(), config.OPT, ir_text))


def _runtime_folder() -> Path:
    from numba.core import config

    return Path(config.CACHE_DIR) if config.CACHE_DIR else Path(__file__).parent / "__pycache__"


def _cached_runtime(nrtdynmod) -> None:
    """nrtdynmod.compile_nrt_functions that loads the runtime module's object code when a
    process before this one saved it (see the module docstring), and saves it otherwise."""
    original = nrtdynmod.compile_nrt_functions
    if getattr(original, "_curate_cached", False):
        return

    def compile_nrt_functions(ctx):
        try:
            ir_mod, library = nrtdynmod.create_nrt_module(ctx)
            key = _runtime_key(ctx, str(ir_mod))
            path = _runtime_folder() / f"nrt-{hashlib.sha256(key.encode()).hexdigest()[:24]}.nbc"
        except Exception:  # noqa: BLE001 - numba's own compile decides
            return original(ctx)
        try:
            saved_key, state = pickle.loads(path.read_bytes())
            if saved_key == key:
                return ctx.codegen().unserialize_library(state)
        except Exception:  # noqa: BLE001 - no file, another numba's, damaged: compiled below
            pass
        library.enable_object_caching()  # what numba's compile does, keeping the object code
        library.add_ir_module(ir_mod)
        library.finalize()
        try:
            data = pickle.dumps((key, library.serialize_using_object_code()))
        except Exception:  # noqa: BLE001 - nothing to keep: the next process compiles too
            return library
        _save(path, data)
        return library

    compile_nrt_functions._curate_cached = True
    nrtdynmod.compile_nrt_functions = compile_nrt_functions


def _save(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (another process may read it meanwhile)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:  # a read-only install: the next process compiles again, as numba does
        tmp.unlink(missing_ok=True)


def cached_numba_runtime() -> None:
    _patch_on_import("numba.core.runtime.nrtdynmod", _cached_runtime)


def no_numpy_hugepages() -> None:
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:  # the user's choice stands
        return
    os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"  # read when numpy is imported
    if "numpy" in sys.modules:  # too late for that: numpy's own setter
        sys.modules["numpy"]._core.multiarray._set_madvise_hugepage(False)


# a young collection every 200,000 net allocations of tracked objects instead of 700
YOUNG_THRESHOLD = 200_000


def fewer_collections() -> None:
    gen0, *older = gc.get_threshold()
    gc.set_threshold(max(gen0, YOUNG_THRESHOLD), *older)


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

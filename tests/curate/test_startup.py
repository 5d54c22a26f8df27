"""The console command's start and end (curate.startup): it imports only what the command
uses, numba does without scipy.linalg and cffi, and the quick exit loses nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def python(code: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=ENV)


def test_filter_and_dedup_import_no_pandas_scipy_nor_cffi(tmp_path):
    # run in-process as the console command sets it up, then list what was imported
    code = f"""
import sys
from curate import cli, startup
startup.skip_numba_extras()
raw = {str(REPO / "data/demo/raw.jsonl")!r}
cli.main(["filter", raw, "-o", "f"], standalone_mode=False)
cli.main(["dedup", "--method", "minhash", "f", "-o", "d"], standalone_mode=False)
print(sorted(m for m in ("pandas", "scipy", "cffi", "torch", "transformers", "pyarrow.compute") if m in sys.modules))
print("numba" in sys.modules, "pyarrow" in sys.modules)
"""
    res = python(code, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    *_, modules, used = res.stdout.strip().splitlines()
    assert modules == "[]"
    assert used == "True True"  # the kernels did run


def test_only_numbas_own_imports_are_refused():
    code = """
import sys
from curate import startup
startup.skip_numba_extras()
import numba.np.arraymath, numba.core.typing.cffi_utils as cffi_utils
print(numba.np.arraymath._HAVE_BLAS, cffi_utils.SUPPORTED)
import scipy.linalg, cffi  # anyone else still gets them
print(scipy.linalg.__name__, cffi.__name__)
"""
    res = python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False", "scipy.linalg", "cffi"]


def test_quick_exit_runs_atexit_handlers_flushes_and_keeps_the_code():
    code = """
import atexit, sys
from curate.startup import exit_now
atexit.register(lambda: print("handler ran"))
print("out", end="")
sys.stderr.write("err")
exit_now({code!r})
print("not reached")
"""
    for given, status in ((None, 0), (0, 0), (3, 3)):
        res = python(code.format(code=given))
        assert (res.returncode, res.stdout, res.stderr) == (status, "outhandler ran\n", "err")
    res = python(code.format(code="a message"))  # as sys.exit("a message"): printed, status 1
    assert (res.returncode, res.stderr) == (1, "erra message\n")


def test_quick_exit_waits_for_other_threads():
    code = """
import threading, time
from curate.startup import exit_now
def late():
    time.sleep(0.3)
    print("thread done", flush=True)
threading.Thread(target=late).start()
exit_now(0)
"""
    res = python(code)
    assert (res.returncode, res.stdout) == (0, "thread done\n")


def test_the_console_command_writes_everything_and_says_so(tmp_path):
    raw = REPO / "data/demo/raw.jsonl"
    res = subprocess.run([sys.executable, "-m", "curate.cli", "filter", str(raw), "-o", "out"], cwd=tmp_path,
                         capture_output=True, text=True, env=ENV)
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().splitlines()[-1].startswith("wrote out/kept.parquet")
    stats = json.loads((tmp_path / "out/stats.json").read_text())
    assert {"read_seconds", "stage_seconds", "seconds", "write_seconds", "command_seconds"} <= set(stats)
    res = subprocess.run([sys.executable, "-m", "curate.cli", "filter", "missing.jsonl", "-o", "out2"], cwd=tmp_path,
                         capture_output=True, text=True, env=ENV)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == ["Error: missing.jsonl: no such file or folder"]


KERNEL_RUN = """
import sys
import numpy as np
from curate import startup
{setup}
from numba.core import base
refreshes, refresh = [], base.BaseContext.refresh
base.BaseContext.refresh = lambda self: refreshes.append(1) or refresh(self)
from curate.dedup.kernels import band_keys_kernel
sig = np.arange(56, dtype=np.uint32).reshape(2, 28); out = np.empty((2, 4), np.uint64)
band_keys_kernel(sig, 4, 7, out)
print(out.tolist())
print(len(refreshes) > 0)  # numba's context refresh: what the lean load skips
"""


def test_cached_kernels_load_without_numbas_context_refresh():
    plain = python(KERNEL_RUN.format(setup=""))  # also puts the kernel in numba's cache
    assert plain.returncode == 0, plain.stderr
    lean = python(KERNEL_RUN.format(setup="startup.lean_numba_cache()"))
    assert lean.returncode == 0, lean.stderr
    assert plain.stdout.splitlines()[0] == lean.stdout.splitlines()[0]  # the same machine code ran
    assert plain.stdout.splitlines()[1] == "True"
    assert lean.stdout.splitlines()[1] == "False"


def test_lean_cache_loading_imports_nothing_itself_and_falls_back_to_numbas_own_load(tmp_path):
    script = tmp_path / "lean.py"  # a file: numba caches nothing defined in ``-c``
    script.write_text("""
import sys
from curate import startup
startup.lean_numba_cache()
print("numba" in sys.modules)
import numba.core.caching as caching
real, calls = caching.Cache._load_overload, []
def fails_once(self, sig, target_context):
    calls.append(sig)
    if len(calls) == 1:
        raise RuntimeError("a load that needs the refreshed context")
    return real(self, sig, target_context)
caching.Cache._load_overload = fails_once
import numpy as np
from numba import njit
@njit(cache=True)
def twice(x):
    return 2 * x
print(twice(np.arange(3)).tolist(), len(calls))
""")
    for _ in range(2):  # the second run finds the kernel in the cache
        res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=ENV)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split("\n")[:2] == ["False", "[0, 2, 4] 2"]  # the lean try, then numba's own


def test_numpy_huge_page_advice_is_off_unless_the_user_chose():
    code = """
import os, sys
from curate import startup
startup.no_numpy_hugepages()
import numpy
print(numpy._core.multiarray._get_madvise_hugepage())
"""
    env = {k: v for k, v in ENV.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip() == "False"
    chosen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**env, "NUMPY_MADVISE_HUGEPAGE": "1"})
    assert chosen.stdout.strip() == "True"
    late = subprocess.run([sys.executable, "-c", code.replace("from curate import startup", "import numpy\nfrom curate import startup")],
                          capture_output=True, text=True, env=env)
    assert late.stdout.strip() == "False"  # numpy imported first: its setter


def test_numba_reads_its_yaml_config_file_only_where_there_is_one(tmp_path):
    code = """
import sys
from curate import startup
startup.skip_numba_extras()
import numba
print("yaml" in sys.modules, numba.config.DISABLE_PERFORMANCE_WARNINGS)
"""
    res = python(code, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "0"]  # no config file: yaml (~0.01 CPU-s) not imported
    (tmp_path / ".numba_config.yaml").write_text("disable_performance_warnings: 1\n")
    res = python(code, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "1"]  # numba read the file, as without curate.startup


GC_RUN = """
import atexit, gc, sys
from curate import cli
raw = {raw!r}
atexit.register(lambda: print(gc.get_threshold()[0]))  # the quick exit runs the handlers
{call}
"""


def test_fewer_garbage_collections_in_the_console_command_only(tmp_path):
    raw = str(REPO / "data/demo/raw.jsonl")
    library = python(GC_RUN.format(raw=raw, call='cli.main(["filter", raw, "-o", "a"], standalone_mode=False)'),
                     cwd=tmp_path)
    assert library.returncode == 0, library.stderr
    assert library.stdout.split()[-1] == "700"  # Python's default: the library (and CliRunner) as before
    command = python(GC_RUN.format(raw=raw, call='sys.argv = ["curate", "filter", raw, "-o", "b"]; cli.run()'),
                     cwd=tmp_path)
    assert command.returncode == 0, command.stderr
    assert command.stdout.split()[-1] == "200000"
    assert (tmp_path / "b/kept.parquet").read_bytes() == (tmp_path / "a/kept.parquet").read_bytes()


RUNTIME_RUN = """
import numpy as np
from curate import startup
{setup}
from numba.core import codegen
compiled, add = [], codegen.CPUCodeLibrary.add_ir_module
codegen.CPUCodeLibrary.add_ir_module = lambda self, m: compiled.append(self.name) or add(self, m)
from curate.dedup.kernels import band_keys_kernel
sig = np.arange(56, dtype=np.uint32).reshape(2, 28); out = np.empty((2, 4), np.uint64)
band_keys_kernel(sig, 4, 7, out)
print(out.tolist())
print("nrt" in compiled)  # numba's runtime module compiled in this process
"""


def test_numbas_runtime_module_is_compiled_once_then_loaded(tmp_path):
    env = {**ENV, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}

    def run(setup="startup.cached_numba_runtime()"):
        res = subprocess.run([sys.executable, "-c", RUNTIME_RUN.format(setup=setup)], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        return res.stdout.splitlines()

    plain = run(setup="")
    assert plain[1] == "True" and not list((tmp_path / "cache").glob("nrt-*"))
    first = run()
    assert first == plain  # compiled, and saved
    [saved] = (tmp_path / "cache").glob("nrt-*.nbc")
    assert run() == [plain[0], "False"]  # loaded: the same kernel output
    saved.write_bytes(b"damaged")
    assert run() == plain  # unusable: numba's compile again, and saved anew
    assert run() == [plain[0], "False"]

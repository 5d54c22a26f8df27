"""No function in the project over ~60 lines, except the numba kernels: a long function is
several ideas a reader has to hold at once (issue #22). A numba kernel is exempt because
splitting it costs a call per element in the hottest loop, and its steps are commented."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("curate", "train", "bench", "data", "docs")
LIMIT = 60


def _is_kernel(node: ast.AST) -> bool:
    # @njit, @numba.njit(...), @jit(nopython=True), @nb.njit(cache=True), ...
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("njit", "jit", "vectorize", "guvectorize"):
            return True
    return False


def long_functions(root: Path = REPO, limit: int = LIMIT) -> list[str]:
    found = []
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_kernel(node):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}() is {lines} lines")
    return found


def test_no_function_over_the_limit():
    assert long_functions() == []


def test_the_check_finds_a_long_function_and_spares_a_kernel(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "curate").mkdir()
    (tmp_path / "curate" / "m.py").write_text(
        f"def long():\n{body}\n\n@njit(cache=True)\ndef kernel():\n{body}\n\ndef short():\n    return 1\n")
    assert long_functions(tmp_path) == [f"curate/m.py:1 long() is {LIMIT + 1} lines"]

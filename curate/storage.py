"""Inputs and outputs on object storage: any fsspec URL (``s3://``, ``gs://``, ``az://``,
``hf://``, ``memory://`` ...) wherever a command or a pipeline takes a path.

A URL input is copied into a local scratch folder and read there, under its URL's name
(so the ``source`` column says ``s3://bucket/raw.jsonl:17``, never a scratch path); an
output folder is written locally, then uploaded (a pipeline's build sends only the step
files that changed). Stage outputs are a handful of
files per folder, so a copy costs one transfer of bytes that reading would move anyway,
and every reader, hash and writer works on one code path. S3 endpoints and credentials
come from the usual places (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ~/.aws), or
``FSSPEC_S3_*`` variables (fsspec's own configuration).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import InputError

_NOT_URL = ("file",)


def is_url(path) -> bool:
    text = str(path)
    return "://" in text and text.split("://", 1)[0] not in _NOT_URL and len(text.split("://", 1)[0]) > 1


def filesystem(url: str):
    from .config import ConfigError

    try:
        import fsspec
    except ImportError:
        raise ConfigError(f"{url}: reading URLs needs fsspec (pip install 'sft-curate[remote]')") from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{url}: {first}") from None
    fs.invalidate_cache()  # another process may have written there since fsspec last listed it
    return fs, path


def _fail(url: str, e: Exception):

    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return InputError(f"{url}: {type(e).__name__}: {first}")


@contextlib.contextmanager
def local_copy(path):
    """A local path for ``path``: itself, or a scratch copy of the URL's file or folder."""
    if not is_url(path):
        yield Path(path)
        return
    url = str(path).rstrip("/")
    fs, remote = filesystem(url)
    with tempfile.TemporaryDirectory(prefix="curate-in-") as tmp:
        dest = Path(tmp) / Path(remote).name
        try:
            if not fs.exists(remote):
            
                raise InputError(f"{url}: no such file or folder")
            if fs.isdir(remote):
                fs.get(remote.rstrip("/") + "/", str(dest), recursive=True)
            else:
                fs.get(remote, str(dest))
        except OSError as e:  # credentials, endpoint, permissions: one line naming the URL
            raise _fail(url, e) from None
        yield dest


@contextlib.contextmanager
def local_copies(paths):
    """``local_copy`` of each of ``paths``, as a list."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(local_copy(p)) for p in paths]


@contextlib.contextmanager
def output_folder(path):
    """A local folder to write ``path`` into; a URL is uploaded (replacing what was there)
    when the block ends without an error."""
    if not is_url(path):
        yield Path(path)
        return
    url = str(path).rstrip("/")
    with tempfile.TemporaryDirectory(prefix="curate-out-") as tmp:
        local = Path(tmp) / "out"
        local.mkdir()
        yield local
        upload(local, url)


def overlap(out, inputs) -> str | None:
    """What is wrong with writing into the folder ``out`` while reading ``inputs`` (local
    paths; URLs are left out): the output folder is, or is inside, an input folder (a later
    read takes the outputs for records: a folder with a kept.parquet reads as a stage's
    output, its other files left out), or an input lies inside the output folder (the write
    replaces it). None when they are apart. By real paths: a link hides neither."""
    if is_url(out):
        return None
    real_out = Path(os.path.realpath(out))
    for name in inputs:
        if is_url(name):
            continue
        real = Path(os.path.realpath(name))
        if real_out == real or real.is_dir() and real_out.is_relative_to(real):
            return f"the output folder is the input {name} or inside it; a later read would take the outputs " \
                   "for records: choose an output folder outside it"
        if real.is_relative_to(real_out):
            return f"the input {name} is inside the output folder, whose outputs would replace it or sit " \
                   "beside it: choose an output folder apart from the inputs"
    return None


STAGE_FILES = ("kept.parquet", "rejected.parquet", "stats.json")


def foreign_outputs(out) -> str | None:
    """What in the local folder ``out`` a stage's write would replace that no stage wrote:
    files named like a stage's outputs beside no stats.json of a stage (a stage writes its
    stats.json last, with its name under "stage"). None when there is nothing to lose."""
    if is_url(out) or not Path(out).is_dir():
        return None
    present = [name for name in STAGE_FILES if (Path(out) / name).exists()]
    if not present:
        return None
    try:
        import json

        if isinstance(json.loads((Path(out) / "stats.json").read_text(encoding="utf-8")).get("stage"), str):
            return None  # an earlier stage's folder: rewritten, as every run does
    except (OSError, ValueError, AttributeError):
        pass
    return f"holds {', '.join(present)} that no curate stage wrote (no stats.json of one beside them); " \
           "choose an empty or new folder"


@contextlib.contextmanager
def output_file(path):
    """A local file path to write ``path`` to; a URL gets the file when the block ends."""
    if not is_url(path):
        yield Path(path)
        return
    url = str(path)
    fs, remote = filesystem(url)
    with tempfile.TemporaryDirectory(prefix="curate-out-") as tmp:
        local = Path(tmp) / Path(remote).name
        yield local
        try:
            fs.put_file(str(local), remote)
        except OSError as e:
            raise _fail(url, e) from None


def upload(local: Path, url: str, unchanged=frozenset(), commit: str | None = None, skip=frozenset()) -> None:
    """Make the folder at ``url`` a copy of ``local``. Files in ``unchanged`` (relative
    paths) are known to hold the same bytes up there and are not sent again; files up
    there that ``local`` lacks are removed. ``commit`` names the file that marks the folder
    complete: it is removed first and written last, so an interrupted upload leaves none.
    Files in ``skip`` are local only (a build's lock file) and are not sent."""
    fs, remote = filesystem(url)
    remote = remote.rstrip("/")
    files = sorted(rel for p in Path(local).rglob("*")
                   if p.is_file() and (rel := p.relative_to(local).as_posix()) not in skip)
    try:
        if fs.isfile(remote):  # a file where the folder goes
            fs.rm_file(remote)
        there = {p[len(remote) + 1:] for p in fs.find(remote)} if fs.exists(remote) else set()
        if commit in there:
            fs.rm_file(f"{remote}/{commit}")
        for rel in sorted(there - set(files) - {commit}):
            fs.rm_file(f"{remote}/{rel}")
        for rel in sorted(files, key=lambda r: r == commit):  # the commit file last
            if rel not in unchanged or rel not in there:
                fs.put_file(str(Path(local) / rel), f"{remote}/{rel}")
    except OSError as e:
        raise _fail(url, e) from None


def download(url: str, local: Path) -> None:
    """Mirror the folder at ``url`` into ``local`` (which is replaced)."""
    fs, remote = filesystem(url)
    if Path(local).exists():
        shutil.rmtree(local)
    Path(local).mkdir(parents=True)
    try:
        if fs.exists(remote):
            fs.get(remote.rstrip("/") + "/", str(local), recursive=True)
    except OSError as e:
        raise _fail(url, e) from None


def mirror(path) -> Path:
    """A local path for ``path`` that outlives the call (training reads its data for hours):
    a URL's file or folder is fetched afresh into the cache folder for that URL."""
    if not is_url(path):
        return Path(path)
    url = str(path).rstrip("/")
    home = cache_folder(url)
    with local_copy(url) as copy:
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        return Path(shutil.move(str(copy), str(home / copy.name)))


def cache_folder(url: str) -> Path:
    """Where a URL's build (pipeline output) or data (training input) is kept on this machine."""
    import hashlib

    base = os.environ.get("CURATE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sft-curate")
    return Path(base) / "builds" / hashlib.sha256(url.encode()).hexdigest()[:16]

"""`curate run`: build a pipeline step by step, reusing every step whose input, config and
code are unchanged and whose files still hash to what was recorded.

Each step writes into ``OUTPUT/.NN-kind.tmp`` and is renamed to ``OUTPUT/NN-kind`` only when
complete, with ``step.json`` (the cache key and the hash of every file) written last inside
it; a killed build leaves at worst a temporary folder, which the next run deletes.
``manifest.json`` is removed when a build starts and written when it ends. Only folders the
toolkit marked are ever deleted, and one build at a time holds the output folder
(:mod:`.outdir`); a failed write (a full disk) is one line naming the folder.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from .. import stages
from ..compression import DEFAULT, parse
from ..config import ConfigError
from ..storage import cache_folder, download, is_url, overlap, upload
from .hashing import (code_version, content_hashes, decision_hashes, display_path, library_versions, output_digests,
                      output_files, output_hash, sha256_bytes, sha256_json, tree_files, tree_hash)
from .spec import Pipeline, load_pipeline, lock_path
from .outdir import MARKER, claim, locked, mark_step, refuse_foreign_step, remove_ours, writing
from .steps import Prepared, prepare, read_entries
from .compare import LOCK_FORMAT, compare



def _step_folders() -> tuple[re.Pattern, re.Pattern]:
    """A step's folder (``03-dedup``) and its temporary one, for the stage kinds registered now."""
    kinds = "|".join(map(re.escape, stages.names()))
    return re.compile(rf"^\d\d-({kinds})$"), re.compile(rf"^\.\d\d-({kinds})\.tmp$")


def lock_text(lock: dict) -> str:
    return json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def build(pipeline_path, *, force: bool = False, from_step: str | None = None, output: Path | None = None,
          embed_cache: str | None = None, embed_store: str | None = None, write_lock: bool = True,
          engine: str | None = None, compression: str | None = None, echo=print) -> dict:
    """Build the pipeline; returns its lock (also written to ``pipelines/NAME.lock`` unless
    ``write_lock`` is false, or when the lock there already says the same within float
    tolerance: a rebuild on another CPU does not rewrite it). ``output`` overrides the
    pipeline's output folder, ``engine`` its ``engine:``, ``compression`` its ``compression:``
    (a step written with another codec runs again); ``embed_store`` ``readonly`` or
    ``none`` changes how semantic steps use the embedding store they name (verify)."""
    pipeline_path = Path(pipeline_path)
    pipe = load_pipeline(pipeline_path)
    names = pipe.step_names()
    prepared = _prepare_all(pipe, pipeline_path, names, embed_cache, engine or pipe.engine, embed_store,
                            _codec(compression) if compression else pipe.compression)
    start = _step_index(from_step, names, pipeline_path) if from_step else None
    target = str(output or pipe.output)
    remote = is_url(target)
    out = cache_folder(target) if remote else Path(target)  # a URL output is built here, then uploaded
    with _input_copies(pipe, pipeline_path) as sources:
        # a build replaces and deletes the steps of its folder, and reads every input whole
        problem = overlap(out, [src for spec, src in zip(pipe.inputs, sources) if not is_url(spec.path)])
        if problem:
            raise ConfigError(f"{pipeline_path}: output {target}: {problem}")
        if remote and not (out / "manifest.json").is_file():
            download(target, out)  # reuse the steps already up there
        claim(out)
        with locked(out, echo):  # another build into this folder would delete our steps as we write them
            lock = _build(pipe, pipeline_path, names, prepared, start, sources, out, target, force, write_lock, echo)
            if remote:
                # the build's lock file holds this process's pid: local, never sent
                upload(out, target, _unchanged_up_there(out, target), commit="manifest.json", skip={MARKER})
    return lock


def _unchanged_up_there(out: Path, url: str) -> set[str]:
    """The step files a complete earlier upload to ``url`` already holds with the same bytes,
    by the digests in each step's step.json there and here (an unchanged step of a big
    build is not sent again)."""
    from ..storage import filesystem

    fs, remote = filesystem(url)
    remote = remote.rstrip("/")
    if not fs.exists(f"{remote}/manifest.json"):  # none, or an upload that did not finish
        return set()
    same = set()
    for step_file in sorted(out.glob("*/step.json")):
        name = step_file.parent.name
        try:
            theirs = json.loads(fs.cat_file(f"{remote}/{name}/step.json")).get("files", {})
        except (FileNotFoundError, ValueError):
            continue
        ours = json.loads(step_file.read_text(encoding="utf-8")).get("files", {})
        same |= {f"{name}/{f}" for f, digest in ours.items() if theirs.get(f) == digest}
    return same


def _build(pipe, pipeline_path: Path, names, prepared, start, sources: list[Path], out: Path, target: str,
           force: bool, write_lock: bool, echo) -> dict:
    before = [_signature(p) for p in sources]  # taken before hashing: a write during either is seen
    inputs = _hash_inputs(pipe, pipeline_path, sources)

    for name in names:  # before anything runs: a user's folder named like a step is never replaced
        refuse_foreign_step(out / name)
    with writing(out, "manifest.json"):
        (out / "manifest.json").unlink(missing_ok=True)
    step_dir, step_tmp = _step_folders()
    for stale in out.iterdir():  # leftovers of a killed build, and steps no longer in the pipeline
        if step_tmp.match(stale.name) or (step_dir.match(stale.name) and stale.name not in names):
            remove_ours(stale)  # the user's own files of such names stay

    env = {"code": code_version(), "libraries": sha256_json(library_versions())}
    in_hash = sha256_json([{k: v for k, v in i.items() if k != "records"} for i in inputs])
    rerun = force
    records: list[dict] = []
    timings = {}
    for i, (prep, name) in enumerate(zip(prepared, names)):
        rerun = rerun or (start is not None and i >= start)
        key = {"input": in_hash, "config": prep.config_hash, **env, **_codec_key(prep)}
        folder = out / name
        rec = None if rerun else _cached(folder, key, echo)
        t0 = time.perf_counter()
        if rec is None:
            rec = _run_step(prep, key, folder, pipe, sources, out / names[i - 1] if i else None,
                            before if i == 0 else None, pipeline_path)
            rerun = True  # every later step runs again
            status = "ran"
        else:
            status = "cached"
        timings[name] = {"status": status, "seconds": round(time.perf_counter() - t0, 3),
                         "stage_seconds": rec["counts"].get("seconds")}
        counts = rec["counts"]
        echo(f"{name:<10} {status:<6} {counts['in']:>7} in  {counts['kept']:>7} kept  {counts['rejected']:>7} rejected"
             + (f"  {timings[name]['seconds']:.1f}s" if status == "ran" else ""))
        if i == 0:
            for spec, n in zip(inputs, rec.get("input_records", [])):
                spec["records"] = n
        records.append(_lock_step(prep, key, rec))
        in_hash = rec["content"]["kept.parquet"]

    lock = {"lock_format": LOCK_FORMAT, "pipeline": pipe.name, "inputs": inputs, "steps": records,
            "outputs": {f"{names[-1]}/{k}": v for k, v in sorted(rec["content"].items())},
            "versions": library_versions()}
    text = lock_text(lock)
    if write_lock:
        text = _write_lock(pipeline_path, lock, text, echo)
    manifest = {**lock, "lock_sha256": sha256_bytes(text.encode()), "final": names[-1], "pipeline_file":
                display_path(pipeline_path), "output": target if is_url(target) else display_path(out), "build": timings}
    with writing(out, "manifest.json"):
        _atomic_write(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return lock


def _write_lock(pipeline_path: Path, lock: dict, text: str, echo) -> str:
    """Write the lock unless the one there records this build within float tolerance (same
    inputs, configs and decisions): then it stays as it is, so a rebuild on another CPU or
    with other library versions leaves a committed lock untouched. Returns the lock's text."""
    path = lock_path(pipeline_path)
    try:
        old_text = path.read_text(encoding="utf-8")
        verdict = compare(json.loads(old_text), lock)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        verdict = None
    if verdict is not None and verdict.ok:
        if verdict.kind == "tolerant" or old_text != text:
            echo(f"{path}: kept as it is ({'identical decisions and values' if verdict.kind == 'identical' else verdict.lines[0]})")
        return old_text
    with writing(path.parent, path.name):
        _atomic_write(path, text)
    return text


def check(pipeline_path) -> Pipeline:
    """Validate a pipeline and every config file its steps read, without building."""
    pipe = load_pipeline(pipeline_path)
    _prepare_all(pipe, Path(pipeline_path), pipe.step_names(), None, "local")
    return pipe


def _codec(value: str) -> str:
    """An override of the pipeline's codec, checked: a bad one is one line."""
    try:
        return parse(value)
    except ValueError as e:
        raise ConfigError(f"compression {e}") from None


def _codec_key(prep: Prepared) -> dict:
    """The step's codec, in its cache key: a step cached with other bytes is written again.
    Left out for the default, so the builds made before there was a choice stay cached."""
    return {} if prep.compression == DEFAULT else {"compression": prep.compression}


def _prepare_all(pipe: Pipeline, path: Path, names: list[str], embed_cache, engine: str,
                 embed_store: str | None = None, compression: str = DEFAULT) -> list[Prepared]:
    out = []
    for i, (step, name) in enumerate(zip(pipe.steps, names)):
        try:
            out.append(prepare(step, name, embed_cache, engine, embed_store, compression))
        except ConfigError as e:  # name the pipeline and the step, then the file's own message
            raise ConfigError(f"{path}: steps[{i}] ({step.kind}): {e}") from None
    return out


def _step_index(spec: str, names: list[str], path: Path) -> int:
    spec = str(spec)
    if spec.isdigit() and 1 <= int(spec) <= len(names):
        return int(spec) - 1
    if spec in names:
        return names.index(spec)
    kinds = [n.split("-", 1)[1] for n in names]
    if kinds.count(spec) == 1:
        return kinds.index(spec)
    why = "is used by several steps" if kinds.count(spec) > 1 else "is not a step"
    raise ConfigError(f"--from {spec}: {why} of {path} (steps: {', '.join(names)}; give a number or a name)")


@contextlib.contextmanager
def _input_copies(pipe: Pipeline, path: Path):
    """Every input as a local path (URLs copied once, for the whole build)."""
    from ..readers import InputError
    from ..storage import local_copy

    with contextlib.ExitStack() as stack:
        sources = []
        for i, spec in enumerate(pipe.inputs):
            if not is_url(spec.path) and not Path(spec.path).exists():
                raise ConfigError(f"{path}: inputs[{i}].path: {spec.path}: no such file or folder")
            try:
                sources.append(stack.enter_context(local_copy(spec.path)))
            except InputError as e:
                raise ConfigError(f"{path}: inputs[{i}].path: {e}") from None
        yield sources


def _hash_inputs(pipe: Pipeline, path: Path, sources: list[Path]) -> list[dict]:
    out = []
    for spec, p in zip(pipe.inputs, sources):
        entry = {"path": spec.path if is_url(spec.path) else display_path(p), "sha256": tree_hash(p)}
        if spec.format:
            entry["format"] = spec.format
        if spec.map:
            entry["map"] = dict(sorted(spec.map.items()))
        out.append(entry)
    return out


def _cached(folder: Path, key: dict, echo) -> dict | None:
    """The step's record when its folder is complete, for this key, and unaltered."""
    try:
        rec = json.loads((folder / "step.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("files"), dict) or not isinstance(rec.get("counts"), dict):
        return None  # a step record someone broke: the step runs again
    if rec.get("key") != key or "content" not in rec:  # another key, or a record from before content hashes
        return None
    files = output_files(folder)
    if files != rec.get("files"):
        changed = sorted(set(files.items()) ^ set(rec.get("files", {}).items()))
        echo(f"{folder.name}: cached output altered ({', '.join(sorted({n for n, _ in changed}))}): rebuilding")
        return None
    return rec


def _run_step(prep: Prepared, key: dict, folder: Path, pipe: Pipeline, sources: list[Path],
              previous: Path | None, signatures: list | None = None, pipeline_path: Path | None = None) -> dict:
    tmp = folder.parent / f".{folder.name}.tmp"
    if tmp.exists() or tmp.is_symlink():
        remove_ours(tmp)
        refuse_foreign_step(tmp)  # still there: not ours
    try:
        with writing(folder.parent, f"step {folder.name}"):
            tmp.mkdir(parents=True)
            mark_step(tmp)
            rec = _write_step(prep, key, tmp, pipe, sources, previous, signatures, pipeline_path)
            if folder.exists():
                shutil.rmtree(folder)  # ours: refuse_foreign_step checked it before the build began
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a partial step: never trusted, and its space given back
        raise
    return rec


def _write_step(prep: Prepared, key: dict, tmp: Path, pipe: Pipeline, sources: list[Path], previous: Path | None,
                signatures: list | None, pipeline_path: Path | None) -> dict:
    from ..readers import read_inputs

    t0 = time.perf_counter()
    if previous is None:
        read, input_records = read_entries(pipe.inputs, sources)
        _unchanged_while_read(pipe, pipeline_path, sources, signatures)
    else:
        read, input_records = read_inputs([previous]), None
    stats = prep.run(read, tmp)
    files = output_files(tmp)  # bytes: whether this folder was altered, what to upload
    digests = output_digests(tmp, files)  # content: what the lock and the next step's key record
    counts = {"in": stats["in"], "kept": stats["kept"], "rejected": stats["rejected"],
              "rules": stats.get("rules", {}), "seconds": round(time.perf_counter() - t0, 3)}
    if stats.get("near_threshold"):
        counts["near_threshold"] = stats["near_threshold"]
    content = content_hashes(digests)
    rec = {"key": key, "files": files, "content": content, "output_hash": output_hash(content),
           "decisions_hash": output_hash(decision_hashes(digests)),
           "values": {name: d["values"] for name, d in digests.items() if d.get("values")}, "counts": counts}
    if input_records is not None:
        rec["input_records"] = input_records
    _atomic_write(tmp / "step.json", json.dumps(rec, indent=2, sort_keys=True) + "\n")
    return rec


def _signature(path: Path) -> list[tuple]:
    """Each file of an input with its size, modification time and inode: what a writer changes."""
    out = []
    for f in tree_files(path):
        st = f.stat()
        out.append((f.as_posix(), st.st_size, st.st_mtime_ns, st.st_ino))
    return out


def _unchanged_while_read(pipe: Pipeline, pipeline_path: Path | None, sources: list[Path], signatures: list | None):
    """The inputs were hashed before they were read: a file written to meanwhile (a log still
    being appended to) gave records its recorded hash does not pin, and a later run would call
    the step cached. Refuse the build when any input's files moved since before they were hashed
    (size, modification time, inode: no second read of the data)."""
    for i, (spec, src, sig) in enumerate(zip(pipe.inputs, sources, signatures or [])):
        if _signature(src) != sig:
            raise ConfigError(f"{pipeline_path}: inputs[{i}].path: {spec.path}: changed while it was read; "
                              "run again when nothing is writing to it")


def _lock_step(prep: Prepared, key: dict, rec: dict) -> dict:
    c = rec["counts"]
    step = {"step": prep.name, "kind": prep.kind, "options": prep.options, "files": prep.files,
            "config_hash": prep.config_hash, "input_hash": key["input"], "output_hash": rec["output_hash"],
            "decisions_hash": rec["decisions_hash"], "values": rec["values"],
            "in": c["in"], "kept": c["kept"], "rejected": c["rejected"], "rules": c["rules"]}
    if c.get("near_threshold"):
        step["near_threshold"] = c["near_threshold"]
    return step


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.unlink(missing_ok=True)  # ours if anyone's; a link there (an unpacked archive) is not written through
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)

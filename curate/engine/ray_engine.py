"""``--engine ray``: the curate stages as Ray Data operations, on a local Ray instance or
the cluster named by ``RAY_ADDRESS``.

Nothing here decides an output. Filter, format and score run their own ``run`` on each
block (``map_batches``; format and score as actor pools that keep the tokenizer or judge
models loaded, one GPU per actor where the cluster has GPUs) and the driver puts the
blocks back in input order and finishes with the stage's own stats code. Dedup runs its
own ``run`` on the driver with ``RayBackend`` doing the data-parallel parts: hashing,
MinHash signatures and the grouping on band keys as a shuffle, embeddings as an actor
pool, k-means partitions as parallel tasks. So both engines write the same bytes.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..dedup import LocalBackend
from .ray_shuffle import (DRIVER_EDGES, _band_rows, _bucket_part, band_parts, _exact_keys, _exact_part, _fetch_edges, _parts,
                          _sign, row_partitions, shuffle, star_components, verify_pairs)
from ..stage import StageResult

ROW, SIDE, META = "_row", "_side", "_meta"


def connect():
    """Ray, initialised: the cluster at ``RAY_ADDRESS`` if set, else a local instance
    (``CURATE_RAY_CPUS`` caps its CPUs)."""
    from ..config import ConfigError

    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'sft-curate[ray]'") from None
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or None
        kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if address is None and os.environ.get("CURATE_RAY_CPUS"):
            kwargs["num_cpus"] = int(os.environ["CURATE_RAY_CPUS"])
        if address:
            _reachable(address)
        try:
            ray.init(address=address, **kwargs)
        except Exception as e:  # ConnectionError, RuntimeError, ...: all mean "no cluster there"
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray instance"
            raise ConfigError(f"cannot start or reach {where}: {first}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # blocks come back in input order
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its hints are for Ray users, not ours
    return ray


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds on a cluster address nobody answers (``ray.init`` retries for minutes)."""
    import socket

    from ..config import ConfigError

    hostport = address.split("://", 1)[-1]
    if hostport in ("auto", "local") or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot start or reach the Ray cluster at RAY_ADDRESS={address}: {e}") from None


def _cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _gpus(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def _pool(ray, gpus: int) -> dict:
    """An actor pool: one actor per GPU where the stage uses them, else one per CPU."""
    import ray.data

    size = max(1, _gpus(ray) if gpus else _cpus(ray))
    return {"compute": ray.data.ActorPoolStrategy(size=size), "num_gpus": gpus}


def block_rows(n: int, cpus: int) -> int:
    """Rows per block: a few blocks per CPU, within bounds (``CURATE_RAY_BLOCK_ROWS`` sets it)."""
    if os.environ.get("CURATE_RAY_BLOCK_ROWS"):
        return max(1, int(os.environ["CURATE_RAY_BLOCK_ROWS"]))
    return int(min(100_000, max(2_000, -(-n // (4 * cpus)))))


def _dataset(ray, frame: pl.DataFrame):
    """A Ray dataset of ``frame`` with its global row number, cut into blocks."""
    # one conversion, then zero-copy slices (Ray stores only a slice's part of the buffers);
    # converting each polars slice copied the whole column each time: 13 s for 1M records
    table = frame.with_columns(pl.int_range(frame.height, dtype=pl.Int64).alias(ROW)).to_arrow()
    step = block_rows(frame.height, _cpus(ray))
    return ray.data.from_arrow([table.slice(s, step) for s in range(0, table.num_rows, step)])


def ray_run(kind: str, config):
    """``records -> StageResult`` for one stage on Ray: a blockwise stage over blocks of
    records, another on the driver with :class:`RayBackend` for its data-parallel parts."""
    from .. import stages
    from ..engine import local_run

    stage = stages.get(kind)

    def run(records: pl.DataFrame) -> StageResult:
        if records.height == 0:  # nothing to distribute
            return local_run(kind, config)(records)
        ray = connect()
        if not stage.blockwise:
            return stage.run_distributed(records, config, RayBackend(ray))
        return _rowwise(ray, stage, config, records)

    return run


def _reported(fn):
    """A user's error in a worker (a bad tokenizer, model, file) comes back as a one-row
    table, so the driver raises it in one line as the local engine does (Ray would wrap it
    in a remote traceback and drop its type)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..config import ConfigError
        from ..readers import InputError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, InputError) as e:
            import pyarrow as pa

            error = {"error": str(e), "input": isinstance(e, InputError)}
            return pa.table({META: pa.array([json.dumps(error)], pa.large_string())})

    return wrapper


def _raise_reported(tables) -> None:
    from ..config import ConfigError
    from ..readers import InputError

    for t in tables:
        if t.num_rows == 1 and t.column_names == [META]:
            error = json.loads(t.column(META)[0].as_py())
            raise (InputError if error["input"] else ConfigError)(error["error"])


@_reported
def _run_block(table, stage, config, context: dict, state: dict):
    """One block through the stage: kept and rejected rows in one table (``_side`` 0/1), the
    block's stats, files and column orders as JSON on its first row."""
    df = pl.from_arrow(table)
    res = stage.run_block(df, config, context, state, int(df[ROW][0]))
    files = {k: v for k, v in res.files.items() if k in stage.block_files}  # not every block's train.jsonl
    meta = {"stats": res.stats, "kept": res.kept.columns, "rejected": res.rejected.columns, "files": files}
    out = pl.concat([res.kept.with_columns(pl.lit(0, pl.Int8).alias(SIDE)),
                     res.rejected.with_columns(pl.lit(1, pl.Int8).alias(SIDE))], how="diagonal_relaxed")
    out = out.with_columns(pl.Series(META, [json.dumps(meta)] + [None] * (out.height - 1), dtype=pl.String))
    return out.to_arrow()


class _StageActor:
    """An actor that keeps what a stage loads (tokenizer, local judge models) between blocks."""

    def __init__(self, stage, config, context: dict):
        self.stage, self.config, self.context, self.state = stage, config, context, {}

    def __call__(self, table):
        return _run_block(table, self.stage, self.config, self.context, self.state)


@dataclass
class Blocks:
    """The blocks of a blockwise stage put back together, for its ``merge``: kept and rejected
    rows (input order), each block's stats and files, and the start time."""
    kept: pl.DataFrame
    rejected: pl.DataFrame
    stats: list[dict]
    files: list[dict]
    t0: float
    numbered: tuple = ()  # kept and rejected with their row numbers, for in_order

    def in_order(self) -> pl.DataFrame:
        """Every row, kept or rejected, in input order, without the rejection columns."""
        kept, rejected = self.numbered
        return pl.concat([kept, rejected.drop("stage", "rule", "reason")], how="vertical").sort(ROW).drop(ROW)


def _rowwise(ray, stage, config, records: pl.DataFrame) -> StageResult:
    t0 = time.perf_counter()
    context = stage.context(records, config)
    ds = _dataset(ray, records)
    if not stage.stateful:
        out = ds.map_batches(_run_block, fn_kwargs={"stage": stage, "config": config, "context": context, "state": {}},
                             batch_size=None, batch_format="pyarrow")
    else:
        gpus = 1 if stage.gpus(config) and _gpus(ray) else 0
        out = ds.map_batches(_StageActor, fn_constructor_args=(stage, config, context), batch_size=None,
                             batch_format="pyarrow", **_pool(ray, gpus))
    tables = [t for t in ray.get(out.to_arrow_refs()) if t.num_rows]
    _raise_reported(tables)
    parts = [pl.from_arrow(t) for t in tables]
    metas = [json.loads(p[META][0]) for p in parts]
    kept = pl.concat([p.filter(pl.col(SIDE) == 0).select(m["kept"]) for p, m in zip(parts, metas)], how="vertical")
    rejected = pl.concat([p.filter(pl.col(SIDE) == 1).select(m["rejected"]) for p, m in zip(parts, metas)],
                         how="vertical")
    blocks = Blocks(kept.drop(ROW), rejected.drop(ROW), [m["stats"] for m in metas], [m["files"] for m in metas],
                    t0, (kept, rejected))
    return stage.merge(blocks, records, config)


# ---- dedup: the data-parallel parts as Ray operations (the shuffles: ray_shuffle.py) -----

def _texts(ray, texts: list[str]):
    return _dataset(ray, pl.DataFrame({"text": pl.Series(texts, dtype=pl.String)}))


class _Embed:
    """An embedding actor: the model is loaded once per actor."""

    def __init__(self, model: str, batch_size: int, encoder: str = "torch", cache_dir: str | None = None):
        from ..dedup.semantic import Embedder
        from ..progress import set_quiet

        set_quiet()  # Ray forwards a worker's stderr to the driver: one summary line per block is noise
        self.embedder = Embedder(model, batch_size, cache_dir, encoder=encoder)

    @_reported
    def __call__(self, table):
        import pyarrow as pa

        before = self.embedder.truncated
        vecs = self.embedder.encode(table.column("text").to_pylist())
        meta = json.dumps({"truncated": self.embedder.truncated - before, "max_tokens": self.embedder.max_tokens})
        return pa.table({ROW: table.column(ROW),
                         "vec": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), vecs.shape[1]),
                         META: pa.array([meta] + [None] * (table.num_rows - 1), pa.large_string())})


class RayBackend(LocalBackend):
    signs_turns = False  # the workers get the joined conversation text
    def __init__(self, ray):
        self.ray = ray

    def exact_labels(self, texts: list[str], strip_punct: bool) -> np.ndarray:
        """Group by the 128-bit hash: hashed in the map tasks, grouped in the reducers."""
        n = len(texts)
        blocks = _texts(self.ray, texts).to_arrow_refs()
        labels = np.arange(n, dtype=np.int64)
        for t in shuffle(self.ray, blocks, _exact_keys, _exact_part, _parts(n, _cpus(self.ray)),
                         {"strip_punct": strip_punct}):
            labels[t.column(ROW).to_numpy()] = t.column("label").to_numpy()
        return labels

    def minhash_clusters(self, texts: list[str], config, threshold: float, bands: int, rows: int):
        """Signatures, band grouping, verification and (for many edges) clusters on the
        workers; the driver gets the verified pairs, or only the labels."""
        ray, n = self.ray, len(texts)
        exact = config.verify == "exact"
        signed = _texts(ray, texts).map_batches(
            _sign, fn_kwargs=dict(num_perm=config.num_perm, ngram=config.ngram, shingle=config.shingle,
                                  keep_sets=exact, strip_punct=config.strip_punct, seed=config.seed + 1,
                                  bands=bands, rows=rows, signature=config.signature),
            batch_size=None, batch_format="pyarrow").materialize()
        blocks = signed.to_arrow_refs()
        parts = _parts(n, _cpus(ray))
        column = "set" if exact else "sig"  # what verification compares
        payload, starts = row_partitions(ray, blocks, column, parts)
        pairs = shuffle(ray, blocks, _band_rows, _bucket_part, band_parts(n * bands, _cpus(ray), bands),
                        {"bands": bands}, {"n": n}, fetch=False)
        edges, n_candidates, n_verified = verify_pairs(ray, pairs, payload, starts, column, n, threshold,
                                                       config.signature)

        def measure(left, right):
            """Similarities of any pairs, joined with the payload on the workers."""
            left, right = np.asarray(left, np.int64), np.asarray(right, np.int64)
            import pyarrow as pa

            block = ray.put(pa.table({"pair": left * n + right}))
            found, _, _ = verify_pairs(ray, [block], payload, starts, column, n, None, config.signature)
            got = _fetch_edges(ray, found)
            sims = dict(zip((got["left"] * n + got["right"]).tolist(), got["sim"].tolist()))
            return np.array([sims[k] for k in (left * n + right).tolist()], dtype=np.float64)

        if n_verified <= DRIVER_EDGES:
            from ..dedup.clusters import components

            got = _fetch_edges(ray, edges)
            labels = components(n, got["left"], got["right"])
        else:
            labels = star_components(ray, edges, n, parts)
        return labels, n_candidates, n_verified, measure

    def encoder(self, embedder):
        ray = self.ray

        def encode(texts: list[str]) -> np.ndarray:
            gpus = 1 if _gpus(ray) else 0
            out = _texts(ray, texts).map_batches(
                _Embed, fn_constructor_args=(embedder.model_path, embedder.batch_size, embedder.encoder,
                                               str(embedder.cache_dir)), batch_size=None,
                batch_format="pyarrow", **_pool(ray, gpus))
            tables = [t for t in ray.get(out.to_arrow_refs()) if t.num_rows]
            _raise_reported(tables)
            vectors = np.concatenate([t.column("vec").combine_chunks().flatten().to_numpy()
                                      .reshape(t.num_rows, -1) for t in tables]).astype(np.float32)
            embedder.embedded += len(texts)
            for t in tables:
                meta = json.loads(t.column(META)[0].as_py())
                embedder.truncated += meta["truncated"]
                embedder.max_tokens = meta["max_tokens"]
            return vectors

        return encode

    def pair_search(self):
        ray = self.ray

        def pmap(fn, vectors, jobs):
            task = ray.remote(fn)
            ref = ray.put(vectors)
            return ray.get([task.remote(ref, *job) for job in jobs])

        return pmap

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

import numpy as np
import polars as pl

from ..dedup import LocalBackend
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
    """``records -> StageResult`` for one stage on Ray."""
    from ..engine import local_run

    def run(records: pl.DataFrame) -> StageResult:
        if records.height == 0:  # nothing to distribute
            return local_run(kind, config)(records)
        ray = connect()
        if kind == "dedup":
            from ..dedup import run as dedup_run

            return dedup_run(records, config, backend=RayBackend(ray))
        return _rowwise(ray, kind, config, records)

    return run


# ---- filter, format, score: the stage's own run on each block -------------------------

def _run_block(table, kind: str, config, extra: dict, state: dict):
    """One block through the stage: kept and rejected rows in one table (``_side`` 0/1), the
    block's stats and column orders as JSON on its first row."""
    df = pl.from_arrow(table)
    offset = int(df[ROW][0])
    if kind == "filter":
        from ..filter import run

        res = run(df, config)
    elif kind == "format":
        from ..format import run
        from ..format.tokenizer import load_tokenizer

        if "tok" not in state:
            state["tok"] = load_tokenizer(config.tokenizer)
        res = run(df, config, tokenizer=state["tok"], probes=extra["probes"])
    else:
        from ..score import run

        res = run(df, config, raw_latencies=True, offset=offset)
    meta = {"stats": res.stats, "kept": res.kept.columns, "rejected": res.rejected.columns,
            "template": res.files.get("template.jinja")}
    out = pl.concat([res.kept.with_columns(pl.lit(0, pl.Int8).alias(SIDE)),
                     res.rejected.with_columns(pl.lit(1, pl.Int8).alias(SIDE))], how="diagonal_relaxed")
    out = out.with_columns(pl.Series(META, [json.dumps(meta)] + [None] * (out.height - 1), dtype=pl.String))
    return out.to_arrow()


class _StageActor:
    """An actor that keeps what a stage loads (tokenizer, local judge models) between blocks."""

    def __init__(self, kind: str, config, extra: dict):
        self.kind, self.config, self.extra, self.state = kind, config, extra, {}

    def __call__(self, table):
        return _run_block(table, self.kind, self.config, self.extra, self.state)


def _rowwise(ray, kind: str, config, records: pl.DataFrame) -> StageResult:
    t0 = time.perf_counter()
    extra = {"probes": records["messages"].head(20).to_list()} if kind == "format" else {}
    ds = _dataset(ray, records)
    if kind == "filter":
        out = ds.map_batches(_run_block, fn_kwargs={"kind": kind, "config": config, "extra": extra, "state": {}},
                             batch_size=None, batch_format="pyarrow")
    else:
        gpus = 1 if kind == "score" and _uses_models(config) and _gpus(ray) else 0
        out = ds.map_batches(_StageActor, fn_constructor_args=(kind, config, extra), batch_size=None,
                             batch_format="pyarrow", **_pool(ray, gpus))
    parts = [pl.from_arrow(t) for t in ray.get(out.to_arrow_refs()) if t.num_rows]
    metas = [json.loads(p[META][0]) for p in parts]
    kept = pl.concat([p.filter(pl.col(SIDE) == 0).select(m["kept"]) for p, m in zip(parts, metas)], how="vertical")
    rejected = pl.concat([p.filter(pl.col(SIDE) == 1).select(m["rejected"]) for p, m in zip(parts, metas)],
                         how="vertical")
    stats = [m["stats"] for m in metas]
    if kind == "filter":
        from ..filter.engine import merge_stats

        return StageResult(kept.drop(ROW), rejected.drop(ROW), merge_stats(stats, t0))
    if kind == "format":
        from ..format import finish

        first = stats[0]
        return finish(kept.drop(ROW), rejected.drop(ROW), config, first["template"], first["template_markers"],
                      metas[0]["template"], t0)
    from ..score import merge_accounts, summary

    jury = config.load()
    limit = records.height if config.limit is None else min(config.limit, records.height)
    annotated = pl.concat([kept, rejected.drop("stage", "rule", "reason")], how="vertical").sort(ROW).drop(ROW)
    kept, rejected = kept.drop(ROW), rejected.drop(ROW)
    acct = merge_accounts([s["judges"] for s in stats])
    return StageResult(kept, rejected, summary(annotated, kept, rejected, jury, config, acct, limit))


def _uses_models(config) -> bool:
    return any(j.backend != "openai" for j in config.load().judges)


# ---- dedup: the data-parallel parts as Ray operations ------------------------------------

def _parts(n_rows: int, cpus: int) -> int:
    """Shuffle partitions: two per CPU, more when each would pass a million rows."""
    return int(max(2 * cpus, min(1024, -(-n_rows // 1_000_000))))


def _split(table, mapper, kwargs: dict, parts: int):
    """Map side of a shuffle: ``mapper(table)`` (which adds a ``part`` column), cut by part."""
    t = mapper(table, parts=parts, **kwargs)
    part = t.column("part").to_numpy()
    order = np.argsort(part, kind="stable")
    t, part = t.take(order), part[order]
    bounds = np.searchsorted(part, np.arange(parts + 1, dtype=part.dtype))
    pieces = [t.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])) for i in range(parts)]
    return pieces if parts > 1 else pieces[0]


def _merge(reducer, kwargs: dict, side, *tables):
    import pyarrow as pa

    table = pa.concat_tables(tables)
    return reducer(table, **kwargs) if side is None else reducer(table, side, **kwargs)


def shuffle(ray, blocks: list, mapper, reducer, parts: int, map_kwargs=None, reduce_kwargs=None, *,
            side: list | None = None, returns: int = 1, fetch: bool = True) -> list:
    """A hash shuffle as Ray tasks: every block is mapped and cut into ``parts`` pieces by
    its ``part`` column, and reducer i gets piece i of every block (and ``side[i]``, a
    partition of another table, for joins). ``fetch=False`` leaves the reducers' outputs
    in the object store (refs; ``returns`` of them per reducer). (Ray Data's
    ``groupby().map_groups()`` did the same 4-5x slower on the MinHash band rows.)"""
    if not blocks:
        return []
    split = ray.remote(_split).options(num_returns=parts)
    merge = ray.remote(_merge).options(num_returns=returns)
    mapped = [split.remote(b, mapper, map_kwargs or {}, parts) for b in blocks]
    if parts == 1:
        mapped = [[m] for m in mapped]
    out = [merge.remote(reducer, reduce_kwargs or {}, None if side is None else side[i], *[m[i] for m in mapped])
           for i in range(parts)]
    return ray.get(out) if fetch else out


def _texts(ray, texts: list[str]):
    return _dataset(ray, pl.DataFrame({"text": pl.Series(texts, dtype=pl.String)}))


def _exact_keys(table, strip_punct: bool, parts: int):
    import hashlib

    import pyarrow as pa

    from ..dedup.text import normalise

    digests = b"".join(hashlib.blake2b(normalise(t, strip_punct).encode("utf-8"), digest_size=16).digest()
                       for t in table.column("text").to_pylist())
    halves = np.frombuffer(digests, dtype=np.uint64).reshape(-1, 2)  # the 128-bit hash as two words
    return pa.table({ROW: table.column(ROW), "h1": halves[:, 0], "h2": halves[:, 1],
                     "part": halves[:, 0] % np.uint64(parts)})


def _exact_part(table):
    """One shuffle partition: every member of a group of equal hashes gets the group's
    first row as its label (what ``exact_groups`` gives)."""
    import pyarrow as pa

    rows, h1, h2 = (table.column(c).to_numpy() for c in (ROW, "h1", "h2"))
    order = np.lexsort((rows, h2, h1))
    rows, h1, h2 = rows[order], h1[order], h2[order]
    new = np.r_[True, (h1[1:] != h1[:-1]) | (h2[1:] != h2[:-1])]
    first = rows[np.flatnonzero(new)][np.cumsum(new) - 1]
    in_group = np.isin(first, first[first != rows])
    return pa.table({ROW: pa.array(rows[in_group], pa.int64()), "label": pa.array(first[in_group], pa.int64())})


def _sign(table, num_perm: int, ngram: int, shingle: str, keep_sets: bool, strip_punct: bool, seed: int,
          bands: int, rows: int):
    import pyarrow as pa

    from ..dedup import minhash as mh

    shingled = mh.shingle_and_sign(table.column("text").to_pylist(), num_perm, ngram, shingle,
                                   keep_sets=keep_sets, strip_punct=strip_punct, seed=seed)
    sigs = shingled.signatures
    keys = mh.band_keys(sigs, bands, rows)
    cols = {ROW: table.column(ROW),
            "sig": pa.FixedSizeListArray.from_arrays(pa.array(sigs.ravel()), num_perm),
            "keys": pa.FixedSizeListArray.from_arrays(pa.array(keys.ravel()), bands)}
    if keep_sets:
        cols["set"] = pa.LargeListArray.from_arrays(pa.array(shingled.set_offsets), pa.array(shingled.sets))
    return pa.table(cols)


def _band_rows(table, bands: int, parts: int):
    """One row per (document, band): the shuffle carries 32 bytes a row, not the signature."""
    import pyarrow as pa

    n = table.num_rows
    keys = table.column("keys").combine_chunks().flatten().to_numpy().reshape(n, bands)
    band = np.tile(np.arange(bands, dtype=np.uint64), n)
    key = keys.ravel()
    mixed = key ^ (band * np.uint64(0x9E3779B97F4A7C15))
    return pa.table({ROW: np.repeat(table.column(ROW).to_numpy(), bands), "band": band.astype(np.int64),
                     "key": key, "part": mixed % np.uint64(parts)})


def _bucket_part(table, n: int):
    """Candidate pairs of one shuffle partition: the local engine's rule per bucket."""
    import pyarrow as pa

    from ..dedup.minhash import bucket_pairs

    rows, band, key = (table.column(c).to_numpy() for c in (ROW, "band", "key"))
    order = np.lexsort((rows, key, band))
    rows, band, key = rows[order], band[order], key[order]
    starts = np.r_[True, (band[1:] != band[:-1]) | (key[1:] != key[:-1])]
    pairs = np.unique(np.concatenate([np.zeros(0, np.int64)] + bucket_pairs(starts, rows, n)))
    return pa.table({"pair": pa.array(pairs, pa.int64())})


DRIVER_EDGES = 50_000_000  # more verified pairs than this: clusters found on the workers


def _by_row(table, parts: int, exact: bool):
    import pyarrow as pa

    rows = table.column(ROW).to_numpy()
    return pa.table({ROW: rows, "pay": table.column("set" if exact else "sig"),
                     "part": rows % parts})


def _sorted_by_row(table):
    return table.drop_columns(["part"]).sort_by(ROW)


def _pairs_by(table, parts: int, n: int, side: str):
    """Key pairs (``pair`` = left * n + right, or left/right columns) by one side's row."""
    import pyarrow as pa

    if "pair" in table.column_names:
        pair = table.column("pair").to_numpy()
        cols = {"left": pair // n, "right": pair % n}
    else:
        cols = {c: table.column(c) for c in table.column_names if c != "part"}
    key = np.asarray(cols[side])
    return pa.table({**cols, "part": key % parts})


def _lookup(payload, rows: np.ndarray):
    at = np.searchsorted(payload.column(ROW).to_numpy(), rows)
    return payload.column("pay").take(at)


def _join_left(table, payload, n: int):
    """Pairs whose left row is in this partition: unique (the same pair comes from several
    bands, always to this reducer), with the left payload; and how many there were."""
    import pyarrow as pa

    pair = np.unique(table.column("left").to_numpy() * n + table.column("right").to_numpy())
    left, right = pair // n, pair % n
    return pa.table({"left": left, "right": right, "pay_left": _lookup(payload, left)}), len(pair)


def _join_right(table, payload, exact: bool, threshold: float | None):
    """The right payload joined in; the local engine's measure; pairs at the threshold kept."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..dedup import minhash as mh

    left, right = table.column("left").to_numpy(), table.column("right").to_numpy()
    k = len(left)
    both = pa.concat_arrays([table.column("pay_left").combine_chunks(), _lookup(payload, right).combine_chunks()])
    a, b = np.arange(k), np.arange(k) + k
    if exact:
        offsets = np.r_[0, np.cumsum(pc.list_value_length(both).to_numpy())].astype(np.int64)
        shingled = mh.Shingled(None, both.flatten().to_numpy().astype(np.uint64), offsets)
        sim = mh.exact_jaccard(shingled, a, b) if k else np.zeros(0)
    else:
        sigs = both.flatten().to_numpy().reshape(2 * k, -1) if k else np.zeros((0, 1), np.uint32)
        sim = mh.estimated_jaccard(sigs, a, b)
    keep = np.ones(k, bool) if threshold is None else sim >= threshold
    return pa.table({"left": left[keep], "right": right[keep], "sim": sim[keep]}), int(keep.sum())


def _verify(ray, pairs: list, payload: list, parts: int, n: int, exact: bool, threshold):
    """Candidate pairs -> unique pairs with their similarity (>= threshold) as refs, the
    number of unique candidates and of pairs kept: two joins with the row-partitioned payload."""
    one = shuffle(ray, pairs, _pairs_by, _join_left, parts, {"n": n, "side": "left"}, {"n": n},
                  side=payload, returns=2, fetch=False)
    n_pairs = sum(ray.get([r[1] for r in one]))
    two = shuffle(ray, [r[0] for r in one], _pairs_by, _join_right, parts, {"n": n, "side": "right"},
                  {"exact": exact, "threshold": threshold}, side=payload, returns=2, fetch=False)
    return [r[0] for r in two], n_pairs, sum(ray.get([r[1] for r in two]))


def _fetch_edges(ray, refs: list) -> dict:
    tables = [t for t in ray.get(refs) if t.num_rows]
    cols = ("left", "right", "sim")
    if not tables:
        return {c: np.zeros(0, np.float64 if c == "sim" else np.int64) for c in cols}
    import pyarrow as pa

    t = pa.concat_tables(tables)
    return {c: t.column(c).to_numpy() for c in cols if c in t.column_names}


# ---- connected components on the workers: large-star / small-star ---------------------
# (Kiveris et al., "Connected Components in MapReduce and Beyond", 2014). Each round is two
# shuffles by node; it ends when the edges form stars around each component's smallest
# node, which is the label union-find gives.

def _star_map(table, parts: int, large: bool):
    import pyarrow as pa

    a, b = table.column("left").to_numpy(), table.column("right").to_numpy()
    if large:  # both directions: each node sees all its neighbours
        key, val = np.r_[a, b], np.r_[b, a]
    else:  # each edge at its larger end
        key, val = np.maximum(a, b), np.minimum(a, b)
    return pa.table({"key": key, "val": val, "part": key % parts})


def _groups(table):
    key, val = table.column("key").to_numpy(), table.column("val").to_numpy()
    order = np.lexsort((val, key))
    key, val = key[order], val[order]
    keep = np.r_[True, (key[1:] != key[:-1]) | (val[1:] != val[:-1])]
    key, val = key[keep], val[keep]
    start = np.r_[True, key[1:] != key[:-1]]
    group = np.cumsum(start) - 1
    first = val[np.flatnonzero(start)]  # the smallest neighbour of each node
    return key, val, start, group, first


def _large_star(table):
    """Every neighbour larger than the node goes to the smallest of the node and its
    neighbours. Also counts nodes that break the star shape (two or more neighbours, and
    not the smallest): none means the input already is the answer."""
    import pyarrow as pa

    key, val, start, group, first = _groups(table)
    m = np.minimum(first, key[np.flatnonzero(start)])
    degree = np.bincount(group) if len(group) else np.zeros(0, np.int64)
    broken = int(((degree >= 2) & (key[np.flatnonzero(start)] > first)).sum())
    up = val > key
    return pa.table({"left": val[up], "right": m[group[up]]}), broken


def _small_star(table):
    """A node and its smaller neighbours all go to the smallest of them."""
    import pyarrow as pa

    key, val, start, group, first = _groups(table)
    m = first[group]
    others = val != m
    heads = np.flatnonzero(start)
    return pa.table({"left": np.r_[val[others], key[heads]], "right": np.r_[m[others], first]})


def star_components(ray, edges: list, n: int, parts: int) -> np.ndarray:
    """Union-find's labels (each node's component minimum) for edge tables in the object
    store, computed on the workers; only (node, label) of nodes in an edge come back."""
    rounds = 0
    while edges:
        large = shuffle(ray, edges, _star_map, _large_star, parts, {"large": True}, returns=2, fetch=False)
        if sum(ray.get([r[1] for r in large])) == 0:
            break
        edges = shuffle(ray, [r[0] for r in large], _star_map, _small_star, parts, {"large": False}, fetch=False)
        rounds += 1
        if rounds > 200:  # O(log^2 n) rounds in theory: this is a bug, not a big graph
            raise RuntimeError("connected components did not converge")
    labels = np.arange(n, dtype=np.int64)
    got = _fetch_edges(ray, edges)
    a, b = got["left"], got["right"]
    labels[np.maximum(a, b)] = np.minimum(a, b)  # stars: every leaf next to its centre
    return labels


class _Embed:
    """An embedding actor: the model is loaded once per actor."""

    def __init__(self, model: str, batch_size: int):
        from ..dedup.semantic import Embedder

        self.embedder = Embedder(model, batch_size)

    def __call__(self, table):
        import pyarrow as pa

        before = self.embedder.truncated
        vecs = self.embedder.encode(table.column("text").to_pylist())
        meta = json.dumps({"truncated": self.embedder.truncated - before, "max_tokens": self.embedder.max_tokens})
        return pa.table({ROW: table.column(ROW),
                         "vec": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), vecs.shape[1]),
                         META: pa.array([meta] + [None] * (table.num_rows - 1), pa.large_string())})


class RayBackend(LocalBackend):
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
                                  bands=bands, rows=rows),
            batch_size=None, batch_format="pyarrow").materialize()
        blocks = signed.to_arrow_refs()
        parts = _parts(n, _cpus(ray))
        # what verification reads, partitioned by row once: the signatures (or shingle sets)
        payload = shuffle(ray, blocks, _by_row, _sorted_by_row, parts, {"exact": exact}, fetch=False)
        pairs = shuffle(ray, blocks, _band_rows, _bucket_part, _parts(n * bands, _cpus(ray)), {"bands": bands},
                        {"n": n}, fetch=False)
        edges, n_candidates, n_verified = _verify(ray, pairs, payload, parts, n, exact, threshold)

        def measure(left, right):
            """Similarities of any pairs, joined with the payload on the workers."""
            left, right = np.asarray(left, np.int64), np.asarray(right, np.int64)
            import pyarrow as pa

            block = ray.put(pa.table({"pair": left * n + right}))
            found, _, _ = _verify(ray, [block], payload, parts, n, exact, None)
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
                _Embed, fn_constructor_args=(embedder.model_path, embedder.batch_size), batch_size=None,
                batch_format="pyarrow", **_pool(ray, gpus))
            tables = [t for t in ray.get(out.to_arrow_refs()) if t.num_rows]
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

"""The Ray engine's shuffles: a hash shuffle as Ray tasks, and what dedup runs through it
(exact hashes grouped; MinHash band keys grouped into candidate pairs, the candidates
verified by two joins with the signatures, clusters by large-star/small-star). Every
function here runs on a worker on one block or one partition, with numpy, and calls the
local engine's own pieces (``minhash.bucket_pairs``, the measures) where one decides
anything."""
from __future__ import annotations

import numpy as np

ROW = "_row"


def _run_starts(*columns: np.ndarray) -> np.ndarray:
    """True where a run of equal values (in all ``columns``, sorted) begins. Empty for no
    rows: a shuffle partition may get none (fewer distinct keys than partitions), where
    ``np.r_[True, ...]`` gave one True and a reducer indexed row 0 of an empty table."""
    n = len(columns[0])
    new = np.zeros(n, dtype=bool)
    if n:
        new[0] = True
        for c in columns:
            new[1:] |= c[1:] != c[:-1]
    return new


def _parts(n_rows: int, cpus: int) -> int:
    """Shuffle partitions: two per CPU, more when each would pass a million rows."""
    return int(max(2 * cpus, min(1024, -(-n_rows // 1_000_000))))


def _split(table, mapper, kwargs: dict, parts: int):
    """Map side of a shuffle: ``mapper(table)`` (which adds a ``part`` column), cut by part."""
    t = mapper(table, parts=parts, **kwargs)
    part = t.column("part").to_numpy()
    if parts < 1 << 16:
        part = part.astype(np.uint16)  # a stable sort of 16-bit keys is a radix sort
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


def _exact_keys(table, strip_punct: bool, parts: int):
    import pyarrow as pa

    from ..dedup.exact import digest

    digests = b"".join(digest(t, strip_punct) for t in table.column("text").to_pylist())
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
    new = _run_starts(h1, h2)
    first = rows[np.flatnonzero(new)][np.cumsum(new) - 1]
    in_group = np.isin(first, first[first != rows])
    return pa.table({ROW: pa.array(rows[in_group], pa.int64()), "label": pa.array(first[in_group], pa.int64())})


def _sign(table, num_perm: int, ngram: int, shingle: str, keep_sets: bool, strip_punct: bool, seed: int,
          bands: int, rows: int, signature: str = "kperm"):
    import pyarrow as pa

    from ..dedup import minhash as mh

    shingled = mh.shingle_and_sign(table.column("text").to_pylist(), num_perm, ngram, shingle,
                                   keep_sets=keep_sets, strip_punct=strip_punct, seed=seed, signature=signature)
    sigs = shingled.signatures
    keys = mh.band_keys(sigs, bands, rows)
    cols = {ROW: table.column(ROW),
            "sig": pa.FixedSizeListArray.from_arrays(pa.array(sigs.ravel()), num_perm),
            "keys": pa.FixedSizeListArray.from_arrays(pa.array(keys.ravel()), bands)}
    if keep_sets:
        cols["set"] = pa.LargeListArray.from_arrays(pa.array(shingled.set_offsets), pa.array(shingled.sets))
    return pa.table(cols)


def band_parts(n_rows: int, cpus: int, bands: int) -> int:
    """Partitions of the band shuffle: a multiple of ``bands``, so that each holds one band."""
    return bands * max(1, -(-_parts(n_rows, cpus) // bands))


def _band_rows(table, bands: int, parts: int):
    """One row per (document, band): the shuffle carries 20 bytes a row, not the signature.
    Partition ``band * k + key % k``: every partition holds one band."""
    import pyarrow as pa

    n = table.num_rows
    keys = table.column("keys").combine_chunks().flatten().to_numpy().reshape(n, bands)
    band = np.tile(np.arange(bands, dtype=np.int16), n)
    key = keys.ravel()
    k = parts // bands
    part = band.astype(np.uint16) * np.uint16(k) + (key % np.uint64(k)).astype(np.uint16)
    return pa.table({ROW: np.repeat(table.column(ROW).to_numpy(), bands), "band": band, "key": key, "part": part})


def _bucket_part(table, n: int):
    """Candidate pairs of one shuffle partition (one band): the local engine's rule per
    bucket. Rows arrive in document order (blocks in order, each in order), so a stable
    sort by key leaves documents ascending inside a bucket, as in the local engine."""
    import pyarrow as pa

    from ..dedup.minhash import bucket_pairs

    rows, band, key = (table.column(c).to_numpy() for c in (ROW, "band", "key"))
    if len(rows) and (band.min() != band.max() or np.any(np.diff(rows) < 0)):
        order = np.lexsort((rows, key, band))  # not the usual layout: sort on everything
    else:
        order = np.argsort(key, kind="stable")
    rows, band, key = rows[order], band[order], key[order]
    starts = _run_starts(band, key)
    pairs = np.unique(np.concatenate([np.zeros(0, np.int64)] + bucket_pairs(starts, rows, n)))
    return pa.table({"pair": pa.array(pairs, pa.int64())})


DRIVER_EDGES = 50_000_000  # more verified pairs than this: clusters found on the workers


def _row_span(table) -> tuple:
    """(first, last) row of a block holding consecutive rows in order, else ()."""
    rows = table.column(ROW).to_numpy()
    return (int(rows[0]), int(rows[-1])) if len(rows) and bool(np.all(np.diff(rows) == 1)) else ()


def _by_row(table, parts: int, column: str):
    import pyarrow as pa

    rows = table.column(ROW).to_numpy()
    return pa.table({ROW: rows, column: table.column(column), "part": rows % parts})


def _sorted_by_row(table):
    return table.drop_columns(["part"]).sort_by(ROW)


def row_partitions(ray, blocks: list, column: str, parts: int) -> tuple[list, np.ndarray | None]:
    """What the verification joins read (``column``: signatures or shingle sets), as
    partitions by row: the blocks themselves when each holds a run of consecutive rows
    (the usual case: they are the input's blocks; nothing moves), else a shuffle by row."""
    spans = ray.get([ray.remote(_row_span).remote(b) for b in blocks])
    if all(spans) and all(a[1] + 1 == b[0] for a, b in zip(spans, spans[1:])):
        return blocks, np.array([a for a, _ in spans], dtype=np.int64)
    return shuffle(ray, blocks, _by_row, _sorted_by_row, parts, {"column": column}, fetch=False), None


def _pairs_by(table, parts: int, n: int, side: str, starts: np.ndarray | None):
    """Key pairs (``pair`` = left * n + right, or left/right columns) by the partition
    holding one side's row."""
    import pyarrow as pa

    if "pair" in table.column_names:
        pair = table.column("pair").to_numpy()
        cols = {"left": pair // n, "right": pair % n}
    else:
        cols = {c: table.column(c) for c in table.column_names if c != "part"}
    key = np.asarray(cols[side])
    part = key % parts if starts is None else np.searchsorted(starts, key, side="right") - 1
    return pa.table({**cols, "part": part})


def _lookup(payload, rows: np.ndarray, column: str):
    at = np.searchsorted(payload.column(ROW).to_numpy(), rows)
    return payload.column(column).take(at)


def _join_left(table, payload, n: int, column: str):
    """Pairs whose left row is in this partition: unique (the same pair comes from several
    bands, always to this reducer), with the left payload; and how many there were."""
    import pyarrow as pa

    pair = np.unique(table.column("left").to_numpy() * n + table.column("right").to_numpy())
    left, right = pair // n, pair % n
    return pa.table({"left": left, "right": right, "pay_left": _lookup(payload, left, column)}), len(pair)


def _join_right(table, payload, column: str, threshold: float | None, signature: str = "kperm"):
    """The right payload joined in; the local engine's measure; pairs at the threshold kept."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..dedup import minhash as mh

    left, right = table.column("left").to_numpy(), table.column("right").to_numpy()
    k = len(left)
    both = pa.concat_arrays([table.column("pay_left").combine_chunks(),
                             _lookup(payload, right, column).combine_chunks()])
    a, b = np.arange(k), np.arange(k) + k
    if column == "set":  # verify: exact, the true Jaccard of the shingle sets
        offsets = np.r_[0, np.cumsum(pc.list_value_length(both).to_numpy())].astype(np.int64)
        shingled = mh.Shingled(None, both.flatten().to_numpy().astype(np.uint64), offsets)
        sim = mh.exact_jaccard(shingled, a, b) if k else np.zeros(0)
    else:
        sigs = both.flatten().to_numpy().reshape(2 * k, -1) if k else np.zeros((0, 1), np.uint32)
        sim = mh.estimated_jaccard(sigs, a, b, signature)
    keep = np.ones(k, bool) if threshold is None else sim >= threshold
    return pa.table({"left": left[keep], "right": right[keep], "sim": sim[keep]}), int(keep.sum())


def verify_pairs(ray, pairs: list, payload: list, starts, column: str, n: int, threshold, signature: str = "kperm"):
    """Candidate pairs -> unique pairs with their similarity (>= threshold) as refs, the
    number of unique candidates and of pairs kept: two joins with the row partitions."""
    parts = len(payload)
    keys = {"n": n, "starts": starts}
    one = shuffle(ray, pairs, _pairs_by, _join_left, parts, {**keys, "side": "left"}, {"n": n, "column": column},
                  side=payload, returns=2, fetch=False)
    n_pairs = sum(ray.get([r[1] for r in one]))
    two = shuffle(ray, [r[0] for r in one], _pairs_by, _join_right, parts, {**keys, "side": "right"},
                  {"column": column, "threshold": threshold, "signature": signature}, side=payload, returns=2, fetch=False)
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
    keep = _run_starts(key, val)
    key, val = key[keep], val[keep]
    start = _run_starts(key)
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

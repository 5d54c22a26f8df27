"""Agreement between judges, and between judges and people."""
from __future__ import annotations

import math
from itertools import combinations


def aggregate(values: list[float], how: str) -> float:
    """Combine the scores of the judges that answered. ``majority`` takes the most common
    rounded score; a tie goes to the lowest of the tied values (the cautious choice)."""
    import statistics

    if how == "mean":
        return statistics.fmean(values)
    if how == "median":
        return float(statistics.median(values))
    if how == "min":
        return float(min(values))
    if how == "majority":
        counts: dict[int, int] = {}
        for v in values:
            counts[round(v)] = counts.get(round(v), 0) + 1
        best = max(counts.values())
        return float(min(k for k, c in counts.items() if c == best))
    raise ValueError(how)


def pairwise(columns: dict[str, list[float | None]]) -> list[dict]:
    """Exact and within-one agreement of each pair of judges on the records both scored
    (scores rounded to the nearest integer, so log-probability judges compare too)."""
    out = []
    for a, b in combinations(columns, 2):
        pairs = [(round(x), round(y)) for x, y in zip(columns[a], columns[b]) if x is not None and y is not None]
        n = len(pairs)
        out.append({"a": a, "b": b, "n": n,
                    "exact": round(sum(x == y for x, y in pairs) / n, 4) if n else None,
                    "within_one": round(sum(abs(x - y) <= 1 for x, y in pairs) / n, 4) if n else None})
    return out


def krippendorff_alpha_ordinal(units: list[list[float | None]]) -> float | None:
    """Krippendorff's alpha with the ordinal metric; ``units[u]`` holds each coder's value
    for unit u (None = missing). Values are rounded to integers. None when undefined."""
    import numpy as np

    rows = [[round(v) for v in u if v is not None] for u in units]
    rows = [r for r in rows if len(r) >= 2]  # only units with two or more values are pairable
    if not rows:
        return None
    values = sorted({v for r in rows for v in r})
    if len(values) < 2:
        return None if len(values) == 0 else 1.0
    index = {v: i for i, v in enumerate(values)}
    k = len(values)
    o = np.zeros((k, k))
    for r in rows:
        m = len(r)
        counts = np.zeros(k)
        for v in r:
            counts[index[v]] += 1
        # ordered pairs of distinct positions within the unit, weighted 1/(m-1)
        o += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    cum = np.cumsum(n_c)
    delta = np.zeros((k, k))
    for c in range(k):
        for d in range(k):
            lo, hi = min(c, d), max(c, d)
            s = cum[hi] - (cum[lo - 1] if lo > 0 else 0.0)
            delta[c, d] = (s - (n_c[c] + n_c[d]) / 2) ** 2
    d_o = (o * delta).sum()
    d_e = (np.outer(n_c, n_c) * delta).sum()
    if d_e == 0:
        return None
    return float(1 - (n - 1) * d_o / d_e)


def versus_labels(predicted: list[float | None], labels: list[float], scale: tuple[int, int]) -> dict:
    """How one judge (or the jury) compares with human scores: exact and within-one agreement
    (rounded), Spearman's rho, and quadratic-weighted Cohen's kappa."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    pairs = [(p, h) for p, h in zip(predicted, labels) if p is not None]
    n = len(pairs)
    out = {"n": n, "missing": len(labels) - n}
    if n == 0:
        return {**out, "exact": None, "within_one": None, "spearman": None, "kappa_quadratic": None}
    pr = [round(p) for p, _ in pairs]
    hr = [round(h) for _, h in pairs]
    out["exact"] = round(sum(a == b for a, b in zip(pr, hr)) / n, 4)
    out["within_one"] = round(sum(abs(a - b) <= 1 for a, b in zip(pr, hr)) / n, 4)
    rho = spearmanr([p for p, _ in pairs], [h for _, h in pairs]).statistic if n > 1 else float("nan")
    out["spearman"] = None if rho is None or math.isnan(rho) else round(float(rho), 4)
    lo, hi = scale
    try:
        kappa = cohen_kappa_score(pr, hr, weights="quadratic", labels=list(range(lo, hi + 1)))
        out["kappa_quadratic"] = None if math.isnan(kappa) else round(float(kappa), 4)
    except ValueError:
        out["kappa_quadratic"] = None
    return out

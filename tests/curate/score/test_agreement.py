import math

import numpy as np
import pytest

from curate.score.agreement import aggregate, krippendorff_alpha_ordinal, pairwise, versus_labels


@pytest.mark.parametrize("how, values, expected", [
    ("mean", [1, 2, 4], 7 / 3),
    ("median", [1, 2, 4], 2.0),
    ("median", [1, 4], 2.5),
    ("min", [3, 2.5, 4], 2.5),
    ("majority", [4, 4, 2], 4.0),
    ("majority", [4.4, 3.6, 2], 4.0),   # rounded before counting
    ("majority", [5, 2], 2.0),           # a tie goes to the lower score
])
def test_aggregate(how, values, expected):
    assert aggregate(values, how) == pytest.approx(expected)


def test_pairwise_agreement_counts_only_shared_records():
    cols = {"a": [1, 2, 3, None, 5], "b": [1, 3, 5, 4, None]}
    [p] = pairwise(cols)
    assert (p["n"], p["exact"], p["within_one"]) == (3, round(1 / 3, 4), round(2 / 3, 4))


def test_alpha_matches_an_independent_implementation():
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(7)
    truth = rng.integers(1, 6, size=60)
    coders = []
    for noise in (0, 1, 2):
        c = np.clip(truth + rng.integers(-noise, noise + 1, size=60), 1, 5).astype(float)
        c[rng.random(60) < 0.15] = np.nan  # missing answers
        coders.append(c)
    data = np.array(coders)
    units = [[None if math.isnan(v) else float(v) for v in data[:, u]] for u in range(data.shape[1])]
    ours = krippendorff_alpha_ordinal(units)
    theirs = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5])
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_alpha_of_perfect_agreement_is_one_and_undefined_cases_are_none():
    assert krippendorff_alpha_ordinal([[1, 1], [3, 3], [5, 5]]) == pytest.approx(1.0)
    assert krippendorff_alpha_ordinal([[1, None], [None, 2]]) is None


def test_versus_labels_hand_computed():
    pred = [1, 2, 3, 4, 5, None]
    human = [1, 3, 3, 5, 5, 2]
    r = versus_labels(pred, human, (1, 5))
    assert r["n"] == 5 and r["missing"] == 1
    assert r["exact"] == 0.6 and r["within_one"] == 1.0
    # ranks: pred 1..5; human 1, 2.5, 2.5, 4.5, 4.5 -> Pearson of the ranks
    hr = np.array([1, 2.5, 2.5, 4.5, 4.5])
    pr = np.arange(1, 6)
    assert r["spearman"] == pytest.approx(np.corrcoef(pr, hr)[0, 1], abs=1e-4)
    # quadratic kappa by hand: 1 - sum(w*O)/sum(w*E), w = (i-j)^2/16
    o = np.zeros((5, 5))
    for p, h in zip(pred[:5], human[:5]):
        o[p - 1, h - 1] += 1
    e = np.outer(o.sum(1), o.sum(0)) / o.sum()
    w = np.array([[(i - j) ** 2 / 16 for j in range(5)] for i in range(5)])
    assert r["kappa_quadratic"] == pytest.approx(1 - (w * o).sum() / (w * e).sum(), abs=1e-4)

"""flrlib.metrics: accuracy with ties, correlations, bootstrap CIs, paired comparisons."""
import numpy as np
import pytest
from scipy import stats

from flrlib import metrics


def test_pairwise_accuracy_counts_ties_as_half():
    acc = metrics.pairwise_accuracy([3, 1, 2, 5], [1, 2, 2, 0])
    assert acc == {"value": (1 + 0 + 0.5 + 1) / 4, "n": 4, "ties": 1}
    assert list(metrics.pairwise_correct([3, 1, 2], [1, 2, 2])) == [1.0, 0.0, 0.5]


def test_pairwise_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        metrics.pairwise_accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="NaN"):
        metrics.pairwise_accuracy([1, np.nan], [0, 0])


def test_accuracy_ci_brackets_value_and_is_seeded():
    rng = np.random.default_rng(0)
    c, r = rng.normal(0.5, 1, 400), rng.normal(0, 1, 400)
    a = metrics.accuracy_ci(c, r, n_boot=500, seed=1)
    assert a["ci_low"] < a["value"] < a["ci_high"]
    assert a == metrics.accuracy_ci(c, r, n_boot=500, seed=1)
    # normal approximation: half-width about 1.96 * sqrt(p(1-p)/n)
    half = 1.96 * np.sqrt(a["value"] * (1 - a["value"]) / 400)
    assert abs((a["ci_high"] - a["ci_low"]) / 2 - half) < 0.015
    small = metrics.accuracy_ci(c[:40], r[:40], n_boot=500, seed=1)
    assert small["ci_high"] - small["ci_low"] > a["ci_high"] - a["ci_low"]


def test_bootstrap_ci_resamples_rows_jointly():
    # y == x on every row: a joint resample keeps the difference at exactly 0, an independent one would not
    x = np.arange(50, dtype=float)
    lo, hi = metrics.bootstrap_ci(lambda a, b: np.mean(a - b), x, x.copy(), n_boot=300)
    assert lo == hi == 0.0
    assert all(np.isnan(metrics.bootstrap_ci(np.mean, [1.0])))  # fewer than 2 rows: no interval


@pytest.mark.parametrize("method,fn", [("pearson", stats.pearsonr), ("spearman", stats.spearmanr),
                                       ("kendall", stats.kendalltau)])
def test_correlation_ci_matches_scipy(method, fn):
    rng = np.random.default_rng(3)
    x = rng.normal(size=60)
    y = np.round(x + rng.normal(size=60))  # ties in y (like equal ELOs)
    c = metrics.correlation_ci(x, y, method, n_boot=400, seed=0)
    ref = fn(x, y)
    assert c["value"] == pytest.approx(ref.statistic) and c["p_value"] == pytest.approx(ref.pvalue)
    assert c["ci_low"] < c["value"] < c["ci_high"] and c["n"] == 60


def test_correlation_degenerate_is_nan_not_error():
    c = metrics.correlation_ci([1, 1, 1], [1, 2, 3])
    assert np.isnan(c["value"]) and np.isnan(c["ci_low"]) and c["n"] == 3
    with pytest.raises(ValueError, match="method"):
        metrics.correlation([1, 2], [1, 2], "cosine")


def test_paired_bootstrap_and_mcnemar():
    rng = np.random.default_rng(0)
    a = (rng.random(300) < 0.75).astype(float)
    b = (rng.random(300) < 0.5).astype(float)
    d = metrics.paired_bootstrap(a, b, n_boot=1000)
    assert d["diff"] == pytest.approx(a.mean() - b.mean()) and d["ci_low"] > 0 and d["p_value"] < 0.01
    same = metrics.paired_bootstrap(a, a)
    assert same["diff"] == 0 and same["p_value"] == 1.0
    m = metrics.mcnemar(a, b)
    assert m["a_only"] == int(((a == 1) & (b == 0)).sum()) and m["b_only"] == int(((a == 0) & (b == 1)).sum())
    assert m["p_value"] == pytest.approx(stats.binomtest(m["a_only"], m["a_only"] + m["b_only"]).pvalue)


def test_grouped_bootstrap_average():
    rng = np.random.default_rng(0)
    g1, g2 = (rng.random(200) < 0.8).astype(float), (rng.random(50) < 0.4).astype(float)
    lo, hi = metrics.grouped_bootstrap(lambda c, axis=-1: c.mean(axis=axis), [(g1,), (g2,)], n_boot=500)
    assert lo < (g1.mean() + g2.mean()) / 2 < hi
    x = rng.normal(size=80)
    lo, hi = metrics.grouped_bootstrap(metrics.vector_pearson, [(x, x + rng.normal(size=80))], n_boot=300)
    assert 0.4 < lo < hi < 0.95

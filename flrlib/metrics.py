"""Metrics with 95 % bootstrap confidence intervals (pure numpy/scipy; no model, no files).

* Pairwise accuracy: a pair is correct (1) when the chosen side scores higher, wrong (0) when lower, and a tie
  counts 0.5; the number of ties is always reported (:func:`pairwise_correct`, :func:`pairwise_accuracy`).
* Correlations: Pearson (the paper's rating metric), Spearman and Kendall tau-b (handles tied targets such as
  equal Arena ELOs), each with scipy's p-value (:func:`correlation_ci`).
* Confidence intervals: percentile bootstrap from :func:`scipy.stats.bootstrap` with rows resampled jointly
  (``paired=True``), ``n_boot`` resamples, a fixed ``seed`` (:func:`bootstrap_ci`). Resamples on which a statistic
  is undefined (e.g. a constant column for a correlation) are dropped from the percentiles and counted.
* FLR vs Direct on the same rows: :func:`paired_bootstrap` (difference of means, bootstrap CI of the paired
  difference, two-sided sign-flip permutation p-value) and :func:`mcnemar` (exact, on discordant rows).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

CORRELATIONS = ("pearson", "spearman", "kendall")


def _arrays(*arrays) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=float).ravel() for a in arrays]
    n = {len(a) for a in out}
    if len(n) > 1:
        raise ValueError(f"arrays must have the same length, got {[len(a) for a in out]}")
    return out


def pairwise_correct(chosen, rejected) -> np.ndarray:
    """Per-pair correctness: 1 if chosen > rejected, 0.5 on a tie, 0 otherwise (NaN scores raise)."""
    c, r = _arrays(chosen, rejected)
    if np.isnan(c).any() or np.isnan(r).any():
        raise ValueError("pairwise scores contain NaN")
    return np.where(c > r, 1.0, np.where(c == r, 0.5, 0.0))


def pairwise_accuracy(chosen, rejected) -> dict:
    """``{"value", "n", "ties"}``; ties count 0.5."""
    c, r = _arrays(chosen, rejected)
    correct = pairwise_correct(c, r)
    return {"value": float(correct.mean()) if len(correct) else float("nan"), "n": int(len(correct)),
            "ties": int((c == r).sum())}


def bootstrap_ci(stat_fn, *arrays, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05,
                 vectorized: bool = False) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat_fn(*arrays)``, resampling rows of all arrays jointly.

    ``vectorized=True``: ``stat_fn(*arrays, axis=-1)`` handles a batch of resamples at once (much faster).
    Returns ``(nan, nan)`` when there are fewer than 2 rows or no resample gives a finite statistic.
    """
    data = _arrays(*arrays)
    if not data or len(data[0]) < 2:
        return float("nan"), float("nan")
    fn = stat_fn if vectorized else (lambda *a: stat_fn(*a))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples: NaN statistics, dropped below
        res = stats.bootstrap(tuple(data), fn, paired=True, vectorized=vectorized, n_resamples=n_boot,
                              confidence_level=1 - alpha, method="percentile", rng=np.random.default_rng(seed),
                              batch=500)
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    dist = dist[np.isfinite(dist)]
    if not len(dist):
        return float("nan"), float("nan")
    lo, hi = np.quantile(dist, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def accuracy_ci(chosen, rejected, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Pairwise accuracy with a bootstrap CI: ``{"value", "ci_low", "ci_high", "n", "ties"}``."""
    acc = pairwise_accuracy(chosen, rejected)
    correct = pairwise_correct(chosen, rejected)
    lo, hi = bootstrap_ci(np.mean, correct, n_boot=n_boot, seed=seed, alpha=alpha)
    return {"value": acc["value"], "ci_low": lo, "ci_high": hi, "n": acc["n"], "ties": acc["ties"]}


def correlation(x, y, method: str = "pearson") -> tuple[float, float]:
    """``(coefficient, p_value)`` from scipy; NaN when undefined (fewer than 2 rows or a constant column)."""
    if method not in CORRELATIONS:
        raise ValueError(f"method must be one of {CORRELATIONS}, got {method!r}")
    x, y = _arrays(x, y)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    fn = {"pearson": stats.pearsonr, "spearman": stats.spearmanr, "kendall": stats.kendalltau}[method]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fn(x, y)
    return float(r.statistic), float(r.pvalue)


def _vector_corr(method: str):
    """Pearson / Spearman over the last axis of a batch of resamples (Spearman = Pearson of average ranks)."""
    def stat(a, b, axis=-1):
        if method == "spearman":
            a, b = stats.rankdata(a, axis=axis), stats.rankdata(b, axis=axis)
        return stats.pearsonr(a, b, axis=axis).statistic
    return stat


def correlation_ci(x, y, method: str = "pearson", n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Correlation with a bootstrap CI over rows: ``{"value", "ci_low", "ci_high", "n", "p_value"}``."""
    value, p = correlation(x, y, method)
    x, y = _arrays(x, y)
    if np.isnan(value):
        lo, hi = float("nan"), float("nan")
    elif method == "kendall":
        lo, hi = bootstrap_ci(lambda a, b: correlation(a, b, method)[0], x, y, n_boot=n_boot, seed=seed, alpha=alpha)
    else:
        lo, hi = bootstrap_ci(_vector_corr(method), x, y, n_boot=n_boot, seed=seed, alpha=alpha, vectorized=True)
    return {"value": value, "ci_low": lo, "ci_high": hi, "n": int(len(x)), "p_value": p}


def correlations_ci(x, y, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Pearson, Spearman and Kendall at once: ``{method: correlation_ci(...)}``."""
    return {m: correlation_ci(x, y, m, n_boot=n_boot, seed=seed, alpha=alpha) for m in CORRELATIONS}


def paired_bootstrap(a, b, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Difference of means of two per-row vectors on the same rows (e.g. 1/0.5/0 correctness of FLR and Direct).

    ``diff`` = mean(a) - mean(b); CI: bootstrap of the paired difference; ``p_value``: two-sided sign-flip
    permutation test of the paired differences (exact when 2**n <= n_boot).
    """
    a, b = _arrays(a, b)
    n = len(a)
    if n == 0:
        return {"diff": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan"), "n": 0}
    d = a - b
    lo, hi = bootstrap_ci(np.mean, d, n_boot=n_boot, seed=seed, alpha=alpha)
    if np.all(d == 0):
        p = 1.0
    else:
        p = stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
                                   vectorized=True, n_resamples=n_boot, alternative="two-sided",
                                   rng=np.random.default_rng(seed)).pvalue
    return {"diff": float(d.mean()), "ci_low": lo, "ci_high": hi, "p_value": float(p), "n": int(n)}


def mcnemar(a_correct, b_correct) -> dict:
    """Exact McNemar test on discordant rows: ``{"a_only", "b_only", "n", "p_value"}``.

    ``a_only`` counts rows where a scored higher than b (e.g. FLR right, Direct wrong); half-credit ties (0.5)
    count as discordant with a 0 or a 1 in the direction of the difference.
    """
    a, b = _arrays(a_correct, b_correct)
    a_only, b_only = int((a > b).sum()), int((a < b).sum())
    p = 1.0 if a_only + b_only == 0 else float(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "n": int(len(a)), "p_value": p}


def vector_pearson(x, y, axis: int = -1):
    """Pearson r along ``axis`` (batches of resamples); NaN where a resample is constant."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stats.pearsonr(x, y, axis=axis).statistic


def grouped_bootstrap(stat_fn, groups, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
                      ) -> tuple[float, float]:
    """CI of the mean over groups of ``stat_fn(*group)`` (e.g. the average accuracy over benchmarks).

    Stratified bootstrap: each group's rows are resampled on their own (rows of one group's arrays jointly);
    ``stat_fn(*arrays, axis=-1)`` must accept a batch of resamples. scipy's bootstrap has no stratified
    multi-sample paired mode, hence the explicit index draw. Returns ``(nan, nan)`` if a group has < 2 rows.
    """
    rng = np.random.default_rng(seed)
    per = []
    for g in groups:
        arrays = _arrays(*g)
        n = len(arrays[0])
        if n < 2:
            return float("nan"), float("nan")
        idx = rng.integers(0, n, size=(n_boot, n))
        per.append(np.asarray(stat_fn(*[a[idx] for a in arrays], axis=-1), dtype=float))
    if not per:
        return float("nan"), float("nan")
    dist = np.mean(per, axis=0)
    dist = dist[np.isfinite(dist)]
    if not len(dist):
        return float("nan"), float("nan")
    lo, hi = np.quantile(dist, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)

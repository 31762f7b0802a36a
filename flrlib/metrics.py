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
* Length control (is a scorer more than a preference for longer responses?): accuracy per length stratum,
  length-balanced and length-residualised accuracy, agreement with "longer wins" (:func:`pairwise_length_metrics`
  collects them in one flat dict); partial correlations given length for ratings and systems
  (:func:`rating_length_metrics`, :func:`system_length_metrics`).
* Style control (length and markdown together, as Chatbot Arena's style control counts them): the margin regressed on
  the length and markdown differences before counting (:func:`style_controlled_accuracy`).
* Bank ablations from per-follow-up values: accuracy vs follow-ups per category and polarity, per category,
  leave one category out, positives / negatives only (:func:`bank_size_ablation`; rewards as ``Scorer._finish``).
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
    elif n < 2:
        p = float("nan")  # one differing row: no permutation distribution
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


def _pearson_diff(x, y, target):
    return correlation(x, target)[0] - correlation(y, target)[0]


def metric_ci(kind: str, x, target=None, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """One scorer's metric on some rows: ``{"metric", "value", "ci_low", "ci_high", "n"}``.

    ``kind="pairwise"``: ``x`` = per-pair correctness (1 / 0.5 / 0), accuracy with a bootstrap CI. ``"rating"``
    (``"system"``): ``x`` = rewards per row (mean reward per model), Pearson r with ``target`` (human scores; ELO)."""
    if kind == "pairwise":
        x, = _arrays(x)
        lo, hi = bootstrap_ci(np.mean, x, n_boot=n_boot, seed=seed, alpha=alpha)
        return {"metric": "accuracy", "value": float(x.mean()) if len(x) else float("nan"), "ci_low": lo,
                "ci_high": hi, "n": int(len(x))}
    c = correlation_ci(x, target, "pearson", n_boot=n_boot, seed=seed, alpha=alpha)
    return {"metric": "pearson" if kind == "rating" else "pearson_elo", "value": c["value"], "ci_low": c["ci_low"],
            "ci_high": c["ci_high"], "n": c["n"]}


def paired_diff(kind: str, a, b, target=None, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Scorer ``a`` minus scorer ``b`` on the same rows: the one paired comparison of the package.

    ``kind="pairwise"``: ``a``, ``b`` = per-pair correctness; ``diff`` = accuracy(a) - accuracy(b), bootstrap CI of
    the paired difference, sign-flip permutation ``p_value`` (:func:`paired_bootstrap`) and exact McNemar
    (``mcnemar_p``, ``a_only``, ``b_only``). ``"rating"`` / ``"system"``: ``a``, ``b`` = rewards per row (mean
    reward per model), ``target`` = human scores (Arena ELO); ``diff`` = Pearson(a) - Pearson(b) with a bootstrap
    CI that resamples rows (models) jointly; no p-value (``None``).
    Returns ``{"metric", "value_a", "value_b", "n", "diff", "ci_low", "ci_high", "p_value"[, "mcnemar_p",
    "a_only", "b_only"]}``.
    """
    if kind == "pairwise":
        a, b = _arrays(a, b)
        pb, mc = paired_bootstrap(a, b, n_boot=n_boot, seed=seed, alpha=alpha), mcnemar(a, b)
        nan = float("nan")
        return {"metric": "accuracy", "value_a": float(a.mean()) if len(a) else nan,
                "value_b": float(b.mean()) if len(b) else nan, "n": pb["n"], "diff": pb["diff"],
                "ci_low": pb["ci_low"], "ci_high": pb["ci_high"], "p_value": pb["p_value"],
                "mcnemar_p": mc["p_value"], "a_only": mc["a_only"], "b_only": mc["b_only"]}
    if kind not in ("rating", "system"):
        raise ValueError(f"kind must be 'pairwise', 'rating' or 'system', got {kind!r}")
    x, y, t = _arrays(a, b, target)
    lo, hi = bootstrap_ci(_pearson_diff, x, y, t, n_boot=n_boot, seed=seed, alpha=alpha)
    va, vb = correlation(x, t)[0], correlation(y, t)[0]
    return {"metric": "pearson" if kind == "rating" else "pearson_elo", "value_a": va, "value_b": vb,
            "n": int(len(x)), "diff": float(va - vb), "ci_low": lo, "ci_high": hi, "p_value": None}


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


# ----------------------------------------------------------------------------------------------------------
# length control: is a scorer more than a preference for longer responses?
# ----------------------------------------------------------------------------------------------------------
#
# Notation: for pair i, margin m_i = r_c - r_r (chosen minus rejected reward) and log length ratio
# d_i = log(len_c) - log(len_r) (computed as a difference of logs, so swapping the two sides flips the sign exactly).
# Lengths are whatever unit the caller measures (tokens, characters) and must be positive.
#
# Strata (:func:`length_strata`):
#   * "chosen longer" = len_c > len_r, "chosen shorter" = len_c < len_r. Pairs of exactly equal length are in
#     neither (no response is longer; a pure length scorer ties on them). With ``exclusive=True`` the two strata
#     also leave out the near-equal pairs (|d| < threshold), so the three strata partition the unequal pairs.
#   * "near-equal length" = |d| < threshold (strict; default 0.15, i.e. within ~16 %), exactly equal lengths
#     included. By default (``exclusive=False``) it is a diagnostic stratum that OVERLAPS the other two: then
#     "longer"/"shorter" use every pair whose lengths differ and do not depend on the threshold (this is the
#     definition under which the n 891 / 699 / 228 add up to more than 1,600).
# Length-balanced accuracy = (acc_chosen_longer + acc_chosen_shorter) / 2: the accuracy on a benchmark re-weighted
# so that half the pairs have the longer response chosen. A pure length scorer (reward increasing in length) is
# right on every "longer" pair and wrong on every "shorter" pair, so it gets exactly 0.5.


def log_length_ratio(len_chosen, len_rejected) -> np.ndarray:
    """d = log(len_chosen) - log(len_rejected) per pair; lengths must be finite and > 0 (ValueError otherwise)."""
    lc, lr = _arrays(len_chosen, len_rejected)
    if not (np.isfinite(lc).all() and np.isfinite(lr).all()) or (lc <= 0).any() or (lr <= 0).any():
        raise ValueError("lengths must be finite and > 0 (an empty response has no log length)")
    return np.log(lc) - np.log(lr)


def length_strata(len_chosen, len_rejected, threshold: float = 0.15, exclusive: bool = False) -> dict:
    """Boolean masks ``{"chosen_longer", "chosen_shorter", "near_equal"}`` (see the section comment above)."""
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    d = log_length_ratio(len_chosen, len_rejected)
    near = np.abs(d) < threshold
    longer, shorter = d > 0, d < 0
    if exclusive:
        longer, shorter = longer & ~near, shorter & ~near
    return {"chosen_longer": longer, "chosen_shorter": shorter, "near_equal": near}


def pairwise_length_strata(chosen, rejected, len_chosen, len_rejected, threshold: float = 0.15,
                           exclusive: bool = False, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Pairwise accuracy per length stratum: ``{stratum: accuracy_ci(...)}`` for the three strata of
    :func:`length_strata`, plus ``"n_equal_length"`` (pairs of exactly equal length). An empty stratum has value
    NaN and n 0."""
    c, r = _arrays(chosen, rejected)
    masks = length_strata(len_chosen, len_rejected, threshold, exclusive)
    if len(masks["near_equal"]) != len(c):
        raise ValueError(f"arrays must have the same length, got {len(c)} scores and {len(masks['near_equal'])} lengths")
    out = {k: accuracy_ci(c[m], r[m], n_boot=n_boot, seed=seed, alpha=alpha) for k, m in masks.items()}
    out["n_equal_length"] = int((log_length_ratio(len_chosen, len_rejected) == 0).sum())
    return out


def _balanced_stat(correct, longer, shorter, axis=-1):
    """Mean of the two stratum accuracies; NaN where a (resampled) stratum is empty."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.5 * ((correct * longer).sum(axis) / longer.sum(axis) + (correct * shorter).sum(axis) / shorter.sum(axis))


def length_balanced_accuracy(chosen, rejected, len_chosen, len_rejected, threshold: float = 0.15,
                             exclusive: bool = False, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Length-balanced accuracy = mean of the "chosen longer" and "chosen shorter" accuracies (ties count 0.5).

    ``{"value", "ci_low", "ci_high", "n", "n_chosen_longer", "n_chosen_shorter"}``; CI: bootstrap over all pairs
    (the stratum sizes vary between resamples), recomputing both stratum accuracies. ``threshold`` matters only
    with ``exclusive=True``. Value NaN when a stratum is empty.
    """
    correct = pairwise_correct(chosen, rejected)
    m = length_strata(len_chosen, len_rejected, threshold, exclusive)
    lo_, sh_ = m["chosen_longer"].astype(float), m["chosen_shorter"].astype(float)
    if len(lo_) != len(correct):
        raise ValueError(f"arrays must have the same length, got {len(correct)} scores and {len(lo_)} lengths")
    value = float(_balanced_stat(correct, lo_, sh_)) if lo_.any() and sh_.any() else float("nan")
    lo, hi = ((float("nan"), float("nan")) if np.isnan(value) else
              bootstrap_ci(_balanced_stat, correct, lo_, sh_, n_boot=n_boot, seed=seed, alpha=alpha, vectorized=True))
    return {"value": value, "ci_low": lo, "ci_high": hi, "n": int(len(correct)),
            "n_chosen_longer": int(lo_.sum()), "n_chosen_shorter": int(sh_.sum())}


def _residual_correct(m, d, rtol: float = 1e-9):
    """Per-pair correctness of m - beta d, beta = OLS slope of m on d with intercept (along the last axis)."""
    mc, dc = m - m.mean(-1, keepdims=True), d - d.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (dc * dc).mean(-1, keepdims=True)
        beta = np.where(var > 0, (mc * dc).mean(-1, keepdims=True) / np.where(var > 0, var, 1), 0.0)
    e = m - beta * d
    tol = rtol * np.abs(m).max(-1, keepdims=True)
    return np.where(e > tol, 1.0, np.where(e >= -tol, 0.5, 0.0)), beta[..., 0]


def length_residualised_accuracy(chosen, rejected, len_chosen, len_rejected, n_boot: int = 2000, seed: int = 0,
                                 alpha: float = 0.05, rtol: float = 1e-9) -> dict:
    """Accuracy of the margin once its linear dependence on the length difference is removed.

    With m_i = r_c - r_r and d_i = log(len_c) - log(len_r), fit over the benchmark m_i = a + beta d_i + e_i (OLS).
    ``a`` is the scorer's preference for the chosen side at equal length (the signal we want to keep) and
    ``beta`` its length sensitivity; pair i is then judged on m_i - beta d_i = a + e_i: correct when > 0, half
    when 0 (within ``rtol`` x max|m|, since it is computed), wrong otherwise.

    Why an intercept: in the chosen-minus-rejected orientation the intercept is the coefficient of the label
    (y_i = +1); swapping a pair flips m, d and y together, so the model m = a y + beta d is swap-equivariant (the
    verdicts flip, beta stays). A fit through the origin (m = beta d) would be equivariant too, but it sets a = 0
    and, whenever the chosen responses are longer on average (mean d != 0), credits the scorer's genuine
    preference for the chosen side to length: a length-blind scorer would then lose accuracy.

    ``{"value", "ci_low", "ci_high", "n", "ties", "beta"}``; CI: bootstrap over pairs with beta refitted on each
    resample. A scorer whose margin is exactly linear in d with no intercept (e.g. reward = log length) gets
    m - beta d = 0 on every pair: value exactly 0.5 with ``ties == n`` (defined, not NaN). If all pairs have the
    same d, beta = 0 and the value is the raw accuracy.
    """
    c, r = _arrays(chosen, rejected)
    pairwise_correct(c, r)  # NaN check
    m, d = c - r, log_length_ratio(len_chosen, len_rejected)
    if len(m) != len(d):
        raise ValueError(f"arrays must have the same length, got {len(m)} scores and {len(d)} lengths")
    if not len(m):
        return {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0, "ties": 0,
                "beta": float("nan")}
    correct, beta = _residual_correct(m, d, rtol)
    lo, hi = bootstrap_ci(lambda a, b, axis=-1: _residual_correct(a, b, rtol)[0].mean(-1), m, d, n_boot=n_boot,
                          seed=seed, alpha=alpha, vectorized=True)
    return {"value": float(correct.mean()), "ci_low": lo, "ci_high": hi, "n": int(len(m)),
            "ties": int((correct == 0.5).sum()), "beta": float(beta)}


def length_agreement(chosen, rejected, len_chosen, len_rejected, n_boot: int = 2000, seed: int = 0,
                     alpha: float = 0.05) -> dict:
    """How often the scorer prefers the longer response: the scorer's pairwise accuracy against the label "the
    longer side wins", over the pairs whose lengths differ (a score tie counts 0.5, as everywhere).
    ``{"value", "ci_low", "ci_high", "n"}`` (n = pairs of different length)."""
    c, r = _arrays(chosen, rejected)
    d = log_length_ratio(len_chosen, len_rejected)
    if len(d) != len(c):
        raise ValueError(f"arrays must have the same length, got {len(c)} scores and {len(d)} lengths")
    k = d != 0
    longer_score = np.where(d[k] > 0, c[k], r[k])
    shorter_score = np.where(d[k] > 0, r[k], c[k])
    a = accuracy_ci(longer_score, shorter_score, n_boot=n_boot, seed=seed, alpha=alpha)
    return {k_: a[k_] for k_ in ("value", "ci_low", "ci_high", "n")}


def paired_length_balanced(a_chosen, a_rejected, b_chosen, b_rejected, len_chosen, len_rejected,
                           threshold: float = 0.15, exclusive: bool = False, n_boot: int = 2000, seed: int = 0,
                           alpha: float = 0.05) -> dict:
    """Length-balanced accuracy of scorer a minus that of scorer b on the same pairs.

    ``{"value_a", "value_b", "diff", "ci_low", "ci_high", "p_value", "n"}``; CI: bootstrap over pairs (both
    scorers' correctness and the strata resampled jointly); ``p_value``: two-sided permutation test that swaps the
    two scorers' correctness within pairs (the strata stay with their pairs), as in :func:`paired_bootstrap`.
    """
    ca, cb = pairwise_correct(a_chosen, a_rejected), pairwise_correct(b_chosen, b_rejected)
    m = length_strata(len_chosen, len_rejected, threshold, exclusive)
    lo_, sh_ = m["chosen_longer"].astype(float), m["chosen_shorter"].astype(float)
    _arrays(ca, cb, lo_)
    defined = lo_.any() and sh_.any()
    va, vb = (float(_balanced_stat(c, lo_, sh_)) if defined else float("nan") for c in (ca, cb))
    out = {"value_a": va, "value_b": vb, "diff": va - vb, "n": int(len(ca))}
    if np.isnan(va - vb):
        return {**out, "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan")}

    def diff(x, y, longer=lo_, shorter=sh_, axis=-1):
        return _balanced_stat(x, longer, shorter, axis) - _balanced_stat(y, longer, shorter, axis)

    lo, hi = bootstrap_ci(diff, ca, cb, lo_, sh_, n_boot=n_boot, seed=seed, alpha=alpha, vectorized=True)
    if np.all(ca == cb):
        p = 1.0
    else:
        p = stats.permutation_test((ca, cb), lambda x, y, axis: diff(x, y, axis=axis), permutation_type="samples",
                                   vectorized=True, n_resamples=n_boot, alternative="two-sided",
                                   rng=np.random.default_rng(seed)).pvalue
    return {**out, "ci_low": lo, "ci_high": hi, "p_value": float(p)}


def _put(out: dict, key: str, res: dict) -> None:
    out.update({key: res["value"], f"{key}_ci_low": res["ci_low"], f"{key}_ci_high": res["ci_high"]})


def pairwise_length_metrics(chosen, rejected, len_chosen, len_rejected, threshold: float = 0.15,
                            exclusive: bool = False, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """All pairwise length-controlled numbers of one scorer as one flat dict (for a result JSON).

    Keys (each value ``X`` with ``X_ci_low`` / ``X_ci_high``): ``acc`` (raw), ``acc_chosen_longer``,
    ``acc_chosen_shorter``, ``acc_near_equal_length`` (with ``n_*`` counts), ``acc_length_balanced``,
    ``acc_length_residualised`` (+ ``length_beta``, ``ties_length_residualised``), ``length_agreement``
    (+ ``n_length_agreement``), ``corr_margin_log_length_ratio`` (Pearson of m and d), ``acc_length_heuristic``
    (the "longer side wins" baseline on these pairs: the same for every scorer); plus ``n``, ``ties``,
    ``n_equal_length``, ``length_threshold``, ``length_exclusive``.
    """
    kw = {"n_boot": n_boot, "seed": seed, "alpha": alpha}
    c, r = _arrays(chosen, rejected)
    raw = accuracy_ci(c, r, **kw)
    out = {"n": raw["n"], "ties": raw["ties"]}
    _put(out, "acc", raw)
    strata = pairwise_length_strata(c, r, len_chosen, len_rejected, threshold, exclusive, **kw)
    out.update(length_threshold=float(threshold), length_exclusive=bool(exclusive),
               n_equal_length=strata["n_equal_length"])
    for s, key in (("chosen_longer", "chosen_longer"), ("chosen_shorter", "chosen_shorter"),
                   ("near_equal", "near_equal_length")):
        _put(out, f"acc_{key}", strata[s])
        out[f"n_{key}"] = strata[s]["n"]
    _put(out, "acc_length_balanced", length_balanced_accuracy(c, r, len_chosen, len_rejected, threshold, exclusive, **kw))
    res = length_residualised_accuracy(c, r, len_chosen, len_rejected, **kw)
    _put(out, "acc_length_residualised", res)
    out.update(length_beta=res["beta"], ties_length_residualised=res["ties"])
    agree = length_agreement(c, r, len_chosen, len_rejected, **kw)
    _put(out, "length_agreement", agree)
    out["n_length_agreement"] = agree["n"]
    _put(out, "corr_margin_log_length_ratio",
         correlation_ci(c - r, log_length_ratio(len_chosen, len_rejected), "pearson", **kw))
    _put(out, "acc_length_heuristic", accuracy_ci(len_chosen, len_rejected, **kw))
    return out


# -- style control: length and markdown together (issue 24) ------------------------------------------------------

def style_differences(len_chosen, len_rejected, md_chosen, md_rejected) -> np.ndarray:
    """The style covariates of each pair, an (n, 4) array: column 0 the log length ratio d (as
    :func:`log_length_ratio`), columns 1-3 the markdown differences of headers, list items and bold spans
    normalised as Chatbot Arena's style control does them, (c - r) / (c + r + 1) (lmsys/FastChat
    ``rating_systems.preprocess_for_style``: ``style_diff / (style_sum + 1)``). ``md_*``: (n, 3) counts in the
    order (header, list, bold) (:func:`flrlib.style.markdown_counts`). Both transforms flip sign exactly when the
    two sides are swapped."""
    d = log_length_ratio(len_chosen, len_rejected)
    mc, mr = np.asarray(md_chosen, dtype=float), np.asarray(md_rejected, dtype=float)
    if mc.shape != (len(d), 3) or mr.shape != (len(d), 3):
        raise ValueError(f"markdown counts must be ({len(d)}, 3) arrays (header, list, bold), got {mc.shape} and "
                         f"{mr.shape}")
    if (mc < 0).any() or (mr < 0).any() or not (np.isfinite(mc).all() and np.isfinite(mr).all()):
        raise ValueError("markdown counts must be finite and >= 0")
    return np.column_stack([d, (mc - mr) / (mc + mr + 1)])


def _style_correct(m, *cols, rtol: float = 1e-9):
    """Per-pair correctness of m - X beta, beta = OLS of m on X = cols with intercept (along the last axis), from the
    normal equations of the centred data; ``np.linalg.pinv`` of the k x k Gram matrix so that a constant (e.g.
    all-zero) column gets coefficient 0 instead of failing."""
    x = np.stack(cols, axis=-1)                                   # (..., n, k)
    xc = x - x.mean(-2, keepdims=True)
    mc = m - m.mean(-1, keepdims=True)
    gram = np.swapaxes(xc, -1, -2) @ xc                           # (..., k, k)
    beta = (np.linalg.pinv(gram, hermitian=True) @ (np.swapaxes(xc, -1, -2) @ mc[..., None]))[..., 0]  # (..., k)
    e = m - (x @ beta[..., None])[..., 0]
    tol = rtol * np.abs(m).max(-1, keepdims=True)
    return np.where(e > tol, 1.0, np.where(e >= -tol, 0.5, 0.0)), beta


def style_controlled_accuracy(chosen, rejected, len_chosen, len_rejected, md_chosen, md_rejected,
                              n_boot: int = 2000, seed: int = 0, alpha: float = 0.05, rtol: float = 1e-9) -> dict:
    """Accuracy of the margin once its linear dependence on length AND markdown is removed: the multivariate
    sibling of :func:`length_residualised_accuracy`.

    How: with m_i = r_c - r_r and the style covariates x_i = (log length ratio, header, list and bold differences
    normalised as Chatbot Arena's style control, :func:`style_differences`), fit over the benchmark
    m_i = a + x_i . beta + e_i by ordinary least squares with an intercept. ``a`` is the scorer's preference for the
    chosen side at equal style, ``beta`` its style sensitivities; pair i is judged on m_i - x_i . beta = a + e_i:
    correct when > 0, half when 0 (within ``rtol`` x max|m|), wrong otherwise. As for length alone, the intercept
    keeps the model swap-equivariant (m, x and the label flip together). Unlike Arena, which fits a logistic
    (Bradley-Terry) model of the outcome with standardised features, this regresses the margin itself, as the
    length-residualised accuracy does; feature scaling does not change the verdicts, so no standardisation.

    ``{"value", "ci_low", "ci_high", "n", "ties", "beta": [length, header, list, bold]}``; CI: bootstrap over pairs,
    beta refitted on each resample. A scorer whose margin is exactly linear in the covariates with no intercept
    (e.g. reward = log length) gets value 0.5 with ``ties == n``.
    """
    c, r = _arrays(chosen, rejected)
    pairwise_correct(c, r)  # NaN check
    x = style_differences(len_chosen, len_rejected, md_chosen, md_rejected)
    m = c - r
    if len(m) != len(x):
        raise ValueError(f"arrays must have the same length, got {len(m)} scores and {len(x)} style rows")
    if not len(m):
        return {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0, "ties": 0,
                "beta": [float("nan")] * 4}
    cols = [x[:, k] for k in range(x.shape[1])]
    correct, beta = _style_correct(m, *cols, rtol=rtol)
    lo, hi = bootstrap_ci(lambda a, *xs, axis=-1: _style_correct(a, *xs, rtol=rtol)[0].mean(-1), m, *cols,
                          n_boot=n_boot, seed=seed, alpha=alpha, vectorized=True)
    return {"value": float(correct.mean()), "ci_low": lo, "ci_high": hi, "n": int(len(m)),
            "ties": int((correct == 0.5).sum()), "beta": [float(b) for b in beta]}


# -- ratings and systems: correlation with the target once length is partialled out ----------------------------

def partial_correlation(x, y, z) -> float:
    """Pearson partial correlation of x and y given z: the correlation of the residuals of x and y after an OLS fit
    on z with intercept, r = (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)). NaN when undefined (fewer than
    3 rows, a constant column, or z perfectly correlated with x or y)."""
    x, y, z = _arrays(x, y, z)
    if len(x) < 3:
        return float("nan")
    return float(_partial_stat(x, y, z))


def _partial_stat(x, y, z, axis=-1):
    rxy, rxz, ryz = vector_pearson(x, y, axis), vector_pearson(x, z, axis), vector_pearson(y, z, axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        # z (almost) collinear with x or y: nothing is left to correlate, and rounding would give a spurious 0
        ok = (1 - rxz ** 2 > 1e-9) & (1 - ryz ** 2 > 1e-9)
        den = np.sqrt(np.where(ok, (1 - rxz ** 2) * (1 - ryz ** 2), 1.0))
        return np.where(ok, (rxy - rxz * ryz) / den, np.nan)


def partial_correlation_ci(x, y, z, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """:func:`partial_correlation` with a bootstrap CI over rows: ``{"value", "ci_low", "ci_high", "n", "p_value"}``;
    ``p_value`` from t = r sqrt((n - 3) / (1 - r^2)) with n - 3 degrees of freedom (one conditioning variable)."""
    x, y, z = _arrays(x, y, z)
    value, n = partial_correlation(x, y, z), len(x)
    if np.isnan(value):
        return {"value": value, "ci_low": float("nan"), "ci_high": float("nan"), "n": n, "p_value": float("nan")}
    lo, hi = bootstrap_ci(_partial_stat, x, y, z, n_boot=n_boot, seed=seed, alpha=alpha, vectorized=True)
    if n > 3 and abs(value) < 1:
        p = float(2 * stats.t.sf(abs(value) * np.sqrt((n - 3) / (1 - value ** 2)), n - 3))
    else:
        p = 0.0 if n > 3 else float("nan")
    return {"value": value, "ci_low": lo, "ci_high": hi, "n": n, "p_value": p}


def rating_length_metrics(reward, target, length, suffix: str = "", n_boot: int = 2000, seed: int = 0,
                          alpha: float = 0.05) -> dict:
    """Flat dict for a rating benchmark (or, via :func:`system_length_metrics`, a system-level one):
    ``pearson{suffix}`` (reward vs target), ``pearson_length{suffix}`` (length alone vs target: the length-only
    baseline) and ``partial_pearson{suffix}_given_length`` (reward vs target with length partialled out), each with
    ``_ci_low``, ``_ci_high``, ``_p_value``; and ``n{suffix}``. ``length`` is used as given (pass log lengths for a
    log-linear control)."""
    kw = {"n_boot": n_boot, "seed": seed, "alpha": alpha}
    reward, target, length = _arrays(reward, target, length)
    out = {f"n{suffix}": int(len(reward))}
    for key, res in ((f"pearson{suffix}", correlation_ci(reward, target, "pearson", **kw)),
                     (f"pearson_length{suffix}", correlation_ci(length, target, "pearson", **kw)),
                     (f"partial_pearson{suffix}_given_length", partial_correlation_ci(reward, target, length, **kw))):
        _put(out, key, res)
        out[f"{key}_p_value"] = res["p_value"]
    return out


def system_length_metrics(model_means: dict, model_lengths: dict, target: dict, suffix: str = "_elo",
                          n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """System level: ``{model: mean reward}``, ``{model: mean response length}``, ``{model: target}`` (e.g. Arena
    ELO) -> :func:`rating_length_metrics` over the models present in all three (bootstrap over models), keys with
    ``suffix`` (``pearson_elo``, ``pearson_length_elo``, ``partial_pearson_elo_given_length``, ``n_elo``)."""
    ms = [m for m in model_means if m in model_lengths and m in target]
    return rating_length_metrics([model_means[m] for m in ms], [target[m] for m in ms], [model_lengths[m] for m in ms],
                                 suffix=suffix, n_boot=n_boot, seed=seed, alpha=alpha)


# ----------------------------------------------------------------------------------------------------------
# bank-size ablation: how many follow-ups does FLR need, and which categories carry the signal?
# ----------------------------------------------------------------------------------------------------------

def _groups(categories, polarities, n_cols: int) -> dict:
    """``{category: {"positive": column indices, "negative": column indices}}`` in first-appearance order."""
    cats, pols = list(categories), list(polarities)
    if len(cats) != n_cols or len(pols) != n_cols:
        raise ValueError(f"need one category and one polarity per follow-up column ({n_cols}), "
                         f"got {len(cats)} and {len(pols)}")
    bad = sorted({p for p in pols if p not in ("positive", "negative")})
    if bad:
        raise ValueError(f"polarities must be 'positive' or 'negative', got {bad}")
    out = {}
    for j, (c, p) in enumerate(zip(cats, pols)):
        out.setdefault(c, {"positive": [], "negative": []})[p].append(j)
    empty = [f"{c}/{p}" for c, g in out.items() for p in g if not g[p]]
    if empty:
        raise ValueError(f"every category needs positive and negative follow-ups; missing: {empty}")
    return out


def bank_rewards(values, categories, polarities) -> dict:
    """Rewards from per-follow-up values, exactly as :meth:`flrlib.scoring.Scorer._finish` defines FLR.

    ``values`` [n_rows, n_followups] (the per-follow-up mean log-probs of each response, columns in bank order);
    ``categories`` / ``polarities`` (``"positive"`` / ``"negative"``) per column. Returns arrays over rows:
    ``categories`` {c: R_c = mean(pos_c) - mean(neg_c)}, ``reward`` = mean over categories of R_c, ``pos`` = mean
    over categories of mean(pos_c) (positives only) and ``neg`` = minus the mean over categories of mean(neg_c)
    (negatives only: higher = the negative follow-ups are less likely).
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2:
        raise ValueError(f"values must be a 2-D array [rows, follow-ups], got shape {v.shape}")
    groups = _groups(categories, polarities, v.shape[1])
    pos = {c: v[:, g["positive"]].mean(1) for c, g in groups.items()}
    neg = {c: v[:, g["negative"]].mean(1) for c, g in groups.items()}
    cats = {c: pos[c] - neg[c] for c in groups}
    return {"categories": cats, "reward": np.mean(list(cats.values()), axis=0),
            "pos": np.mean(list(pos.values()), axis=0), "neg": -np.mean(list(neg.values()), axis=0)}


def category_ablation(chosen_categories, rejected_categories, names, n_boot: int = 2000, seed: int = 0,
                      alpha: float = 0.05) -> dict:
    """Per-category and leave-one-category-out accuracies from per-category rewards [n_pairs, n_categories]
    (columns named by ``names``; the FLR reward is their mean): ``{"per_category": {c: accuracy_ci},
    "leave_one_out": {c: accuracy_ci of the mean over the other categories}}``."""
    ch, rj = np.asarray(chosen_categories, dtype=float), np.asarray(rejected_categories, dtype=float)
    names = list(names)
    if ch.shape != rj.shape or ch.ndim != 2 or ch.shape[1] != len(names):
        raise ValueError(f"need chosen and rejected arrays [pairs, {len(names)} categories], got {ch.shape} and {rj.shape}")
    kw = {"n_boot": n_boot, "seed": seed, "alpha": alpha}
    per = {c: accuracy_ci(ch[:, j], rj[:, j], **kw) for j, c in enumerate(names)}
    loo = {}
    if len(names) > 1:
        for j, c in enumerate(names):
            keep = [i for i in range(len(names)) if i != j]
            loo[c] = accuracy_ci(ch[:, keep].mean(1), rj[:, keep].mean(1), **kw)
    return {"per_category": per, "leave_one_out": loo}


def bank_size_ablation(chosen_values, rejected_values, categories, polarities, ks=None, n_draws: int = 20,
                       seed: int = 0, n_boot: int = 2000, alpha: float = 0.05) -> dict:
    """Accuracy vs bank size, and which parts of the bank carry the signal.

    ``chosen_values`` / ``rejected_values``: [n_pairs, n_followups] per-follow-up values of each side (columns in
    bank order, described by ``categories`` / ``polarities``). For each k in ``ks`` (default 1 .. the smallest
    (category, polarity) group), ``n_draws`` random sub-banks keep k follow-ups of every (category, polarity)
    group (drawn without replacement, the same sub-bank for both sides of every pair, seeded by ``seed``); the
    reward is :func:`bank_rewards` on the sub-bank. Each pair's correctness is averaged over the draws; ``value`` is
    the mean of that over pairs and the CI a bootstrap over pairs (pair-sampling uncertainty given the draws);
    ``draw_sd`` is the standard deviation of the accuracy across draws. When k is every group's full size there is
    one sub-bank and one draw.

    Returns ``{"full", "by_k": [{"k", "bank_size", "n_draws", "value", "ci_low", "ci_high", "draw_sd"}],
    "per_category", "leave_one_out", "positives_only", "negatives_only"}`` (accuracies as :func:`accuracy_ci`).
    """
    ch, rj = np.asarray(chosen_values, dtype=float), np.asarray(rejected_values, dtype=float)
    if ch.shape != rj.shape or ch.ndim != 2:
        raise ValueError(f"chosen and rejected values must be 2-D arrays of the same shape, got {ch.shape} and {rj.shape}")
    groups = _groups(categories, polarities, ch.shape[1])
    kw = {"n_boot": n_boot, "seed": seed, "alpha": alpha}
    sizes = [len(idx) for g in groups.values() for idx in g.values()]
    ks = list(range(1, min(sizes) + 1)) if ks is None else [int(k) for k in ks]
    if any(k < 1 or k > min(sizes) for k in ks):
        raise ValueError(f"k must be between 1 and {min(sizes)} (the smallest category/polarity group), got {ks}")
    cats, pols = list(categories), list(polarities)
    full_c, full_r = bank_rewards(ch, cats, pols), bank_rewards(rj, cats, pols)
    rng = np.random.default_rng(seed)
    by_k = []
    for k in ks:
        draws = 1 if all(k == s for s in sizes) else n_draws
        per_draw = []
        for _ in range(draws):
            cols = sorted(int(j) for g in groups.values() for idx in g.values()
                          for j in rng.choice(idx, size=k, replace=False))
            sub = [cats[j] for j in cols], [pols[j] for j in cols]
            per_draw.append(pairwise_correct(bank_rewards(ch[:, cols], *sub)["reward"],
                                             bank_rewards(rj[:, cols], *sub)["reward"]))
        per_draw = np.array(per_draw)
        mean_correct = per_draw.mean(0)
        lo, hi = bootstrap_ci(np.mean, mean_correct, **kw)
        by_k.append({"k": k, "bank_size": k * len(sizes), "n_draws": draws, "value": float(mean_correct.mean()),
                     "ci_low": lo, "ci_high": hi, "draw_sd": float(per_draw.mean(1).std())})
    names = list(groups)
    cat_abl = category_ablation(np.column_stack([full_c["categories"][c] for c in names]),
                                np.column_stack([full_r["categories"][c] for c in names]), names, **kw)
    return {"full": accuracy_ci(full_c["reward"], full_r["reward"], **kw), "by_k": by_k, **cat_abl,
            "positives_only": accuracy_ci(full_c["pos"], full_r["pos"], **kw),
            "negatives_only": accuracy_ci(full_c["neg"], full_r["neg"], **kw)}

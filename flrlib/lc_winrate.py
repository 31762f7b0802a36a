"""Length-controlled (LC) win rate with AlpacaEval's ``length_controlled_minimal`` GLM - not the leaderboard's
``length_controlled_v1`` - re-implemented with numpy/scipy from its published definition (Dubois et al. 2024,
"Length-Controlled AlpacaEval"; ``alpaca_eval==0.6.6``, ``metrics/glm_winrate.py``).

Which variant, in one line: :data:`GLM_MINIMAL` (no difficulty term, no regularisation towards gamed baselines;
with instruction difficulties passed in, :data:`GLM_NOREG`). The leaderboard's own LC numbers (AlpacaEval 2
leaderboard CSV, used in :func:`flrlib.benchmarks.system_correlations`) are ``length_controlled_v1`` values and are
labelled as the leaderboard's; numbers from this module are not comparable to them point for point. Tables call this
column ``LC win rate % (minimal GLM)``; every result row names the variant in ``lc_glm``.

Definition. ``output_1`` is the baseline (reference), ``output_2`` the candidate; ``p_i`` in [0, 1] is the judge's
preference for the candidate on instruction i (a tie is 0.5). With ``delta_i = len(output_1) - len(output_2)`` in
characters and ``s_i = delta_i / std(delta)`` (sample std), a logistic GLM without intercept is fitted on the
continuous labels p_i (each row enters as label 1 with weight p_i and label 0 with weight 1 - p_i)::

    logit P(candidate wins) = theta_len * tanh(s_i) [+ theta_diff * difficulty_i] + theta_0

with an L1 penalty, objective ``||theta||_1 + C * sum_i weighted logloss_i`` (liblinear), C chosen from
``logspace(-4, 4, 10)`` by 5-fold cross-validation on the same log loss (folds by row, round robin), then refitted on
all rows. The LC win rate is the mean predicted probability with the length term set to zero (``s_i = 0``), x100.

Offline differences from the package's default GLM (``length_controlled_v1``): the instruction difficulties and the
two "gamed" baselines it regularises towards are downloaded from the Hub at run time (``df_gamed.csv``); here the
difficulty term is used only when difficulties are passed in and there is no regularisation to gamed baselines.
Without difficulties this is the package's ``length_controlled_minimal`` GLM; with them, ``length_controlled_noreg``.
``tests/test_judge.py`` checks both against numbers produced by ``alpaca_eval`` 0.6.6 itself: equal to 1e-4 for the
same C; the cross-validated choice among near-equal large C values can differ (liblinear stops at tolerance 1e-4),
which moved the LC win rate by 0.04 points on the test data.
"""
from __future__ import annotations

import numpy as np

CS = np.logspace(-4, 4, 10)  # LogisticRegressionCV(Cs=10)
GLM_MINIMAL = "length_controlled_minimal"  # AlpacaEval's glm_name for what lc_winrate() fits without difficulties
GLM_NOREG = "length_controlled_noreg"      # ... and with them


def _design(s: np.ndarray, difficulty: np.ndarray | None) -> np.ndarray:
    cols = [np.tanh(s)] + ([difficulty] if difficulty is not None else []) + [np.ones_like(s)]
    return np.column_stack(cols)


def _logloss(w, X, p, weight=None):
    z = X @ w
    # p * log(1 + e^-z) + (1 - p) * log(1 + e^z), stable
    ll = p * np.logaddexp(0, -z) + (1 - p) * np.logaddexp(0, z)
    return ll if weight is None else ll * weight


def _l1_quadratic_min(g: np.ndarray, H: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact argmin_z g.(z - w) + 1/2 (z - w)' H (z - w) + ||z||_1 for a few coordinates: coordinate descent, or
    when that is slow (nearly collinear columns) try every sign pattern
    s in {-1, 0, 1}^d (z_j = 0 where s_j = 0, else H_SS z_S = (H w - g - s)_S), keep the sign-consistent solutions,
    return the one with the lowest value (the problem is convex, so its minimiser is among them)."""
    from itertools import product

    d = len(w)
    # fast path: coordinate descent in plain Python floats (numpy call overhead dominates at this size); it is
    # exact when it converges, which it does quickly unless columns are nearly collinear
    gl, Hl, wl, zl = g.tolist(), H.tolist(), w.tolist(), w.tolist()
    for _sweep in range(50):
        moved = 0.0
        for j in range(d):
            hj = Hl[j]
            r = gl[j] + sum(hj[k] * (zl[k] - wl[k]) for k in range(d)) - hj[j] * zl[j]
            new_j = (-(r - 1.0) if r > 1.0 else -(r + 1.0) if r < -1.0 else 0.0) / hj[j] if hj[j] > 0 else 0.0
            moved = max(moved, abs(new_j - zl[j]))
            zl[j] = new_j
        if moved < 1e-13:
            return np.array(zl)
    rhs_all = H @ w - g
    best, best_val = np.zeros(d), np.inf
    for signs in product((-1.0, 0.0, 1.0), repeat=d):
        s = np.array(signs)
        S = s != 0
        z = np.zeros(d)
        if S.any():
            try:
                z[S] = np.linalg.solve(H[np.ix_(S, S)], rhs_all[S] - s[S])
            except np.linalg.LinAlgError:
                continue
            if np.any(np.sign(z[S]) != s[S]):
                continue
        dz = z - w
        val = g @ dz + 0.5 * dz @ H @ dz + np.abs(z).sum()
        if val < best_val:
            best, best_val = z, val
    return best


def fit_l1_logistic(X: np.ndarray, p: np.ndarray, C: float, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """argmin_w ||w||_1 + C * sum_i logloss_i(w) (no intercept), by proximal Newton: each step minimises the
    quadratic model of the smooth part plus the L1 term exactly (:func:`_l1_quadratic_min`), then backtracks on
    the full objective."""
    n, d = X.shape
    w = np.zeros(d)

    def objective(v):
        return np.abs(v).sum() + C * np.sum(_logloss(v, X, p))

    obj = objective(w)
    for _ in range(max_iter):
        sig = 1 / (1 + np.exp(-(X @ w)))
        g = C * X.T @ (sig - p)
        H = C * (X * (sig * (1 - sig))[:, None]).T @ X + 1e-12 * np.eye(d)
        z = _l1_quadratic_min(g, H, w)
        step, delta = 1.0, z - w
        if np.max(np.abs(delta)) < tol:
            break
        while step > 1e-10:
            cand = w + step * delta
            new = objective(cand)
            if new <= obj - 1e-4 * step * max(0.0, -(g @ delta + np.abs(z).sum() - np.abs(w).sum())):
                break
            step /= 2
        w, obj = cand, new
        if step * np.max(np.abs(delta)) < tol:
            break
    return w


def choose_C(X: np.ndarray, p: np.ndarray, n_splits: int = 5, Cs=CS) -> float:
    """C with the lowest mean held-out log loss over ``n_splits`` round-robin folds (first C wins a tie)."""
    n = len(p)
    k = min(n_splits, n)
    folds = np.arange(n) % k
    scores = []
    for C in Cs:
        fold_scores = []
        for f in range(k):
            tr, te = folds != f, folds == f
            w = fit_l1_logistic(X[tr], p[tr], C)
            fold_scores.append(-np.mean(_logloss(w, X[te], p[te])))
        scores.append(np.mean(fold_scores))
    return float(Cs[int(np.argmax(scores))])


def lc_predictions(preference, len_baseline, len_candidate, difficulty=None, n_splits: int = 5,
                   C: float | None = None) -> tuple[np.ndarray, dict]:
    """Per-instruction length-controlled predictions (``s_i = 0``) and the fitted weights (``C``: skip the CV)."""
    p = np.asarray(preference, dtype=float)
    l1 = np.asarray(len_baseline, dtype=float)
    l2 = np.asarray(len_candidate, dtype=float)
    if not (len(p) == len(l1) == len(l2)):
        raise ValueError(f"preference, len_baseline and len_candidate must have the same length "
                         f"({len(p)}, {len(l1)}, {len(l2)})")
    if len(p) and (np.nanmin(p) < 0 or np.nanmax(p) > 1):
        raise ValueError("preference must be in [0, 1] (probability that the candidate wins)")
    diff = None if difficulty is None else np.asarray(difficulty, dtype=float)
    delta = l1 - l2
    sd = delta.std(ddof=1) if len(delta) > 1 else 0.0
    s = delta / sd if sd > 0 else np.zeros_like(delta)
    X = _design(s, diff)
    ok = ~np.isnan(p)
    if ok.sum() < 2:
        return np.full(len(p), np.nan), {}
    C = choose_C(X[ok], p[ok], n_splits) if C is None else float(C)
    w = fit_l1_logistic(X[ok], p[ok], C)
    X0 = _design(np.zeros_like(s), diff)
    pred = 1 / (1 + np.exp(-(X0 @ w)))
    names = ["np.tanh(std_delta_len)"] + (["instruction_difficulty"] if diff is not None else []) + ["not_gamed_baseline"]
    return pred, {"C": C, **dict(zip(names, map(float, w)))}


def lc_winrate(preference, len_baseline, len_candidate, difficulty=None, n_splits: int = 5, n_boot: int = 0,
               seed: int = 0, C: float | None = None) -> dict:
    """``{"lc_win_rate", "lc_standard_error", "lc_ci_low", "lc_ci_high", "weights", "glm"}`` in percent; ``glm`` is
    the AlpacaEval GLM this equals (:data:`GLM_MINIMAL`, or :data:`GLM_NOREG` with ``difficulty``).

    ``lc_standard_error`` is AlpacaEval's (standard error of the per-instruction predictions). ``n_boot > 0`` adds a
    percentile bootstrap CI that refits the GLM on each resample of instructions (with the C chosen on all rows: the
    cross-validation is not repeated per resample).
    """
    pred, weights = lc_predictions(preference, len_baseline, len_candidate, difficulty, n_splits, C)
    out = {"lc_win_rate": float(np.mean(pred) * 100) if len(pred) else float("nan"),
           "lc_standard_error": float(np.std(pred, ddof=1) / np.sqrt(len(pred)) * 100) if len(pred) > 1 else float("nan"),
           "lc_ci_low": float("nan"), "lc_ci_high": float("nan"), "weights": weights,
           "glm": GLM_MINIMAL if difficulty is None else GLM_NOREG}
    if n_boot and len(pred) > 2 and weights:
        rng = np.random.default_rng(seed)
        p, l1, l2 = (np.asarray(a, dtype=float) for a in (preference, len_baseline, len_candidate))
        d = None if difficulty is None else np.asarray(difficulty, dtype=float)
        stats = []
        for _ in range(n_boot):
            idx = rng.integers(0, len(p), len(p))
            bp, _ = lc_predictions(p[idx], l1[idx], l2[idx], None if d is None else d[idx], n_splits, weights["C"])
            if np.isfinite(bp).all():
                stats.append(bp.mean() * 100)
        if stats:
            out["lc_ci_low"], out["lc_ci_high"] = (float(x) for x in np.quantile(stats, [0.025, 0.975]))
    return out

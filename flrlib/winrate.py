"""Win rates and the length-controlled (LC) win rate of judged pairs: the metrics of notebook 06 and `flr judge`.

Pure metrics (numpy, pandas, and ``alpaca_eval``'s own GLM code); no model, no workflow. ``reporting`` may import it.

Input: judged rows ``{id, output_1, output_2, win, p_first, judge, generator_1, generator_2}`` as written by
:func:`flrlib.judge.judge_pairs` (``output_1`` = the baseline, ``output_2`` = the candidate, ``win`` = P(candidate
is better) in [0, 1], NaN when the judge gave no verdict).

LC win rate: ``alpaca_eval.metrics.glm_winrate`` (alpaca_eval 0.6.6), in one of two variants, and every number says
which one in ``lc_glm`` (and why in ``lc_note``):

* ``length_controlled_v1`` - the AlpacaEval 2 leaderboard's GLM (length term, instruction difficulty, regularised
  towards two "gamed" baselines), through ``get_length_controlled_winrate`` itself. It needs two files from the
  Hugging Face Hub (``tatsu-lab/alpaca_eval``: ``df_gamed.csv``) and is fitted only when the Hub is reachable, the
  baseline is AlpacaEval 2's reference (``gpt4_1106_preview``) and the ids are AlpacaEval instruction indices.
* ``length_controlled_minimal`` - otherwise (offline, other baselines): the same function's GLM without the
  difficulty and gamed-baseline terms, ``np.tanh(std_delta_len) + not_gamed_baseline - 1``. alpaca_eval downloads
  ``df_gamed.csv`` even for this variant although the formula does not use it, so here the design matrix is built
  with alpaca_eval's ``make_dmatrix_for_model`` from the same features as its ``_get_featurized_data`` (steps 2-3,
  without the download) and fitted with its ``fit_LogisticRegressionCV``; ``tests/test_judge.py`` checks the result
  equals ``get_length_controlled_winrate(glm_name="length_controlled_minimal")``. Not comparable point for point with
  the leaderboard's LC numbers.

The LC CI (``lc_n_boot`` > 0) is ours: a percentile bootstrap over instructions that refits the minimal GLM on each
resample of the design rows (features standardised once, on all rows) with the C chosen on all rows (the
cross-validation is not repeated per resample); v1 numbers come without a CI.

``lc_standard_error`` is alpaca_eval's (the standard error of the mean of the per-instruction predictions) for v1
only. For the minimal GLM every instruction's prediction is the same number (the length term is set to zero and
nothing else varies), so alpaca_eval's value is always 0; it is left undefined (NaN, ``null`` in result files) and
the minimal GLM's uncertainty is the bootstrap CI ``lc_ci_low`` / ``lc_ci_high``.
"""
from __future__ import annotations

import numpy as np

GLM_V1 = "length_controlled_v1"
GLM_MINIMAL = "length_controlled_minimal"
AE_REFERENCE = "gpt4_1106_preview"  # AlpacaEval 2's reference outputs: the baseline v1 is defined against
N_INSTRUCTIONS = 805


def _annotations(rows: list[dict]):
    """Judged rows -> AlpacaEval annotations (``preference`` in [1, 2], 2 = the candidate ``output_2`` wins)."""
    import pandas as pd

    return pd.DataFrame({"preference": [1.0 + r["win"] for r in rows], "output_1": [r["output_1"] for r in rows],
                         "output_2": [r["output_2"] for r in rows], "index": [r["id"] for r in rows],
                         "generator_1": [r.get("generator_1", "baseline") for r in rows],
                         "generator_2": [r.get("generator_2", "candidate") for r in rows],
                         "annotator": [r.get("judge", "judge") for r in rows]})


def _v1_reason(rows: list[dict]) -> str | None:
    """None when length_controlled_v1 can be fitted, else why not."""
    from .net import reachable

    if any(r.get("generator_1") != AE_REFERENCE for r in rows):
        return f"baseline is not AlpacaEval 2's reference {AE_REFERENCE} (v1 is defined against it)"
    if not all(isinstance(r["id"], int) and 0 <= r["id"] < N_INSTRUCTIONS for r in rows):
        return "ids are not AlpacaEval instruction indices (v1 needs each instruction's difficulty)"
    if not reachable("huggingface.co"):
        return "the Hugging Face Hub is not reachable (v1 downloads tatsu-lab/alpaca_eval df_gamed.csv)"
    return None


def _minimal_design(df):
    """alpaca_eval's ``_get_featurized_data`` for the minimal formula, without its (unused) Hub download."""
    from alpaca_eval.metrics import glm_winrate as g

    df = df.reset_index(drop=True)
    delta = df["output_1"].str.len() - df["output_2"].str.len()
    sd = delta.std()
    feats = df[["preference", "index"]].copy()
    feats["std_delta_len"] = delta / sd if sd > 0 else 0.0 * delta
    feats["preference"] = feats["preference"].astype(float).replace({0.0: 1.5}) - 1
    feats["not_gamed_baseline"] = True
    test = feats[["not_gamed_baseline"]].copy()
    test["std_delta_len"] = 0
    return g.make_dmatrix_for_model(feats, test, formula=g.GLM_INFO[GLM_MINIMAL]["formula"])


def _fit_minimal(df):
    """alpaca_eval's cross-validated L1 fit: (predictions with the length term at zero, weights, X, p, X_test)."""
    import warnings

    from alpaca_eval.metrics import glm_winrate as g

    train, test = _minimal_design(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = g.fit_LogisticRegressionCV(train, "preference", is_ytrue_proba=True, **g.GLM_INFO[GLM_MINIMAL]["kwargs"])
    weights = {"C": float(model.C_[0]), **{k: float(v) for k, v in zip(test.columns, model.coef_[0])}}
    X = train.drop(columns=["preference"])[list(test.columns)].to_numpy(float)
    return model.predict_proba(test)[:, 1], weights, X, train["preference"].to_numpy(float), test.to_numpy(float)


def _refit(X, p, X_test, C: float) -> float:
    """The same estimator as alpaca_eval's ``fit_LogisticRegressionCV(n_splits=0, C=C)`` (liblinear, L1, no
    intercept, each row once as label 1 with weight p and once as label 0 with weight 1 - p), on arrays; returns the
    mean prediction with the length term at zero."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    n = len(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = LogisticRegression(C=C, penalty="l1", solver="liblinear", fit_intercept=False, random_state=123)
        m.fit(np.vstack([X, X]), np.r_[np.ones(n), np.zeros(n)], sample_weight=np.r_[p, 1 - p])
    return float(np.mean(1 / (1 + np.exp(-(X_test @ m.coef_[0])))))


def lc_win_rate(rows: list[dict], n_boot: int = 0, seed: int = 0, glm: str = "auto") -> dict:
    """``{lc_win_rate, lc_standard_error, lc_ci_low, lc_ci_high, lc_weights, lc_glm, lc_note}`` (percent) of judged
    rows with a verdict; ``glm``: ``"auto"`` (v1 when possible, see the module doc), or force ``GLM_MINIMAL``.

    Not fitted (NaN, with the reason in ``lc_note``) with fewer than 5 verdicts (5-fold cross-validation), or, for
    the minimal GLM, when every verdict is a win or every one a loss: it has no finite fit then (alpaca_eval's
    liblinear fit returns 50 % for such data, which would read as a coin flip). ``length_controlled_v1`` is tried on
    such data too: its fit is regularised towards the two gamed baselines' annotations, which hold wins and losses.
    ``lc_standard_error``: v1 only (see the module doc); the minimal GLM's uncertainty is the bootstrap CI.
    """
    from alpaca_eval.metrics import glm_winrate as g

    nan = float("nan")
    out = {"lc_win_rate": nan, "lc_standard_error": nan, "lc_ci_low": nan, "lc_ci_high": nan, "lc_weights": {},
           "lc_glm": GLM_MINIMAL, "lc_note": ""}
    rows = [r for r in rows if r["win"] == r["win"]]
    wins = {float(r["win"]) for r in rows}
    if len(rows) < 5:
        return {**out, "lc_note": f"not fitted: {len(rows)} verdicts (the GLM's 5-fold cross-validation needs 5)"}
    df = _annotations(rows)
    reason = _v1_reason(rows) if glm == "auto" else f"{glm} requested"
    if reason is None:
        try:
            m = g.get_length_controlled_winrate(df, glm_name=GLM_V1, save_weights_dir=None,
                                                is_warn_extreme_changes=False)
            return {**out, "lc_win_rate": float(m["length_controlled_winrate"]),
                    "lc_standard_error": float(m["lc_standard_error"]), "lc_glm": GLM_V1,
                    "lc_note": "alpaca_eval get_length_controlled_winrate (the leaderboard's GLM)"}
        except Exception as e:  # noqa: BLE001 - the Hub answered but the download or fit failed: fall back, say why
            reason = f"length_controlled_v1 failed ({type(e).__name__}: {str(e)[:120]})"
    if wins <= {0.0} or wins <= {1.0}:
        return {**out, "lc_note": f"not fitted: all {len(rows)} verdicts are {'losses' if wins == {0.0} else 'wins'} "
                                  f"(no finite fit of the minimal GLM; {reason})"}
    pred, weights, X, p, X_test = _fit_minimal(df)
    out.update(lc_win_rate=float(pred.mean() * 100), lc_weights=weights,
               lc_note=f"minimal GLM: {reason}; no standard error (constant predictions): its uncertainty is "
                       f"lc_ci_low/lc_ci_high" + ("" if n_boot else " (not drawn: lc_n_boot=0)"))
    if n_boot:
        rng = np.random.default_rng(seed)
        stats = [_refit(X[i], p[i], X_test[i], weights["C"]) * 100
                 for i in (rng.integers(0, len(p), len(p)) for _ in range(n_boot))]
        out["lc_ci_low"], out["lc_ci_high"] = (float(x) for x in np.quantile(stats, [0.025, 0.975]))
    return out


def win_rates(judged: list[dict], n_boot: int = 2000, seed: int = 0, lc_n_boot: int = 200) -> dict:
    """Win rate (x100) with a bootstrap CI, wins/losses/ties, the discrete win rate, the LC win rate
    (:func:`lc_win_rate`, its variant in ``lc_glm``), mean lengths in characters and the judge's first-position
    rate (mean p_first: 50 % for a judge without position bias)."""
    from .metrics import bootstrap_ci

    win = np.array([r["win"] for r in judged], dtype=float)
    ok = ~np.isnan(win)
    w = win[ok]
    len1 = np.array([len(r["output_1"]) for r in judged], dtype=float)
    len2 = np.array([len(r["output_2"]) for r in judged], dtype=float)
    lo, hi = bootstrap_ci(np.mean, w, n_boot=n_boot, seed=seed) if len(w) > 1 else (float("nan"), float("nan"))
    lc = lc_win_rate(judged, n_boot=lc_n_boot, seed=seed)
    p_first = np.array([r["p_first"] for r in judged], dtype=float)[ok]
    first = judged[0] if judged else {}
    nan = float("nan")
    return {
        "judge": first.get("judge"), "baseline": first.get("generator_1"), "candidate": first.get("generator_2"),
        "n": int(ok.sum()), "n_failed": int((~ok).sum()),
        "win_rate": float(w.mean() * 100) if len(w) else nan,
        "ci_low": lo * 100, "ci_high": hi * 100,
        "n_wins": int((w > 0.5).sum()), "n_losses": int((w < 0.5).sum()), "n_ties": int((w == 0.5).sum()),
        "discrete_win_rate": float(((w > 0.5) + 0.5 * (w == 0.5)).mean() * 100) if len(w) else nan,
        **lc,
        "avg_length": float(len2[ok].mean()) if ok.any() else nan,
        "avg_length_baseline": float(len1[ok].mean()) if ok.any() else nan,
        "first_position_rate": float(p_first.mean() * 100) if len(p_first) else nan,
    }

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


# -- length control -------------------------------------------------------------------------------------------

def _lengths(n, rng, p_longer=0.7):
    """Chosen/rejected lengths with the chosen side longer on about ``p_longer`` of the pairs, a few equal."""
    lr = rng.integers(20, 400, n)
    lc = lr + rng.integers(1, 300, n)  # strictly longer, then swapped on about 1 - p_longer of the pairs
    swap = rng.random(n) > p_longer
    lc, lr = np.where(swap, lr, lc), np.where(swap, lc, lr)
    lc[:5] = lr[:5]  # exactly equal lengths
    return lc.astype(float), lr.astype(float)


def test_length_strata_threshold_edges_and_equal_lengths():
    # d = log2 exactly on pairs 0/1, so |d| == threshold: NOT near-equal (strict <); pair 2 has equal lengths
    lc, lr = [2, 1, 5, 11, 10], [1, 2, 5, 10, 11]
    s = metrics.length_strata(lc, lr, threshold=np.log(2))
    assert list(s["chosen_longer"]) == [True, False, False, True, False]
    assert list(s["chosen_shorter"]) == [False, True, False, False, True]
    assert list(s["near_equal"]) == [False, False, True, True, True]  # equal lengths count as near-equal
    ex = metrics.length_strata(lc, lr, threshold=np.log(2), exclusive=True)
    assert list(ex["chosen_longer"]) == [True, False, False, False, False]
    assert list(ex["chosen_shorter"]) == [False, True, False, False, False]
    assert not metrics.length_strata(lc, lr, threshold=0)["near_equal"].any()
    assert list(metrics.length_strata(lc, lr, threshold=np.nextafter(np.log(2), 1))["near_equal"]) == [True] * 5
    st = metrics.pairwise_length_strata([1, 1, 3, 0, 2], [0, 2, 3, 1, 2], lc, lr, threshold=np.log(2), n_boot=50)
    assert st["n_equal_length"] == 1
    assert (st["chosen_longer"]["value"], st["chosen_longer"]["n"]) == (0.5, 2)     # pairs 0 (right), 3 (wrong)
    assert (st["chosen_shorter"]["value"], st["chosen_shorter"]["ties"]) == (0.25, 1)  # pair 1 wrong, 4 tie
    assert (st["near_equal"]["value"], st["near_equal"]["n"]) == (1 / 3, 3)          # ties 0.5 + 0.5, one wrong
    with pytest.raises(ValueError, match="> 0"):
        metrics.length_strata([0, 1], [1, 1])
    with pytest.raises(ValueError, match="> 0"):
        metrics.log_length_ratio([np.nan], [1])
    with pytest.raises(ValueError, match="threshold"):
        metrics.length_strata([1], [1], threshold=-1)


def test_pure_length_scorer_balanced_is_exactly_half():
    rng = np.random.default_rng(0)
    lc, lr = _lengths(600, rng)
    for chosen, rejected in ((lc, lr), (np.log(lc), np.log(lr))):  # reward = length, reward = log length
        raw = metrics.accuracy_ci(chosen, rejected, n_boot=200)
        assert raw["value"] > 0.65 and raw["ties"] == 5
        bal = metrics.length_balanced_accuracy(chosen, rejected, lc, lr, n_boot=200)
        assert bal["value"] == 0.5 and bal["ci_low"] == bal["ci_high"] == 0.5
        assert bal["n_chosen_longer"] + bal["n_chosen_shorter"] == 595
    # the residualised accuracy is DEFINED for a log-length scorer: its margin is beta * d exactly, every residual
    # is 0, so every pair ties -> exactly 0.5
    res = metrics.length_residualised_accuracy(np.log(lc), np.log(lr), lc, lr, n_boot=200)
    assert res["value"] == 0.5 and res["ties"] == 600 and res["beta"] == 1.0 and res["ci_low"] == res["ci_high"] == 0.5
    agree = metrics.length_agreement(lc, lr, lc, lr, n_boot=100)
    assert agree["value"] == 1.0 and agree["n"] == 595


def test_length_independent_signal_balanced_close_to_raw():
    rng = np.random.default_rng(1)
    n = 4000
    lc, lr = _lengths(n, rng)
    chosen, rejected = rng.normal(0.6, 1, n), rng.normal(0, 1, n)
    raw = metrics.accuracy_ci(chosen, rejected, n_boot=200)["value"]
    flat = metrics.pairwise_length_metrics(chosen, rejected, lc, lr, n_boot=200)
    assert flat["acc"] == raw and abs(flat["acc_length_balanced"] - raw) < 0.03
    # the slope is fitted with an intercept: a fit through the origin would credit the scorer's mean preference for
    # the chosen side (0.6) to length here, because the chosen side is longer on 70 % of pairs (beta ~ 0.2)
    assert abs(flat["acc_length_residualised"] - raw) < 0.01 and abs(flat["length_beta"]) < 0.05
    # agreement with "longer wins" is not 0.5 for a length-blind scorer when the chosen side is mostly longer; it
    # is exactly the stratum mix (no score ties here)
    nl, ns = flat["n_chosen_longer"], flat["n_chosen_shorter"]
    assert flat["length_agreement"] == pytest.approx(
        (nl * flat["acc_chosen_longer"] + ns * (1 - flat["acc_chosen_shorter"])) / (nl + ns))
    assert abs(flat["corr_margin_log_length_ratio"]) < 0.05
    assert flat["acc_length_balanced_ci_low"] < flat["acc_length_balanced"] < flat["acc_length_balanced_ci_high"]
    assert flat["n_chosen_longer"] + flat["n_chosen_shorter"] + flat["n_equal_length"] == n
    # a scorer that adds a length preference to the same signal: raw goes up, the controlled numbers do not
    lp = metrics.pairwise_length_metrics(chosen + 2 * np.log(lc), rejected + 2 * np.log(lr), lc, lr, n_boot=200)
    assert lp["acc"] > raw + 0.03
    assert lp["acc_length_balanced"] < flat["acc_length_balanced"] - 0.03  # the length bias costs it on "shorter"
    assert lp["acc_length_residualised"] == pytest.approx(flat["acc_length_residualised"], abs=0.02)
    assert lp["acc_length_heuristic"] == flat["acc_length_heuristic"] > 0.65


def test_length_balanced_and_residualised_hand_computation():
    # chosen longer on pairs 0-2, shorter on 3-4; scorer right on 0, 1, 3, tie on 2, wrong on 4
    c, r = np.array([2.0, 1.0, 0.5, 1.0, 0.0]), np.array([0.0, 0.0, 0.5, 0.0, 1.0])
    lc, lr = np.array([20, 30, 40, 10, 10]), np.array([10, 10, 10, 20, 40])
    bal = metrics.length_balanced_accuracy(c, r, lc, lr, n_boot=200)
    assert bal["value"] == pytest.approx(((1 + 1 + 0.5) / 3 + (1 + 0) / 2) / 2)
    d = np.log(lc) - np.log(lr)
    m = c - r
    beta = np.polyfit(d, m, 1)[0]  # OLS slope with intercept
    e = m - beta * d
    res = metrics.length_residualised_accuracy(c, r, lc, lr, n_boot=200)
    assert res["beta"] == pytest.approx(beta)
    assert res["value"] == pytest.approx(np.mean(np.where(e > 0, 1, np.where(e == 0, 0.5, 0))))
    # swapping chosen and rejected flips m and d, so beta is unchanged and every pair's verdict flips
    sw = metrics.length_residualised_accuracy(r, c, lr, lc, n_boot=50)
    assert sw["beta"] == pytest.approx(beta) and sw["value"] == pytest.approx(1 - res["value"])
    agree = metrics.length_agreement(c, r, lc, lr, n_boot=50)
    assert agree["value"] == pytest.approx((1 + 1 + 0.5 + 0 + 1) / 5)  # the longer side wins on 0, 1, 4; tie on 2
    # one stratum empty: the balanced accuracy is undefined (NaN), not an error
    assert np.isnan(metrics.length_balanced_accuracy([1, 2], [0, 0], [5, 6], [1, 2], n_boot=50)["value"])


def test_paired_length_balanced():
    rng = np.random.default_rng(2)
    n = 1500
    lc, lr = _lengths(n, rng)
    good_c, good_r = rng.normal(1, 1, n), rng.normal(0, 1, n)
    d = metrics.paired_length_balanced(good_c, good_r, lc, lr, lc, lr, n_boot=500)  # vs the pure length scorer
    bal = metrics.length_balanced_accuracy(good_c, good_r, lc, lr, n_boot=50)["value"]
    assert d["value_b"] == 0.5 and d["diff"] == pytest.approx(bal - 0.5)
    assert 0 < d["ci_low"] < d["diff"] < d["ci_high"] and d["p_value"] < 0.01 and d["n"] == n
    same = metrics.paired_length_balanced(good_c, good_r, good_c, good_r, lc, lr, n_boot=200)
    assert same["diff"] == 0 and same["p_value"] == 1.0 and same["ci_low"] == same["ci_high"] == 0


def test_partial_correlation_against_hand_computation():
    rng = np.random.default_rng(4)
    z = rng.normal(size=200)
    x, y = z + rng.normal(size=200), 0.5 * z + 0.3 * rng.normal(size=200)
    y = y + 0.4 * x
    design = np.column_stack([np.ones(200), z])

    def resid(v):
        return v - design @ np.linalg.lstsq(design, v, rcond=None)[0]

    hand = np.corrcoef(resid(x), resid(y))[0, 1]
    p = metrics.partial_correlation_ci(x, y, z, n_boot=500)
    assert p["value"] == pytest.approx(hand, abs=1e-12) and p["ci_low"] < hand < p["ci_high"]
    t = hand * np.sqrt(197 / (1 - hand ** 2))
    assert p["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), 197))
    assert np.isnan(metrics.partial_correlation(x, z, z))  # z explains x entirely: undefined
    assert np.isnan(metrics.partial_correlation([1, 2], [2, 1], [0, 1]))


def test_rating_and_system_length_metrics():
    rng = np.random.default_rng(5)
    length = rng.normal(size=300)
    target = length + rng.normal(size=300)
    reward = length + 0.01 * rng.normal(size=300)  # a length scorer in disguise
    flat = metrics.rating_length_metrics(reward, target, length, n_boot=300)
    assert flat["n"] == 300 and flat["pearson"] > 0.6 and flat["pearson_length"] > 0.6
    assert abs(flat["partial_pearson_given_length"]) < 0.15
    assert flat["partial_pearson_given_length_ci_low"] < flat["partial_pearson_given_length"]
    means = {f"m{i}": float(v) for i, v in enumerate(rng.normal(size=12))}
    lengths = {m: v * 100 + rng.normal() for m, v in means.items()}
    elo = {m: 1000 + 50 * v for m, v in means.items() if m != "m0"}
    s = metrics.system_length_metrics(means, lengths, elo, n_boot=300)
    assert s["n_elo"] == 11 and s["pearson_elo"] == pytest.approx(1.0) and "partial_pearson_elo_given_length" in s
    assert s["pearson_length_elo"] == pytest.approx(metrics.correlation([lengths[m] for m in elo], list(elo.values()))[0])


# -- bank-size ablation ---------------------------------------------------------------------------------------

_CATS = ["A"] * 4 + ["B"] * 4
_POLS = ["positive", "positive", "negative", "negative"] * 2


def test_bank_rewards_match_scorer_finish(small_bank):
    from flrlib.scoring import ScoreConfig, Scorer

    scorer = Scorer.__new__(Scorer)  # _finish needs only the config and the bank, not a model
    scorer.config, scorer.bank = ScoreConfig(), small_bank
    items = small_bank.items()
    rng = np.random.default_rng(0)
    vals = rng.normal(size=(3, len(items)))
    mine = metrics.bank_rewards(vals, [c for c, _, _ in items], [p for _, p, _ in items])
    for i, row in enumerate(vals):
        ref = scorer._finish({"sum": list(row), "n": [1] * len(row)})
        assert mine["reward"][i] == pytest.approx(ref["reward"])
        assert {c: v[i] for c, v in mine["categories"].items()} == pytest.approx(ref["categories"])
        # Scorer._finish's pos/neg average all positives/negatives; with equal group sizes that is the same
        assert mine["pos"][i] == pytest.approx(ref["pos"]) and mine["neg"][i] == pytest.approx(-ref["neg"])


def test_bank_size_ablation_hand_computation():
    # columns: A+ A+ A- A- B+ B+ B- B-; rejected all zero except pair 2
    ch = np.array([[1, 1, -2, 0, 1, 1, 0, 0],     # pair 0: R_A = 2, R_B = 1 on any sub-bank -> right
                   [1, -1, 0, 0, 0, 0, 0, 0],     # pair 1: full R_A = 0 -> tie; k=1: R_A = +-1 -> right/wrong
                   [0, 0, 0, 0, 0, 0, 0, 0]], float)
    rj = np.zeros_like(ch)
    rj[2, 0] = 3.0                                 # pair 2: full rejected R_A = 1.5 -> wrong; k=1: wrong or tie
    out = metrics.bank_size_ablation(ch, rj, _CATS, _POLS, n_draws=800, seed=0, n_boot=200)
    assert out["full"]["value"] == pytest.approx((1 + 0.5 + 0) / 3)
    k1, k2 = out["by_k"]
    assert (k2["k"], k2["n_draws"], k2["bank_size"]) == (2, 1, 8) and k2["value"] == out["full"]["value"]
    assert (k1["k"], k1["bank_size"]) == (1, 4)
    assert k1["value"] == pytest.approx((1 + 0.5 + 0.25) / 3, abs=0.03)  # expectation over the 16 sub-banks
    assert k1["draw_sd"] > 0
    per, loo = out["per_category"], out["leave_one_out"]
    assert per["A"]["value"] == pytest.approx((1 + 0.5 + 0) / 3) and per["B"]["value"] == pytest.approx((1 + .5 + .5) / 3)
    assert loo["A"]["value"] == per["B"]["value"] and loo["B"]["value"] == per["A"]["value"]
    assert out["positives_only"]["value"] == pytest.approx((1 + 0.5 + 0) / 3)  # pos means: 1 vs 0, 0 vs 0, 0 vs .75
    assert out["negatives_only"]["value"] == pytest.approx((1 + 0.5 + 0.5) / 3)  # -mean(neg): 0.5 vs 0, then ties
    assert metrics.bank_size_ablation(ch, rj, _CATS, _POLS, ks=[1], n_draws=50, seed=3, n_boot=50) == \
        metrics.bank_size_ablation(ch, rj, _CATS, _POLS, ks=[1], n_draws=50, seed=3, n_boot=50)
    with pytest.raises(ValueError, match="between 1 and 2"):
        metrics.bank_size_ablation(ch, rj, _CATS, _POLS, ks=[3])
    with pytest.raises(ValueError, match="missing"):
        metrics.bank_rewards(ch, _CATS, ["positive"] * 8)


def test_partial_correlation_given_itself_is_undefined_not_zero():
    """The length scorer's partial correlation given length: x is z, so nothing is left (rounding gave 0.000)."""
    rng = np.random.default_rng(1)
    found = False
    for _ in range(50):  # lengths whose Pearson with themselves rounds to 1 - 2e-16, as in the demo's MT-Bench rows
        z = rng.integers(5, 900, 320).astype(float)
        y = z / 100 + rng.normal(size=320)
        if metrics.vector_pearson(z, z) != 1.0:
            found = True
            break
    assert found
    assert np.isnan(metrics.partial_correlation(z, y, z)) and np.isnan(metrics.partial_correlation(2 * z + 3, y, z))
    res = metrics.partial_correlation_ci(z, y, z, n_boot=200)
    assert np.isnan(res["value"]) and np.isnan(res["ci_low"])

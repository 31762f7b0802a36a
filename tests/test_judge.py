"""Judges, position randomisation, win rates and the length-controlled win rate (alpaca_eval's own GLM code; offline
its length_controlled_minimal variant, not the leaderboard's length_controlled_v1). The API judge runs against a real
llama.cpp server in tests/test_server.py."""
import math

import numpy as np
import pytest

from flrlib import judge as J
from flrlib import judges as JS
from flrlib import winrate as W


def synth(n=60, seed=0):
    """Synthetic annotations; the alpaca_eval reference number below was computed on them."""
    rng = np.random.default_rng(seed)
    len_ref = rng.integers(200, 2000, n)
    len_cand = rng.integers(50, 2500, n)
    diff = rng.normal(0, 1, n)
    logit = 0.0015 * (len_cand - len_ref) - 0.3 + 0.5 * diff
    p = 1 / (1 + np.exp(-logit))
    pref = np.where(rng.random(n) < 0.5, rng.random(n) < p, p).astype(float)  # half hard labels, half soft
    pref[3] = 0.5  # a tie
    return len_ref, len_cand, diff, pref


def rows_of(len_ref, len_cand, pref, baseline="r", ids=None):
    ids = list(range(len(pref))) if ids is None else ids
    return [{"id": i, "output_1": "a" * int(a), "output_2": "b" * int(b), "win": float(w), "p_first": 0.5,
             "judge": "t", "generator_1": baseline, "generator_2": "c"}
            for i, a, b, w in zip(ids, len_ref, len_cand, pref)]


# alpaca_eval==0.6.6, metrics.glm_winrate.get_length_controlled_winrate(glm_name="length_controlled_minimal") on
# synth() (preference = 1 + pref, output_1 = "a" * len_ref, output_2 = "b" * len_cand), recorded once.
AE_MINIMAL = 47.37935195251099
AE_WIN_RATE = 51.83529891808656


def test_lc_win_rate_is_alpaca_evals_minimal_glm(monkeypatch, tmp_path):
    pd = pytest.importorskip("pandas")
    from alpaca_eval.metrics import glm_winrate as g

    len_ref, len_cand, _, pref = synth()
    rows = rows_of(len_ref, len_cand, pref)
    assert pref.mean() * 100 == pytest.approx(AE_WIN_RATE, abs=1e-9)
    lc = W.lc_win_rate(rows)
    assert lc["lc_win_rate"] == pytest.approx(AE_MINIMAL, abs=1e-6)
    assert lc["lc_glm"] == "length_controlled_minimal" and "baseline is not" in lc["lc_note"]
    # the package's own entry point (its df_gamed.csv download, unused by this formula, replaced by a local file)
    csv = tmp_path / "df_gamed.csv"
    pd.DataFrame({"index": range(60), "instruction_difficulty": 0.0, "model": "m"}).to_csv(csv, index=False)
    monkeypatch.setattr(g, "hf_hub_download", lambda **kw: str(csv))
    ref = g.get_length_controlled_winrate(W._annotations(rows), glm_name="length_controlled_minimal",
                                          save_weights_dir=None, is_warn_extreme_changes=False)
    assert lc["lc_win_rate"] == pytest.approx(ref["length_controlled_winrate"], abs=1e-9)
    assert lc["lc_standard_error"] == pytest.approx(ref["lc_standard_error"], abs=1e-6)


def test_lc_variant_choice_and_fallback(monkeypatch):
    """v1 only against AlpacaEval's reference with AlpacaEval ids and a reachable Hub; otherwise minimal, with why."""
    len_ref, len_cand, _, pref = synth(20, seed=3)
    ref_rows = rows_of(len_ref, len_cand, pref, baseline=W.AE_REFERENCE)
    assert "Hub is not reachable" in W._v1_reason(ref_rows)  # the tests run offline
    assert "ids are not" in W._v1_reason(rows_of(len_ref, len_cand, pref, W.AE_REFERENCE, [f"x{i}" for i in range(20)]))
    monkeypatch.setattr("flrlib.net.reachable", lambda *a, **k: True)
    assert W._v1_reason(ref_rows) is None
    lc = W.lc_win_rate(ref_rows)  # v1 is attempted; its Hub download fails offline: minimal, and it says so
    assert lc["lc_glm"] == "length_controlled_minimal" and "length_controlled_v1 failed" in lc["lc_note"]
    assert lc["lc_win_rate"] == pytest.approx(W.lc_win_rate(ref_rows, glm="length_controlled_minimal")["lc_win_rate"])
    few = W.lc_win_rate(ref_rows[:4])
    assert math.isnan(few["lc_win_rate"]) and "4 verdicts" in few["lc_note"]
    lost = W.lc_win_rate([{**r, "win": 0.0} for r in ref_rows])
    assert math.isnan(lost["lc_win_rate"]) and "all 20 verdicts are losses" in lost["lc_note"]


def test_lc_removes_a_pure_length_effect():
    rng = np.random.default_rng(1)
    n = 80
    len_ref = rng.integers(500, 1500, n).astype(float)
    len_cand = len_ref + rng.normal(0, 400, n)
    pref = (1 / (1 + np.exp(-(len_cand - len_ref) / 150)) > rng.random(n)).astype(float)  # longer wins, nothing else
    longer = len_cand + 600
    raw = (1 / (1 + np.exp(-(longer - len_ref) / 150)) > rng.random(n)).astype(float).mean() * 100
    assert raw > 80  # a judge that only likes length: the raw win rate of a padded model is high
    lc = W.lc_win_rate(rows_of(len_ref, np.maximum(len_cand, 1), pref), n_boot=100)
    assert 35 < lc["lc_win_rate"] < 65 and lc["lc_weights"]["np.tanh(std_delta_len)"] < 0
    assert lc["lc_ci_low"] <= lc["lc_win_rate"] <= lc["lc_ci_high"]


# ---------------------------------------------------------------------------------------------- the prompt

def test_hf_judge_prompt_is_alpaca_eval_clf_and_filled_literally():
    msgs = JS.judge_messages("Say {hi}", "first {output_2} out", "second out")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"].startswith("You are a highly efficient assistant")
    u = msgs[1]["content"]
    assert '"instruction": """Say {hi}"""' in u
    assert u.index('"model_identifier": "m"') < u.index("first {output_2} out") < u.index('"model_identifier": "M"')
    assert u.index('"model_identifier": "M"') < u.index("second out")
    assert u.endswith("## Best Model Identifier")
    assert JS.p_first_from_logprobs({"m": math.log(0.3), "M": math.log(0.1), "x": 0.0}) == pytest.approx(0.75)
    assert JS.p_first_from_logprobs({"M": -0.1}) == 0.0 and math.isnan(JS.p_first_from_logprobs({"A": -1.0}))


# ---------------------------------------------------------------------------------------------- judges

def _items(n=40):
    return [{"id": i, "instruction": f"q{i}", "output_1": f"ref answer {i}", "output_2": f"GOOD answer {i} " + "x" * i,
             "generator_1": "ref", "generator_2": "cand"} for i in range(n)]


class FirstAlways:
    name, description = "first", "always prefers the output shown first"

    def __call__(self, triples, progress=True):
        return [1.0] * len(triples)


class LikesGood:
    name, description = "good", "prefers the output containing GOOD"

    def __call__(self, triples, progress=True):
        return [1.0 if "GOOD" in a else 0.0 for _, a, b in triples]


def test_random_order_cancels_position_bias_and_maps_back():
    items = _items(200)
    flips = [J.swapped(it["id"], seed=0) for it in items]
    assert 0.4 < np.mean(flips) < 0.6 and flips == [J.swapped(it["id"], seed=0) for it in items]
    assert flips != [J.swapped(it["id"], seed=1) for it in items]
    biased = W.win_rates(J.judge_pairs(FirstAlways(), items), n_boot=200, lc_n_boot=0)
    assert biased["first_position_rate"] == 100.0
    assert biased["win_rate"] == pytest.approx(100 * np.mean(flips))  # wins exactly when the candidate came first
    fair = J.judge_pairs(LikesGood(), items[:40])
    assert all(r["win"] == 1.0 and r["preference"] == 2.0 for r in fair)
    w = W.win_rates(fair, n_boot=200, lc_n_boot=0)
    assert (w["win_rate"], w["n_wins"], w["n_losses"], w["n"]) == (100.0, 40, 0, 40)
    assert w["avg_length"] > w["avg_length_baseline"] and w["baseline"] == "ref" and w["candidate"] == "cand"
    with pytest.raises(ValueError, match="items\\[0\\].*output_2"):
        J.judge_pairs(LikesGood(), [{"id": 1, "instruction": "x", "output_1": "y"}])


def test_win_rates_ties_ci_and_lc():
    rng = np.random.default_rng(0)
    judged = [{"id": i, "output_1": "r" * int(rng.integers(50, 500)), "output_2": "c" * int(rng.integers(50, 500)),
               "win": w, "p_first": 0.5, "judge": "j", "generator_1": "a", "generator_2": "b"}
              for i, w in enumerate([1.0, 0.0, 0.5, 1.0, 0.75, 0.0, 1.0, 0.5, 1.0, 0.0])]
    r = W.win_rates(judged, n_boot=500, lc_n_boot=50)
    assert r["win_rate"] == pytest.approx(57.5)
    assert (r["n_wins"], r["n_losses"], r["n_ties"]) == (5, 3, 2)
    assert r["discrete_win_rate"] == pytest.approx(60.0)
    assert r["ci_low"] < r["win_rate"] < r["ci_high"]
    assert 0 < r["lc_win_rate"] < 100 and r["first_position_rate"] == 50.0
    assert r["lc_glm"] == "length_controlled_minimal"  # every result row names the LC variant
    from alpaca_eval.metrics.winrate import get_winrate

    ae = get_winrate(W._annotations(judged))  # the same numbers as alpaca_eval's own win-rate code
    assert (r["win_rate"], r["discrete_win_rate"]) == pytest.approx((ae["win_rate"], ae["discrete_win_rate"]))
    with pytest.raises(ValueError, match="flr_scorer"):
        JS.make_judges(["flr"])


def test_alignment_table_names_the_lc_variant(tmp_path, monkeypatch):
    from flrlib import reporting
    from flrlib.results import write_json

    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path))
    row = {"judge": "j", "candidate": "dpo", "baseline": "base", "n": 10, "win_rate": 60.0, "ci_low": 40.0,
           "ci_high": 80.0, "lc_win_rate": 55.0, "avg_length": 500.0, "judge_label": "independent"}
    write_json(tmp_path / "unit" / "alignment" / "eval_summary.json", {"rows": [row]})
    table = reporting.alignment_table("unit")
    assert list(table.columns)[5:7] == ["LC win rate %", "LC GLM"] and table.iloc[0, 5] == "55.0"
    assert "length_controlled_minimal" in reporting.summary_markdown("unit")


def test_system_scatter_labels_the_leaderboards_lc(data_ready, monkeypatch):
    """The system-level LC target is the AlpacaEval 2 leaderboard's own number (length_controlled_v1), and says so."""
    import matplotlib

    matplotlib.use("Agg")
    from flrlib import reporting
    from flrlib.paths import ROOT

    monkeypatch.setenv("FLR_RESULTS_DIR", str(ROOT / "results"))  # the committed demo results
    fig = reporting.plot_system_scatter("demo", "flr", target="lc_win_rate")
    assert fig.axes[0].get_xlabel() == "AlpacaEval 2 leaderboard LC win rate (%, length_controlled_v1)"


def test_hf_and_reward_judges_on_the_tiny_model(tiny, small_bank):
    from flrlib.scoring import ScoreConfig, Scorer

    items = _items(3)
    hf = JS.HFJudge(tiny, max_output_tokens=16)
    out = J.judge_pairs(hf, items, progress=False)
    assert all(0.0 < r["p_first"] < 1.0 for r in out) and out[0]["judge"] == "hf:random:tiny-llama"
    scorer = Scorer(tiny, small_bank, ScoreConfig(), cache=None)
    rj = JS.RewardJudge(scorer)
    rewards = rj.rewards([(it["instruction"], it["output_1"], it["output_2"]) for it in items], progress=False)
    judged = J.judge_pairs(rj, items, progress=False)
    for (r1, r2), r in zip(rewards, judged):
        assert r["win"] == (1.0 if r2 > r1 else 0.0 if r2 < r1 else 0.5)
    summary, rows = J.evaluate({it["id"]: it["instruction"] for it in items},
                               {"ref": {it["id"]: it["output_1"] for it in items},
                                "cand": {it["id"]: it["output_2"] for it in items}},
                               [("ref", "cand")], [(rj, "in-loop"), (FirstAlways(), "independent")], n_boot=100,
                               lc_n_boot=0, progress=False)
    assert [s["judge_label"] for s in summary] == ["in-loop", "independent"] and len(rows) == 6
    assert summary[0]["win_rate"] == pytest.approx(100 * np.mean([r["win"] for r in judged]))

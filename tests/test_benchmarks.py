"""flrlib.benchmarks + the reward part of flrlib.reporting, with the tiny random model (numbers mean nothing)."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from flrlib import benchmarks, metrics, reporting  # noqa: E402
from flrlib.results import read_json, read_jsonl  # noqa: E402
from flrlib.scoring import ScoreConfig, Scorer  # noqa: E402
from helpers import user

PAIRS = [
    {"id": "p1", "benchmark": "toy", "messages": user("What is 2+2?"), "chosen": "4.",
     "rejected": "Fish.", "category": "math"},
    {"id": "p2", "benchmark": "toy", "messages": user("Capital of France?"),
     "chosen": "Paris.", "rejected": "I refuse to answer questions about geography."},
    {"id": "p3", "benchmark": "toy", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                                                  {"role": "user", "content": "Bye"}], "chosen": "Goodbye!", "rejected": "?"},
]
RATINGS = [{"id": f"r{i}", "benchmark": "toyr", "messages": user(q), "response": a, "score": s}
           for i, (q, a, s) in enumerate([("Name a color.", "Blue.", 5.0), ("Name a fruit.", "A car.", 1.0),
                                          ("Say hi.", "Hi there!", 4.0), ("Count to 3.", "1 2 3", 3.5)])]


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def scorers(tiny, small_bank):
    return {s: Scorer(tiny, small_bank, ScoreConfig(scorer=s), cache=None) for s in ("flr", "direct")}


def test_pairwise_result_files(results, scorers):
    rec = benchmarks.run_benchmark(scorers["flr"], PAIRS, "toy", "t", seed=3, max_examples=3, n_boot=200)
    path = benchmarks.result_path("t", "toy", "flr", "random:tiny-llama")
    assert path == results / "t" / "reward_benchmarks" / "toy__flr__random_tiny-llama.json"
    on_disk, rows = read_json(path), read_jsonl(path.with_suffix(".jsonl"))
    assert on_disk["value"] == rec["value"] and rec["kind"] == "pairwise" and rec["metric"] == "accuracy"
    assert [r["id"] for r in rows] == ["p1", "p2", "p3"] and rows[0]["category"] == "math"
    assert rec["value"] == pytest.approx(np.mean([r["correct"] for r in rows]))
    assert all(r["correct"] == metrics.pairwise_correct([r["chosen"]], [r["rejected"]])[0] for r in rows)
    assert rec["n"] == 3 and "ties" in rec and rec["ci_low"] <= rec["value"] <= rec["ci_high"]
    assert {"category_relevance", "category_correctness"} <= set(rec)
    prov = rec["provenance"]
    assert prov["seed"] == 3 and prov["max_examples"] == 3 and prov["bank_hash"] and prov["template_hash"]
    d = benchmarks.run_benchmark(scorers["direct"], PAIRS, "toy", "t", n_boot=200)
    assert d["tag"] == "direct" and not any(k.startswith("category_") for k in d)
    ft = benchmarks.run_benchmark(scorers["flr"], PAIRS, "toy", "t", tag="ft_flr", n_boot=200)
    assert ft["tag"] == "ft_flr" and ft["scorer"] == "flr"
    assert benchmarks.result_path("t", "toy", "ft_flr", "random:tiny-llama").exists()


def test_rating_metric_matches_per_sample(results, scorers):
    rec = benchmarks.run_benchmark(scorers["flr"], RATINGS, "toyr", "t", n_boot=200)
    rows = read_jsonl(benchmarks.result_path("t", "toyr", "flr", "random:tiny-llama").with_suffix(".jsonl"))
    r, p = metrics.correlation([x["reward"] for x in rows], [x["score"] for x in rows])
    assert rec["metric"] == "pearson" and rec["value"] == pytest.approx(r) and rec["p_value"] == pytest.approx(p)
    assert {"spearman", "kendall", "spearman_ci_low", "kendall_p_value"} <= set(rec)


def test_kind_detection_rejects_unknown_records():
    with pytest.raises(ValueError, match="no records"):
        benchmarks.kind_of([])
    with pytest.raises(ValueError, match="not a pairwise"):
        benchmarks.kind_of([{"id": "x", "messages": []}])


def test_system_level_and_reporting(results, scorers, data_ready):
    from flrlib.data import arena_elo, load_benchmark

    recs, rep = load_benchmark("alpaca_eval_system", max_examples=1, seed=0)
    keep = ("gpt-4-0125-preview", "Qwen1.5-72B-Chat", "tulu-2-dpo-70b", "gemma-7b-it", "gemma-2b-it")
    recs = [r for r in recs if r["model"] in keep]  # 5 of the 17 models keep the test fast
    rec = benchmarks.run_benchmark(scorers["direct"], recs, "alpaca_eval_system", "t", report=rep, n_boot=200)
    elo = arena_elo()
    means = rec["model_means"]
    assert rec["n"] == 5 and rec["n_prompts"] == 1 and set(means) == set(keep)
    assert rec["value"] == pytest.approx(metrics.correlation([means[m] for m in means], [elo[m] for m in means])[0])
    assert rec["n_lc"] == 4  # gpt-4-0125-preview has no AlpacaEval 2 LC win rate in the leaderboard file
    benchmarks.run_benchmark(scorers["flr"], recs, "alpaca_eval_system", "t", report=rep, n_boot=200)
    for s in ("flr", "direct"):
        benchmarks.run_benchmark(scorers[s], PAIRS, "toy", "t", n_boot=200)
        benchmarks.run_benchmark(scorers[s], PAIRS[:2], "toy2", "t", n_boot=200)
        benchmarks.run_benchmark(scorers[s], RATINGS, "toyr", "t", n_boot=200)

    table = reporting.reward_table("t", n_boot=200)
    assert set(table["scorer"]) == {"flr", "direct"}
    assert {"toy", "toyr", "alpaca_eval_system", "pairwise avg", "rating avg"} <= set(table.columns)
    num = reporting.reward_table("t", n_boot=200, numeric=True)
    flr = num[num.scorer == "flr"].iloc[0]
    assert flr["pairwise avg"] == pytest.approx((flr["toy"] + flr["toy2"]) / 2)
    assert flr["rating avg"] == pytest.approx(flr["toyr"])

    cmp = reporting.paired_comparison("t", "flr", "direct", n_boot=200).set_index("benchmark")
    assert cmp.loc["toy", "n"] == 3 and cmp.loc["toy", "diff"] == pytest.approx(
        cmp.loc["toy", "value_a"] - cmp.loc["toy", "value_b"])
    pooled = cmp.loc["pairwise (pooled)"]
    assert pooled["n"] == 5 and pooled["diff"] == pytest.approx(
        (3 * cmp.loc["toy", "diff"] + 2 * cmp.loc["toy2", "diff"]) / 5)
    assert cmp.loc["alpaca_eval_system", "n"] == 5 and cmp.loc["toyr", "metric"] == "pearson"
    assert len(reporting.system_points("t", "flr")) == 5
    assert reporting.plot_reward_benchmarks("t").axes and reporting.plot_system_scatter("t").axes
    assert "relevance" in reporting.category_table("t", "flr").columns


def test_run_suite_same_subset_for_every_scorer(results, tiny, small_bank, tmp_path):
    import json

    own = tmp_path / "own_pairs.jsonl"  # a user benchmark file goes through the same loop
    own.write_text("".join(json.dumps({k: r[k] for k in ("id", "messages", "chosen", "rejected")}) + "\n" for r in PAIRS))
    out = benchmarks.run_suite(tiny, [str(own)], ["flr", "direct", "legacy_repo"], "t", max_examples=2,
                               legacy_max_examples=1, bank=small_bank, n_boot=100, cache=None, progress=False)
    got = {o["tag"]: o for o in out}
    assert got["flr"]["n"] == got["direct"]["n"] == 2 and got["legacy_repo"]["n"] == 1
    assert got["flr"]["benchmark"] == "own_pairs" and got["flr"]["provenance"]["data"]["rows_total"] == 3
    ids = {t: [r["id"] for r in read_jsonl(benchmarks.result_path("t", "own_pairs", t, "random:tiny-llama")
                                          .with_suffix(".jsonl"))] for t in got}
    assert ids["flr"] == ids["direct"] and set(ids["legacy_repo"]) <= set(ids["flr"])


def test_run_suite_skips_an_unavailable_benchmark_and_scores_the_rest(results, tiny, small_bank, tmp_path):
    import json

    own = tmp_path / "own_pairs.jsonl"
    own.write_text("".join(json.dumps({k: r[k] for k in ("id", "messages", "chosen", "rejected")}) + "\n" for r in PAIRS))
    # alpaca_farm is Hub-only: unavailable under the tests' FLR_OFFLINE=1
    out = benchmarks.run_suite(tiny, ["alpaca_farm", str(own)], ["direct"], "t", bank=small_bank, n_boot=50,
                               cache=None, progress=False)
    assert [(o["benchmark"], o["n"]) for o in out] == [("own_pairs", 3)]
    assert [s["benchmark"] for s in out.skipped] == ["alpaca_farm"] and "offline" in out.skipped[0]["reason"]
    on_disk = read_json(results / "t" / "reward_benchmarks" / "skipped" / "alpaca_farm.json")
    assert on_disk["reason"] == out.skipped[0]["reason"]
    assert set(reporting.reward_results("t")["benchmark"]) == {"own_pairs"}  # the skip file is not a result

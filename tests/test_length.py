"""The `length` scorer (the length-only baseline) and the length controls every result file carries."""
import json

import numpy as np
import pytest

from flrlib import benchmarks, metrics
from flrlib.chat import content_tokens
from flrlib.results import read_jsonl
from flrlib.scoring import ScoreConfig, Scorer
from helpers import user

PAIRS = [
    {"id": f"p{i}", "benchmark": "toy", "messages": user(q), "chosen": c, "rejected": r}
    for i, (q, c, r) in enumerate([
        ("What is 2+2?", "4.", "Fish, probably, or maybe a large number of them."),
        ("Capital of France?", "The capital of France is Paris, on the Seine.", "Rome."),
        ("Say hi.", "Hi there!", "Hello, friend!"),
        ("Name a colour.", "Blue, the colour of a clear sky at noon.", "Red."),
    ])]


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path))
    return tmp_path


def test_length_scorer_counts_content_tokens_without_a_forward_pass(tiny, monkeypatch):
    scorer = Scorer(tiny, None, ScoreConfig(scorer="length"), cache=None)
    monkeypatch.setattr(scorer, "model", None)  # any forward pass would fail
    convs = [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": t}]
             for t in ("  Hello there, how are you?\n", "Ok")]
    out = scorer.score(convs)
    want = [len(tiny.tokenizer(t.strip(), add_special_tokens=False)["input_ids"]) for t in ("Hello there, how are you?", "Ok")]
    assert [o["reward"] for o in out] == [float(w) for w in want] and want[0] > want[1] >= 1
    assert content_tokens(tiny.tokenizer, ["Hello there, how are you?", "Ok"]) == want
    assert scorer.bank is None and scorer.provenance["scorer"] == "length"
    with pytest.raises(ValueError, match="non-empty assistant response"):
        scorer.score([[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]])


def test_pairwise_files_carry_lengths_and_length_controlled_metrics(results, tiny, small_bank):
    rec = benchmarks.run_benchmark(Scorer(tiny, small_bank, ScoreConfig(), cache=None), PAIRS, "toy", "t", n_boot=200)
    rows = read_jsonl(benchmarks.result_path("t", "toy", "flr", "random:tiny-llama").with_suffix(".jsonl"))
    lc = content_tokens(tiny.tokenizer, [p["chosen"] for p in PAIRS])
    lr = content_tokens(tiny.tokenizer, [p["rejected"] for p in PAIRS])
    assert [r["chosen_length"] for r in rows] == lc and [r["rejected_length"] for r in rows] == lr
    want = metrics.pairwise_length_metrics([r["chosen"] for r in rows], [r["rejected"] for r in rows], lc, lr,
                                           n_boot=200)
    for k in ("acc_length_balanced", "acc_chosen_longer", "acc_chosen_shorter", "acc_length_residualised",
              "length_agreement", "acc_length_heuristic", "n_chosen_longer"):
        assert rec[k] == pytest.approx(want[k], nan_ok=True)
    # per-follow-up values in bank order, described by the record's layout: the reward is recomputable from them
    assert rec["followup_layout"] == [[c, p] for c, p, _ in small_bank.items()]
    cats, pols = zip(*rec["followup_layout"])
    again = metrics.bank_rewards(np.array([r["chosen_followups"] for r in rows]), cats, pols)["reward"]
    assert again == pytest.approx([r["chosen"] for r in rows], abs=1e-5)


def test_length_scorer_gets_half_by_construction_and_runs_every_row(results, tiny):
    rec = benchmarks.run_benchmark(Scorer(tiny, None, ScoreConfig(scorer="length"), cache=None), PAIRS, "toy", "t",
                                   n_boot=200)
    assert rec["acc_length_balanced"] == 0.5 and rec["value"] == rec["acc_length_heuristic"] == 0.5
    assert "followup_layout" not in rec and rec["length_unit"].startswith("tokens of M")


def test_cli_scores_with_the_length_scorer(tmp_path):
    from flrlib.cli import main

    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "a", "messages": user("Hi"), "chosen": "Hello, how are you?",
                               "rejected": "Hi"}) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["score", "--scorer", "length", "--model", "random:tiny-llama", "--input", str(inp), "--output",
                 str(out), "--cache", str(tmp_path / "c.jsonl"), "--device", "cpu"]) == 0
    row = json.loads(out.read_text())
    assert row["chosen_reward"] > row["rejected_reward"] and row["prefers_chosen"] is True


def test_reporting_length_tables_and_figures_from_result_files(results, tiny, small_bank):
    import matplotlib

    matplotlib.use("Agg")
    from flrlib import reporting

    for s in ("flr", "direct", "length"):
        sc = Scorer(tiny, None if s != "flr" else small_bank, ScoreConfig(scorer=s), cache=None)
        benchmarks.run_benchmark(sc, PAIRS, "toy_a", "t", n_boot=100)
        benchmarks.run_benchmark(sc, PAIRS[:3] if s != "length" else PAIRS, "toy_b", "t", n_boot=100)
    t = reporting.length_table("t", n_boot=100, numeric=True)
    # every scorer on the same pairs: toy_b's length rows are cut to the 3 pairs flr and direct scored
    assert set(t[t.benchmark == "toy_b"]["n"]) == {3} and set(t[t.benchmark == "pairwise (pooled)"]["n"]) == {7}
    length = t[(t.scorer == "length")].set_index("benchmark")
    assert (length["acc_length_balanced"].dropna() == 0.5).all()
    flr = t[(t.scorer == "flr") & (t.benchmark == "pairwise (pooled)")].iloc[0]
    rows = [r for b in ("toy_a", "toy_b") for r in read_jsonl(
        benchmarks.result_path("t", b, "flr", "random:tiny-llama").with_suffix(".jsonl"))]
    want = metrics.length_balanced_accuracy([r["chosen"] for r in rows], [r["rejected"] for r in rows],
                                            [r["chosen_length"] for r in rows], [r["rejected_length"] for r in rows],
                                            n_boot=100)
    assert flr["acc_length_balanced"] == pytest.approx(want["value"], nan_ok=True)
    d = reporting.length_paired_table("t", n_boot=100)
    assert list(d.benchmark) == ["toy_a", "toy_b", "pairwise (pooled)"] and list(d.n) == [4, 3, 7]
    abl = reporting.bank_ablation("t", "flr", n_boot=100)
    assert abl["n_pairs"] == 7 and abl["bank_size"] == 8 and [x["k"] for x in abl["by_k"]] == [1, 2]
    assert abl["by_k"][-1]["value"] == pytest.approx(abl["full"]["value"])
    assert len(reporting.bank_ablation_table("t", n_boot=100)) == 1 + 2 + 2 + 2 + 2
    for fig in (reporting.plot_length_strata("t"), reporting.plot_bank_size("t")):
        assert fig.axes
    md = reporting.summary_markdown("t")
    assert "Length control" in md and "length-balanced" in md and "FLR − Direct, length-balanced" in md


def test_rating_files_carry_length_only_and_partial_correlations(results, tiny, small_bank):
    from flrlib import reporting

    ratings = [{"id": f"r{i}", "benchmark": "toyr", "messages": user(q), "response": a,
                "score": s} for i, (q, a, s) in enumerate([("Name a colour.", "Blue.", 5.0),
                                                           ("Name a fruit.", "A car, I think, or a bus.", 1.0),
                                                           ("Say hi.", "Hi there, nice to meet you!", 4.0),
                                                           ("Count to 3.", "1 2 3", 3.5)])]
    rec = benchmarks.run_benchmark(Scorer(tiny, small_bank, ScoreConfig(), cache=None), ratings, "toyr", "t", n_boot=100)
    rows = read_jsonl(benchmarks.result_path("t", "toyr", "flr", "random:tiny-llama").with_suffix(".jsonl"))
    length = [r["length"] for r in rows]
    assert length == content_tokens(tiny.tokenizer, [r["response"] for r in ratings])
    assert rec["pearson_length"] == pytest.approx(metrics.correlation(length, [r["score"] for r in rows])[0])
    assert rec["partial_pearson_given_length"] == pytest.approx(
        metrics.partial_correlation([r["reward"] for r in rows], [r["score"] for r in rows], length), nan_ok=True)
    t = reporting.length_correlation_table("t")
    assert list(t["benchmark"]) == ["toyr"] and t["Pearson"].iloc[0].startswith(f"{rec['value']:.3f}")

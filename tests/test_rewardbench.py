"""RewardBench v1 (issue 24): the loader on a hand-written fixture (no real row could be read here: Hub only), the
section arithmetic against copies of RewardBench's own functions, the published per-subset counts, and the
results files written by run_suite."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flrlib import rewardbench as rb
from flrlib.data import MalformedRow, load_benchmark
from flrlib.data.rewardbench import parse_rows
from helpers import user

FIXTURE = Path(__file__).parent / "fixtures" / "rewardbench" / "filtered.jsonl"


# allenai/reward-bench rewardbench/utils.py calculate_scores_per_section (fd72033), copied unchanged
def calculate_scores_per_section(example_counts, subset_mapping, metrics):
    section_scores = {}
    for section, tests in subset_mapping.items():
        total_weighted_score = 0
        total_examples = 0
        for test in tests:
            if test in metrics:
                total_weighted_score += metrics[test] * example_counts[test]
                total_examples += example_counts[test]
        if total_examples > 0:
            section_scores[section] = total_weighted_score / total_examples
        else:
            section_scores[section] = 0
    return section_scores


def _rows():
    return [json.loads(line) for line in FIXTURE.read_text().splitlines()]


def test_fixture_loads_into_pairwise_records():
    recs, dropped = parse_rows(_rows(), "rewardbench", str(FIXTURE))
    assert len(recs) == 9 and dropped == {"chosen == rejected": 1, "empty prompt or response": 1}
    r = recs[0]
    assert r["id"] == "rewardbench-0" and r["category"] == "alpacaeval-easy" and r["chosen_model"] == "fixture-author"
    assert r["messages"] == user("Name a primary colour.")
    bad = _rows()[:2]
    del bad[1]["rejected_model"]
    with pytest.raises(MalformedRow, match=r"filtered.jsonl: row 2: missing field 'rejected_model'"):
        parse_rows(bad, "rewardbench", str(FIXTURE))
    with pytest.raises(MalformedRow, match=r"row 2: field 'id': 0 appears twice"):
        parse_rows([_rows()[0], _rows()[0]], "rewardbench", str(FIXTURE))


def test_published_counts_and_mapping():
    rows = rb.published_rows()
    assert len(rows) == 23 and sum(rows.values()) == 2985 and rows["math-prm"] == 447
    assert rb.EXAMPLE_COUNTS["math-prm"] == 984 == 6 * rb.EXAMPLE_COUNTS["hep-python"]  # math weighted like code
    mapped = [s for tests in rb.SUBSET_MAPPING.values() for s in tests]
    assert sorted(mapped) == sorted(rb.EXAMPLE_COUNTS) and len(mapped) == len(set(mapped))
    assert {k: sum(rows[s] for s in v) for k, v in rb.SUBSET_MAPPING.items()} == {
        "Chat": 358, "Chat Hard": 456, "Safety": 740, "Reasoning": 1431}


def test_section_scores_equal_rewardbench():
    rng = np.random.default_rng(0)
    for k in range(5):
        subsets = [s for s in rb.EXAMPLE_COUNTS if rng.random() < 0.7]
        acc = {s: float(rng.random()) for s in subsets}
        assert rb.section_scores(acc) == pytest.approx(
            calculate_scores_per_section(rb.EXAMPLE_COUNTS, rb.SUBSET_MAPPING, acc))
    # known answer: math-prm 1.0 and every hep subset 0.0 -> Reasoning 0.5 (math-prm carries code's weight)
    acc = {"math-prm": 1.0, **{f"hep-{x}": 0.0 for x in ("cpp", "go", "java", "js", "python", "rust")}}
    assert rb.section_scores(acc)["Reasoning"] == 0.5 and rb.section_scores(acc)["Chat"] == 0
    # leaderboard average: weights 2, 2, 2, 2, 1 (prior sets), missing masked
    secs = {"Chat": 0.9, "Chat Hard": 0.5, "Safety": 0.7, "Reasoning": 0.6}
    assert rb.overall(secs) == pytest.approx(0.675)
    assert rb.overall(secs, prior_sets=0.3) == pytest.approx((2 * (0.9 + 0.5 + 0.7 + 0.6) + 0.3) / 9)


def test_summary_and_results_shape():
    recs, _ = parse_rows(_rows(), "rewardbench", str(FIXTURE))
    scores = {"alpacaeval-easy": (1, 0), "mt-bench-med": (0, 1), "llmbar-natural": (2, 2), "mt-bench-hard": (1, 0),
              "xstest-should-respond": (1, 0), "refusals-dangerous": (0, 1), "math-prm": (1, 0), "hep-python": (0, 1)}
    rows = [{"id": r["id"], "category": r["category"], "chosen": scores[r["category"]][0],
             "rejected": scores[r["category"]][1]} for r in recs]
    s = rb.summarise(rows, n_boot=100)
    assert s["subsets"]["llmbar-natural"] == 0.0 and s["ties"] == 1  # a tie is wrong, as in run_rm.py
    assert s["sections"] == pytest.approx({"Chat": 100 / 140, "Chat Hard": 37 / 137, "Safety": 250 / 350,
                                           "Reasoning": 984 / (984 + 164)})  # math-prm weighs 984
    assert s["sections_present"] == ["Chat", "Chat Hard", "Safety", "Reasoning"]
    assert s["score"] == pytest.approx(np.mean(list(s["sections"].values())))
    shape = rb.results_json(rows, "m", "flrlib flr")
    assert list(shape) == sorted(shape) and shape["model"] == "m" and shape["alpacaeval-easy"] == 1.0
    assert set(shape) == {"model", "model_type", "chat_template"} | {r["category"] for r in rows}


def test_run_suite_on_a_local_export(tiny, tmp_path, monkeypatch, data_ready):
    """The registry reads ``<data>/rewardbench/filtered.jsonl`` before the Hub; run_suite writes the sections."""
    from flrlib import benchmarks
    from flrlib.results import read_json

    data = tmp_path / "data"
    shutil.copytree(data_ready, data, dirs_exist_ok=True, ignore=shutil.ignore_patterns("hub"))
    (data / "rewardbench").mkdir(exist_ok=True)
    shutil.copy(FIXTURE, data / "rewardbench" / "filtered.jsonl")
    monkeypatch.setenv("FLR_DATA_DIR", str(data))
    recs, rep = load_benchmark("rewardbench")
    assert rep["rows_total"] == 11 and rep["rows_used"] == 9 and rep["kind"] == "pairwise"
    out = benchmarks.run_suite(tiny, ["rewardbench"], ["direct", "length"], "rbtest", n_boot=50, cache=None,
                               progress=False)
    assert {r["tag"] for r in out} == {"direct", "length"}
    area = Path(benchmarks.area("rbtest", rb.AREA))
    shape = read_json(area / f"length__{benchmarks.model_slug(tiny.spec)}.json")
    assert shape["model_type"] == "flrlib length" and "provenance" in shape and shape["math-prm"] in (0.0, 1.0)
    sec = read_json(area / f"sections__length__{benchmarks.model_slug(tiny.spec)}.json")
    assert set(sec["sections"]) == {"Chat", "Chat Hard", "Safety", "Reasoning"}

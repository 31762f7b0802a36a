"""The one paired-comparison path (flrlib.paired over flrlib.metrics.paired_diff), from result files."""
import json

import numpy as np
import pytest

from flrlib import metrics, paired


def _files(tmp_path, monkeypatch):
    """Result files of three tags on a pairwise (pw) and a rating (rt) benchmark, rows written in other orders."""
    from flrlib.results import result_path
    from flrlib.results import write_json, write_jsonl

    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path))
    correct = {"ft_flr": [1, 1, 0, 1], "flr": [1, 0, 0, 0], "direct": [0, 0, 1, 0.5]}
    rewards = {"ft_flr": [3.0, 2.0, 1.0, 0.5], "flr": [1.0, 2.0, 3.0, 0.0], "direct": [0.1, 0.3, 0.2, 0.4]}
    target = [5.0, 4.0, 2.0, 1.0]
    for t in correct:
        prov = {"adapter_hash": "abc" if t == "ft_flr" else None}
        common = {"scorer": t, "tag": t, "model": "m"}
        p = result_path("unit", "pw", t, "m")
        write_json(p, {"benchmark": "pw", "kind": "pairwise", "metric": "accuracy", "value": float(np.mean(correct[t])),
                       "ci_low": 0, "ci_high": 1, "n": 4, **common, "provenance": prov})
        write_jsonl(p.with_suffix(".jsonl"), [{"id": f"r{i}", "correct": c} for i, c in enumerate(correct[t])][::-1])
        p = result_path("unit", "rt", t, "m")
        write_json(p, {"benchmark": "rt", "kind": "rating", "metric": "pearson", **common,
                       "value": float(np.corrcoef(rewards[t], target)[0, 1]), "ci_low": -1, "ci_high": 1, "n": 4,
                       "provenance": prov})
        write_jsonl(p.with_suffix(".jsonl"), [{"id": f"r{i}", "score": s, "reward": r}
                                              for i, (r, s) in enumerate(zip(rewards[t], target))])
    return correct, rewards, target


def test_compare_reads_result_files_and_pairs_rows(tmp_path, monkeypatch):
    from flrlib.results import result_path
    from flrlib.results import write_jsonl

    correct, rewards, target = _files(tmp_path, monkeypatch)
    out = paired.compare("unit", "pw", "m", n_boot=200)
    d = {(x["a"], x["b"]): x for x in out["differences"]}
    assert d[("ft_flr", "flr")]["diff"] == pytest.approx(0.5) and d[("flr", "direct")]["diff"] == pytest.approx(-0.125)
    assert d[("ft_flr", "flr")]["a_only"] == 2 and d[("ft_flr", "flr")]["b_only"] == 0
    assert out["scores"][0]["adapter_hash"] == "abc"
    r = {(x["a"], x["b"]): x for x in paired.compare("unit", "rt", "m", n_boot=200)["differences"]}
    want = np.corrcoef(rewards["ft_flr"], target)[0, 1] - np.corrcoef(rewards["flr"], target)[0, 1]
    assert r[("ft_flr", "flr")]["diff"] == pytest.approx(want)
    pooled = paired.compare_pooled("unit", ["pw", "pw"], "m", n_boot=200)  # the same 4 pairs twice: 8 pairs
    assert pooled["scores"][0]["n"] == 8 and pooled["differences"][0]["diff"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="pairwise benchmarks only"):
        paired.compare_pooled("unit", ["pw", "rt"], "m")
    sub = paired.compare("unit", "pw", "m", ids=["r0", "r1"], n_boot=200)  # a subset of the rows: values recomputed
    assert [s["value"] for s in sub["scores"]] == [1.0, 0.5, 0.0] and sub["differences"][0]["n"] == 2
    write_jsonl(result_path("unit", "pw", "flr", "m").with_suffix(".jsonl"), [{"id": "r0", "correct": 1}])
    with pytest.raises(ValueError, match="'flr' lack 3 of the 4"):
        paired.compare("unit", "pw", "m")


def test_notebook_03_and_04_tables_give_the_same_numbers(tmp_path, monkeypatch):
    """FLR vs Direct from the profile-wide table (notebooks 03, 07) equals the per-benchmark comparison (04)."""
    _files(tmp_path, monkeypatch)
    table = paired.paired_comparison("unit", "flr", "direct", n_boot=300).set_index("benchmark")
    for bench in ("pw", "rt"):
        d = next(x for x in paired.compare("unit", bench, "m", n_boot=300)["differences"]
                 if (x["a"], x["b"]) == ("flr", "direct"))
        keys = ("value_a", "value_b", "diff", "ci_low", "ci_high", "n") + (("p_value", "mcnemar_p") if bench == "pw" else ())
        for k in keys:
            assert table.loc[bench, k] == pytest.approx(d[k]), (bench, k)
    assert "pairwise (pooled)" not in table.index  # one pairwise benchmark: nothing to pool


def test_write_comparison_stamps_provenance(tmp_path, monkeypatch):
    _files(tmp_path, monkeypatch)
    rec = paired.write_comparison("unit", ["pw", "rt"], "m", {"pw": None, "rt": None},
                                  {"pw": "pairwise", "rt": "rating"}, n_boot=200, adapter=str(tmp_path / "a"),
                                  max_examples=4)
    on_disk = json.loads((tmp_path / "unit" / "feedback" / "comparison.json").read_text())
    assert on_disk["scores"] == json.loads(json.dumps(rec["scores"]))
    prov = on_disk["provenance"]
    assert prov["profile"] == "unit" and prov["max_examples"] == 4 and prov["adapter"] == str(tmp_path / "a")
    assert prov["software"]["numpy"] == np.__version__ and "written" in prov
    assert on_disk["adapter_hash"] == "abc" and len(on_disk["differences"]) == 6  # 3 pairs of tags x 2 benchmarks


def test_paired_diff_on_tiny_inputs():
    one = metrics.paired_diff("pairwise", [1.0], [0.0])  # one differing row: no CI, no permutation p, no crash
    assert one["diff"] == 1.0 and np.isnan(one["ci_low"]) and np.isnan(one["p_value"]) and one["a_only"] == 1
    same = metrics.paired_diff("pairwise", [1, 0, 1], [1, 0, 1])
    assert same["diff"] == 0 and same["p_value"] == 1.0
    x, y, t = [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 5.0]
    r = metrics.paired_diff("rating", x, y, t, n_boot=200)
    assert r["diff"] == pytest.approx(np.corrcoef(x, t)[0, 1] - np.corrcoef(y, t)[0, 1]) and r["p_value"] is None
    assert metrics.paired_diff("system", x, y, t, n_boot=200)["metric"] == "pearson_elo"
    with pytest.raises(ValueError, match="kind must be"):
        metrics.paired_diff("ranking", x, y, t)

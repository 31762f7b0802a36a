"""Notebook 07's builder: missing results give 'run notebook NN first'; the README block matches the results."""
import pytest

from flrlib import reporting
from flrlib.paths import ROOT, results_dir


def test_missing_results_say_which_notebook_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path / "results"))
    report = reporting.build_all("nothing-here", out_dir=tmp_path / "figs").set_index("artifact")
    assert set(report.status) == {"missing"}
    assert "run notebook 01 first" in report.detail["table2_benchmarks"]
    assert "run notebook 03 first" in report.detail["table3_reward_benchmarks"]
    assert "run notebook 04 first" in report.detail["table_ft_flr"]
    assert "run notebook 06 first" in report.detail["table_alignment"]
    assert not list((tmp_path / "figs").glob("*")) if (tmp_path / "figs").exists() else True


def test_update_readme_rewrites_only_the_generated_block(tmp_path, monkeypatch):
    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path / "results"))
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\nbefore\n{reporting.README_BEGIN}\nold\n{reporting.README_END}\nafter\n")
    assert reporting.update_readme("none", readme)
    text = readme.read_text()
    assert text.startswith("# T\nbefore\n") and text.endswith("after\n") and "old" not in text
    assert "run notebook 03 first" in text
    assert not reporting.update_readme("none", readme)  # idempotent


@pytest.mark.skipif(not list((results_dir("demo") / "reward_benchmarks").glob("*.json")),
                    reason="no demo reward-benchmark results in this checkout (run `make reproduce`)")
def test_readme_results_block_matches_demo_result_files():
    text = (ROOT / "README.md").read_text()
    block = text.split(reporting.README_BEGIN, 1)[1].split(reporting.README_END, 1)[0]
    assert block.strip() == reporting.summary_markdown("demo").strip()

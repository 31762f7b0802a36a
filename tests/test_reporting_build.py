"""Notebook 07's builder: missing results give 'run notebook NN first'; the README block matches the results."""
from flrlib import reporting
from flrlib.paths import ROOT


def test_missing_results_say_which_notebook_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path / "results"))
    report = reporting.build_all("nothing-here", out_dir=tmp_path / "figs").set_index("artifact")
    assert set(report.status) == {"missing"}
    assert "run notebook 01 first" in report.detail["table2_benchmarks"]
    assert "run notebook 03 first" in report.detail["table3_reward_benchmarks"]
    assert "run notebook 04 first" in report.detail["table_ft_flr"]
    assert "run notebook 06 first" in report.detail["table_alignment"]
    assert all("run notebook" in d for d in report.detail), report.detail.to_dict()
    assert not (tmp_path / "figs").exists()  # nothing to build: not even the folder is created


def test_update_readme_rewrites_only_the_generated_block(tmp_path, monkeypatch):
    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path / "results"))
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\nbefore\n{reporting.README_BEGIN}\nold\n{reporting.README_END}\nafter\n")
    assert reporting.update_readme("none", readme)
    text = readme.read_text()
    assert text.startswith("# T\nbefore\n") and text.endswith("after\n") and "old" not in text
    assert "run notebook 03 first" in text
    assert not reporting.update_readme("none", readme)  # idempotent


def test_readme_results_block_matches_demo_result_files(monkeypatch):
    """The demo result files are committed (see .gitignore), so this always runs, on the checkout's own files."""
    monkeypatch.setenv("FLR_RESULTS_DIR", str(ROOT / "results"))
    for f in ("reward_benchmarks", "feedback/comparison.json", "alignment/eval_summary.json"):
        assert (ROOT / "results" / "demo" / f).exists(), f"results/demo/{f} is missing (it is committed)"
    text = (ROOT / "README.md").read_text()
    block = text.split(reporting.README_BEGIN, 1)[1].split(reporting.README_END, 1)[0]
    expected = reporting.summary_markdown("demo")
    assert "run notebook" not in expected  # every table of the block was built from result files
    assert block.strip() == expected.strip()
    assert "LC win rate %" in block and "| LC GLM" in block and "length_controlled_minimal" in block

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


def _numbers(text: str) -> set[str]:
    """Number tokens of a text: thousands commas dropped, minus signs ignored, notebook numbers left out."""
    import re

    text = re.sub(r"notebooks? \d+(?:[–-]\d+)?", "", text.replace(",", ""))
    return set(re.findall(r"\d+(?:\.\d+)?", text))


def test_readme_reading_quotes_only_numbers_of_the_generated_block():
    """Issue #26: the hand-written reading quoted numbers of older result files (FT-FLR − FLR −0.125, "46-48 %").
    Every number it quotes must be in the generated block (itself checked against the result files above), and the
    sentences that quote numbers are generated (:func:`flrlib.reporting.reading_lines`)."""
    text = (ROOT / "README.md").read_text()
    block = text.split(reporting.README_BEGIN, 1)[1].split(reporting.README_END, 1)[0]
    reading = text.split(reporting.README_END, 1)[1].split("\n#", 1)[0]
    assert "How to read this block" in reading
    missing = _numbers(reading) - _numbers(block)
    assert not missing, f"the README's reading quotes numbers that are not in the generated results block: {missing}"


def test_reading_lines_come_from_the_result_files(tmp_path, monkeypatch):
    """The generated sentences follow the files: a changed win rate changes the sentence."""
    from flrlib.results import write_json

    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path))
    row = {"judge": "j", "candidate": "dpo", "baseline": "base", "n": 10, "win_rate": 61.0, "ci_low": 40.0,
           "ci_high": 80.0, "lc_win_rate": float("nan")}
    write_json(tmp_path / "p" / "alignment" / "eval_summary.json",
               {"rows": [row, {**row, "candidate": "kto", "win_rate": 58.0, "lc_win_rate": 50.0}],
                "provenance": {"dpo": {"global_steps": 4, "n_rows": 16, "train_loss": 0.6891}}})
    lines = reporting.reading_lines("p")
    assert "Judge j: win rate 58.0–61.0 % against base (dpo/kto, 10 instructions each)." in lines
    assert "LC win rates: 1 of 2 not fitted (n/a), 1 at 50.0 %, 0 repeat a raw 0 or 100 %." in lines
    assert any(x.startswith("Training: DPO 4 optimizer steps on 16 rows, train loss 0.689") for x in lines)
    assert reporting.alignment_table("p")["LC win rate %"].tolist() == ["n/a", "50.0"]  # null reads as "not fitted"

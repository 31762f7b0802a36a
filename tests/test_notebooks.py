"""Every numbered notebook runs headless with papermill on the smoke profile; notebooks are committed clean."""
import json
import os
from pathlib import Path

import pytest

from flrlib import reproduce

NOTEBOOKS = reproduce.notebooks()


def test_notebooks_are_committed_clean():
    assert NOTEBOOKS, "no notebooks found"
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), f"{nb.name} carries outputs"
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{nb.name}: {len(tagged)} cells tagged 'parameters'"
        assert cells[0]["cell_type"] == "markdown" and "Time" in "".join(cells[0]["source"]), \
            f"{nb.name} must open with what it does, reads, writes and how long it takes"


def test_every_profile_lists_every_notebook():
    for name in reproduce.profile_names():
        listed = set(reproduce.load_profile(name)["notebooks"])
        assert {nb.stem for nb in NOTEBOOKS} <= listed, f"profile {name} misses notebooks"


@pytest.mark.notebook
def test_smoke_profile_runs_all_notebooks_and_resumes(tmp_path, monkeypatch, data_ready):
    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("FLR_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("FLR_CACHE_DIR", os.environ.get("FLR_CACHE_DIR", str(Path.home() / ".cache" / "flrlib")))
    out = tmp_path / "outputs"
    report = reproduce.run("smoke", out_dir=out)
    assert [r["notebook"] for r in report] == [nb.stem for nb in NOTEBOOKS]
    assert all(r["status"] == "ran" for r in report)
    for nb in NOTEBOOKS:
        executed = json.loads((out / nb.name).read_text())
        errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{nb.name}: {errors[:1]}"
    # notebook 07 rebuilt every table and figure from the result files: each exists and is not empty
    figs = tmp_path / "figures" / "smoke"
    for name in ("table2_benchmarks", "table3_reward_benchmarks", "table_flr_vs_direct", "table_ft_flr",
                 "table_alignment"):
        for ext in (".md", ".tex"):
            assert (figs / f"{name}{ext}").stat().st_size > 100, name + ext
    for name in ("fig_reward_benchmarks", "fig_category_heatmap", "fig_elo_scatter", "fig_training_curves",
                 "fig_mined_rewards"):
        for ext in (".png", ".pdf"):
            assert (figs / f"{name}{ext}").stat().st_size > 5000, name + ext
    # RM-Bench: notebook 03's scorers and notebook 04's FT-FLR on the same prompts, all in 07's table
    rm = tmp_path / "results" / "smoke" / "rm_bench"
    for tag in ("flr", "direct", "length", "ft_flr"):
        assert (rm / f"summary__{tag}__random_tiny-llama.json").exists(), tag
    assert (figs / "table_rm_bench_ft_flr_vs_flr.md").stat().st_size > 100
    table = (figs / "table_rm_bench.md").read_text()
    assert all(f"| {tag} " in table for tag in ("flr", "direct", "length", "ft_flr")), table
    # unchanged inputs and parameters: a second run skips everything
    again = reproduce.run("smoke", out_dir=out)
    assert all(r["status"] == "skipped" for r in again)


def test_failing_notebook_stops_with_its_name(tmp_path, monkeypatch):
    import nbformat

    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    for name, src in (("00_ok", "x = 1"), ("01_boom", "raise ValueError('kaput')"), ("02_never", "y = 2")):
        nb = nbformat.v4.new_notebook()
        p = nbformat.v4.new_code_cell("profile = 'smoke'")
        p.metadata["tags"] = ["parameters"]
        nb.cells = [p, nbformat.v4.new_code_cell(src)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nbdir / f"{name}.ipynb")
    monkeypatch.setattr(reproduce, "NOTEBOOKS_DIR", nbdir)
    prof = tmp_path / "p.yaml"
    prof.write_text("common: {}\nnotebooks: {}\n")
    with pytest.raises(reproduce.NotebookFailed, match=r"01_boom failed .*ValueError: kaput"):
        reproduce.run(str(prof), out_dir=tmp_path / "out")
    assert (tmp_path / "out/00_ok.ipynb").exists() and not (tmp_path / "out/02_never.ipynb").exists()
    # after a fix the run resumes: 00 is skipped, 01 and 02 run
    nb = nbformat.read(nbdir / "01_boom.ipynb", as_version=4)
    nb.cells[1].source = "z = 3"
    nbformat.write(nb, nbdir / "01_boom.ipynb")
    statuses = {r["notebook"]: r["status"] for r in reproduce.run(str(prof), out_dir=tmp_path / "out")}
    assert statuses == {"00_ok": "skipped", "01_boom": "ran", "02_never": "ran"}

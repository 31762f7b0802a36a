"""The papermill runner's state: a notebook counts as done only after it finished (Ctrl-C, errors, edited outputs).

Tiny throwaway notebooks in a temporary folder, never the real ones. The interruption is a real SIGINT sent to the
process group of a real ``python -m flrlib.cli reproduce`` (``flr reproduce``) subprocess, as Ctrl-C in a terminal
does. Data parallel: the runner under ``torchrun`` with 2 CPU processes (gloo) against one process.
"""
import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest

from flrlib import reproduce

HOLD = """import os, pathlib, time
if os.environ.get("FLR_TEST_MARK"):
    pathlib.Path(os.environ["FLR_TEST_MARK"]).touch()
while os.path.exists(os.environ.get("FLR_TEST_HOLD", "/nonexistent")):
    time.sleep(0.05)"""


def _notebooks(folder, cells: dict) -> None:
    """``{name: [code, ...]}`` -> ``folder/name.ipynb``, each with a ``parameters`` cell first."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, sources in cells.items():
        nb = nbformat.v4.new_notebook()
        p = nbformat.v4.new_code_cell("profile = 'smoke'")
        p.metadata["tags"] = ["parameters"]
        nb.cells = [p] + [nbformat.v4.new_code_cell(s) for s in sources]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")


def _profile(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text("common: {}\nnotebooks: {}\n")
    return str(prof)


def _statuses(report):
    return {r["notebook"]: r["status"] for r in report}


@pytest.mark.integration
def test_interrupted_force_run_is_not_taken_as_done(tmp_path):
    """The issue's sequence: a full run, then ``--force`` stopped by Ctrl-C inside 01, then a plain run: 01 and
    everything after it run again (before the fix: rc 0 and all skipped, the old fingerprint still in the state)."""
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    _notebooks(nbs, {"00_first": ["x = 1"], "01_hold": [HOLD, "y = 2"], "02_last": ["z = 3"]})
    prof = _profile(tmp_path)
    assert set(_statuses(reproduce.run(prof, out_dir=out, notebooks_dir=nbs)).values()) == {"ran"}

    mark, hold = tmp_path / "in_cell", tmp_path / "hold"
    hold.touch()
    env = {**os.environ, "FLR_TEST_MARK": str(mark), "FLR_TEST_HOLD": str(hold)}
    proc = subprocess.Popen([sys.executable, "-m", "flrlib.cli", "reproduce", "--profile", prof, "--force",
                             "--out-dir", str(out), "--notebooks-dir", str(nbs)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        t0 = time.time()
        while not mark.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() - t0 < 120, "01_hold never started"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted in 01_hold; re-run the same command to resume"
    state = json.loads((out / ".state.json").read_text())
    assert set(state) == {"00_first"}  # 00 finished under --force; 01 was running; 02 depends on 01
    assert "cell" in (reproduce.incomplete_reason(out / "01_hold.ipynb") or "")

    hold.unlink()
    again = reproduce.run(prof, out_dir=out, notebooks_dir=nbs)
    assert _statuses(again) == {"00_first": "skipped", "01_hold": "ran", "02_last": "ran"}
    assert set(json.loads((out / ".state.json").read_text())) == {"00_first", "01_hold", "02_last"}


@pytest.mark.integration
def test_an_incomplete_executed_notebook_is_run_again(tmp_path, capsys):
    """Same fingerprint in the state, but the executed copy shows an error or a cell that never ran: not done."""
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    _notebooks(nbs, {"00_a": ["x = 1", "print(x)"], "01_b": ["y = 2"]})
    prof = _profile(tmp_path)
    reproduce.run(prof, out_dir=out, notebooks_dir=nbs)
    assert reproduce.incomplete_reason(out / "00_a.ipynb") is None
    executed = nbformat.read(out / "00_a.ipynb", as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    code[-1].execution_count = None
    nbformat.write(executed, out / "00_a.ipynb")
    capsys.readouterr()
    assert _statuses(reproduce.run(prof, out_dir=out, notebooks_dir=nbs)) == {"00_a": "ran", "01_b": "ran"}
    assert "never ran" in capsys.readouterr().out
    assert _statuses(reproduce.run(prof, out_dir=out, notebooks_dir=nbs)) == {"00_a": "skipped", "01_b": "skipped"}


def test_incomplete_reason_reads_outputs_and_execution_counts(tmp_path):
    def executed(*cells):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell("# t")] + list(cells)
        p = tmp_path / f"nb{len(list(tmp_path.iterdir()))}.ipynb"
        nbformat.write(nb, p)
        return p

    def ran(src, n, outputs=()):
        c = nbformat.v4.new_code_cell(src, execution_count=n)
        c.outputs = [nbformat.from_dict(o) for o in outputs]
        return c

    ok = {"output_type": "stream", "name": "stdout", "text": "1\n"}
    err = {"output_type": "error", "ename": "KeyboardInterrupt", "evalue": "", "traceback": []}
    assert reproduce.incomplete_reason(executed(ran("x = 1", 1, [ok]), nbformat.v4.new_code_cell("  "))) is None
    assert reproduce.incomplete_reason(executed(ran("x = 1", 1), ran("sleep()", 2, [err]), ran("y", None))) == \
        "cell 3 has an error output (KeyboardInterrupt)"
    assert reproduce.incomplete_reason(executed(ran("x = 1", 1), ran("y = 2", None))) == "cell 3 never ran"
    tagged = ran("1 / 0", 1, [{**err, "ename": "ZeroDivisionError"}])
    tagged.metadata["tags"] = ["raises-exception"]  # papermill lets such a cell fail; it is still done
    assert reproduce.incomplete_reason(executed(tagged, ran("y = 2", 2))) is None
    assert reproduce.incomplete_reason(tmp_path / "missing.ipynb") == "no executed notebook"
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    assert "unreadable" in reproduce.incomplete_reason(tmp_path / "broken.ipynb")


def test_fingerprints_do_not_depend_on_the_selection(tmp_path):
    """``--only 01`` after a full run skips 01: its fingerprint includes 00's whether or not 00 is selected."""
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    _notebooks(nbs, {"00_a": ["x = 1"], "01_b": ["y = 2"]})
    prof = _profile(tmp_path)
    reproduce.run(prof, out_dir=out, notebooks_dir=nbs)
    assert _statuses(reproduce.run(prof, only=["01"], out_dir=out, notebooks_dir=nbs)) == {"01_b": "skipped"}


def test_an_unreadable_state_file_means_run_everything(tmp_path, capsys):
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    _notebooks(nbs, {"00_a": ["x = 1"]})
    out.mkdir()
    (out / ".state.json").write_text('{"00_a": "abc"')  # cut short
    assert _statuses(reproduce.run(_profile(tmp_path), out_dir=out, notebooks_dir=nbs)) == {"00_a": "ran"}
    assert ".state.json:1: not valid JSON" in capsys.readouterr().err
    assert set(json.loads((out / ".state.json").read_text())) == {"00_a"}


DP_PREP = """from flrlib.results import area, write_json
convs = [[{"role": "user", "content": f"Question {i}: what is {i} + {i}?"},
          {"role": "assistant", "content": f"It is {2 * i}." + " Really." * i}] for i in range(7)]
write_json(area(profile, "dp") / "convs.json", {"convs": convs})"""
DP_SCORE = """import os
from flrlib import models
from flrlib.followups import make_bank
from flrlib.results import area, read_json, write_jsonl
from flrlib.scoring import ScoreConfig, Scorer
bank = make_bank({"c": {"positive": ["Thanks, that helps!", "Great."], "negative": ["Huh?", "That is wrong."]}},
                 name="t")
sc = Scorer(models.load_model(models.TINY, dtype="float32", device="cpu"), bank, ScoreConfig(batch_size=2),
            cache=os.environ["FLR_TEST_CACHE"])
res = sc.score(read_json(area(profile, "dp") / "convs.json")["convs"], progress=False)
write_jsonl(area(profile, "dp") / "scores.jsonl", [{**r, "provenance": sc.provenance} for r in res])"""


@pytest.mark.notebook
def test_data_parallel_run_writes_the_single_process_files(tmp_path, monkeypatch):
    """``torchrun --nproc-per-node 2 -m flrlib.cli reproduce``: the prep notebook runs on rank 0 alone, the scoring one
    on both ranks (each scores its share into its own cache file, then both hold every score); the result files are
    byte for byte those of one process, and rank 1's scratch copy says the same."""
    import socket

    nbs = tmp_path / "nbs"
    _notebooks(nbs, {"00_prep": [DP_PREP], "01_score": [DP_SCORE]})
    prof = tmp_path / "p.yaml"
    prof.write_text("name: dp\ncommon: {}\nnotebooks: {}\nparallel: [01_score]\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FLR_RESULTS_DIR": str(tmp_path / "res2"), "FLR_TEST_CACHE": str(tmp_path / "c2" / "s.jsonl")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                           "127.0.0.1", "--master-port", str(port), "-m", "flrlib.cli", "reproduce", "--profile",
                           str(prof), "--out-dir", str(tmp_path / "out2"), "--notebooks-dir", str(nbs)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path / "res1"))
    monkeypatch.setenv("FLR_TEST_CACHE", str(tmp_path / "c1" / "s.jsonl"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as torchrun sets it: CPU sums split across threads round differently
    assert set(_statuses(reproduce.run(str(prof), out_dir=tmp_path / "out1", notebooks_dir=nbs)).values()) == {"ran"}

    single = (tmp_path / "res1" / "dp" / "dp" / "scores.jsonl").read_bytes()
    assert (tmp_path / "res2" / "dp" / "dp" / "scores.jsonl").read_bytes() == single
    assert (tmp_path / "out2" / "rank1" / "results" / "dp" / "dp" / "scores.jsonl").read_bytes() == single
    assert not (tmp_path / "out2" / "rank1" / "00_prep.ipynb").exists()  # rank 0 alone ran the prep notebook
    shares = [len((tmp_path / "c2" / f"s.rank{r}.jsonl").read_text().splitlines()) for r in (0, 1)]
    assert sorted(shares) == [3, 4] and len(single.splitlines()) == 7  # batches of 2 dealt in turn: 2+2, 2+1
    assert json.loads((tmp_path / "out2" / ".state.json").read_text()).keys() == {"00_prep", "01_score"}


@pytest.mark.integration
def test_the_run_report_names_the_notebook_that_failed(tmp_path):
    """run_report.json is written after each notebook, and says which one stopped the run (the rehearsal prints it)."""
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    _notebooks(nbs, {"00_ok": ["x = 1"], "01_bad": ["raise ValueError('boom')"], "02_never": ["y = 2"]})
    with pytest.raises(reproduce.NotebookFailed, match="01_bad failed in cell"):
        reproduce.run(_profile(tmp_path), out_dir=out, notebooks_dir=nbs)
    rep = json.loads((out / "run_report.json").read_text())
    assert [(r["notebook"], r["status"]) for r in rep] == [("00_ok", "ran"), ("01_bad", "failed")]
    assert "ValueError: boom" in rep[1]["error"]


def test_only_with_no_matching_notebook_is_an_error(tmp_path):
    nbs = tmp_path / "nbs"
    _notebooks(nbs, {"00_a": ["x = 1"]})
    with pytest.raises(ValueError, match=r"--only 99: no notebook of this profile starts with '99'; notebooks: 00_a"):
        reproduce.run(_profile(tmp_path), only=["99"], out_dir=tmp_path / "out", notebooks_dir=nbs)

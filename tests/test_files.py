"""The base file helpers: atomic writes honour the umask, readers name the file and line, one offline switch."""
import gzip
import json
import os
import stat

import pytest

from flrlib import files, net
from flrlib.results import write_json, write_jsonl


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_write_applies_the_umask(tmp_path, umask):
    """mkstemp makes 0600 files whatever the umask; results in a shared folder must stay readable."""
    old = os.umask(umask)
    try:
        a = files.atomic_write(tmp_path / "a.txt", "x")
        b = write_json(tmp_path / "r" / "b.json", {"x": 1})
        c = write_jsonl(tmp_path / "r" / "c.jsonl", [{"x": 1}])
    finally:
        os.umask(old)
    for p in (a, b, c):
        assert _mode(p) == 0o666 & ~umask
    assert not [p for p in tmp_path.rglob("*part*")]


def test_atomic_write_refuses_a_directory_and_leaves_nothing(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        write_jsonl(d, [{"x": 1}])
    assert list(tmp_path.iterdir()) == [d] and not list(d.iterdir())


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    p = files.atomic_write(tmp_path / "a.json", "old")
    with pytest.raises(TypeError):
        write_json(p, {"x": object()})
    assert p.read_text() == "old" and list(tmp_path.iterdir()) == [p]


def test_readers_name_file_and_line(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_bytes(b'{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(files.BadFile, match=r"rows.jsonl:3: not valid JSON"):
        files.read_jsonl(p)
    p.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(files.BadFile, match=r"rows.jsonl:2: not valid UTF-8"):
        files.read_jsonl(p)
    g = tmp_path / "x.json.gz"
    g.write_bytes(gzip.compress(b'{\n "a": [1,\n}'))
    with pytest.raises(files.BadFile, match=r"x.json.gz:3: not valid JSON"):
        files.read_json(g)
    assert files.read_jsonl(_w(tmp_path / "ok.jsonl", '{"a": 1}\n{"b": 2}\n')) == [{"a": 1}, {"b": 2}]
    with pytest.raises(files.BadFile, match="is a directory"):
        files.read_jsonl(tmp_path)


def _w(p, text):
    p.write_text(text)
    return p


@pytest.mark.parametrize("var", net.SWITCHES)
@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True), ("0", False), ("", False),
                                             ("false", False)])
def test_one_offline_switch(monkeypatch, var, value, expected):
    for v in net.SWITCHES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv(var, value)
    assert net.offline() is expected
    if expected:  # offline: no socket is ever opened
        monkeypatch.setattr(net.socket, "create_connection", lambda *a, **k: pytest.fail("network touched"))
        assert net.reachable("huggingface.co") is False


def test_flr_offline_switches_the_hf_libraries_too(monkeypatch):
    for v in net.SWITCHES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("FLR_OFFLINE", "1")
    net.apply()
    assert all(os.environ[v] == "1" for v in net.SWITCHES[1:])


def test_the_test_session_has_its_own_cache_and_results_folders():
    """Issue #26: `make test` wrote ~/.cache/flrlib/scores/random_tiny-llama.jsonl and could pass on scores an older
    engine cached. The session's caches and results live in a temporary folder; only the converted models are the
    user's (linked)."""
    import tempfile
    from pathlib import Path

    from conftest import USER_CACHE
    from flrlib.paths import ROOT, cache_dir, figures_dir, results_dir

    tmp = Path(tempfile.gettempdir()).resolve()
    for folder in (cache_dir(), results_dir("demo"), figures_dir("demo")):
        assert folder.resolve().is_relative_to(tmp), folder
        assert not folder.resolve().is_relative_to(ROOT) and not folder.is_relative_to(USER_CACHE), folder
    assert (cache_dir() / "models").resolve() == (USER_CACHE / "models").resolve()
    assert (cache_dir() / "scores").resolve().is_relative_to(tmp)  # what scoring's cache="auto" writes


def test_result_files_write_undefined_numbers_as_null(tmp_path):
    """Issue #26: result files held bare NaN (an empty length stratum's CI, eval_summary.json, benchmarks.json),
    which jq and JSON.parse reject. Undefined numbers are written as null, numpy ones included."""
    import math

    import numpy as np
    from helpers import not_strict_json, strict_json

    from flrlib.results import number

    rec = {"acc_near_equal_length_ci_low": float("nan"), "hi": math.inf, "lo": -math.inf, "ok": 0.5,
           "np": [np.float32("nan"), np.float64(0.25), np.int64(3), np.bool_(True)], "arr": np.array([1.0, np.nan]),
           "nested": {"rows": [{"p_value": np.nan}]}, "name": "NaN"}
    p = write_json(tmp_path / "r.json", rec)
    q = write_jsonl(tmp_path / "r.jsonl", [rec, {"reward": float("nan")}])
    assert not_strict_json([p, q]) == []
    got = strict_json(p.read_text())
    assert got["acc_near_equal_length_ci_low"] is None and got["hi"] is None and got["lo"] is None
    assert got["np"] == [None, 0.25, 3, True] and got["arr"] == [1.0, None]
    assert got["nested"]["rows"][0]["p_value"] is None
    assert got["ok"] == 0.5 and got["name"] == "NaN"
    assert math.isnan(number(got["hi"])) and number(got["ok"]) == 0.5


def test_committed_result_files_are_strict_json():
    """Every committed result file (results/demo) parses with a strict parser (regenerated by `make reproduce`)."""
    from helpers import not_strict_json, result_files

    from flrlib.paths import ROOT

    files_ = result_files(ROOT / "results")
    assert files_, "no committed result files found"
    bad = not_strict_json(files_)
    assert not bad, f"{len(bad)} result files are not strict JSON, e.g. {bad[:3]}"


def test_committed_result_files_name_no_folder_of_the_machine_that_wrote_them():
    """A fresh clone reproduces the committed files number for number and word for word: no absolute path of the
    writer's machine in them (a fresh clone elsewhere wrote `/work/ci_check/main/results/...` into 06's provenance and
    `/work/ci_check/main/data/...` into 01's unavailable-benchmark message). Paths are relative to the checkout."""
    import re

    from helpers import result_files

    from flrlib.paths import ROOT

    absolute = re.compile(r"(?:^|[\s(\"'=])(/(?:[\w.+-]+/)+[\w.+-]*)")
    found = []

    def walk(x, where):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{where}.{k}")
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, f"{where}[{i}]")
        elif isinstance(x, str) and (m := absolute.search(x)):
            found.append(f"{where}: {m.group(1)}")

    for f in result_files(ROOT / "results"):
        docs = f.read_text(encoding="utf-8").splitlines() if f.suffix == ".jsonl" else [f.read_text(encoding="utf-8")]
        for i, d in enumerate(docs):
            if d.strip():
                walk(json.loads(d), f"{f.relative_to(ROOT)}:{i + 1}")
    assert not found, f"{len(found)} absolute paths in committed result files, e.g. {found[:3]}"

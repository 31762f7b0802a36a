"""The base file helpers: atomic writes honour the umask, readers name the file and line, one offline switch."""
import gzip
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

"""The JSONL score cache: repairs compact the file once, duplicate keys are harmless, appends from several
processes never interleave nor glue onto a line cut by a killed writer."""
import json
import multiprocessing as mp
import os
import threading
import time
import warnings

import pytest

from flrlib.cache import JsonlCache


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def _load(path):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cache = JsonlCache(path)
    return cache, [str(x.message) for x in w]


def _fill(path, n=3):
    c = JsonlCache(path)
    for i in range(n):
        c.put(f"k{i}", {"v": i})
    return _lines(path)


def test_corrupted_middle_line_is_dropped_once_and_the_file_compacted(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = _fill(path)
    path.write_text("\n".join([lines[0], lines[1][:10], lines[2]]) + "\n")
    old = os.umask(0o002)
    try:
        cache, warned = _load(path)
    finally:
        os.umask(old)
    assert len(warned) == 1 and "line 2" in warned[0]
    assert "k1" not in cache and cache.get("k2") == {"v": 2}
    assert [json.loads(x)["key"] for x in _lines(path)] == ["k0", "k2"]  # repaired on disk
    assert path.stat().st_mode & 0o777 == 0o664  # the umask's permissions, not mkstemp's 0600
    assert not list(tmp_path.glob(".c.jsonl.part-*"))
    cache, warned = _load(path)
    assert warned == [] and len(cache) == 2  # the warning is not repeated on the next run


def test_cut_trailing_line_is_dropped_and_removed(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = _fill(path)
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:7])
    cache, warned = _load(path)
    assert len(warned) == 1 and "trailing line" in warned[0] and len(cache) == 2
    assert path.read_text().endswith("\n") and len(_lines(path)) == 2


def test_duplicate_keys_last_wins_and_are_compacted(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"key": "a", "value": 1}, {"key": "b", "value": 2}, {"key": "a", "value": 3}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache, warned = _load(path)
    assert warned == [] and cache.get("a") == 3 and cache.get("b") == 2
    assert sorted(json.loads(x)["key"] for x in _lines(path)) == ["a", "b"]


def test_append_after_a_cut_line_starts_a_new_line(tmp_path):
    """A writer killed mid-line while another process appends: the other process's row must survive."""
    path = tmp_path / "c.jsonl"
    _fill(path, 1)
    live = JsonlCache(path)  # loaded before the kill, so it never saw (nor repaired) the cut line
    with open(path, "a") as fh:
        fh.write('{"key": "killed", "val')
    live.put("after", {"v": 9})
    cache, warned = _load(path)
    assert cache.get("after") == {"v": 9} and cache.get("k0") == {"v": 0} and len(warned) == 1


def test_append_waiting_on_a_compaction_lands_in_the_new_file(tmp_path):
    import fcntl

    from flrlib.files import atomic_write

    path = tmp_path / "c.jsonl"
    lines = _fill(path, 2)
    writer = JsonlCache(path)
    with open(path, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a compacting load holds
        t = threading.Thread(target=writer.put, args=("late", {"v": 7}))
        t.start()
        time.sleep(0.3)  # the writer has opened the old file and waits for the lock
        atomic_write(path, lines[0] + "\n")
    t.join(10)
    assert not t.is_alive()
    assert [json.loads(x)["key"] for x in _lines(path)] == ["k0", "late"]


def _writer(path, tag, n, start):
    start.wait()
    c = JsonlCache(path)
    for i in range(n):  # shared keys (same input scored twice) and own keys; values big enough to need many writes
        c.put(f"shared{i}", {"v": i, "pad": "x" * 50_000})
        c.put(f"{tag}{i}", {"v": i, "pad": tag * 50_000})


def test_two_processes_append_to_one_file(tmp_path):
    path = tmp_path / "c.jsonl"
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(path), tag, 40, start)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    raw = _lines(path)
    assert len(raw) == 160 and all(json.loads(x) for x in raw)  # no interleaved or glued lines
    cache, warned = _load(path)
    assert warned == [] and len(cache) == 120
    assert cache.get("a3")["pad"] == "a" * 50_000 and cache.get("shared5")["v"] == 5
    assert len(_lines(path)) == 120  # the 40 duplicate keys were compacted away on load


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        JsonlCache(tmp_path)


def test_read_also_is_read_only_and_skips_a_cut_line(tmp_path):
    """Other processes' files are read, never repaired or written: their writer may still be appending."""
    other = tmp_path / "c.rank1.jsonl"
    other.write_text('{"key": "a", "value": 1}\n{"key": "b", "val')
    before = other.read_bytes()
    c = JsonlCache(tmp_path / "c.rank0.jsonl", read_also=[other, tmp_path / "missing.jsonl"])
    assert "a" in c and "b" not in c and c.peek("a") == 1 and c.hits == 0
    c.remember("z", 3)
    c.put("b", 2)
    assert other.read_bytes() == before
    assert (tmp_path / "c.rank0.jsonl").read_text() == '{"key": "b", "value": 2}\n'  # remembered rows stay in memory
    assert {k: c.get(k) for k in "abz"} == {"a": 1, "b": 2, "z": 3}

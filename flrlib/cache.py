"""The one result cache: an append-only JSONL file of ``{"key": ..., "value": ...}`` lines keyed by content hash.

Every computed row is appended (and flushed) as soon as it exists, so an interrupted run restarts and computes only
the missing rows.

Repairs. A corrupted line (typically the last one, cut by a kill) is dropped with a warning and its row is
recomputed. Whenever the file needs a repair - a corrupted line anywhere, a missing final newline, or a key that
appears more than once - it is compacted at load: rewritten atomically (temp file + ``os.replace``, with the
umask's permissions, via :func:`flrlib.files.atomic_write`) holding one line per key, so a warning is shown once,
not on every run.

Several processes. Each append takes an exclusive advisory lock (``fcntl.flock``) on the file, so lines from two
processes never interleave; a process that finds the file replaced by a compaction meanwhile appends to the new
file. Two processes scoring the same rows still both compute them (there is no work sharing) and append the same
key twice; that is harmless: a key's value is a pure function of the key, the last line wins on load, and the
duplicates are compacted away by the next load.

Other files to read (``read_also``): rows that other processes wrote to their own files (the per-rank files of a
data-parallel run) are loaded too, read-only: a cut line there is skipped, never repaired (its writer may still be
appending), and nothing is written to them. ``remember`` adds a row to memory only (one another rank wrote).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import warnings
from pathlib import Path

from .files import atomic_write


def content_key(*parts) -> str:
    """Stable hash of JSON-serialisable parts (model spec, adapter hash, template hash, bank hash, scorer, text...)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _line(key: str, value) -> str:
    return json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n"


def _parse(raw: bytes) -> tuple[dict, list[int], int]:
    """``(data, numbers of the corrupted lines, number of repeated keys)``; the last line of a key wins."""
    data, bad, repeats = {}, [], 0
    for n, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key, value = row["key"], row["value"]
            if not isinstance(key, str):
                raise TypeError(key)
        except (ValueError, KeyError, TypeError):
            bad.append(n)
            continue
        repeats += key in data
        data[key] = value
    return data, bad, repeats


class JsonlCache:
    """``path=None``: in memory only. ``written`` counts the rows this object appended to the file."""

    def __init__(self, path: str | Path | None, read_also=()):
        self.path = Path(path) if path else None
        if self.path is not None and self.path.is_dir():
            raise IsADirectoryError(f"cache {self.path} is a directory; give a file path (a .jsonl file)")
        self._data: dict[str, object] = {}
        self.hits = self.misses = self.written = 0
        for other in read_also:
            if Path(other).is_file() and Path(other) != self.path:
                with open(other, "rb") as fh:
                    self._data.update(_parse(fh.read())[0])
        if self.path and self.path.exists():
            self._load()

    def _load(self) -> None:
        with open(self.path, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # no append lands between reading and compacting
            raw = fh.read()
            own, bad, repeats = _parse(raw)
            self._data.update(own)
            if bad:
                n_lines = raw.rstrip(b"\n").count(b"\n") + 1
                where = ", ".join("trailing line" if n == n_lines else f"line {n}" for n in bad)
                warnings.warn(f"{self.path}: dropped corrupted {where} of the cache (the file is compacted; those "
                              "rows are recomputed)", stacklevel=3)
            if bad or repeats or (raw and not raw.endswith(b"\n")):
                atomic_write(self.path, "".join(_line(k, v) for k, v in own.items()))
            # the lock on the replaced file is released here; writers waiting on it notice and reopen

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str):
        value = self._data.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def peek(self, key: str):
        """The value, or None, without counting a hit or a miss."""
        return self._data.get(key)

    def remember(self, key: str, value) -> None:
        """Hold a row in memory only (it is in another process's file)."""
        self._data[key] = value

    def put(self, key: str, value) -> None:
        self._data[key] = value
        if self.path is None:
            return
        line = _line(key, value).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                st = os.fstat(fd)
                try:
                    same = os.stat(self.path).st_ino == st.st_ino
                except FileNotFoundError:
                    same = False
                if not same:  # compacted (replaced) while we waited for the lock: append to the new file
                    continue
                # a line cut by a killed writer stays a line of its own (dropped at load), never glued to ours
                start = b"\n" if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n" else b""
                data = start + line
                while data:
                    data = data[os.write(fd, data):]
            finally:
                os.close(fd)  # releases the lock
            self.written += 1
            return

"""The one way to write and read project files: atomic writes that honour the umask, and JSON/JSONL readers whose
errors name the file and line.

``atomic_write`` writes to a temp file next to the target and renames it into place, so a reader never sees a
half-written file and an interrupted write leaves the old file intact. ``tempfile.mkstemp`` creates files mode
0600 whatever the umask; the final file gets the mode a plain ``open()`` would give it (0666 minus the umask), so
results in a shared project folder stay readable to collaborators.
"""
from __future__ import annotations

import gzip
import json
import os
import tempfile
import zlib
from pathlib import Path


class BadFile(ValueError):
    """A file that cannot be read as what it should be; the message names the file (and line)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically, with the umask's permissions."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file path to write to")
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.part-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_text(path: str | Path) -> str:
    """A text file (optionally ``.gz``) as UTF-8; a directory or a bad byte is a :class:`BadFile` naming the line."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except IsADirectoryError:
        raise BadFile(f"{path} is a directory, not a file") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # a truncated or damaged .gz
        raise BadFile(f"{path}: damaged gzip file ({type(e).__name__}: {e}); delete it and run `flr data` again") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise BadFile(f"{path}:{line}: not valid UTF-8 (byte {raw[e.start]:#04x} at offset {e.start})") from None


def numbered_jsonl(path: str | Path) -> list[tuple[int, object]]:
    """``(line number, row)`` of a ``.jsonl`` file (optionally ``.gz``); blank lines skipped; errors name the file
    and line. Lines end at ``\n`` only (a JSON string may hold U+2028, which ``str.splitlines`` would cut)."""
    path = Path(path)
    rows = []
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise BadFile(f"{path}:{n}: not valid JSON ({e.msg}, column {e.colno})") from None
    return rows


def read_jsonl(path: str | Path) -> list:
    """Rows of a ``.jsonl`` file (optionally ``.gz``): :func:`numbered_jsonl` without the line numbers."""
    return [row for _, row in numbered_jsonl(path)]


def read_json(path: str | Path):
    """One JSON document (optionally ``.gz``); errors name the file and line."""
    path = Path(path)
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise BadFile(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None

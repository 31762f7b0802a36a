"""Result files: flat JSON per (experiment) plus per-sample JSONL, written atomically, read with clear errors.

Layout (RewardBench style): ``results/<profile>/<area>/<name>.json`` holds one flat record of numbers and a
``provenance`` block; ``<name>.jsonl`` beside it holds one line per sample. Reporting reads only these files.
"""
from __future__ import annotations

import json
from pathlib import Path

from .files import atomic_write
from .paths import results_dir


class ResultMissing(FileNotFoundError):
    pass


def write_json(path: str | Path, record: dict) -> Path:
    return atomic_write(path, json.dumps(record, indent=1, ensure_ascii=False, default=_default) + "\n")


def write_jsonl(path: str | Path, rows) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False, default=_default) + "\n" for r in rows)
    return atomic_write(path, text)


def _default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | Path, producer: str = "") -> dict:
    """Read a result file; a missing one says which notebook produces it."""
    p = Path(path)
    if not p.exists():
        hint = f" - run notebook {producer} first" if producer else ""
        raise ResultMissing(f"{p} is missing{hint}.")
    return json.loads(p.read_text(encoding="utf-8"))


def read_jsonl(path: str | Path, producer: str = "") -> list[dict]:
    p = Path(path)
    if not p.exists():
        hint = f" - run notebook {producer} first" if producer else ""
        raise ResultMissing(f"{p} is missing{hint}.")
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def area(profile: str, name: str) -> Path:
    """``results/<profile>/<name>/`` (created)."""
    d = results_dir(profile) / name
    d.mkdir(parents=True, exist_ok=True)
    return d

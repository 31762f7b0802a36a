"""Result files: flat JSON per (experiment) plus per-sample JSONL, written atomically, read with clear errors.

Layout (RewardBench style): ``results/<profile>/<area>/<name>.json`` holds one flat record of numbers and a
``provenance`` block; ``<name>.jsonl`` beside it holds one line per sample. Reporting reads only these files.
"""
from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path

from . import files
from .files import atomic_write
from .paths import ROOT, results_dir

_PACKAGES = ("flrlib", "torch", "transformers", "trl", "peft", "numpy", "scipy")


class ResultMissing(FileNotFoundError):
    pass


@lru_cache(maxsize=1)
def _software() -> dict:
    """Versions of the packages that make the numbers, and the git commit of the checkout (``+dirty`` with
    uncommitted changes; absent outside a git checkout). Computed once per process."""
    import subprocess
    from importlib import metadata

    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            out["git_commit"] = head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def stamp(**fields) -> dict:
    """The ``provenance`` block of a result record: the caller's fields (model, seed, profile, ...), then the
    software that wrote it (:func:`_software`) and when (``written``, local time)."""
    return {**fields, "software": _software(), "written": time.strftime("%Y-%m-%dT%H:%M:%S")}


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


def _exists(path: str | Path, producer: str) -> Path:
    p = Path(path)
    if not p.exists():
        hint = f" - run notebook {producer} first" if producer else ""
        raise ResultMissing(f"{p} is missing{hint}.")
    return p


def read_json(path: str | Path, producer: str = "") -> dict:
    """Read a result file; a missing one says which notebook produces it."""
    return files.read_json(_exists(path, producer))


def read_jsonl(path: str | Path, producer: str = "") -> list[dict]:
    return files.read_jsonl(_exists(path, producer))


def area(profile: str, name: str) -> Path:
    """``results/<profile>/<name>/`` (created)."""
    d = results_dir(profile) / name
    d.mkdir(parents=True, exist_ok=True)
    return d

"""Result files: flat JSON per (experiment) plus per-sample JSONL, written atomically, read with clear errors.

Layout (RewardBench style): ``results/<profile>/<area>/<name>.json`` holds one flat record of numbers and a
``provenance`` block; ``<name>.jsonl`` beside it holds one line per sample. Reporting reads only these files.

Result files are strict JSON (RFC 8259), readable by ``jq`` and JavaScript's ``JSON.parse``: an undefined number
(NaN or an infinity, e.g. the accuracy of an empty length stratum, a correlation of constant values, a CI that
could not be drawn) is written as ``null``. Readers treat ``null`` in a numeric field as "not defined";
:func:`number` turns it back into NaN for arithmetic.
"""
from __future__ import annotations

import json
import math
import time
from functools import lru_cache
from pathlib import Path

from . import files
from .files import atomic_write
from .paths import ROOT, results_dir, slug

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
    """One result record as strict JSON (undefined numbers as ``null``), written atomically."""
    return atomic_write(path, dumps(record, indent=1) + "\n")


def write_jsonl(path: str | Path, rows) -> Path:
    """Per-sample rows, one strict-JSON line each (undefined numbers as ``null``), written atomically."""
    return atomic_write(path, "".join(dumps(r) + "\n" for r in rows))


def dumps(obj, indent: int | None = None) -> str:
    """Strict JSON text of ``obj``: NaN and infinities (Python or numpy floats, inside arrays too) become ``null``;
    numpy scalars and arrays become numbers and lists, paths strings; anything else not serialisable is a
    ``TypeError``."""
    return json.dumps(_strict(obj), indent=indent, ensure_ascii=False, allow_nan=False)


def number(value) -> float:
    """A numeric field of a result file as a float: ``null`` (an undefined number) is NaN."""
    return float("nan") if value is None else float(value)


def _strict(o):
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, (str, int, bool)) or o is None:
        return o
    if isinstance(o, dict):
        return {k: _strict(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_strict(v) for v in o]
    try:
        import numpy as np

        if isinstance(o, (np.generic, np.ndarray)):
            return _strict(o.tolist())
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


# ------------------------------------------------------------------------------------------------------------------
# The naming rules of reward-benchmark result files, for the workflow that writes them (flrlib.benchmarks) and the
# analysis that reads them (flrlib.paired, flrlib.reporting, flrlib.rmbench):
#     results/<profile>/reward_benchmarks/<benchmark>__<tag>__<model_slug>.json    one flat record
#     results/<profile>/reward_benchmarks/<benchmark>__<tag>__<model_slug>.jsonl   one line per sample
# RM-Bench's go to results/<profile>/rm_bench/ under the same rule.
# ------------------------------------------------------------------------------------------------------------------

REWARD_AREA = "reward_benchmarks"
RM_BENCH_AREA = "rm_bench"


def model_slug(spec: str) -> str:
    """File-name form of a model spec (:func:`flrlib.paths.slug`, the score cache's rule)."""
    return slug(spec)


def result_stem(benchmark: str, tag: str, model: str) -> str:
    return f"{benchmark}__{tag}__{model_slug(model)}"


def result_path(profile: str, benchmark: str, tag: str, model: str, kind: str | None = None) -> Path:
    """Path of the flat JSON of one (benchmark, tag, model); the per-sample JSONL has the same stem
    (:func:`per_sample_path`). RM-Bench results (``kind="rm_bench"``) go to their own area (:data:`RM_BENCH_AREA`)."""
    folder = area(profile, RM_BENCH_AREA if kind == "rm_bench" else REWARD_AREA)
    return folder / f"{result_stem(benchmark, tag, model)}.json"


def per_sample_path(path_json: str | Path) -> Path:
    """The per-sample JSONL beside a flat result JSON."""
    return Path(str(path_json)[: -len(".json")] + ".jsonl")


def read_per_sample(path_json: str | Path, producer: str = "03") -> list[dict]:
    """Per-sample rows beside a flat result JSON."""
    return read_jsonl(per_sample_path(path_json), producer=producer)


def result_records(profile: str, name: str = REWARD_AREA, producer: str = "03") -> list[dict]:
    """Every flat result record of an area (``results/<profile>/<name>/*.json``), sorted by file name, each with
    ``path`` added; a missing or empty area is :class:`ResultMissing` naming the notebook that writes it."""
    folder = results_dir(profile) / name
    paths = sorted(folder.glob("*.json")) if folder.exists() else []
    if not paths:
        raise ResultMissing(f"no result files in {folder} - run notebook {producer} first.")
    return [{**read_json(p, producer=producer), "path": str(p)} for p in paths]

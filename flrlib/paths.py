"""Where things live. Every folder can be moved with an environment variable; nothing else hard-codes a path."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the project checkout (editable install)


def _env_path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


def slug(spec: str, width: int = 120) -> str:
    """File-name form of a model spec or any name: ``/`` -> ``__``, anything but ``[A-Za-z0-9._-]`` -> ``_``;
    the last ``width`` characters (the distinctive end of a long path). The one rule for caches, adapters and
    result files."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in spec.replace("/", "__"))[-width:]


def portable(path: str | Path | None) -> str | None:
    """A path as it should appear in a result file: relative to the checkout when inside it (the same on every
    machine), else as given."""
    if path is None:
        return None
    try:
        return Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def data_dir() -> Path:
    """The project's data folder (populated by `flr data`). Override with FLR_DATA_DIR."""
    return _env_path("FLR_DATA_DIR", ROOT / "data")


def mirror_dir() -> Path:
    """A local mirror of the public source files (default ../shared/data). Override with FLR_DATA_MIRROR."""
    return _env_path("FLR_DATA_MIRROR", ROOT.parent / "shared" / "data")


def cache_dir() -> Path:
    """Converted models and score caches. Override with FLR_CACHE_DIR."""
    return _env_path("FLR_CACHE_DIR", Path.home() / ".cache" / "flrlib")


def results_dir(profile: str = "demo") -> Path:
    """Result files of one profile: results/<profile>/... Override the root with FLR_RESULTS_DIR."""
    return _env_path("FLR_RESULTS_DIR", ROOT / "results") / profile


def figures_dir(profile: str = "demo") -> Path:
    return _env_path("FLR_FIGURES_DIR", ROOT / "figures") / profile


def outputs_dir(profile: str = "demo") -> Path:
    return _env_path("FLR_OUTPUTS_DIR", ROOT / "outputs") / profile

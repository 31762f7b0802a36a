"""Run profiles: plain YAML files in ``flrlib/profiles/`` (``smoke``, ``demo``, ``paper``) or any YAML path.

A profile has a ``common`` block injected into every notebook and one block per notebook. This module is base
layer (it imports only ``yaml``), so workflows such as ``align`` read a profile without importing the runner.
"""
from __future__ import annotations

from pathlib import Path

import yaml

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name_or_path: str) -> dict:
    p = Path(name_or_path)
    if not p.exists():
        p = PROFILES_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        raise FileNotFoundError(f"unknown profile {name_or_path!r}; known: {profile_names()} (or pass a YAML path)")
    prof = yaml.safe_load(p.read_text()) or {}
    prof.setdefault("name", p.stem)
    prof.setdefault("common", {})
    prof.setdefault("notebooks", {})
    return prof


def notebook_parameters(profile: dict, notebook: str) -> dict:
    """Parameters injected into one notebook: the profile's ``common`` block, then the notebook's own block."""
    params = {"profile": profile["name"], **profile["common"]}
    params.update((profile["notebooks"] or {}).get(notebook) or {})
    return params

"""Run profiles: plain YAML files in ``flrlib/profiles/`` (``smoke``, ``demo``, ``paper``) or any YAML path.

A profile has a ``common`` block injected into every notebook and one block per notebook. A profile may name a
``base:`` profile: it is then that profile with its own values laid over it (``common`` and each notebook block key by
key; a dict value such as ``dpo:`` key by key too), so ``rehearsal.yaml`` says only what it changes in ``paper``.
This module is base layer (it imports only ``yaml``), so workflows such as ``align`` read a profile without
importing the runner.
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
    try:
        prof = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:  # one line naming the file and the line, no traceback
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        what = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x) or str(e)
        raise ValueError(f"{where}: not a valid profile YAML: {' '.join(what.split())}") from None
    if not isinstance(prof, dict):
        raise ValueError(f"{p}: a profile is a YAML mapping (common:, notebooks:), not a {type(prof).__name__}")
    if prof.get("base"):
        name = prof.get("name") or p.stem
        prof = overlay(load_profile(prof["base"]), prof)
        prof["name"] = name
    prof.setdefault("name", p.stem)
    prof.setdefault("common", {})
    prof.setdefault("notebooks", {})
    return prof


def overlay(base: dict, over: dict) -> dict:
    """``base`` with ``over``'s values laid over it: top-level keys replaced, ``common`` and each notebook block
    merged key by key, a dict value inside a block (``dpo:``, ``grpo:``) merged key by key."""
    def merge(a: dict, b: dict, depth: int) -> dict:
        out = dict(a or {})
        for k, v in (b or {}).items():
            out[k] = merge(out.get(k) or {}, v, depth - 1) if depth > 0 and isinstance(v, dict) and isinstance(
                out.get(k), dict) else v
        return out

    out = {k: v for k, v in base.items() if k != "name"}
    for k, v in over.items():
        if k in ("common",):
            out[k] = merge(base.get(k) or {}, v, 0)
        elif k == "notebooks":
            nbs = dict(base.get("notebooks") or {})
            for nb, block in (v or {}).items():
                nbs[nb] = merge(nbs.get(nb) or {}, block, 1)
            out[k] = nbs
        else:
            out[k] = v
    return out


def notebook_parameters(profile: dict, notebook: str) -> dict:
    """Parameters injected into one notebook: the profile's ``common`` block, then the notebook's own block."""
    params = {"profile": profile["name"], **profile["common"]}
    params.update((profile["notebooks"] or {}).get(notebook) or {})
    return params

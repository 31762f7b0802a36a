"""The engine before issue 17 (commit cb5a9b2), importable beside the current one for side-by-side benchmarks.

``old_engine()`` returns ``(chat, scoring)`` modules built from that commit's ``flrlib/chat.py`` and
``flrlib/scoring.py`` (read with ``git show``, or from a folder exported earlier with ``--export DIR`` for a machine
without the git history), imported as ``flrlib._old_chat`` / ``flrlib._old_scoring`` so that everything else
(models, cache, banks) is the current package's. Not used by the library or the tests' verdicts.

    python benchmarks/baseline.py --export .gpu/baseline      # then carry .gpu/ to the GPU machine
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REV = "cb5a9b2"  # the last commit with the per-conversation packed engine and per-follow-up tokenisation
ROOT = Path(__file__).resolve().parent.parent
FILES = ("chat", "scoring")


def _source(name: str, folder: str | Path | None) -> str:
    if folder and (Path(folder) / f"{name}.py").exists():
        return (Path(folder) / f"{name}.py").read_text()
    return subprocess.run(["git", "-C", str(ROOT), "show", f"{REV}:flrlib/{name}.py"], check=True,
                          capture_output=True, text=True).stdout


def old_engine(folder: str | Path | None = None):
    folder = folder or os.environ.get("FLR_BASELINE_DIR")
    import flrlib  # noqa: F401  (the package the old modules import from)

    mods = {}
    for name in FILES:
        src = _source(name, folder).replace("from .chat import", "from flrlib._old_chat import")
        full = f"flrlib._old_{name}"
        spec = importlib.util.spec_from_loader(full, loader=None)
        mod = importlib.util.module_from_spec(spec)
        mod.__package__ = "flrlib"
        sys.modules[full] = mod
        exec(compile(src, f"{REV}:flrlib/{name}.py", "exec"), mod.__dict__)
        mods[name] = mod
    return mods["chat"], mods["scoring"]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export", required=True, help="folder to write the old chat.py and scoring.py to")
    a = ap.parse_args()
    out = Path(a.export)
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (out / f"{name}.py").write_text(_source(name, None))
    print(f"wrote {', '.join(f'{n}.py' for n in FILES)} of {REV} to {out}")

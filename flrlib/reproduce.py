"""Headless runner: execute the numbered notebooks in order with papermill, parameters from a profile YAML.

* executed notebooks go to ``outputs/<profile>/<name>.ipynb``;
* the first failing notebook stops the run with its name and error;
* a notebook is skipped when its fingerprint (notebook bytes, its parameters, the flrlib sources and the
  fingerprints of the notebooks before it) matches the last successful run, so an interrupted run resumes where
  it stopped and a re-run after a change re-executes only what the change can affect.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import yaml

from .paths import ROOT, outputs_dir

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
NOTEBOOKS_DIR = ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    pass


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


def _sources_hash() -> str:
    h = hashlib.sha256()
    for p in sorted(Path(__file__).resolve().parent.rglob("*")):
        if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts:
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _fingerprint(nb: Path, params: dict, upstream: str, code: str) -> str:
    h = hashlib.sha256(nb.read_bytes())
    h.update(json.dumps(params, sort_keys=True).encode())
    h.update(upstream.encode())
    h.update(code.encode())
    return h.hexdigest()[:20]


def notebooks(selection: list[str] | None = None) -> list[Path]:
    nbs = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if selection:
        nbs = [p for p in nbs if any(p.stem.startswith(s) for s in selection)]
    return nbs


def run(profile: str = "demo", only: list[str] | None = None, force: bool = False, out_dir: str | Path | None = None,
        kernel: str = "python3", log_output: bool = False) -> list[dict]:
    """Run the notebooks of a profile; returns one status dict per notebook; raises NotebookFailed on the first error."""
    import papermill as pm

    prof = load_profile(profile)
    out = Path(out_dir) if out_dir else outputs_dir(prof["name"])
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / ".state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    code = _sources_hash()
    upstream, report = "", []
    listed = set(prof["notebooks"] or {})
    for nb in notebooks(only):
        if listed and nb.stem not in listed:
            continue
        declared = pm.inspect_notebook(str(nb))  # inject only what the notebook declares (no warnings)
        params = {k: v for k, v in notebook_parameters(prof, nb.stem).items() if k in declared}
        fp = _fingerprint(nb, params, upstream, code)
        upstream += fp
        target = out / nb.name
        if not force and state.get(nb.stem) == fp and target.exists():
            print(f"[skip] {nb.stem}: unchanged since its last successful run")
            report.append({"notebook": nb.stem, "status": "skipped", "seconds": 0.0})
            continue
        print(f"[run ] {nb.stem} (profile {prof['name']}) -> {target}", flush=True)
        t0 = time.time()
        env_before = os.environ.get("FLR_PROFILE")
        os.environ["FLR_PROFILE"] = prof["name"]
        try:
            pm.execute_notebook(str(nb), str(target), parameters=params, kernel_name=kernel, cwd=str(NOTEBOOKS_DIR),
                                progress_bar=False, log_output=log_output)
        except pm.PapermillExecutionError as e:
            state.pop(nb.stem, None)
            state_path.write_text(json.dumps(state, indent=1))
            raise NotebookFailed(f"{nb.stem} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                                 f"(executed notebook with the traceback: {target})") from None
        finally:
            if env_before is None:
                os.environ.pop("FLR_PROFILE", None)
            else:
                os.environ["FLR_PROFILE"] = env_before
        dt = time.time() - t0
        state[nb.stem] = fp
        state_path.write_text(json.dumps(state, indent=1))
        print(f"[done] {nb.stem} in {dt:.1f} s", flush=True)
        report.append({"notebook": nb.stem, "status": "ran", "seconds": round(dt, 1)})
    (out / "run_report.json").write_text(json.dumps(report, indent=1))
    return report


def main(argv=None) -> int:  # pragma: no cover - thin wrapper, used by `flr reproduce`
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    try:
        run(a.profile, a.only, a.force)
    except NotebookFailed as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0

"""Headless runner: execute the numbered notebooks in order with papermill, parameters from a profile YAML.

* executed notebooks go to ``outputs/<profile>/<name>.ipynb``;
* the first failing notebook stops the run with its name and error;
* a notebook is skipped when its fingerprint (notebook bytes, its parameters, the flrlib sources and the
  fingerprints of the notebooks before it) matches the last successful run *and* its executed copy is complete
  (every code cell ran, no error output), so an interrupted run resumes where it stopped and a re-run after a
  change re-executes only what the change can affect.

The state file ``outputs/<profile>/.state.json`` (``{notebook: fingerprint}``) only ever says "done" for a notebook
that finished: before a notebook runs, its entry and those of every later notebook are removed (a later notebook
reads what this one writes), and the entry is written back only after papermill returned without error. Writes
are atomic (:func:`flrlib.files.atomic_write`), so a Ctrl-C or a crash never leaves a stale or half-written state.
A Ctrl-C raises :class:`Interrupted` (a ``KeyboardInterrupt``) naming the notebook; ``flr reproduce`` exits 130.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import yaml

from .files import BadFile, atomic_write, read_json
from .paths import ROOT, outputs_dir

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
NOTEBOOKS_DIR = ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) while a notebook ran; the message names it. Its state entry was already removed."""


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


def notebooks(selection: list[str] | None = None, notebooks_dir: str | Path | None = None) -> list[Path]:
    nbs = sorted(Path(notebooks_dir or NOTEBOOKS_DIR).glob("[0-9][0-9]_*.ipynb"))
    if selection:
        nbs = [p for p in nbs if any(p.stem.startswith(s) for s in selection)]
    return nbs


def incomplete_reason(executed: str | Path) -> str | None:
    """Why an executed notebook is not a finished run (``None`` if it is): missing or unreadable, a cell with an
    error output (cells tagged ``raises-exception`` may have one), or a non-empty code cell that never ran.

    Papermill saves the notebook however execution ends - after a Ctrl-C too, with every cell's papermill status
    set to "completed" - so its metadata cannot tell; execution counts and outputs can.
    """
    p = Path(executed)
    if not p.exists():
        return "no executed notebook"
    try:
        cells = json.loads(p.read_text(encoding="utf-8"))["cells"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        return f"executed notebook unreadable ({type(e).__name__})"
    for i, c in enumerate(cells, 1):
        if c.get("cell_type") != "code":
            continue
        tags = c.get("metadata", {}).get("tags", [])
        err = next((o for o in c.get("outputs", []) if o.get("output_type") == "error"), None)
        if err is not None and "raises-exception" not in tags:
            return f"cell {i} has an error output ({err.get('ename')})"
        if "".join(c.get("source", "")).strip() and c.get("execution_count") is None:
            return f"cell {i} never ran"
    return None


def _load_state(path: Path) -> dict:
    """``{notebook: fingerprint}``; an unreadable state file (e.g. left by an old, non-atomic write) counts as empty:
    everything re-runs, which is always safe."""
    if not path.exists():
        return {}
    try:
        state = read_json(path)
    except BadFile as e:
        print(f"[warn] {e}: ignoring it, every notebook runs again", file=sys.stderr)
        return {}
    return state if isinstance(state, dict) else {}


def _save_state(path: Path, state: dict) -> None:
    atomic_write(path, json.dumps(state, indent=1))


def run(profile: str = "demo", only: list[str] | None = None, force: bool = False, out_dir: str | Path | None = None,
        kernel: str = "python3", log_output: bool = False, notebooks_dir: str | Path | None = None) -> list[dict]:
    """Run the notebooks of a profile; returns one status dict per notebook.

    Raises :class:`NotebookFailed` on the first error and :class:`Interrupted` on Ctrl-C; either way the state
    says "done" only for the notebooks that finished before it. ``notebooks_dir``: default ``notebooks/``.
    """
    import papermill as pm

    prof = load_profile(profile)
    nb_dir = Path(notebooks_dir or NOTEBOOKS_DIR)
    out = Path(out_dir) if out_dir else outputs_dir(prof["name"])
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / ".state.json"
    state = _load_state(state_path)
    code = _sources_hash()
    listed = set(prof["notebooks"] or {})
    ordered = [nb for nb in notebooks(None, nb_dir) if not listed or nb.stem in listed]
    selected = {nb.stem for nb in notebooks(only, nb_dir)}
    # fingerprints over the whole ordered list, so that `--only 03` and a full run agree on what 03 is
    upstream, plan = "", []
    for nb in ordered:
        declared = pm.inspect_notebook(str(nb))  # inject only what the notebook declares (no warnings)
        params = {k: v for k, v in notebook_parameters(prof, nb.stem).items() if k in declared}
        fp = _fingerprint(nb, params, upstream, code)
        upstream += fp
        plan.append((nb, params, fp))
    report = []
    for i, (nb, params, fp) in enumerate(plan):
        if nb.stem not in selected:
            continue
        target = out / nb.name
        recorded = not force and state.get(nb.stem) == fp
        why = incomplete_reason(target) if recorded else None  # recorded as done, but is the executed copy?
        if recorded and why is None:
            print(f"[skip] {nb.stem}: unchanged since its last successful run")
            report.append({"notebook": nb.stem, "status": "skipped", "seconds": 0.0})
            continue
        # from here on neither this notebook nor any later one counts as done until it finishes again
        later = [n.stem for n, _, _ in plan[i:]]
        if any(s in state for s in later):
            state = {k: v for k, v in state.items() if k not in later}
            _save_state(state_path, state)
        print(f"[run ] {nb.stem} (profile {prof['name']}) -> {target}" + (f" (last run incomplete: {why})" if why else ""), flush=True)
        t0 = time.time()
        env_before = os.environ.get("FLR_PROFILE")
        os.environ["FLR_PROFILE"] = prof["name"]
        try:
            pm.execute_notebook(str(nb), str(target), parameters=params, kernel_name=kernel, cwd=str(nb_dir),
                                progress_bar=False, log_output=log_output)
        except pm.PapermillExecutionError as e:
            raise NotebookFailed(f"{nb.stem} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                                 f"(executed notebook with the traceback: {target})") from None
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted in {nb.stem}; re-run the same command to resume") from None
        finally:
            if env_before is None:
                os.environ.pop("FLR_PROFILE", None)
            else:
                os.environ["FLR_PROFILE"] = env_before
        dt = time.time() - t0
        state[nb.stem] = fp
        _save_state(state_path, state)
        print(f"[done] {nb.stem} in {dt:.1f} s", flush=True)
        report.append({"notebook": nb.stem, "status": "ran", "seconds": round(dt, 1)})
    atomic_write(out / "run_report.json", json.dumps(report, indent=1))
    return report


def main(argv=None) -> int:  # thin wrapper, the same contract as `flr reproduce`: 0 ok, 1 failed, 130 Ctrl-C
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--notebooks-dir", default=None)
    a = ap.parse_args(argv)
    try:
        run(a.profile, a.only, a.force, out_dir=a.out_dir, notebooks_dir=a.notebooks_dir)
    except NotebookFailed as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # Interrupted names the notebook
        print(str(e) or "interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

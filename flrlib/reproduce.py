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
The command is ``flr reproduce`` (:mod:`flrlib.cli`); this module has no command line of its own.

Data parallel. Launched with ``WORLD_SIZE`` > 1 (``accelerate launch -m flrlib.cli reproduce ...`` or ``torchrun``),
rank 0 is the runner above and decides what runs; the notebooks named in the profile's ``parallel`` list (default
:data:`PARALLEL`: 03 and 05, which score; 04 when its rewriter makes no API calls) run on every rank, the others on
rank 0 alone while the other ranks wait. In a parallel notebook every :class:`~flrlib.scoring.Scorer` deals its
batches to the ranks and merges the scores, so every rank computes the same results; the Trainer of a training step
in it sees the ranks too (DDP). Each rank's kernel gets one GPU (``CUDA_VISIBLE_DEVICES`` = its local rank's, ``LOCAL_RANK=0``)
and its own rendezvous port (``MASTER_PORT`` + 1 + the notebook's position), a notebook run by rank 0 alone sees
``WORLD_SIZE=1``. Ranks > 0 write nothing into the profile's folders: their executed notebooks, results and
figures go to ``outputs/<profile>/rank<r>/`` (results copied from rank 0's before each notebook they run), so
the result files are rank 0's, the same bytes a single process writes.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import shutil

from .files import BadFile, atomic_write, read_json
from .parallel import all_gather, world
from .paths import ROOT, outputs_dir, results_dir
from .profiles import PROFILES_DIR, load_profile, notebook_parameters, profile_names  # noqa: F401 (re-exported)

NOTEBOOKS_DIR = ROOT / "notebooks"
# run on every rank by default: the notebooks whose Scorers shard and that train nothing. A profile's `parallel:` list
# adds 04 and 06 (the paper profile does): their trainers are data-parallel and their endpoint requests (rewriter,
# served outputs, judge) are sent once, by rank 0 (`parallel.once`).
PARALLEL = ("03_reward_benchmarks", "05_preference_mining")


class NotebookFailed(RuntimeError):
    pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) while a notebook ran; the message names it. Its state entry was already removed."""


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


def check_only(only: list[str] | None, prof: dict | None = None, notebooks_dir: str | Path | None = None) -> None:
    """A ValueError for an ``--only`` prefix that selects no notebook (of the profile's list, when it has one)."""
    if not only:
        return
    names = [p.stem for p in notebooks(None, notebooks_dir)]
    listed = set((prof or {}).get("notebooks") or {})
    names = [n for n in names if not listed or n in listed]
    for o in only:
        if not any(n.startswith(o) for n in names):
            raise ValueError(f"--only {o}: no notebook of this profile starts with {o!r}; notebooks: {', '.join(names)}")


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
    check_only(only, prof, nb_dir)
    from .data.hub import LOCK_NAME, hub_dir, use_locked_models

    if (hub_dir() / LOCK_NAME).exists():  # a prefetched Hub folder: its locked models are what the notebooks load
        use_locked_models()
    out = Path(out_dir) if out_dir else outputs_dir(prof["name"])
    rank, n_ranks = world()
    parallel = set(prof.get("parallel", PARALLEL) or ())
    main_results = results_dir(prof["name"])
    if rank > 0:  # a helper rank: its own scratch folders, never the profile's
        out = out / f"rank{rank}"
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
        if n_ranks > 1:  # rank 0's state decides for every rank
            recorded, why = all_gather((recorded, why) if rank == 0 else None)[0]
        if recorded and why is None:
            if rank == 0:
                print(f"[skip] {nb.stem}: unchanged since its last successful run")
            report.append({"notebook": nb.stem, "status": "skipped", "seconds": 0.0})
            continue
        if n_ranks > 1 and nb.stem not in parallel:
            if rank > 0:  # rank 0 runs it alone; wait for its outcome
                failed = all_gather(None)[0]
                if failed:
                    raise NotebookFailed(f"{failed} (on rank 0)")
                report.append({"notebook": nb.stem, "status": "rank 0", "seconds": 0.0})
                continue
        # from here on neither this notebook nor any later one counts as done until it finishes again
        later = [n.stem for n, _, _ in plan[i:]]
        if any(s in state for s in later):
            state = {k: v for k, v in state.items() if k not in later}
            _save_state(state_path, state)
        print(f"[run ] {nb.stem} (profile {prof['name']}) -> {target}" + (f" (last run incomplete: {why})" if why else ""), flush=True)
        t0 = time.time()
        env = {"FLR_PROFILE": prof["name"]}
        if n_ranks > 1:
            env.update(_rank_env(rank, i, nb.stem in parallel, out, main_results, prof["name"]))
        env_before = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        failed = None
        try:
            pm.execute_notebook(str(nb), str(target), parameters=params, kernel_name=kernel, cwd=str(nb_dir),
                                progress_bar=False, log_output=log_output, start_timeout=_start_timeout())
        except pm.PapermillExecutionError as e:
            failed = (f"{nb.stem} failed in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                      f"(executed notebook with the traceback: {target})")
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted in {nb.stem}; re-run the same command to resume") from None
        finally:
            for k, v in env_before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        if n_ranks > 1:  # every rank learns whether any rank failed (the helpers wait here for rank 0)
            outcomes = all_gather(failed)
            bad = [(r, f) for r, f in enumerate(outcomes) if f]
            if bad and not failed:
                failed = f"{bad[0][1]} (on rank {bad[0][0]})"
        if failed:  # the report says which notebook stopped the run (the rehearsal prints it)
            report.append({"notebook": nb.stem, "status": "failed", "seconds": round(time.time() - t0, 1),
                           "error": failed.splitlines()[0]})
            atomic_write(out / "run_report.json", json.dumps(report, indent=1))
            raise NotebookFailed(failed)
        if rank > 0:
            report.append({"notebook": nb.stem, "status": "ran", "seconds": round(time.time() - t0, 1)})
            continue
        dt = time.time() - t0
        state[nb.stem] = fp
        _save_state(state_path, state)
        print(f"[done] {nb.stem} in {dt:.1f} s", flush=True)
        report.append({"notebook": nb.stem, "status": "ran", "seconds": round(dt, 1)})
        atomic_write(out / "run_report.json", json.dumps(report, indent=1))
    atomic_write(out / "run_report.json", json.dumps(report, indent=1))
    return report


def _start_timeout() -> float:
    """Seconds a notebook's kernel may take to start (papermill's default, 60 s, is too short when several ranks,
    a generation server and their kernels share two busy cores: a rank's kernel once took longer). FLR_KERNEL_START_TIMEOUT."""
    return float(os.environ.get("FLR_KERNEL_START_TIMEOUT", "600"))


def _rank_env(rank: int, index: int, parallel: bool, out: Path, main_results: Path, profile: str) -> dict:
    """Environment of one notebook's kernel under a multi-process launch (see the module docstring)."""
    if not parallel:  # rank 0 alone: its Scorers and Trainers must not wait for the other ranks
        return {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
    local = int(os.environ.get("LOCAL_RANK", rank))
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    env = {"MASTER_PORT": str(int(os.environ.get("MASTER_PORT", "29500")) + 1 + index),
           "TORCHELASTIC_USE_AGENT_STORE": "False",  # the kernels rendezvous on their own port (rank 0 serves it)
           "CUDA_VISIBLE_DEVICES": visible[local] if local < len(visible) else str(local),
           "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}
    if rank > 0:  # read rank 0's results as they are now, write into a scratch copy
        scratch = out / "results"
        if main_results.exists():
            shutil.copytree(main_results, scratch / profile, dirs_exist_ok=True)
        env.update({"FLR_RESULTS_DIR": str(scratch), "FLR_FIGURES_DIR": str(out / "figures")})
    return env

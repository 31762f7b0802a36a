"""Hub-only benchmarks (need internet): fetched with ``datasets.load_dataset`` (or, for a dataset published as a
loading script, its data file with ``huggingface_hub.hf_hub_download``) and parsed from their documented schemas.
Offline (:func:`flrlib.net.offline`) or with the Hub unreachable they raise :class:`~flrlib.data.fetch.DataMissing`
saying which; a failure of the Hub itself says what failed, not "offline". The parsers take plain rows, so they are
unit-tested on hand-made rows shaped like the real ones.

Revisions: each registry entry may pin ``hub: {revision: <commit sha>}``; ``null`` means the dataset's ``main``
branch (unpinned in the registry). The lock file pins them for a run:

Air-gapped clusters. ``flr data --prefetch --profile paper`` (:func:`prefetch`, run where the Hub is reachable)
downloads every Hub dataset and model the profile needs into one folder (:func:`hub_dir`: ``$FLR_HUB_DIR``, default
``<data folder>/hub``) in the Hugging Face cache layout (``datasets--<owner>--<name>/snapshots/<commit>/``, the same
files as the Hub repo) and records the resolved commit of each in ``flr-hub.lock.json`` there. Every later run reads
a locked repo from that folder (:func:`locked_snapshot`), never from the Hub; with ``FLR_OFFLINE=1`` it reads only
that folder, and a repo that is not locked, or a registry ``revision`` that differs from the lock, is refused with
a message saying what to prefetch. :func:`hf_download` (``huggingface_hub.snapshot_download``) is the only network
call of the prefetch; tests pass their own download function that copies from a local folder laid out like the Hub.

| benchmark | Hub id (config, split) | fields used |
|---|---|---|
| shp | stanfordnlp/SHP (test) | history, human_ref_A, human_ref_B, labels (1: A preferred), domain |
| beavertails | PKU-Alignment/PKU-SafeRLHF (test) | prompt, response_0, response_1, better_response_id |
| alpaca_farm | tatsu-lab/alpaca_farm, file alpaca_human_preference.json (9,691 rows) | instruction, input, output_1, output_2, preference |
| mt_bench_human | lmsys/mt_bench_human_judgments (human) | question_id, model_a, model_b, winner, conversation_a/b, turn |
| helpsteer | nvidia/HelpSteer (validation) | prompt, response, helpfulness (0-4) |
| feedback_bench | prometheus-eval/Feedback-Bench (train) | orig_instruction, orig_response, orig_score (1-5) |
| flask | FLASK set in Prometheus format (URL, see registry) | parsed like the Prometheus sets |
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

from .. import net
from ..files import BadFile, atomic_write, read_json
from ..paths import data_dir
from .fetch import DataMissing
from .pairwise import MalformedRow, field, read_rows

LOCK_NAME = "flr-hub.lock.json"
GATED = ("meta-llama/",)


def hub_dir() -> Path:
    """The prefetched Hub folder: ``$FLR_HUB_DIR``, default ``<data folder>/hub``."""
    v = os.environ.get("FLR_HUB_DIR")
    return Path(v).expanduser().resolve() if v else data_dir() / "hub"


def _kind(repo_type: str) -> str:
    return {"dataset": "datasets", "model": "models"}[repo_type]


def repo_folder(folder: Path, repo_id: str, repo_type: str) -> Path:
    """The Hugging Face cache's folder of one repo: ``<folder>/datasets--owner--name``."""
    return Path(folder) / f"{_kind(repo_type)}--{repo_id.replace('/', '--')}"


def read_lock(folder: str | Path | None = None) -> dict:
    """``{"datasets": {id: {"revision": commit, ...}}, "models": {...}}`` of the lock in ``folder`` (empty if none)."""
    path = Path(folder or hub_dir()) / LOCK_NAME
    lock = {"datasets": {}, "models": {}}
    if path.exists():
        try:
            got = read_json(path)
        except BadFile as e:
            raise DataMissing(f"{e}; delete it and run `flr data --prefetch --profile NAME` again") from None
        for k in lock:
            lock[k].update(got.get(k) or {})
    return lock


def locked_snapshot(repo_id: str, repo_type: str = "dataset", revision: str | None = None,
                    folder: str | Path | None = None) -> Path | None:
    """The prefetched snapshot folder of a locked repo; ``None`` when the repo is not locked and the run is online
    (the caller goes to the Hub). Refused (:class:`DataMissing`): offline and not locked; a ``revision`` asked for
    that differs from the lock's commit; a lock entry whose snapshot folder is missing."""
    folder = Path(folder or hub_dir())
    lock_file = folder / LOCK_NAME
    entry = read_lock(folder)[_kind(repo_type)].get(repo_id)
    if entry is None:
        if net.offline():
            raise DataMissing(f"Hub {repo_type} {repo_id} was not prefetched ({lock_file} has no entry for it) and this "
                              f"run is offline: run `flr data --prefetch --profile NAME` where the Hub is reachable and "
                              f"copy {folder} here (or set FLR_HUB_DIR to it)")
        return None
    if revision and revision != entry["revision"]:
        raise DataMissing(f"Hub {repo_type} {repo_id}: revision {revision} is asked for (data/registry.yaml) but "
                          f"{lock_file} locks {entry['revision']}: prefetch again with the Hub reachable, or set the "
                          "registry's revision to the locked commit")
    snap = repo_folder(folder, repo_id, repo_type) / "snapshots" / entry["revision"]
    if not snap.is_dir():
        raise DataMissing(f"{lock_file} locks {repo_id} at {entry['revision']} but {snap} is missing: copy the whole "
                          "prefetched folder, or prefetch again")
    return snap


def hf_download(repo_id: str, repo_type: str, revision: str | None, folder: Path) -> str:
    """Download one repo into ``folder`` (Hugging Face cache layout) and return the resolved commit. The only
    network call of :func:`prefetch`."""
    from huggingface_hub import snapshot_download

    path = snapshot_download(repo_id, repo_type=repo_type, revision=revision, cache_dir=str(folder))
    return Path(path).name  # .../snapshots/<commit>


def folder_download(root: str | Path):
    """A download function for :func:`prefetch` that reads a local folder laid out like the Hub
    (``<root>/<owner>/<name>/<files>``: an internal mirror, or the rehearsal's fixtures) instead of the network.
    Its "commit" is a content hash of the repo's files (the first 40 hex digits of a sha256), so a changed copy
    gets a new commit. ``revision`` must be ``None`` or that commit."""
    import hashlib
    import shutil

    root = Path(root)

    def download(repo_id: str, repo_type: str, revision: str | None, folder: Path) -> str:
        src = root / repo_id
        if not src.is_dir():
            raise FileNotFoundError(f"{src} does not exist (no such repo in {root})")
        files = sorted(p for p in src.rglob("*") if p.is_file())
        h = hashlib.sha256()
        for f in files:
            h.update(f.relative_to(src).as_posix().encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
        commit = h.hexdigest()[:40]
        if revision not in (None, commit):
            raise ValueError(f"{repo_id}: revision {revision} is not in {root} (it holds {commit})")
        base = repo_folder(folder, repo_id, repo_type)
        snap = base / "snapshots" / commit
        if not snap.is_dir():
            tmp = base / "snapshots" / f".{commit}.part"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src, tmp)
            tmp.rename(snap)
        atomic_write(base / "refs" / "main", commit)
        return commit

    return download


def profile_needs(profile: str) -> list[dict]:
    """Every Hub dataset and model a profile's notebooks read: ``{repo_type, repo_id, revision, for}``; a benchmark
    read from a pinned URL is ``repo_type`` ``"url"``, its URL and, as ``revision``, its path in the data folder."""
    from ..profiles import load_profile, notebook_parameters
    from .registry import registry

    prof, reg = load_profile(profile), registry()
    out: dict[tuple, dict] = {}

    def add(rtype, rid, rev, why):
        key = (rtype, rid)
        if key in out:
            out[key]["for"] = sorted(set(out[key]["for"]) | {why})
        else:
            out[key] = {"repo_type": rtype, "repo_id": rid, "revision": rev, "for": [why]}

    for nb in sorted(set(prof["notebooks"]) | {"00_setup"}):
        p = notebook_parameters(prof, nb)
        for b in (p.get("benchmarks") or []) + (p.get("rm_bench_benchmarks") or []):
            h = reg.get(b, {}).get("hub")
            if h and "<" not in str(h.get("config")):
                add("dataset", h["id"], h.get("revision"), f"{nb}: {b}")
            elif reg.get(b, {}).get("url") and reg[b].get("files"):  # a pinned public file, into the data folder
                add("url", reg[b]["url"], reg[b]["files"][0], f"{nb}: {b}")
        if p.get("mining_source") in ("nectar", "auto") and nb.startswith("05"):
            add("dataset", "berkeley-nest/Nectar", None, f"{nb}: mining prompts")
        if (p.get("grpo") or {}).get("source") in ("nectar", "auto") and nb.startswith("06"):
            add("dataset", "berkeley-nest/Nectar", None, f"{nb}: GRPO prompts")
        if p.get("triples_source") == "ultrafeedback" and nb.startswith("04"):
            add("dataset", "openbmb/UltraFeedback", None, f"{nb}: feedback triples")
        for key in ("model", "policy_model", "models"):
            for m in (p.get(key) if isinstance(p.get(key), list) else [p.get(key)]):
                if isinstance(m, str) and m and ":" not in m and "/" in m and not Path(m).exists():
                    add("model", m, None, key)
    return sorted(out.values(), key=lambda e: (e["repo_type"], e["repo_id"]))


def url_bytes(url: str, timeout: float = 60.0) -> bytes:
    """One pinned public file (a benchmark the registry reads from a URL); the prefetch's other network call."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - pinned public https URLs
        return r.read()


def prefetch(profile: str, folder: str | Path | None = None, download=hf_download, verbose: bool = True,
             fetch_url="url_bytes") -> dict:
    """Download every Hub repo of ``profile`` into ``folder`` and lock its commit (see the module docstring); the
    benchmarks the registry reads from a pinned URL (FLASK, RM-Bench math) go into the data folder, where their loaders
    look (``fetch_url``; copy the data folder to the cluster too).

    A repo already locked, present and matching the registry's revision is kept (a re-run resumes); the lock is
    written atomically after each repo, so an interrupted prefetch loses nothing it finished."""
    folder = Path(folder or hub_dir())
    fetch_url = url_bytes if fetch_url == "url_bytes" else fetch_url  # looked up now (tests replace it)
    if (download is hf_download or fetch_url is url_bytes) and net.offline():  # fetch_url=None: URL files skipped
        raise DataMissing("`flr data --prefetch` downloads from the Hub, and this run is offline (FLR_OFFLINE / "
                          "HF_*_OFFLINE is set): run it where the Hub is reachable, without those switches")
    folder.mkdir(parents=True, exist_ok=True)
    lock = read_lock(folder)
    lock["about"] = ("flrlib: resolved Hub commits of the repos this folder holds (Hugging Face cache layout); "
                     "runs read them from here, FLR_OFFLINE=1 runs read only them")
    report = {"downloaded": [], "present": [], "failed": []}
    for need in profile_needs(profile):
        rtype, rid, rev = need["repo_type"], need["repo_id"], need["revision"]
        if rtype == "url":  # ``rev`` is the file's place in the data folder (where its loader reads it)
            target = data_dir() / rev
            if fetch_url is None:
                report.setdefault("skipped", []).append(rev)
                continue
            if target.exists():
                report["present"].append(rev)
                continue
            try:
                atomic_write(target, fetch_url(rid))
                report["downloaded"].append(rev)
            except Exception as e:  # noqa: BLE001 - listed below
                report["failed"].append(f"file {rid}: {type(e).__name__}: {str(e)[:200]}")
            continue
        have = lock[_kind(rtype)].get(rid)
        if have and (rev is None or rev == have["revision"]) and (
                repo_folder(folder, rid, rtype) / "snapshots" / have["revision"]).is_dir():
            report["present"].append(rid)
            continue
        try:
            commit = download(rid, rtype, rev, folder)
        except Exception as e:  # noqa: BLE001 - every repo is tried; the failures are listed
            gated = " (gated: accept its licence on the Hub and set HF_TOKEN)" if rid.startswith(GATED) else ""
            report["failed"].append(f"{rtype} {rid}{gated}: {type(e).__name__}: {str(e)[:200]}")
            continue
        if not (repo_folder(folder, rid, rtype) / "snapshots" / commit).is_dir():
            report["failed"].append(f"{rtype} {rid}: the download returned {commit!r} but left no snapshot folder")
            continue
        lock[_kind(rtype)][rid] = {"revision": commit, "requested": rev or "main", "for": need["for"],
                                   "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write(folder / LOCK_NAME, json.dumps(lock, indent=1, sort_keys=True) + "\n")
        report["downloaded"].append(rid)
    if verbose:
        print(f"hub folder {folder}: {len(report['downloaded'])} downloaded, {len(report['present'])} already "
              f"present, {len(report['failed'])} failed; lock {folder / LOCK_NAME}")
    if report["failed"]:
        raise DataMissing(f"{len(report['failed'])} Hub repo(s) could not be prefetched:\n  "
                          + "\n  ".join(report["failed"]))
    return report


def use_locked_models(folder: str | Path | None = None) -> list[str]:
    """Point the Hugging Face libraries at the prefetched folder for the locked models (``HF_HUB_CACHE``), after
    checking that each model's ``refs/main`` is its locked commit; returns the locked model ids (none: no change)."""
    folder = Path(folder or hub_dir())
    models = read_lock(folder)["models"]
    for rid, entry in models.items():
        ref = repo_folder(folder, rid, "model") / "refs" / "main"
        got = ref.read_text().strip() if ref.exists() else None
        if got != entry["revision"]:
            raise DataMissing(f"{folder / LOCK_NAME} locks model {rid} at {entry['revision']} but {ref} says {got}: "
                              "the folder was changed after the prefetch; prefetch again")
        if not (repo_folder(folder, rid, "model") / "snapshots" / entry["revision"]).is_dir():
            raise DataMissing(f"{folder / LOCK_NAME} locks model {rid} at {entry['revision']} but its snapshot is "
                              "missing: copy the whole prefetched folder")
    if models:
        os.environ["HF_HUB_CACHE"] = str(folder)
    return sorted(models)


def load_hub_dataset(hub_id: str, config: str | None, split: str, revision: str | None = None, name: str | None = None):
    """A ``datasets.Dataset``: from the prefetched folder when the repo is locked (offline: only from there), else
    from the Hub; :class:`DataMissing` saying why not. Loaders of Hub datasets (Nectar, UltraFeedback) call this."""
    import datasets

    name = name or hub_id
    snap = locked_snapshot(hub_id, "dataset", revision)
    if snap is not None:
        try:
            return datasets.load_dataset(str(snap), config, split=split)
        except Exception as e:  # noqa: BLE001
            raise DataMissing(f"{name!r}: could not read the prefetched {hub_id} ({config or 'default'}, {split}) from "
                              f"{snap}: {type(e).__name__}: {str(e)[:300]}") from None
    _require_hub(name, f"{hub_id}, split {split}")
    try:
        return datasets.load_dataset(hub_id, config, split=split, revision=revision)
    except Exception as e:  # noqa: BLE001 - any Hub/loader failure becomes one clear message
        raise DataMissing(f"benchmark {name!r}: could not load {hub_id} ({config or 'default'}, {split}, revision "
                          f"{revision or 'main (unpinned)'}) from the Hub: {type(e).__name__}: {str(e)[:300]}") from None


def _require_hub(name: str, what: str) -> None:
    """:class:`DataMissing` at once when offline or when the Hub does not answer (instead of a client's retries)."""
    if net.offline():
        raise DataMissing(f"benchmark {name!r} is Hub-only ({what}) and is not available offline (this run is offline: "
                          "FLR_OFFLINE / HF_*_OFFLINE is set). Run online, or pass your own JSONL in the same schema.")
    if not net.reachable("huggingface.co"):
        raise DataMissing(f"benchmark {name!r} is Hub-only ({what}) and huggingface.co is unreachable from here. "
                          "Run where the Hub is reachable, or pass your own JSONL in the same schema.")


def hub_rows(name: str, hub_id: str, config: str | None, split: str, revision: str | None = None) -> list[dict]:
    """All rows of a Hub split (:func:`load_hub_dataset`), or :class:`DataMissing` saying why not."""
    return [dict(r) for r in load_hub_dataset(hub_id, config, split, revision, name)]


def hub_file_rows(name: str, hub_id: str, filename: str, revision: str | None = None) -> list[dict]:
    """Rows of one JSON/JSONL data file of a Hub dataset repo, downloaded with ``huggingface_hub`` (cached there).

    For datasets published as a loading script (``tatsu-lab/alpaca_farm``), which ``datasets`` >= 4 refuses to run:
    the data files themselves are plain JSON.
    """
    snap = locked_snapshot(hub_id, "dataset", revision)
    if snap is not None:
        if not (snap / filename).exists():
            raise DataMissing(f"benchmark {name!r}: {filename} is not in the prefetched {hub_id} ({snap})")
        return read_rows(snap / filename)
    _require_hub(name, f"{hub_id}, file {filename}")
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(hub_id, filename, repo_type="dataset", revision=revision)
    except Exception as e:  # noqa: BLE001 - any Hub failure becomes one clear message
        raise DataMissing(f"benchmark {name!r}: could not download {filename} of the Hub dataset {hub_id} (revision "
                          f"{revision or 'main (unpinned)'}): {type(e).__name__}: {str(e)[:300]}") from None
    return read_rows(path)


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _pair(records, dropped, rid, name, messages, chosen, rejected, **extra):
    if not isinstance(chosen, str) or not isinstance(rejected, str) or not chosen.strip() or not rejected.strip():
        dropped["empty response"] += 1
    elif chosen.strip() == rejected.strip():
        dropped["identical responses"] += 1
    else:
        records.append({"id": f"{name}-{rid}", "benchmark": name, "messages": messages, "chosen": chosen,
                        "rejected": rejected, **extra})


def parse_shp(rows, name="shp", where="stanfordnlp/SHP"):
    records, dropped = [], Counter()
    for i, r in enumerate(rows):
        at = f"{where}: row {i + 1}"
        a, b, label = field(r, "human_ref_A", at), field(r, "human_ref_B", at), field(r, "labels", at, types=int)
        if label not in (0, 1):
            raise MalformedRow(f"{at}: field 'labels' must be 0 or 1, got {label!r}")
        chosen, rejected = (a, b) if label == 1 else (b, a)
        _pair(records, dropped, i, name, _user(field(r, "history", at)), chosen,
              rejected, category=r.get("domain", ""))
    return records, dict(dropped)


def parse_alpaca_farm(rows, name="alpaca_farm", where="tatsu-lab/alpaca_farm"):
    records, dropped = [], Counter()
    for i, r in enumerate(rows):
        at = f"{where}: row {i + 1}"
        instr, inp = field(r, "instruction", at), r.get("input") or ""
        pref = field(r, "preference", at, types=(int, float))
        if pref not in (1, 2):
            dropped["tie or invalid preference"] += 1
            continue
        o1, o2 = field(r, "output_1", at), field(r, "output_2", at)
        chosen, rejected = (o1, o2) if pref == 1 else (o2, o1)
        prompt = f"{instr}\n\n{inp}" if inp.strip() else instr
        _pair(records, dropped, i, name, _user(prompt), chosen, rejected)
    return records, dict(dropped)


def _rating(records, dropped, rid, name, messages, response, score, **extra):
    if not isinstance(response, str) or not response.strip():
        dropped["empty response"] += 1
        return
    try:
        score = float(score)
    except (TypeError, ValueError):
        dropped["score not a number"] += 1
        return
    records.append({"id": f"{name}-{rid}", "benchmark": name, "messages": messages, "response": response,
                    "score": score, **extra})


def parse_helpsteer(rows, name="helpsteer", where="nvidia/HelpSteer", attribute="helpfulness"):
    records, dropped = [], Counter()
    for i, r in enumerate(rows):
        at = f"{where}: row {i + 1}"
        _rating(records, dropped, i, name, _user(field(r, "prompt", at)), field(r, "response", at),
                field(r, attribute, at, types=(int, float)))
    return records, dict(dropped)


def parse_feedback_bench(rows, name="feedback_bench", where="prometheus-eval/Feedback-Bench"):
    records, dropped = [], Counter()
    for i, r in enumerate(rows):
        at = f"{where}: row {i + 1}"
        _rating(records, dropped, i, name, _user(field(r, "orig_instruction", at)), field(r, "orig_response", at),
                field(r, "orig_score", at, types=(str, int, float)), category=r.get("orig_criteria", "")[:80])
    return records, dict(dropped)


def url_rows(name: str, url: str, local: str) -> list[dict]:
    """Rows of a public JSON file fetched once into the data folder (``local``); offline: :class:`DataMissing`."""
    import urllib.request

    from ..files import atomic_write
    from ..paths import data_dir

    path = data_dir() / local
    if not path.exists():
        if net.offline():
            raise DataMissing(f"benchmark {name!r} is not available offline (not in the mirror: {local}; this run is "
                              f"offline); it is downloaded from {url} when online.")
        if not net.reachable("raw.githubusercontent.com"):
            raise DataMissing(f"benchmark {name!r}: {local} is not in the data folder and raw.githubusercontent.com "
                              f"is unreachable; it is downloaded from {url}.")
        try:
            with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 - pinned public https URL
                atomic_write(path, r.read())
        except Exception as e:  # noqa: BLE001
            raise DataMissing(f"benchmark {name!r}: could not download {url} ({type(e).__name__}: {e})") from None
    return read_rows(path)

"""The data step: populate the data folder from a local mirror, or from the public sources when online.

Every file is an unmodified copy (some gzip-compressed) of a public file pinned to a commit; see SOURCES below and
the README's data table. Nothing here is committed to git. Hub-only datasets (SHP, HelpSteer, ...) are not files
of this step: their loaders call ``datasets.load_dataset`` when online (``flr data --prefetch``: :mod:`.hub`).

Integrity. A pinned source has fixed bytes, so ``flrlib/data/checksums.json`` (committed) records the sha256 of every
file's *content*: the decompressed bytes of a ``.gz`` file (the public file itself; a gzip stream's own bytes
depend on the zlib build), the bytes of any other file. Each file is checked when it is copied from the mirror,
when it is downloaded (before it is written) and when it is found already present; a mismatch or a damaged gzip
stream is refused with a :class:`Corrupt` error naming the file and how to repair it, and nothing is written.
"""
from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import re
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from .. import net
from ..files import atomic_write
from ..paths import data_dir, mirror_dir

CHECKSUMS = Path(__file__).resolve().parent / "checksums.json"

GH = "https://raw.githubusercontent.com"
_HH = f"{GH}/DaehanKim/EasyRLHF/45eccb72ddb8c18aa52dc2a184516380e06582fe/data"
_AE = f"{GH}/tatsu-lab/alpaca_eval/cd543a149df89434d8a54582c0151c0b945c3d20"
_FC = f"{GH}/lm-sys/FastChat/0e6d3e4beaab66f4d3f93db72541a4abab8af28d/fastchat/llm_judge/data"
_PR = f"{GH}/prometheus-eval/prometheus-eval/dcfb44272d5d0414832f5dbb8c2a05ebc2614234/eval/benchmark/data"
_UF = f"{GH}/kkminions888-ops/ultrafeedback-dpo-noise-study/859ef0a82f3a27f71cef9136a432f19945f704de/data/processed"
_FL = f"{GH}/kaistAI/FLASK/3b4e22bc34aa9dc15ea0c51be3cbf5f3c8b1b5e5/evaluation_set"
_FLR = f"{GH}/e0397123/FLR/787bce6"
_RMB = f"{GH}/THU-KEG/RM-Bench/73c52d7b27b361621361ec959ac6c0eb9bb7a689"

AE_MODELS = [
    "gpt-4o-2024-05-13", "gpt-4-turbo-2024-04-09", "gpt-4-0125-preview", "claude-3-opus-20240229",
    "Meta-Llama-3-70B-Instruct", "claude-3-sonnet-20240229", "Qwen2-72B-Instruct", "mistral-large-2402",
    "Qwen1.5-72B-Chat", "Mixtral-8x7B-Instruct-v0.1", "dbrx-instruct", "tulu-2-dpo-70b", "Mistral-7B-Instruct-v0.2",
    "llama-2-70b-chat-hf", "gemma-7b-it", "llama-2-7b-chat-hf", "gemma-2b-it", "gpt4_1106_preview",
    "text_davinci_003", "Meta-Llama-3-8B-Instruct",
]
AE_ANNOTATIONS = [
    ("Mistral-7B-Instruct-v0.2", "alpaca_eval_gpt4_turbo_fn"), ("Mixtral-8x7B-Instruct-v0.1", "alpaca_eval_gpt4_turbo_fn"),
    ("llama-2-70b-chat-hf", "alpaca_eval_gpt4"), ("llama-2-7b-chat-hf", "alpaca_eval_gpt4"),
    ("tulu-2-dpo-70b", "alpaca_eval_gpt4"),
]


@dataclass(frozen=True)
class Source:
    path: str       # relative path in the data folder (same as in the mirror)
    url: str        # public raw file at a pinned commit
    gzip: bool      # the local copy is gzip-compressed, the public file is not
    group: str      # what it is for (shown in messages)
    convert: str = ""  # "followups" / "elo": the public file is parsed into our JSON form


def sources() -> list[Source]:
    s = [Source(f"hh-rlhf/{sub}/test.jsonl.gz", f"{_HH}/{sub}/test.jsonl.gz", False, "HH-RLHF")
         for sub in ("helpful-base", "helpful-online", "helpful-rejection-sampled", "harmless-base")]
    s += [Source(f"alpaca_eval/model_outputs/{m}.json.gz", f"{_AE}/results/{m}/model_outputs.json", True, "AlpacaEval outputs")
          for m in AE_MODELS]
    s += [Source(f"alpaca_eval/annotations/{m}.{a}.json.gz", f"{_AE}/results/{m}/{a}/annotations.json", True,
                 "AlpacaEval annotations") for m, a in AE_ANNOTATIONS]
    s += [
        Source("alpaca_eval/leaderboard_alpaca_eval_2.csv", f"{_AE}/src/alpaca_eval/leaderboards/data_AlpacaEval_2/"
               "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv", False, "AlpacaEval leaderboards"),
        Source("alpaca_eval/leaderboard_alpaca_eval_1.csv", f"{_AE}/src/alpaca_eval/leaderboards/data_AlpacaEval/"
               "alpaca_eval_gpt4_leaderboard.csv", False, "AlpacaEval leaderboards"),
        Source("mt_bench/question.jsonl", f"{_FC}/mt_bench/question.jsonl", False, "MT-Bench"),
        Source("mt_bench/reference_answer_gpt-4.jsonl", f"{_FC}/mt_bench/reference_answer/gpt-4.jsonl", False, "MT-Bench"),
        Source("mt_bench/judge_prompts.jsonl", f"{_FC}/judge_prompts.jsonl", False, "MT-Bench"),
        Source("prometheus/mt_bench_eval.json.gz", f"{_PR}/mt_bench_eval.json", True, "Prometheus"),
        Source("prometheus/vicuna_eval.json.gz", f"{_PR}/vicuna_eval.json", True, "Prometheus"),
        Source("ultrafeedback/train_clean.jsonl.gz", f"{_UF}/train_clean.jsonl", True, "UltraFeedback"),
        Source("ultrafeedback/eval_clean.jsonl.gz", f"{_UF}/eval_clean.jsonl", True, "UltraFeedback"),
        Source("flask/flask_evaluation.jsonl.gz", f"{_FL}/flask_evaluation.jsonl", True, "FLASK"),
        Source("paper/followups.json", f"{_FLR}/utils.py", False, "paper", convert="followups"),
        Source("paper/arena_elo_2024-06-07.json", f"{_FLR}/README.md", False, "paper", convert="elo"),
    ]
    # RM-Bench (issue 24): the 4 mirrored domains (math is over the mirror's size limit: its registry entry
    # downloads it on first use when online, flrlib.data.rm_bench)
    s += [Source(f"rm_bench/{d}_filtered.json.gz", f"{_RMB}/data/{d}_filtered.json", True, "RM-Bench")
          for d in ("chat", "code", "safety-refuse", "safety-response")]
    return s


class DataMissing(FileNotFoundError):
    pass


class Corrupt(DataMissing):
    """A data file whose content does not match its recorded checksum, or a damaged gzip stream."""


def content_sha256(blob_or_path: bytes | str | Path, name: str | Path) -> str:
    """sha256 of a file's content (decompressed when ``name`` ends in ``.gz``); a damaged gzip stream is
    :class:`Corrupt` naming ``name``."""
    h = hashlib.sha256()
    if isinstance(blob_or_path, bytes):
        fh = io.BytesIO(blob_or_path)
    else:
        fh = open(blob_or_path, "rb")  # noqa: SIM115 - closed below
    try:
        stream = gzip.GzipFile(fileobj=fh) if str(name).endswith(".gz") else fh
        while chunk := stream.read(1 << 20):
            h.update(chunk)
    except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise Corrupt(f"{name}: damaged gzip stream ({type(e).__name__}: {e})") from None
    finally:
        fh.close()
    return h.hexdigest()


def checksums(path: str | Path = CHECKSUMS) -> dict:
    """``{relative path: sha256 of the content}`` recorded for the sources (empty if the file is absent)."""
    p = Path(path)
    return json.loads(p.read_text(encoding="utf-8"))["files"] if p.exists() else {}


def record_checksums(folder: str | Path, path: str | Path = CHECKSUMS) -> dict:
    """Write the checksums of every source file present in ``folder`` (a verified mirror) to ``path``."""
    folder = Path(folder)
    files = {s.path: content_sha256(folder / s.path, s.path) for s in sources() if (folder / s.path).exists()}
    atomic_write(path, json.dumps({"rule": "sha256 of the content: decompressed bytes for .gz files, else the bytes",
                                   "recorded_from": "the mirror of the pinned sources (SOURCES.md)",
                                   "files": dict(sorted(files.items()))}, indent=1) + "\n")
    return files


def _repair(src: "Source", where: str) -> str:
    if where == "mirror":
        return (f"repair the mirror's copy (the public file is {src.url}), or point FLR_DATA_MIRROR at a good mirror, "
                "or move it aside and run `flr data` online")
    if where == "download":
        return f"the pinned file at {src.url} did not match: retry `flr data` (a cut download), or use a mirror"
    return "delete it and run `flr data` again (it is copied from the mirror or downloaded again)"


def verify(blob_or_path, src: "Source", shown: str | Path, where: str, sums: dict) -> None:
    """Check one file's content against its recorded checksum; :class:`Corrupt` names the file and the repair."""
    want = sums.get(src.path)
    try:
        got = content_sha256(blob_or_path, shown)
    except Corrupt as e:
        raise Corrupt(f"{e}; {_repair(src, where)}") from None
    if want and got != want:
        raise Corrupt(f"{shown}: content sha256 {got[:16]}... differs from the recorded {want[:16]}... "
                      f"(flrlib/data/checksums.json, {src.group}): the file is truncated or altered; {_repair(src, where)}")


FLR_CATEGORIES = ("understanding", "relevance", "correctness", "engagingness", "informativeness", "following")


def _followups_from_utils(text: str) -> dict:
    """Parse the authors' utils.py with ``ast`` (never imported): ``<category>_pos`` / ``<category>_neg`` lists.

    The real file chains some assignments (``following_pos = texts = [...]``), so every name target counts.
    """
    lists = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            for target in node.targets:
                if isinstance(target, ast.Name):
                    lists[target.id] = value
    cats = {}
    for cat in FLR_CATEGORIES:
        for key in (f"{cat}_pos", f"{cat}_neg"):
            if not isinstance(lists.get(key), list) or not all(isinstance(t, str) for t in lists[key]):
                raise DataMissing(f"utils.py: no list of strings named {key!r}; supply a mirror folder")
        cats[cat] = {"positive": lists[f"{cat}_pos"], "negative": lists[f"{cat}_neg"]}
    return {"source": "e0397123/FLR utils.py @ 787bce6 (the paper's released follow-up utterances, kept byte-exact, "
                      "duplicates included)", "categories": cats}


def _elo_from_readme(text: str) -> dict:
    """The ``lmsys_elo = {...}`` dict in the authors' README (a quoted Python dict inside backticks), read with
    ``ast.literal_eval``: names and values as written, in the README's order."""
    m = re.search(r"lmsys_elo\s*=\s*(\{.*?\})", text, flags=re.S)
    try:
        elo = ast.literal_eval(m.group(1)) if m else None
    except (ValueError, SyntaxError):
        elo = None
    if not isinstance(elo, dict) or len(elo) < 10 or not all(
            isinstance(k, str) and isinstance(v, (int, float)) for k, v in elo.items()):
        raise DataMissing("could not parse the `lmsys_elo = {...}` Arena ELO list from the authors' README; "
                          "supply a mirror folder")
    return {"source": "e0397123/FLR README.md @ 787bce6: LMSYS Chatbot Arena ELO as of 2024-06-07",
            "elo": {k: float(v) for k, v in elo.items()}}


def _download(src: Source, dest: Path, timeout: float, sums: dict | None = None) -> None:
    """Download one source (the only network call of this module), convert it, check it, then write it."""
    with urllib.request.urlopen(src.url, timeout=timeout) as r:  # noqa: S310 - pinned public https URLs
        blob = r.read()
    if src.convert == "followups":
        blob = json.dumps(_followups_from_utils(blob.decode()), ensure_ascii=False, indent=1).encode()
    elif src.convert == "elo":
        blob = json.dumps(_elo_from_readme(blob.decode()), indent=1).encode()
    if src.gzip:
        blob = gzip.compress(blob, mtime=0)
    verify(blob, src, src.url, "download", checksums() if sums is None else sums)
    atomic_write(dest, blob)


def fetch(dest: str | Path | None = None, mirror: str | Path | None = None, online: bool | None = None,
          only: list[str] | None = None, timeout: float = 30.0, verbose: bool = True) -> dict:
    """Copy each source file into ``dest`` from the mirror, else download it; skip files already present.

    ``online``: download what no mirror has (``None``/``True``); never when :func:`flrlib.net.offline` is true
    (``FLR_OFFLINE=1`` wins over ``online=True``). Returns ``{"copied": n, "downloaded": n, "present": n,
    "missing": [paths]}`` and raises :class:`DataMissing`
    with what is missing and how to supply it when a file can be had neither way.
    """
    dest = Path(dest) if dest else data_dir()
    mirror = Path(mirror) if mirror else mirror_dir()
    online = not net.offline() and online is not False  # FLR_OFFLINE=1 wins over online=True
    report = {"copied": 0, "downloaded": 0, "present": 0, "missing": [], "corrupt": []}
    errors, bad = [], []
    sums = checksums()
    for src in sources():
        if only and not any(src.path.startswith(o) for o in only):
            continue
        target = dest / src.path
        try:
            if target.exists():
                verify(target, src, target, "present", sums)
                report["present"] += 1
                continue
            if (mirror / src.path).exists():
                blob = (mirror / src.path).read_bytes()
                verify(blob, src, mirror / src.path, "mirror", sums)
                atomic_write(target, blob)  # nothing half-copied on interrupt
                report["copied"] += 1
                continue
        except Corrupt as e:
            bad.append(str(e))
            report["corrupt"].append(src.path)
            continue
        if online:
            try:
                _download(src, target, timeout, sums)
                report["downloaded"] += 1
                continue
            except Corrupt as e:
                bad.append(str(e))
                report["corrupt"].append(src.path)
                continue
            except Exception as e:  # noqa: BLE001 - collected and reported below
                errors.append(f"{src.path}: {type(e).__name__}: {e}")
        report["missing"].append(src.path)
    if (mirror / "SOURCES.md").exists() and not (dest / "SOURCES.md").exists():
        atomic_write(dest / "SOURCES.md", (mirror / "SOURCES.md").read_bytes())
    if verbose:
        print(f"data folder {dest}: {report['copied']} copied from {mirror}, {report['downloaded']} downloaded, "
              f"{report['present']} already present (checksums verified), {len(report['missing'])} missing"
              + (f", {len(bad)} refused (checksum)" if bad else ""))
    if bad:
        raise Corrupt(f"{len(bad)} data file(s) failed their checksum (nothing was written for them):\n  "
                      + "\n  ".join(bad))
    if report["missing"]:
        groups = sorted({s.group for s in sources() if s.path in report["missing"]})
        raise DataMissing(
            f"{len(report['missing'])} data files are missing ({', '.join(groups)}), e.g. {report['missing'][0]}. "
            f"No mirror had them (looked in {mirror}; set FLR_DATA_MIRROR to a copy of the mirror folder) "
            + ("and downloading failed:\n  " + "\n  ".join(errors[:5]) if errors else
               "and downloads are off (" + ("this run is offline: FLR_OFFLINE / HF_*_OFFLINE is set)." if net.offline()
                                            else "online=False / --offline)."))
        )
    return report


def require(path: str) -> Path:
    """Path of a data file, or a clear error saying how to get it (used by every loader)."""
    p = data_dir() / path
    if not p.exists():
        raise DataMissing(f"{p} is missing: run `flr data` (copies from {mirror_dir()} or downloads the public file).")
    return p

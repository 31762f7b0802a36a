"""Hub-only benchmarks (need internet): fetched with ``datasets.load_dataset`` and parsed from their documented
schemas. Offline (``FLR_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1``, or the Hub unreachable) they raise
:class:`~flrlib.data.fetch.DataMissing` saying so. The parsers take plain rows, so they are unit-tested on
hand-made rows shaped like the real ones.

| benchmark | Hub id (config, split) | fields used |
|---|---|---|
| shp | stanfordnlp/SHP (test) | history, human_ref_A, human_ref_B, labels (1: A preferred), domain |
| beavertails | PKU-Alignment/PKU-SafeRLHF (test) | prompt, response_0, response_1, better_response_id |
| alpaca_farm | tatsu-lab/alpaca_farm (alpaca_human_preference, preference) | instruction, input, output_1, output_2, preference |
| mt_bench_human | lmsys/mt_bench_human_judgments (human) | question_id, model_a, model_b, winner, conversation_a/b, turn |
| helpsteer | nvidia/HelpSteer (validation) | prompt, response, helpfulness (0-4) |
| feedback_bench | prometheus-eval/Feedback-Bench (train) | orig_instruction, orig_response, orig_score (1-5) |
| flask | FLASK set in Prometheus format (URL, see registry) | parsed like the Prometheus sets |
"""
from __future__ import annotations

import os
from collections import Counter

from .fetch import DataMissing
from .pairwise import MalformedRow, field


def offline() -> bool:
    return any(os.environ.get(v, "0") not in ("0", "", "false") for v in ("FLR_OFFLINE", "HF_DATASETS_OFFLINE",
                                                                           "HF_HUB_OFFLINE"))


def reachable(host: str, timeout: float = 3.0) -> bool:
    """A quick TCP check, so that an offline machine fails in seconds instead of after the Hub client's retries."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_rows(name: str, hub_id: str, config: str | None, split: str, revision: str | None = None) -> list[dict]:
    """All rows of a Hub split, or :class:`DataMissing` with a clear "not available offline" message."""
    if offline() or not reachable("huggingface.co"):
        why = "FLR_OFFLINE / HF_DATASETS_OFFLINE is set" if offline() else "huggingface.co is unreachable"
        raise DataMissing(f"benchmark {name!r} is Hub-only ({hub_id}, split {split}) and is not available offline "
                          f"({why}). Run online, or pass your own JSONL in the same schema.")
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, config, split=split, revision=revision)
    except Exception as e:  # noqa: BLE001 - any Hub/network failure becomes one clear message
        raise DataMissing(f"benchmark {name!r}: could not load {hub_id} ({config or 'default'}, {split}) from the "
                          f"Hub - not available offline or unreachable ({type(e).__name__}: {str(e)[:200]})") from None
    return [dict(r) for r in ds]


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


def parse_beavertails(rows, name="beavertails", where="PKU-Alignment/PKU-SafeRLHF", label="better_response_id"):
    """``label``: ``better_response_id`` (helpfulness, default) or ``safer_response_id``."""
    records, dropped = [], Counter()
    for i, r in enumerate(rows):
        at = f"{where}: row {i + 1}"
        r0, r1, lab = field(r, "response_0", at), field(r, "response_1", at), field(r, label, at, types=int)
        if lab not in (0, 1):
            raise MalformedRow(f"{at}: field {label!r} must be 0 or 1, got {lab!r}")
        chosen, rejected = (r0, r1) if lab == 0 else (r1, r0)
        _pair(records, dropped, i, name, _user(field(r, "prompt", at)), chosen, rejected)
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


def parse_mt_bench_human(rows, name="mt_bench_human", where="lmsys/mt_bench_human_judgments"):
    """Judgments of turn t compare the two models' t-th answers. Turn-2 contexts contain each model's own first
    answer, so they differ and are dropped (counted); ties are dropped (counted)."""
    records, dropped = [], Counter()
    for i, r in enumerate(rows):
        at = f"{where}: row {i + 1}"
        winner, turn = field(r, "winner", at), field(r, "turn", at, types=int)
        ca, cb = field(r, "conversation_a", at, types=list), field(r, "conversation_b", at, types=list)
        if winner not in ("model_a", "model_b"):
            dropped["tie"] += 1
            continue
        k = 2 * turn - 1  # index of the judged assistant answer
        if len(ca) <= k or len(cb) <= k:
            dropped["conversation shorter than the judged turn"] += 1
            continue
        ctx_a = [{"role": m["role"], "content": m["content"]} for m in ca[:k]]
        ctx_b = [{"role": m["role"], "content": m["content"]} for m in cb[:k]]
        if ctx_a != ctx_b:
            dropped["contexts of the two models differ (turn 2)"] += 1
            continue
        a, b = ca[k]["content"], cb[k]["content"]
        chosen, rejected = (a, b) if winner == "model_a" else (b, a)
        _pair(records, dropped, i, name, ctx_a, chosen, rejected, category=str(r.get("question_id", "")))
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

    from ..paths import data_dir
    from .fetch import _atomic_write
    from .pairwise import read_rows

    path = data_dir() / local
    if not path.exists():
        if offline() or not reachable("raw.githubusercontent.com"):
            raise DataMissing(f"benchmark {name!r} is not available offline (not in the mirror: {local}); it is "
                              f"downloaded from {url} when online.")
        try:
            with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 - pinned public https URL
                _atomic_write(path, r.read())
        except Exception as e:  # noqa: BLE001
            raise DataMissing(f"benchmark {name!r}: could not download {url} - not available offline or unreachable "
                              f"({type(e).__name__}: {e})") from None
    return read_rows(path)

"""Hub-only benchmarks (need internet): fetched with ``datasets.load_dataset`` (or, for a dataset published as a
loading script, its data file with ``huggingface_hub.hf_hub_download``) and parsed from their documented schemas.
Offline (:func:`flrlib.net.offline`) or with the Hub unreachable they raise :class:`~flrlib.data.fetch.DataMissing`
saying which; a failure of the Hub itself says what failed, not "offline". The parsers take plain rows, so they are
unit-tested on hand-made rows shaped like the real ones.

Revisions: each registry entry may pin ``hub: {revision: <commit sha>}``; ``null`` means the dataset's ``main``
branch (unpinned). All Hub entries are unpinned for now (no way to read the Hub's commit ids from here); pin one by
setting ``revision`` in ``data/registry.yaml`` (or a copy in the data folder).

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

from collections import Counter

from .. import net
from .fetch import DataMissing
from .pairwise import MalformedRow, field, read_rows


def _require_hub(name: str, what: str) -> None:
    """:class:`DataMissing` at once when offline or when the Hub does not answer (instead of a client's retries)."""
    if net.offline():
        raise DataMissing(f"benchmark {name!r} is Hub-only ({what}) and is not available offline (this run is offline: "
                          "FLR_OFFLINE / HF_*_OFFLINE is set). Run online, or pass your own JSONL in the same schema.")
    if not net.reachable("huggingface.co"):
        raise DataMissing(f"benchmark {name!r} is Hub-only ({what}) and huggingface.co is unreachable from here. "
                          "Run where the Hub is reachable, or pass your own JSONL in the same schema.")


def hub_rows(name: str, hub_id: str, config: str | None, split: str, revision: str | None = None) -> list[dict]:
    """All rows of a Hub split (``datasets.load_dataset``), or :class:`DataMissing` saying why not."""
    _require_hub(name, f"{hub_id}, split {split}")
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, config, split=split, revision=revision)
    except Exception as e:  # noqa: BLE001 - any Hub/loader failure becomes one clear message
        raise DataMissing(f"benchmark {name!r}: could not load {hub_id} ({config or 'default'}, {split}, revision "
                          f"{revision or 'main (unpinned)'}) from the Hub: {type(e).__name__}: {str(e)[:300]}") from None
    return [dict(r) for r in ds]


def hub_file_rows(name: str, hub_id: str, filename: str, revision: str | None = None) -> list[dict]:
    """Rows of one JSON/JSONL data file of a Hub dataset repo, downloaded with ``huggingface_hub`` (cached there).

    For datasets published as a loading script (``tatsu-lab/alpaca_farm``), which ``datasets`` >= 4 refuses to run:
    the data files themselves are plain JSON.
    """
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

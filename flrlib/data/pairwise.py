"""Pairwise benchmark files in the data folder -> ``{id, benchmark, messages, chosen, rejected}`` records.

* HH-RLHF test splits: each side is a ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` transcript. Both sides are parsed
  into chat turns; a pair is kept when both are well-formed (alternating, starting with Human, ending with a
  non-empty Assistant turn), their contexts (all turns but the last) are identical, and the two responses differ.
* AlpacaEval annotation files: ``output_1`` vs ``output_2`` judged by GPT-4 (``preference`` 1 or 2). Ties
  (``0`` or ``1.5`` in AlpacaEval's encoding), nulls and other fractional values are dropped and counted.
* MT-Bench human judgments (Hub-only rows): several judges' votes on one pair aggregated into one record, the
  majority's winner chosen, the vote counts kept (:func:`parse_mt_bench_human`).
* BeaverTails preference pairs, published as PKU-SafeRLHF (Hub-only rows): the helpfulness, safety or both labels
  (:func:`parse_pku_saferlhf`; what the authors' "beavertails_holistic" file was is not known, see there).

Every parser returns ``(records, dropped)`` where ``dropped`` maps a reason to a count. Content-level problems of
the public data are dropped and counted; a row that does not have the documented fields at all raises
:class:`MalformedRow` naming the file, row and field (the file is not the one we think it is).
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ..files import BadFile, read_json, read_jsonl

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


class MalformedRow(ValueError):
    """A source row lacks a documented field (message names file, row and field)."""


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a ``.json`` (list) or ``.jsonl`` file, optionally gzip-compressed; errors name the file and line."""
    path = Path(path)
    stem = path.name[:-3] if path.suffix == ".gz" else path.name
    try:
        rows = read_jsonl(path) if stem.endswith(".jsonl") else read_json(path)
    except BadFile as e:
        raise MalformedRow(str(e)) from None
    if not isinstance(rows, list):
        raise MalformedRow(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
    return rows


def field(row, name: str, where: str, types=str):
    """``row[name]`` checked for presence and type; a clear :class:`MalformedRow` otherwise."""
    if not isinstance(row, dict):
        raise MalformedRow(f"{where}: expected a JSON object, got {type(row).__name__}")
    if name not in row:
        raise MalformedRow(f"{where}: missing field {name!r}")
    value = row[name]
    if types is not None and not isinstance(value, types):
        raise MalformedRow(f"{where}: field {name!r} has type {type(value).__name__}")
    return value


# ----------------------------------------------------------------------------------------------------------
# HH-RLHF
# ----------------------------------------------------------------------------------------------------------

def parse_hh_transcript(text: str) -> list[dict] | None:
    """``"\\n\\nHuman: a\\n\\nAssistant: b"`` -> chat messages; ``None`` when not a clean alternating transcript."""
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        return None  # text before the first turn marker
    msgs = [{"role": _HH_ROLE[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]
    if not msgs or any(m["role"] != ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(msgs)):
        return None
    return msgs


def parse_hh_rows(rows: list[dict], benchmark: str, where: str = "hh-rlhf") -> tuple[list[dict], dict]:
    """HH-RLHF ``{"chosen", "rejected"}`` transcripts -> pairwise records (ids ``<benchmark>-<row index>``)."""
    records, dropped = [], Counter()
    for i, row in enumerate(rows):
        at = f"{where}: row {i + 1}"
        chosen, rejected = parse_hh_transcript(field(row, "chosen", at)), parse_hh_transcript(field(row, "rejected", at))
        if chosen is None or rejected is None:
            dropped["turns not alternating Human/Assistant"] += 1
        elif chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
            dropped["does not end with an Assistant turn"] += 1
        elif chosen[:-1] != rejected[:-1]:
            dropped["contexts of chosen and rejected differ"] += 1
        elif not chosen[-1]["content"] or not rejected[-1]["content"]:
            dropped["empty response"] += 1
        elif chosen[-1]["content"] == rejected[-1]["content"]:
            dropped["identical responses"] += 1
        else:
            records.append({"id": f"{benchmark}-{i}", "benchmark": benchmark, "messages": chosen[:-1],
                            "chosen": chosen[-1]["content"], "rejected": rejected[-1]["content"]})
    return records, dict(dropped)


# ----------------------------------------------------------------------------------------------------------
# AlpacaEval GPT-4 annotations
# ----------------------------------------------------------------------------------------------------------

def parse_alpaca_eval_annotations(rows: list[dict], benchmark: str, tag: str, where: str = "annotations"
                                  ) -> tuple[list[dict], dict]:
    """AlpacaEval annotation rows -> pairwise records ``<benchmark>-<tag>-<row index>``; the prompt is the
    ``instruction``; ``category`` = the AlpacaEval sub-dataset, ``generators`` = (chosen, rejected) models."""
    records, dropped = [], Counter()
    for i, row in enumerate(rows):
        at = f"{where}: row {i + 1}"
        instr, o1, o2 = field(row, "instruction", at), field(row, "output_1", at), field(row, "output_2", at)
        pref = field(row, "preference", at, types=None)
        if pref is None:
            dropped["null preference"] += 1
            continue
        try:
            pref = float(pref)
        except (TypeError, ValueError):
            raise MalformedRow(f"{at}: field 'preference' is not a number: {pref!r}") from None
        if pref in (0.0, 1.5):
            dropped["tie (preference 0 or 1.5)"] += 1
            continue
        if pref not in (1.0, 2.0):
            dropped["fractional preference"] += 1
            continue
        if not o1.strip() or not o2.strip():
            dropped["empty output"] += 1
            continue
        if o1.strip() == o2.strip():
            dropped["identical outputs"] += 1
            continue
        g1, g2 = row.get("generator_1", "output_1"), row.get("generator_2", "output_2")
        chosen, rejected, gens = (o1, o2, (g1, g2)) if pref == 1.0 else (o2, o1, (g2, g1))
        records.append({"id": f"{benchmark}-{tag}-{i}", "benchmark": benchmark,
                        "messages": [{"role": "user", "content": instr}], "chosen": chosen, "rejected": rejected,
                        "category": row.get("dataset", ""), "generators": list(gens)})
    return records, dict(dropped)


# ----------------------------------------------------------------------------------------------------------
# MT-Bench human judgments (lmsys/mt_bench_human_judgments, split "human")
# ----------------------------------------------------------------------------------------------------------

def _revert(winner: str) -> str:
    return {"model_a": "model_b", "model_b": "model_a"}.get(winner, winner)


def parse_mt_bench_human(rows: list[dict], name: str = "mt_bench_human", where: str = "lmsys/mt_bench_human_judgments"
                         ) -> tuple[list[dict], dict]:
    """MT-Bench human judgments -> one pairwise record per (question, pair of models, turn) with the judges' votes
    aggregated.

    The split holds one row per (judge, question, model pair, turn): several judges (``judge``: ``expert_*``,
    ``author_*``) often voted on the same pair, sometimes for different winners, and a pair may appear as
    (x, y) or (y, x). Rows are grouped the way FastChat's own analysis groups them
    (``fastchat/llm_judge/compute_agreement.py``, ``get_mt_bench_votes_data``: key (question_id, the two models in
    sorted order, turn), the winner reverted when the order is swapped). Each group becomes one record whose
    ``chosen`` is the answer most judges preferred; votes for ``tie`` count for neither side; a group whose votes
    are all ties is dropped as ``tie`` and one whose non-tie votes split evenly as ``judges split evenly`` (counted
    per group). Accuracy therefore counts each pair once, by its majority label. The record keeps
    ``votes = {chosen, rejected, tie}`` and ``judges``, so a per-vote accuracy (FastChat's agreement counts every
    judge's vote: a scorer that prefers ``chosen`` agrees with ``votes["chosen"]`` of the non-tie votes) can be
    computed from the records.

    Turn t compares the two models' t-th answers; a turn-2 context holds each model's own first answer, so the two
    contexts differ and such groups are dropped (counted per row, as before aggregation). ``category`` is the
    question id, ``generators`` the (chosen, rejected) models.
    """
    groups: dict[tuple, dict] = {}
    dropped = Counter()
    for i, r in enumerate(rows):
        at = f"{where}: row {i + 1}"
        qid, turn = field(r, "question_id", at, types=(int, str)), field(r, "turn", at, types=int)
        ma, mb, winner = field(r, "model_a", at), field(r, "model_b", at), field(r, "winner", at)
        judge = field(r, "judge", at, types=(str, list))
        ca, cb = field(r, "conversation_a", at, types=list), field(r, "conversation_b", at, types=list)
        k = 2 * turn - 1  # index of the judged assistant answer
        if len(ca) <= k or len(cb) <= k:
            dropped["conversation shorter than the judged turn"] += 1
            continue
        ctx_a = [{"role": m["role"], "content": m["content"]} for m in ca[:k]]
        ctx_b = [{"role": m["role"], "content": m["content"]} for m in cb[:k]]
        if ctx_a != ctx_b:
            dropped["contexts of the two models differ (turn 2)"] += 1
            continue
        answers = {ma: ca[k]["content"], mb: cb[k]["content"]}
        if mb < ma:
            ma, mb, winner = mb, ma, _revert(winner)
        g = groups.setdefault((qid, ma, mb, turn), {"messages": ctx_a, "answers": answers, "votes": Counter(),
                                                    "judges": []})
        g["votes"][winner if winner in ("model_a", "model_b") else "tie"] += 1
        g["judges"].append(judge if isinstance(judge, str) else "/".join(map(str, judge)))
    records = []
    for (qid, ma, mb, turn), g in groups.items():
        va, vb, vt = g["votes"]["model_a"], g["votes"]["model_b"], g["votes"]["tie"]
        if va == vb:
            dropped["tie" if va == 0 else "judges split evenly"] += 1
            continue
        win, lose = (ma, mb) if va > vb else (mb, ma)
        chosen, rejected = g["answers"][win], g["answers"][lose]
        if not isinstance(chosen, str) or not isinstance(rejected, str) or not chosen.strip() or not rejected.strip():
            dropped["empty response"] += 1
        elif chosen.strip() == rejected.strip():
            dropped["identical responses"] += 1
        else:
            records.append({"id": f"{name}-{qid}-{ma}-vs-{mb}-t{turn}", "benchmark": name, "messages": g["messages"],
                            "chosen": chosen, "rejected": rejected, "category": str(qid), "generators": [win, lose],
                            "votes": {"chosen": max(va, vb), "rejected": min(va, vb), "tie": vt},
                            "judges": g["judges"]})
    return records, dict(dropped)


# ----------------------------------------------------------------------------------------------------------
# BeaverTails preference pairs = PKU-SafeRLHF
# ----------------------------------------------------------------------------------------------------------

SAFERLHF_LABELS = ("better_response_id", "safer_response_id", "both")


def parse_pku_saferlhf(rows: list[dict], name: str = "beavertails", where: str = "PKU-Alignment/PKU-SafeRLHF",
                       label: str = "better_response_id") -> tuple[list[dict], dict]:
    """BeaverTails' preference pairs -> pairwise records.

    The pairwise data of the BeaverTails project is published as ``PKU-Alignment/PKU-SafeRLHF``: rows
    ``{prompt, response_0, response_1, better_response_id, safer_response_id, ...}``. ``PKU-Alignment/BeaverTails``
    itself holds QA classification rows (``prompt, response, category, is_safe``), one response each, with no pair
    to compare: given such rows this parser says so instead of failing on a missing field.

    ``label``: ``better_response_id`` (helpfulness, the default), ``safer_response_id`` (harmlessness) or ``both``
    (keep a pair only when the same response is the more helpful and the safer one; the others are dropped as
    "helpfulness and safety labels disagree"). The authors' scripts (scripts/test_*.sh of e0397123/FLR) score a
    file named ``beavertails_holistic_{accept,reject}.json``; the file is on their Google Drive, not in the
    repository, and no script shows how it was built, so which label "holistic" meant is not known. ``both`` is
    one reading of it (a pair judged better on helpfulness and harmlessness together), not the authors' file.
    """
    if label not in SAFERLHF_LABELS:
        raise ValueError(f"label must be one of {SAFERLHF_LABELS}, got {label!r}")
    records, dropped = [], Counter()
    for i, r in enumerate(rows):
        at = f"{where}: row {i + 1}"
        if isinstance(r, dict) and "response_0" not in r and {"response", "is_safe"} <= set(r):
            raise MalformedRow(f"{at}: a PKU-Alignment/BeaverTails QA classification row (prompt, response, category, "
                               "is_safe) has no pair to compare; BeaverTails' preference pairs are "
                               "PKU-Alignment/PKU-SafeRLHF (response_0, response_1, better_response_id, "
                               "safer_response_id)")
        prompt, r0, r1 = field(r, "prompt", at), field(r, "response_0", at), field(r, "response_1", at)
        ids = {}
        for key in (("better_response_id", "safer_response_id") if label == "both" else (label,)):
            ids[key] = field(r, key, at, types=int)
            if ids[key] not in (0, 1):
                raise MalformedRow(f"{at}: field {key!r} must be 0 or 1, got {ids[key]!r}")
        if len(set(ids.values())) > 1:
            dropped["helpfulness and safety labels disagree"] += 1
            continue
        win = next(iter(ids.values()))
        chosen, rejected = (r0, r1) if win == 0 else (r1, r0)
        if not chosen.strip() or not rejected.strip():
            dropped["empty response"] += 1
        elif chosen.strip() == rejected.strip():
            dropped["identical responses"] += 1
        else:
            records.append({"id": f"{name}-{i}", "benchmark": name, "messages": [{"role": "user", "content": prompt}],
                            "chosen": chosen, "rejected": rejected})
    return records, dict(dropped)

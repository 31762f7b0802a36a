"""Pairwise benchmark files in the data folder -> ``{id, benchmark, messages, chosen, rejected}`` records.

* HH-RLHF test splits: each side is a ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` transcript. Both sides are parsed
  into chat turns; a pair is kept when both are well-formed (alternating, starting with Human, ending with a
  non-empty Assistant turn), their contexts (all turns but the last) are identical, and the two responses differ.
* AlpacaEval annotation files: ``output_1`` vs ``output_2`` judged by GPT-4 (``preference`` 1 or 2). Ties
  (``0`` or ``1.5`` in AlpacaEval's encoding), nulls and other fractional values are dropped and counted.

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

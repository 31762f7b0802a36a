"""WildBench V2 at the system level (the paper's second system-level set): the outputs of the models of the paper's
Arena ELO list on the 1,024 WildBench V2 tasks, correlated model by model with their Arena ELO.

Source: the Hub dataset ``allenai/WildBench-V2-Model-Outputs``, one config per model (named as in the Arena list,
e.g. ``gpt-4o-2024-05-13``, ``dbrx-instruct@together``), split ``train``, 1,024 rows each. Or, offline, one file per
model in the data folder: ``wildbench_v2/<model>.jsonl`` (or ``.jsonl.gz``, ``.json``), the same rows.

Row schema (written by ``save_outputs`` in ``src/unified_utils.py`` of allenai/WildBench, read at d6b8dca; the Hub
was unreachable here, so the fixture ``tests/fixtures/wildbench_v2/`` was written from that code, not downloaded):
``session_id`` (str), ``chat_history`` (list of str: the conversation's turns, user first, alternating, ending
with the user turn being answered), ``model_input`` (str), ``output`` (list of str; the first is the answer; a plain
string is accepted too), ``generator`` (str), ``configs`` (dict), ``dataset`` (str), ``primary_tag`` (str). Used:
``session_id``, ``chat_history``, ``output``, ``primary_tag``.

Records: the system schema ``{model, id, prompt_id, messages, response, category}``, for the tasks that every
loaded model answered (non-empty), so every model is scored on the same tasks (the rule of
:func:`flrlib.data.alpaca_eval.system_records`). Target: :func:`arena_elo` (the Arena list keyed by these names).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..paths import data_dir, portable
from .fetch import DataMissing, require
from .pairwise import MalformedRow, field, read_rows

HUB_ID = "allenai/WildBench-V2-Model-Outputs"
ARENA = "paper/arena_elo_2024-06-07.json"


def arena_elo() -> dict:
    """``{model: elo}``: the paper's Arena ELO list (30 models, 2024-06-07), names as WildBench's configs."""
    return {k: float(v) for k, v in json.loads(require(ARENA).read_text(encoding="utf-8"))["elo"].items()}


def parse_outputs(rows: list[dict], model: str, where: str) -> tuple[dict, Counter]:
    """``({session_id: (messages, response, tag)}, dropped)`` of one model's rows; malformed rows name the field."""
    out, dropped = {}, Counter()
    for i, r in enumerate(rows):
        at = f"{where}: row {i + 1}"
        sid = field(r, "session_id", at)
        history = field(r, "chat_history", at, types=list)
        if not history or not all(isinstance(t, str) for t in history) or len(history) % 2 == 0:
            raise MalformedRow(f"{at}: field 'chat_history' must be a list of strings with an odd number of turns "
                               "(user first, ending with the user turn answered)")
        messages = [{"role": "user" if k % 2 == 0 else "assistant", "content": t} for k, t in enumerate(history)]
        output = field(r, "output", at, types=(list, str))
        response = output if isinstance(output, str) else (output[0] if output else "")
        if not isinstance(response, str) or not response.strip():
            dropped["empty output"] += 1
            continue
        if sid in out:
            raise MalformedRow(f"{at}: field 'session_id': {sid!r} appears twice for {model}")
        out[sid] = (messages, response, r.get("primary_tag", ""))
    return out, dropped


def system_records(outputs: dict, benchmark: str = "wildbench_v2_system") -> tuple[list[dict], dict, int]:
    """``outputs``: ``{model: rows}`` -> ``(records, dropped, rows_total)`` over the tasks every model answered."""
    parsed, dropped = {}, Counter()
    for model, rows in outputs.items():
        parsed[model], d = parse_outputs(rows, model, f"{HUB_ID} ({model})")
        dropped.update(d)
    total = sum(len(rows) for rows in outputs.values())
    if not parsed:
        return [], dict(dropped), total
    tasks = set.intersection(*[set(p) for p in parsed.values()])
    left_out = sum(len(set(p) - tasks) for p in parsed.values())
    if left_out:
        dropped["task not answered by every model"] = left_out
    order = sorted(tasks)
    records = [{"model": m, "id": f"{benchmark}-{sid}-{m}", "prompt_id": sid, "messages": parsed[m][sid][0],
                "response": parsed[m][sid][1], "category": parsed[m][sid][2]} for sid in order for m in parsed]
    return records, dict(dropped), total


def _local(model: str, folder: Path) -> Path | None:
    for suffix in (".jsonl", ".jsonl.gz", ".json", ".json.gz"):
        p = folder / f"{model}{suffix}"
        if p.exists():
            return p
    return None


def load(name: str, entry: dict, folder: str | Path | None = None) -> tuple[list[dict], dict, int]:
    """The registry's loader: every model of the Arena list from ``folder`` (default ``<data>/wildbench_v2``) when
    its file is there, else from the Hub. A model neither has is left out and counted; none at all is an error."""
    from . import hub

    folder = Path(folder) if folder else data_dir() / "wildbench_v2"
    h = entry.get("hub", {})
    outputs, missing = {}, []
    for model in entry.get("models") or list(arena_elo()):
        path = _local(model, folder)
        try:
            outputs[model] = read_rows(path) if path else hub.hub_rows(name, h.get("id", HUB_ID), model,
                                                                    h.get("split", "train"), h.get("revision"))
        except DataMissing as e:
            missing.append((model, str(e)))
    if not outputs:
        raise DataMissing(f"benchmark {name!r}: no model outputs in {portable(folder)} and none from the Hub "
                          f"({missing[0][1] if missing else 'no models listed'})")
    records, dropped, total = system_records(outputs, name)
    if missing:
        dropped[f"models not loadable ({', '.join(m for m, _ in missing)})"] = 0
    return records, dropped, total

"""AlpacaEval model outputs for system-level evaluation, and the two system-level targets.

* :func:`load_alpaca_eval_outputs` - one model's 805 outputs ``{id, instruction, output, generator, dataset}``;
  ``id`` is the index of the instruction in the AlpacaEval set (order of the reference model's file), so it is
  the same for every model even when a file misses a row (``llama-2-70b-chat-hf`` has 804).
* :func:`alpaca_eval_models` - the mirrored models that appear in the paper's Arena ELO list (17).
* :func:`arena_elo` - Chatbot Arena ELO (2024-06-07) keyed by AlpacaEval model name.
* :func:`lc_win_rates` - AlpacaEval 2 length-controlled win rates (second target; not every model has one).
* :func:`system_records` - system records ``{model, id, messages, response}`` for a seeded subset of prompts
  answered (non-empty) by every model.
"""
from __future__ import annotations

import csv
import json
from functools import lru_cache

from .fetch import AE_MODELS, require
from .pairwise import MalformedRow, field, read_rows

REFERENCE = "gpt4_1106_preview"  # AlpacaEval 2 reference model: its file fixes the instruction order


def _norm(name: str) -> str:
    """Arena names vs AlpacaEval names: case and an ``@provider`` suffix differ (``dbrx-instruct@together``)."""
    return name.lower().split("@")[0]


@lru_cache(maxsize=None)
def _instruction_index() -> dict:
    rows = read_rows(require(f"alpaca_eval/model_outputs/{REFERENCE}.json.gz"))
    return {field(r, "instruction", f"{REFERENCE} row {i + 1}"): i for i, r in enumerate(rows)}


def load_alpaca_eval_outputs(model: str) -> list[dict]:
    """A model's AlpacaEval outputs, ``id`` = stable instruction index (0..804)."""
    if model not in AE_MODELS:
        raise KeyError(f"no AlpacaEval outputs for {model!r}; mirrored models: {AE_MODELS}")
    path = require(f"alpaca_eval/model_outputs/{model}.json.gz")
    index = _instruction_index()
    out = []
    for i, row in enumerate(read_rows(path)):
        at = f"{path}: row {i + 1}"
        instr = field(row, "instruction", at)
        if instr not in index:
            raise MalformedRow(f"{at}: instruction not in the AlpacaEval set ({instr[:60]!r})")
        out.append({"id": index[instr], "instruction": instr, "output": field(row, "output", at, types=(str, type(None))) or "",
                    "generator": row.get("generator", model), "dataset": row.get("dataset", "")})
    return out


def arena_elo() -> dict:
    """``{alpaca_eval_model_name: elo}`` for the mirrored models in the paper's Arena list."""
    raw = json.loads(require("paper/arena_elo_2024-06-07.json").read_text(encoding="utf-8"))
    elo = {_norm(k): float(v) for k, v in raw["elo"].items()}
    return {m: elo[_norm(m)] for m in AE_MODELS if _norm(m) in elo}


def alpaca_eval_models() -> list[str]:
    """The mirrored AlpacaEval models that have an Arena ELO, best ELO first (17 with the paper's list)."""
    elo = arena_elo()
    return sorted(elo, key=lambda m: -elo[m])


def lc_win_rates(version: int = 2) -> dict:
    """``{model: length-controlled win rate (%)}`` from the AlpacaEval leaderboard CSV (version 1 or 2)."""
    path = require(f"alpaca_eval/leaderboard_alpaca_eval_{version}.csv")
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for r in rows:
        name, lc = r.get("") or r.get("name"), r.get("length_controlled_winrate")
        if name and lc not in (None, ""):
            out[name] = float(lc)
    return out


def system_records(models: list[str] | None = None, benchmark: str = "alpaca_eval_system") -> tuple[list[dict], dict, int]:
    """System records for the prompts every model answered (non-empty).

    Returns ``(records, dropped, rows_total)``; ``dropped`` counts output rows (model x prompt) left out because
    their prompt is missing or has an empty output for at least one model, so that every model is scored on
    the same prompts.
    """
    models = models or alpaca_eval_models()
    outs = {m: {r["id"]: r for r in load_alpaca_eval_outputs(m)} for m in models}
    prompts = set(range(len(_instruction_index())))
    missing = set().union(*[prompts - set(rows) for rows in outs.values()])
    empty = set().union(*[{i for i, r in rows.items() if not r["output"].strip()} for rows in outs.values()]) - missing
    keep = sorted(prompts - missing - empty)
    rows_of = lambda ids: sum(1 for rows in outs.values() for i in ids if i in rows)  # noqa: E731
    dropped = {}
    if missing:
        dropped["prompt missing for some model"] = rows_of(missing)
    if empty:
        dropped["empty output for some model"] = rows_of(empty)
    records = [{"model": m, "id": f"{benchmark}-{i}", "prompt_id": i,
                "messages": [{"role": "user", "content": outs[m][i]["instruction"]}],
                "response": outs[m][i]["output"], "category": outs[m][i]["dataset"]} for i in keep for m in models]
    return records, dropped, sum(len(rows) for rows in outs.values())

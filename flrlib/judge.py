"""Pairwise evaluation of policies (AlpacaEval 2 protocol): comparison items, a seeded random order, verdicts.

A comparison item is ``{id, instruction, output_1, output_2, generator_1, generator_2}``: ``output_1`` is the
baseline (AlpacaEval 2's reference ``gpt4_1106_preview``, or the base policy), ``output_2`` the candidate. Each item
is shown to the judge in a seeded random order (a coin per item id and seed) to cancel position bias; the judge
returns the probability that the output shown *first* is better, which is mapped back to ``win`` = P(candidate is
better) in [0, 1] (``preference = 1 + win`` is AlpacaEval's 1-2 scale).

Judges live in :mod:`flrlib.judges` (the alpaca_eval annotator over an endpoint, a local HF model, reward models);
the metrics in :mod:`flrlib.winrate` (win rate with a bootstrap CI, AlpacaEval's LC win rate, each number naming its
GLM variant). :func:`evaluate` runs every judge on every comparison.
"""
from __future__ import annotations

import random

from .parallel import once
from .winrate import win_rates


def swapped(item_id, seed: int = 0) -> bool:
    """The seeded coin: True when the candidate (``output_2``) is shown first."""
    return random.Random(f"{seed}\x00{item_id}").random() < 0.5


def make_items(instructions: dict, baseline: dict, candidate: dict, baseline_name: str, candidate_name: str) -> list[dict]:
    """Comparison items for the ids present in all three ``{id: text}`` mappings (instruction order)."""
    items = []
    for i, ins in instructions.items():
        if i in baseline and i in candidate:
            items.append({"id": i, "instruction": ins, "output_1": baseline[i], "output_2": candidate[i],
                          "generator_1": baseline_name, "generator_2": candidate_name})
    return items


def judge_pairs(judge, items: list[dict], seed: int = 0, progress: bool = True) -> list[dict]:
    """Judge each item in a seeded random order; returns items with ``swapped``, ``p_first``, ``win``, ``preference``
    and, for an item whose request the judge's endpoint refused, ``failure: {status, message}`` (no verdict: NaN;
    read from the judge's ``last_failures`` where it has them)."""
    for k, it in enumerate(items):
        for f in ("id", "instruction", "output_1", "output_2"):
            if f not in it:
                raise ValueError(f"items[{k}]: missing field {f!r}")
    flips = [swapped(it["id"], seed) for it in items]
    triples = [(it["instruction"], it["output_2"], it["output_1"]) if s else
               (it["instruction"], it["output_1"], it["output_2"]) for it, s in zip(items, flips)]
    p_first = judge(triples, progress=progress) if triples else []
    failures = (getattr(judge, "last_failures", None) or {}) if triples else {}
    out = []
    for k, (it, s, p) in enumerate(zip(items, flips, p_first)):
        win = p if s else 1.0 - p
        out.append({**it, "judge": judge.name, "swapped": s, "p_first": float(p), "win": float(win),
                    "preference": float(1.0 + win), **({"failure": failures[k]} if k in failures else {})})
    return out


def alpaca_eval_files(outputs: list[dict], generator: str) -> list[dict]:
    """Outputs ``{id, instruction, output}`` as AlpacaEval ``model_outputs.json`` rows (for the official CLI:
    ``alpaca_eval evaluate --model_outputs FILE --annotators_config alpaca_eval_gpt4_turbo_fn``)."""
    return [{"instruction": o["instruction"], "output": o["output"], "generator": generator,
             "dataset": o.get("dataset", "")} for o in outputs]


def evaluate(instructions: dict, outputs: dict, comparisons: list[tuple[str, str]], judges: list[tuple[object, str]],
             seed: int = 0, n_boot: int = 2000, lc_n_boot: int = 200, progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Every judge on every ``(baseline, candidate)`` comparison; returns ``(summary rows, judged items)``.

    ``instructions``: ``{id: text}``; ``outputs``: ``{generator: {id: text}}``; ``judges``: ``(judge, label)`` where
    the label says how the judge relates to the pipeline (e.g. ``"in-loop: the FLR that mined the pairs"`` or
    ``"independent"``) and is copied to every row (:func:`flrlib.judges.make_judges` builds them).
    """
    summary, items_out = [], []
    for judge, label in judges:
        for base, cand in comparisons:
            missing = [g for g in (base, cand) if g not in outputs]
            if missing:
                raise KeyError(f"no outputs for {missing}; have {sorted(outputs)}")
            items = make_items(instructions, outputs[base], outputs[cand], base, cand)
            if getattr(judge, "collective", False):  # a data-parallel Scorer: every rank takes part
                judged = judge_pairs(judge, items, seed=seed, progress=progress)
            else:  # requests to an endpoint or generation: once, whatever the number of ranks
                judged = once(judge_pairs, judge, items, seed=seed, progress=progress)
            row = win_rates(judged, n_boot=n_boot, seed=seed, lc_n_boot=lc_n_boot)
            summary.append({**row, "judge_label": label, "judge_description": judge.description})
            items_out += [{**r, "judge_label": label} for r in judged]
    return summary, items_out


def head_to_head(candidate: list[dict], judges: list[tuple[object, str]], baseline: list[dict] | None = None,
                 seed: int = 0, n_boot: int = 2000, lc_n_boot: int = 200, progress: bool = True,
                 where: str = "candidate") -> tuple[list[dict], list[dict]]:
    """A candidate's AlpacaEval ``model_outputs`` rows (``{instruction, output, generator}``) against a baseline's
    (default: AlpacaEval 2's reference ``gpt4_1106_preview`` from the data folder), matched by instruction.

    Ids are AlpacaEval instruction indices (0-804) for instructions of the AlpacaEval set (so the leaderboard's LC
    GLM can be fitted when it is reachable), ``row<n>`` otherwise. Rows without a baseline output are skipped and
    counted in each summary row's ``n_unmatched``. Errors name ``where`` and the row.
    """
    from .data import load_alpaca_eval_outputs
    from .data.alpaca_eval import REFERENCE

    def texts(rows, name):
        out = {}
        for n, r in enumerate(rows):
            for f in ("instruction", "output"):
                if not isinstance(r, dict) or not isinstance(r.get(f), str):
                    raise ValueError(f"{name} row {n}: field {f!r} must be a string")
            out.setdefault(r["instruction"], r["output"])
        return out

    reference = load_alpaca_eval_outputs(REFERENCE)
    index = {r["instruction"]: r["id"] for r in reference}
    cand = texts(candidate, where)
    base = texts(baseline, "baseline") if baseline is not None else {r["instruction"]: r["output"] for r in reference}
    base_name = (baseline[0].get("generator") if baseline else None) or ("baseline" if baseline else REFERENCE)
    cand_name = (candidate[0].get("generator") if candidate else None) or "candidate"
    if cand_name == base_name:
        cand_name = f"{cand_name} (candidate)"
    ids = {ins: index.get(ins, f"row{n}") for n, ins in enumerate(cand)}
    instructions = {ids[ins]: ins for ins in cand if ins in base}
    if not cand:
        raise ValueError(f"{where}: no rows to judge")
    if not instructions:
        raise ValueError(f"{where}: none of its {len(cand)} instructions has a baseline output "
                         f"({'the baseline file' if baseline is not None else 'AlpacaEval reference ' + REFERENCE}); "
                         "the instructions must match the baseline's exactly")
    outputs = {base_name: {ids[i]: base[i] for i in cand if i in base}, cand_name: {ids[i]: cand[i] for i in cand}}
    summary, judged = evaluate(instructions, outputs, [(base_name, cand_name)], judges, seed=seed, n_boot=n_boot,
                               lc_n_boot=lc_n_boot, progress=progress)
    unmatched = len(cand) - len(instructions)
    return [{**s, "n_unmatched": unmatched} for s in summary], judged

"""No evaluation prompt in training data: the one overlap check (prompts compared after :func:`normalise`).

* FT-FLR training triples: :func:`guard_eval_leak` refuses (``policy="error"``, naming the row) or drops and
  counts (``"drop"``) triples whose prompt - any user turn - appears in an evaluation set; the Prometheus MT-Bench
  set is always checked.
* Preference mining: :func:`check_disjoint` raises when mining and evaluation prompts share a user turn.
"""
from __future__ import annotations

import re


def normalise(text: str) -> str:
    """Text used to compare prompts across sources: lower case, runs of whitespace folded, stripped."""
    return re.sub(r"\s+", " ", text).strip().lower()


class EvalLeak(ValueError):
    """A training row whose prompt appears in an evaluation set."""


def user_turns(rec: dict) -> list[str]:
    turns = [m["content"] for m in rec.get("messages") or []
             if m.get("role") == "user" and isinstance(m.get("content"), str)]
    if isinstance(rec.get("prompt"), str):
        turns.append(rec["prompt"])
    return [t for t in turns if t.strip()]


def eval_prompts(eval_records: dict[str, list[dict]], include_default: bool = True) -> dict[str, str]:
    """``{normalised user prompt: evaluation set name}`` for the given sets plus, always (unless a test turns it
    off), the Prometheus MT-Bench set."""
    sets = {}
    if include_default:  # the whole set, even when the caller passes a subset of it under the same name
        from .registry import load_prometheus

        sets["prometheus_mt_bench (all rows)"] = load_prometheus("mt_bench")
    sets.update(eval_records or {})
    index = {}
    for name, recs in sets.items():
        for rec in recs:
            for t in user_turns(rec):
                index.setdefault(normalise(t), name)
    return index


def guard_eval_leak(triples: list[dict], eval_records: dict[str, list[dict]], policy: str = "error",
                    include_default: bool = True) -> tuple[list[dict], dict]:
    """Refuse (``policy="error"``: :class:`EvalLeak` naming the row) or drop and count (``"drop"``) triples whose
    prompt - any user turn - appears in an evaluation set. Returns ``(kept, report)``."""
    if policy not in ("error", "drop"):
        raise ValueError(f"policy must be 'error' or 'drop', got {policy!r}")
    index = eval_prompts(eval_records, include_default)
    kept, dropped = [], []
    for t in triples:
        hit = next((index[n] for n in map(normalise, user_turns(t)) if n in index), None)
        if hit is None:
            kept.append(t)
        elif policy == "error":
            raise EvalLeak(f"training row {t.get('id')!r} ({t.get('source', 'triples')}): field 'prompt' appears in "
                           f"the evaluation set {hit!r}; training on it would leak the evaluation. Drop it "
                           "(policy='drop') or evaluate on other rows.")
        else:
            dropped.append({"id": t.get("id"), "eval_set": hit})
    report = {"checked": len(triples), "kept": len(kept), "dropped": len(dropped), "policy": policy,
              "dropped_rows": dropped, "eval_sets": sorted({v for v in index.values()}),
              "eval_prompts": len(index)}
    return kept, report


def check_disjoint(train: list[dict], held_out: list[dict]) -> None:
    """Raise ``ValueError`` naming the first shared prompts (train id, eval id) when a user turn of a training
    (mining) prompt is also a user turn of a held-out (evaluation) prompt."""
    seen = {}
    for r in train:
        for t in user_turns(r):
            seen.setdefault(normalise(t), r["id"])
    shared = []
    for r in held_out:
        hit = next((seen[n] for n in map(normalise, user_turns(r)) if n in seen), None)
        if hit is not None:
            shared.append((hit, r["id"]))
    if shared:
        raise ValueError(f"{len(shared)} evaluation prompts were also used for mining (train id, eval id): "
                         f"{shared[:5]}; mining and evaluation prompts must be disjoint.")

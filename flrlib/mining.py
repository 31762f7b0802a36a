"""Preference mining: score a policy's own samples with FLR (or FT-FLR, or any flrlib scorer) and build
DPO pairs and KTO labels in TRL's conversational formats, rewards kept as columns.

Rules (per prompt, over its N scored samples; empty responses are dropped first, and exact duplicates keep one copy):

* **DPO pair** = the highest-reward response (``chosen``) vs the lowest-reward one (``rejected``). A prompt gives no
  pair when fewer than 2 distinct responses remain, or when ``margin = r_best - r_worst`` is below ``min_margin``
  (a tie, margin 0, never gives a pair).
* **KTO labels** come from the same ranking: the top-1 response is *desirable* (``label=True``) and the bottom-1 is
  *undesirable* (``label=False``), on exactly the prompts that give a DPO pair. So KTO sees the same responses as
  DPO, balanced 1:1, without the pairing. Rows are ordered so that no two rows of one prompt share a training batch
  (TRL's KTO estimates its KL term from mismatched prompt/completion pairs inside a batch).

Formats (TRL): conversational preference ``{"prompt": [messages], "chosen": [assistant msg], "rejected": [...]}``
and unpaired preference ``{"prompt": [...], "completion": [...], "label": bool}``; extra columns ``id``,
``chosen_reward``, ``rejected_reward``, ``margin`` / ``reward`` are kept (the trainer input drops them).
"""
from __future__ import annotations

import random

import numpy as np


def score_samples(scorer, samples: list[dict], progress: bool = True) -> list[dict]:
    """Add ``rewards`` (one per response; NaN for an empty response, which is not scored) to sample records."""
    convs, where = [], []
    for i, s in enumerate(samples):
        for j, r in enumerate(s["responses"]):
            if r.strip():
                convs.append(list(s["messages"]) + [{"role": "assistant", "content": r}])
                where.append((i, j))
    res = scorer.score(convs, progress=progress, desc="scoring samples") if convs else []
    out = [{**s, "rewards": [float("nan")] * len(s["responses"])} for s in samples]
    for (i, j), r in zip(where, res):
        out[i]["rewards"][j] = float(r["reward"])
    return out


def _defined(x) -> bool:
    """A reward that exists: not NaN in memory, not ``null`` read back from a result file (results.write_json)."""
    return x is not None and x == x


def _ranked(sample: dict) -> list[tuple[float, str]]:
    """Distinct non-empty responses with their reward, best first (ties keep sample order)."""
    best = {}
    for r, x in zip(sample["responses"], sample["rewards"]):
        if r.strip() and _defined(x) and r not in best:
            best[r] = x
    return sorted(((x, r) for r, x in best.items()), key=lambda t: -t[0])


def dpo_pairs(scored: list[dict], min_margin: float = 0.0) -> list[dict]:
    """Best vs worst response per prompt (see the module doc); rows in TRL's conversational preference format."""
    rows = []
    for s in scored:
        ranked = _ranked(s)
        if len(ranked) < 2:
            continue
        (hi, best), (lo, worst) = ranked[0], ranked[-1]
        margin = hi - lo
        if margin <= 0 or margin < min_margin:
            continue
        rows.append({"id": s["id"], "prompt": list(s["messages"]),
                     "chosen": [{"role": "assistant", "content": best}],
                     "rejected": [{"role": "assistant", "content": worst}],
                     "chosen_reward": hi, "rejected_reward": lo, "margin": margin, "n_candidates": len(ranked)})
    return rows


def kto_rows(pairs: list[dict], batch_size: int = 2, seed: int = 0) -> list[dict]:
    """Top-1 desirable / bottom-1 undesirable rows from the DPO pairs, in TRL's unpaired preference format.

    Order: seeded shuffle, then arranged so that a training batch of ``batch_size`` rows never holds two rows of the
    same prompt (whenever the data allow it).
    """
    rows = []
    for p in pairs:
        rows.append({"id": p["id"], "prompt": p["prompt"], "completion": p["chosen"], "label": True,
                     "reward": p["chosen_reward"]})
        rows.append({"id": p["id"], "prompt": p["prompt"], "completion": p["rejected"], "label": False,
                     "reward": p["rejected_reward"]})
    random.Random(seed).shuffle(rows)
    return batch_apart(rows, batch_size)


def batch_apart(rows: list[dict], batch_size: int) -> list[dict]:
    """Reorder rows (greedily, stable) so that no batch of ``batch_size`` consecutive rows repeats an ``id``."""
    pending, out = list(rows), []
    while pending:
        start = len(out) - len(out) % batch_size
        in_batch = {r["id"] for r in out[start:]}
        k = next((i for i, r in enumerate(pending) if r["id"] not in in_batch), 0)
        out.append(pending.pop(k))
    return out


def trainer_columns(rows: list[dict], method: str) -> list[dict]:
    """Only the columns TRL reads (``prompt``/``chosen``/``rejected`` or ``prompt``/``completion``/``label``)."""
    cols = {"dpo": ("prompt", "chosen", "rejected"), "kto": ("prompt", "completion", "label")}[method]
    for i, r in enumerate(rows):
        missing = [c for c in cols if c not in r]
        if missing:
            raise ValueError(f"{method} rows[{i}] ({r.get('id')}): missing field(s) {missing}")
    return [{c: r[c] for c in cols} for r in rows]


def summary(scored: list[dict], pairs: list[dict], kto: list[dict] | None = None) -> dict:
    """Counts and reward/margin statistics of a mining run (flat numbers for a result file)."""
    rewards = np.array([x for s in scored for x in s["rewards"] if _defined(x)], dtype=float)
    margins = np.array([p["margin"] for p in pairs], dtype=float)
    n_resp = sum(len(s["responses"]) for s in scored)
    empty = sum(1 for s in scored for r in s["responses"] if not r.strip())
    distinct = [len(_ranked(s)) for s in scored]
    trunc = sum(sum(s.get("truncated", [])) for s in scored)

    def stats(a, name):
        if not len(a):
            return {f"{name}_mean": float("nan"), f"{name}_std": float("nan"), f"{name}_median": float("nan")}
        return {f"{name}_mean": float(a.mean()), f"{name}_std": float(a.std()), f"{name}_median": float(np.median(a))}

    return {"n_prompts": len(scored), "n_responses": n_resp, "n_empty": empty, "n_truncated": int(trunc),
            "mean_distinct_responses": float(np.mean(distinct)) if distinct else float("nan"),
            "n_pairs": len(pairs), "n_kto_rows": len(kto) if kto is not None else 2 * len(pairs),
            "n_skipped_prompts": len(scored) - len(pairs),
            **stats(rewards, "reward"), **stats(margins, "margin")}


RULE = ("DPO: per prompt, chosen = highest-reward sample, rejected = lowest-reward sample (distinct non-empty texts; "
        "skipped when the margin is 0 or below min_margin). KTO: the same two responses, chosen -> desirable "
        "(label True), rejected -> undesirable (label False).")


def build_scorer(model: str, adapter: str | None = None, categories=(), layout: str = "auto", bank: str = "paper",
                 batch_size: int = 4, device: str = "auto", dtype: str = "auto", loaded=None, scorer: str = "flr"):
    """The FLR scorer used for mining (FT-FLR when ``adapter`` is given: ``layout="auto"`` then means the
    role-swapped ``feedback`` layout the adapter was trained on). ``loaded`` reuses an already loaded model."""
    from .models import load_model
    from .scoring import ScoreConfig, Scorer

    if layout == "auto":
        layout = "feedback" if adapter else "base"
    lm = loaded if loaded is not None else load_model(model, dtype=dtype, device=device, adapter=adapter)
    cfg = ScoreConfig(scorer=scorer, layout=layout, batch_size=batch_size, categories=list(categories or []))
    return Scorer(lm, bank, cfg)


def mine(policy, scorer, prompts: list[dict], gen_config, out_dir, min_margin: float = 0.0, kto_batch_size: int = 2,
         seed: int = 0, provenance: dict | None = None, progress: bool = True) -> dict:
    """Sample (resumable), score, build pairs and KTO rows; write them to ``out_dir``; return the summary.

    ``policy``: a loaded model (generation in-process) or a :class:`flrlib.client.Endpoint` (an OpenAI-compatible
    server such as ``vllm serve``; see :mod:`flrlib.generate`); the files are the same either way.

    Files: ``samples.cache.jsonl`` (generation, resumable), ``samples.jsonl`` (prompts, responses, rewards),
    ``dpo_pairs.jsonl``, ``kto_rows.jsonl``, ``summary.json`` (counts, reward/margin statistics, provenance).

    Several ranks (every rank calls this with the same arguments): the samples are generated once, by rank 0 (one
    request per prompt to a server, not one per rank; its ``samples.cache.jsonl``), and sent to every rank; every
    rank then scores the same samples (a data-parallel ``scorer`` deals the batches) and gets the same files.
    """
    from pathlib import Path

    from .generate import generate
    from .generate import provenance as gen_provenance
    from .parallel import once
    from .results import write_json, write_jsonl

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = once(generate, policy, prompts, gen_config, cache=out / "samples.cache.jsonl", progress=progress)
    scored = score_samples(scorer, samples, progress=progress)
    pairs = dpo_pairs(scored, min_margin)
    kto = kto_rows(pairs, kto_batch_size, seed)
    write_jsonl(out / "samples.jsonl", scored)
    write_jsonl(out / "dpo_pairs.jsonl", pairs)
    write_jsonl(out / "kto_rows.jsonl", kto)
    record = {**summary(scored, pairs, kto), "min_margin": min_margin, "rule": RULE,
              "provenance": {"policy": gen_provenance(policy, gen_config), "scorer": scorer.provenance,
                             **(provenance or {})}}
    write_json(out / "summary.json", record)
    return record

"""Reward-model benchmarks: score benchmark records with a :class:`flrlib.scoring.Scorer`, compute the metric with
a 95 % bootstrap CI, and write result files (the paper's Table 3 and system-level correlation).

Result files (read by :mod:`flrlib.reporting`, notebook 03, the FT-FLR table of notebook 04 and notebook 07)::

    results/<profile>/reward_benchmarks/<benchmark>__<tag>__<model_slug>.json    one flat record
    results/<profile>/reward_benchmarks/<benchmark>__<tag>__<model_slug>.jsonl   one line per sample

``tag`` is the scorer name (``flr``, ``direct``, ``legacy_repo``) unless given (e.g. ``ft_flr`` for the
fine-tuned feedback-layout scorer of notebook 04); ``model_slug`` = :func:`model_slug` of the model spec.

Flat record keys: ``benchmark, kind, scorer, tag, model, model_slug, profile, n, metric, value, ci_low, ci_high``
plus, by kind,

* pairwise - ``metric="accuracy"``, ``ties`` (a tie counts 0.5), ``category_<c>`` (accuracy of the FLR reward of
  bank category c alone; flr/legacy only);
* rating - ``metric="pearson"``, ``p_value``, ``spearman``/``kendall`` (+ ``_ci_low``, ``_ci_high``, ``_p_value``),
  ``category_<c>`` (Pearson of category c);
* system - ``metric="pearson_elo"`` (Pearson of model mean reward vs Arena ELO over models, CI by resampling
  models), ``spearman_elo``, ``kendall_elo``, ``pearson_lc``/``spearman_lc``/``kendall_lc`` vs AlpacaEval 2 LC win
  rate (models that have one), ``n`` = models, ``n_prompts``, ``model_means`` {model: mean reward};

and ``provenance`` (the scorer's provenance - model, adapter hash, dtype, template hash, bank hash, ... - plus
``seed``, ``max_examples``, ``n_boot``, the data report and the time written).

Per-sample lines: pairwise ``{id, chosen, rejected, correct, category?, chosen_categories?, rejected_categories?}``;
rating ``{id, score, reward, category?, categories?}``; system ``{model, id, prompt_id, reward, categories?}``.
Interrupted runs resume: scores come from the scorer's cache.
"""
from __future__ import annotations

import time

import numpy as np

from . import metrics
from .results import area, write_json, write_jsonl

AREA = "reward_benchmarks"


def model_slug(spec: str) -> str:
    """File-name form of a model spec (same rule as the score cache)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in spec.replace("/", "__"))[-120:]


def result_stem(benchmark: str, tag: str, model: str) -> str:
    return f"{benchmark}__{tag}__{model_slug(model)}"


def result_path(profile: str, benchmark: str, tag: str, model: str):
    """Path of the flat JSON of one (benchmark, tag, model); the per-sample JSONL has the same stem."""
    return area(profile, AREA) / f"{result_stem(benchmark, tag, model)}.json"


def kind_of(records: list[dict]) -> str:
    if not records:
        raise ValueError("no records to score")
    r = records[0]
    if "chosen" in r:
        return "pairwise"
    if "model" in r:
        return "system"
    if "score" in r:
        return "rating"
    raise ValueError(f"record {r.get('id')!r}: not a pairwise, rating or system record (fields {sorted(r)})")


def _conv(r: dict, response: str) -> list[dict]:
    return list(r["messages"]) + [{"role": "assistant", "content": response}]


def _corr_block(prefix: str, x, y, n_boot: int, seed: int, methods=metrics.CORRELATIONS) -> dict:
    out = {}
    for m in methods:
        c = metrics.correlation_ci(x, y, m, n_boot=n_boot, seed=seed)
        key = f"{m}{prefix}"
        out.update({key: c["value"], f"{key}_ci_low": c["ci_low"], f"{key}_ci_high": c["ci_high"],
                    f"{key}_p_value": c["p_value"]})
    return out


def _score_pairwise(scorer, records, n_boot, seed, progress, desc):
    res = scorer.score_pairs(records, progress=progress, desc=desc)
    ch, rj = np.array([s["chosen"] for s in res]), np.array([s["rejected"] for s in res])
    acc = metrics.accuracy_ci(ch, rj, n_boot=n_boot, seed=seed)
    correct = metrics.pairwise_correct(ch, rj)
    flat = {"metric": "accuracy", "value": acc["value"], "ci_low": acc["ci_low"], "ci_high": acc["ci_high"],
            "n": acc["n"], "ties": acc["ties"]}
    cats = list(res[0]["chosen_detail"].get("categories", {})) if res else []
    for c in cats:
        flat[f"category_{c}"] = metrics.pairwise_accuracy([s["chosen_detail"]["categories"][c] for s in res],
                                                          [s["rejected_detail"]["categories"][c] for s in res])["value"]
    rows = []
    for r, s, ok in zip(records, res, correct):
        row = {"id": r["id"], "chosen": s["chosen"], "rejected": s["rejected"], "correct": float(ok)}
        if r.get("category"):
            row["category"] = r["category"]
        if cats:
            row["chosen_categories"] = s["chosen_detail"]["categories"]
            row["rejected_categories"] = s["rejected_detail"]["categories"]
        rows.append(row)
    return flat, rows


def _score_rating(scorer, records, n_boot, seed, progress, desc):
    res = scorer.score([_conv(r, r["response"]) for r in records], progress=progress, desc=desc)
    target, reward = np.array([r["score"] for r in records]), np.array([s["reward"] for s in res])
    c = metrics.correlation_ci(reward, target, "pearson", n_boot=n_boot, seed=seed)
    flat = {"metric": "pearson", "value": c["value"], "ci_low": c["ci_low"], "ci_high": c["ci_high"], "n": c["n"],
            "p_value": c["p_value"]}
    flat.update(_corr_block("", reward, target, n_boot, seed, methods=("spearman", "kendall")))
    cats = list(res[0].get("categories", {})) if res else []
    for cat in cats:
        flat[f"category_{cat}"] = metrics.correlation([s["categories"][cat] for s in res], target, "pearson")[0]
    rows = []
    for r, s in zip(records, res):
        row = {"id": r["id"], "score": r["score"], "reward": s["reward"]}
        if r.get("category"):
            row["category"] = r["category"]
        if cats:
            row["categories"] = s["categories"]
        rows.append(row)
    return flat, rows


def system_correlations(model_means: dict, n_boot: int = 2000, seed: int = 0, elo: dict | None = None,
                        lc: dict | None = None) -> dict:
    """Correlations of model means with Arena ELO (``*_elo``) and AlpacaEval 2 LC win rate (``*_lc``)."""
    from .data import arena_elo, lc_win_rates

    elo = arena_elo() if elo is None else elo
    lc = lc_win_rates(2) if lc is None else lc
    out = {}
    for suffix, target in (("_elo", elo), ("_lc", lc)):
        ms = [m for m in model_means if m in target]
        x, y = [model_means[m] for m in ms], [target[m] for m in ms]
        out[f"n{suffix}"] = len(ms)
        out.update(_corr_block(suffix, x, y, n_boot, seed))
    return out


def _score_system(scorer, records, n_boot, seed, progress, desc):
    res = scorer.score([_conv(r, r["response"]) for r in records], progress=progress, desc=desc)
    models = list(dict.fromkeys(r["model"] for r in records))
    by_model = {m: [s["reward"] for r, s in zip(records, res) if r["model"] == m] for m in models}
    means = {m: float(np.mean(v)) for m, v in by_model.items()}
    corr = system_correlations(means, n_boot=n_boot, seed=seed)
    flat = {"metric": "pearson_elo", "value": corr["pearson_elo"], "ci_low": corr["pearson_elo_ci_low"],
            "ci_high": corr["pearson_elo_ci_high"], "n": corr["n_elo"], "p_value": corr["pearson_elo_p_value"],
            "n_prompts": len({r["prompt_id"] for r in records}), **corr, "model_means": means}
    cats = list(res[0].get("categories", {})) if res else []
    if cats:
        from .data import arena_elo

        elo = arena_elo()
        ms = [m for m in models if m in elo]
        for cat in cats:
            cm = [np.mean([s["categories"][cat] for r, s in zip(records, res) if r["model"] == m]) for m in ms]
            flat[f"category_{cat}"] = metrics.correlation(cm, [elo[m] for m in ms], "pearson")[0]
    rows = []
    for r, s in zip(records, res):
        row = {"model": r["model"], "id": r["id"], "prompt_id": r["prompt_id"], "reward": s["reward"]}
        if cats:
            row["categories"] = s["categories"]
        rows.append(row)
    return flat, rows


def run_benchmark(scorer, records: list[dict], benchmark: str, profile: str, tag: str | None = None, *,
                  report: dict | None = None, seed: int = 0, max_examples: int | None = None, n_boot: int = 2000,
                  progress: bool = True) -> dict:
    """Score ``records`` (one benchmark) with ``scorer``; write the flat JSON and per-sample JSONL; return the flat
    record."""
    kind = kind_of(records)
    tag = tag or scorer.config.scorer
    fn = {"pairwise": _score_pairwise, "rating": _score_rating, "system": _score_system}[kind]
    t0 = time.time()
    flat, rows = fn(scorer, records, n_boot, seed, progress, f"{benchmark} / {tag}")
    prov = scorer.provenance
    model = prov.get("model") or scorer.loaded.spec
    record = {"benchmark": benchmark, "kind": kind, "scorer": scorer.config.scorer, "tag": tag, "model": model,
              "model_slug": model_slug(model), "profile": profile, **flat,
              "seconds": round(time.time() - t0, 1),
              "provenance": {**prov, "seed": seed, "max_examples": max_examples, "n_boot": n_boot,
                             "data": report or {}, "written": time.strftime("%Y-%m-%dT%H:%M:%S")}}
    path = result_path(profile, benchmark, tag, model)
    write_jsonl(path.with_suffix(".jsonl"), rows)
    write_json(path, record)
    return record


def run_suite(loaded, benchmarks: list[str], scorers: list[str], profile: str, *, max_examples: int | None = None,
              rating_examples: int | None = None, system_prompts: int | None = None, sizes: dict | None = None,
              system_models: list[str] | None = None, legacy_max_examples: int | None = 0, seed: int = 0,
              bank="paper", categories: list[str] | None = None, n_boot: int = 2000, batch_size: int = 4,
              cache="auto", progress: bool = True) -> list[dict]:
    """Notebook 03's loop: every benchmark x scorer on the same seeded subset, one result file each.

    * ``max_examples``: pairs per pairwise benchmark (and rows per rating benchmark unless ``rating_examples``);
    * ``system_prompts``: prompts per model at system level; ``system_models``: only these AlpacaEval models;
    * ``sizes``: per-benchmark overrides ``{name: n}``;
    * ``legacy_max_examples``: rows for ``legacy_repo``, a subset of the same subset (0 skips it: it costs one
      full forward per follow-up; never run at system level);
    * ``categories``: a subset of the bank's categories (None: all); ``cache``: "auto", a path or None.

    Returns the flat records.
    """
    from .data import load_benchmark, select_subset
    from .followups import load_bank
    from .scoring import ScoreConfig, Scorer

    bank = bank if not isinstance(bank, str) else load_bank(bank)
    cfg = {"batch_size": batch_size, "categories": list(categories or [])}
    made = {s: Scorer(loaded, bank, ScoreConfig(scorer=s, **cfg), cache=cache) for s in scorers
            if not (s == "legacy_repo" and legacy_max_examples == 0)}
    out = []
    for name in benchmarks:
        records, report = load_benchmark(name, max_examples=None, seed=seed)
        if report["kind"] == "system" and system_models:
            records = [r for r in records if r["model"] in set(system_models)]
        n = {"system": system_prompts, "rating": max_examples if rating_examples is None else rating_examples
             }.get(report["kind"], max_examples)
        n = (sizes or {}).get(name, n)
        key = "prompt_id" if report["kind"] == "system" else "id"
        subset = select_subset(records, n, seed, key=key)
        report = {**report, "rows_used": len(subset), "max_examples": n}
        for s, scorer in made.items():
            if s == "legacy_repo" and report["kind"] == "system":
                continue  # one full forward per follow-up x 17 models: not worth it at system level
            rows, m = subset, n
            if s == "legacy_repo" and legacy_max_examples is not None:
                m = legacy_max_examples if n is None else min(n, legacy_max_examples)
                rows = select_subset(subset, m, seed, key=key)
            out.append(run_benchmark(scorer, rows, report["benchmark"], profile, seed=seed, max_examples=m,
                                     report={**report, "rows_used": len(rows)}, n_boot=n_boot, progress=progress))
    return out

"""Scorer a vs scorer b on the same rows, from result files only (never loads a model).

The one paired-comparison path of the package: rows are matched by id in the per-sample files that
:mod:`flrlib.benchmarks` writes, and every number comes from :func:`flrlib.metrics.paired_diff` (differences) and
:func:`flrlib.metrics.metric_ci` (each scorer's own value). Notebook 03's FLR-vs-Direct table
(:func:`paired_comparison`), notebook 04's FT-FLR comparison (:func:`compare`, :func:`compare_pooled`,
:func:`write_comparison`) and notebook 07's tables all go through here. The files are found by the naming rules of
:mod:`flrlib.results` (:func:`~flrlib.results.result_path`); :func:`reward_results` lists them for
:mod:`flrlib.reporting`, which imports this module and never the other way round.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from . import metrics
from .paths import portable
from .results import (REWARD_AREA, area, number, read_json, read_jsonl, read_per_sample, result_path,
                      result_records, stamp, write_json)

AREA = REWARD_AREA


def reward_results(profile: str, tags: list[str] | None = None, benchmarks: list[str] | None = None,
                   models: list[str] | None = None) -> pd.DataFrame:
    """One row per reward-benchmark result file (flat keys; ``provenance`` dropped, ``path`` added), optionally
    only some tags, benchmarks and model specs; ``null`` numbers are NaN. Raises if there are none."""
    drop = ("provenance", "model_means", "model_mean_lengths", "followup_layout")
    df = _nulls_as_nan(pd.DataFrame([{k: v for k, v in rec.items() if k not in drop}
                                     for rec in result_records(profile, REWARD_AREA, producer="03")]))
    for col, keep in (("tag", tags), ("benchmark", benchmarks), ("model", models)):
        if keep:
            df = df[df[col].isin(keep)]
    return df.reset_index(drop=True)


def _nulls_as_nan(df: pd.DataFrame) -> pd.DataFrame:
    """``null`` in a result file is an undefined number (:mod:`flrlib.results`): NaN in a table."""
    return df.apply(lambda c: c.map(lambda v: np.nan if v is None else v) if c.dtype == object else c).infer_objects()


def _values(kind: str, rows: list[dict]) -> np.ndarray:
    return np.array([r["correct" if kind == "pairwise" else "reward"] for r in rows], dtype=float)


def model_means(rows: list[dict]) -> dict:
    """Mean reward per AlpacaEval model (system-level rows)."""
    by = {}
    for r in rows:
        by.setdefault(r["model"], []).append(number(r["reward"]))
    return {m: float(np.mean(v)) for m, v in by.items()}


# ------------------------------------------------------------------------------------------------------------------
# every tag on the same given rows (notebook 04)
# ------------------------------------------------------------------------------------------------------------------

def paired_rows(profile: str, benchmark: str, model: str, tags, ids=None) -> tuple[str, dict, list[str]]:
    """``(kind, {tag: [row, ...]}, ids)`` from the per-sample files, in the order of ``ids`` (default: the rows of
    the first tag). Every tag must hold every id - a file may hold more rows, e.g. notebook 03's larger subset."""
    flat, rows = {}, {}
    for t in tags:
        p = result_path(profile, benchmark, t, model)
        flat[t] = read_json(p, producer="04" if t == "ft_flr" else "03 or 04")
        rows[t] = {r["id"]: r for r in read_jsonl(p.with_suffix(".jsonl"))}
    ids = list(ids) if ids is not None else list(rows[tags[0]])
    for t in tags:
        missing = [i for i in ids if i not in rows[t]]
        if missing:
            raise ValueError(f"{benchmark}: results {t!r} lack {len(missing)} of the {len(ids)} compared rows "
                             f"(e.g. {missing[0]!r}); score them with the same seed and max_examples")
    kinds = {flat[t]["kind"] for t in tags}
    if len(kinds) != 1 or not kinds <= {"pairwise", "rating"}:
        raise ValueError(f"{benchmark}: compare() handles pairwise and rating benchmarks, got {sorted(kinds)}")
    return kinds.pop(), {t: [rows[t][i] for i in ids] for t in tags}, ids


def _stats(name: str, kind: str, per_tag: dict, n_boot: int, seed: int) -> dict:
    tags = list(per_tag)
    x = {t: _values(kind, per_tag[t]) for t in tags}
    y = None if kind == "pairwise" else np.array([r["score"] for r in per_tag[tags[0]]], dtype=float)
    scores = [{"benchmark": name, "tag": t, "kind": kind, **metrics.metric_ci(kind, x[t], y, n_boot, seed)}
              for t in tags]
    diffs = []
    for a, b in combinations(tags, 2):
        d = metrics.paired_diff(kind, x[a], x[b], y, n_boot=n_boot, seed=seed)
        diffs.append({"benchmark": name, "kind": kind, "a": a, "b": b, **d})
    return {"scores": scores, "differences": diffs}


def compare(profile: str, benchmark: str, model: str, tags=("ft_flr", "flr", "direct"), ids=None,
            n_boot: int = 2000, seed: int = 0) -> dict:
    """Paired comparison of several scorers (tags) on one benchmark's rows.

    Returns ``{"scores": [{benchmark, tag, kind, metric, value, ci_low, ci_high, n, adapter_hash}],
    "differences": [{benchmark, kind, a, b, metric, value_a, value_b, n, diff, ci_low, ci_high, p_value, ...}]}``
    for every pair of tags (:func:`flrlib.metrics.paired_diff`). Per-tag values are recomputed on these rows.
    """
    kind, per_tag, _ = paired_rows(profile, benchmark, model, tags, ids)
    out = _stats(benchmark, kind, per_tag, n_boot, seed)
    for sc in out["scores"]:
        sc["adapter_hash"] = read_json(result_path(profile, benchmark, sc["tag"], model))["provenance"].get("adapter_hash")
    return out


def compare_pooled(profile: str, benchmarks: list[str], model: str, tags=("ft_flr", "flr", "direct"),
                   ids: dict | None = None, n_boot: int = 2000, seed: int = 0) -> dict:
    """:func:`compare` on the pairs of several pairwise benchmarks pooled (benchmark name ``"pairwise pooled
    (k)"``): more pairs, tighter CIs than any single small subset. ``ids``: ``{benchmark: [ids]}``."""
    per_tag = {t: [] for t in tags}
    for b in benchmarks:
        kind, rows, _ = paired_rows(profile, b, model, tags, (ids or {}).get(b))
        if kind != "pairwise":
            raise ValueError(f"{b}: compare_pooled() pools pairwise benchmarks only, not {kind!r}")
        for t in tags:
            per_tag[t] += rows[t]
    return _stats(f"pairwise pooled ({len(benchmarks)})", "pairwise", per_tag, n_boot, seed)


def write_comparison(profile: str, benchmarks: list[str], model: str, ids: dict, kinds: dict,
                     tags=("ft_flr", "flr", "direct"), n_boot: int = 2000, seed: int = 0, **provenance) -> dict:
    """Notebook 04's record ``results/<profile>/feedback/comparison.json``: :func:`compare` per benchmark, plus
    :func:`compare_pooled` over the pairwise ones when there are several; ``provenance`` is stamped
    (:func:`flrlib.results.stamp`). ``kinds``: ``{benchmark: "pairwise" | "rating"}``."""
    comparisons = [compare(profile, b, model, tags, ids=ids[b], n_boot=n_boot, seed=seed) for b in benchmarks]
    pairwise = [b for b in benchmarks if kinds[b] == "pairwise"]
    if len(pairwise) > 1:  # small subsets: the pooled pairs give the tightest paired CI
        comparisons.append(compare_pooled(profile, pairwise, model, tags, ids=ids, n_boot=n_boot, seed=seed))
    scores = [s for c in comparisons for s in c["scores"]]
    record = {"model": model, "adapter_hash": next((s["adapter_hash"] for s in scores if s.get("adapter_hash")), None),
              "benchmarks": list(benchmarks), "tags": list(tags), "seed": seed, "n_boot": n_boot, "scores": scores,
              "differences": [d for c in comparisons for d in c["differences"]],
              "provenance": stamp(profile=profile, **{k: portable(v) if k == "adapter" else v
                                                      for k, v in provenance.items()})}
    write_json(area(profile, "feedback") / "comparison.json", record)
    return record


# ------------------------------------------------------------------------------------------------------------------
# a vs b over every result file of a profile (notebooks 03 and 07)
# ------------------------------------------------------------------------------------------------------------------

def paired_comparison(profile: str, a: str = "flr", b: str = "direct", n_boot: int = 2000, seed: int = 0,
                      benchmarks: list[str] | None = None, models: list[str] | None = None) -> pd.DataFrame:
    """``a`` minus ``b`` per (benchmark, model) on the rows both scored (:func:`flrlib.metrics.paired_diff`).

    Pairwise: accuracy difference, sign-flip permutation p and exact McNemar p. Rating: Pearson difference, CI over
    rows. System: Pearson-vs-ELO difference of the per-model mean rewards, CI over models. A last row per model
    pools the pairs of all pairwise benchmarks (``benchmark="pairwise (pooled)"``).
    """
    df = reward_results(profile, [a, b], benchmarks, models)
    out, pooled = [], {}
    for (bench, model), g in df.groupby(["benchmark", "model"], sort=False):
        if set(g.tag) != {a, b}:
            continue
        ra, rb = (read_per_sample(g[g.tag == t].iloc[0]["path"]) for t in (a, b))
        kind = g.iloc[0]["kind"]
        if kind == "system":
            from .data import system_targets

            elo = system_targets(bench)[0]
            ma, mb = model_means(ra), model_means(rb)
            ms = [m for m in ma if m in mb and m in elo]
            x, y, t = (np.array([d[m] for m in ms]) for d in (ma, mb, elo))
        else:
            ib = {r["id"]: r for r in rb}
            common = [r for r in ra if r["id"] in ib]
            x, y = _values(kind, common), _values(kind, [ib[r["id"]] for r in common])
            t = None if kind == "pairwise" else np.array([r["score"] for r in common], dtype=float)
            if kind == "pairwise":
                pooled.setdefault(model, [set(), [], []])
                pooled[model][0].add(bench)
                pooled[model][1] += list(x)
                pooled[model][2] += list(y)
        out.append({"benchmark": bench, "kind": kind, "model": model, "a": a, "b": b,
                    **metrics.paired_diff(kind, x, y, t, n_boot=n_boot, seed=seed)})
    for model, (benches, ca, cb) in pooled.items():
        if len(benches) > 1 and ca:
            out.append({"benchmark": "pairwise (pooled)", "kind": "pairwise", "model": model, "a": a, "b": b,
                        **metrics.paired_diff("pairwise", ca, cb, n_boot=n_boot, seed=seed)})
    cols = ["benchmark", "kind", "model", "metric", "a", "b", "value_a", "value_b", "diff", "ci_low", "ci_high",
            "p_value", "mcnemar_p", "a_only", "b_only", "n"]
    res = pd.DataFrame(out)
    return res[[c for c in cols if c in res.columns]]

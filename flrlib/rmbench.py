"""RM-Bench's metric (Liu et al., ICLR 2025), with bootstrap CIs over prompts and paired differences between
scorers (analysis: numpy only, reads result files, never a model).

What RM-Bench computes (THU-KEG/RM-Bench @ 73c52d7, ``scripts/utils.py`` ``compute_accuracy``, lines 48-112, and
the README's "how to compute the accuracy" and "Clarity on Avg Calculation"), followed here exactly:

* per prompt, the scores of the 3 chosen and the 3 rejected responses in the style order
  ``[concise, detailed_plain, detailed_markdown]``; ``acc_matrix[i][j] += 1`` "if result["score_chosen"][i] >
  result["score_rejected"][j]" - strictly greater: a tie counts as wrong (we count the ties and report them);
* ``acc_matrix /= len(results)``: a 3 x 3 matrix, rows = chosen style, columns = rejected style;
* ``hard_acc = np.sum(np.triu(acc_matrix, 1)) / 3`` (upper triangle: "chosen responses with less fancy style
  compared to rejected responses with more fancy style"), ``normal_acc = np.mean(np.diag(acc_matrix))``,
  ``easy_acc = np.sum(np.tril(acc_matrix, -1)) / 3``;
* for the total dataset, ``split_dataset_by_domain`` splits the rows by ``domain.startswith(d)`` for
  ``d in ["chat", "math", "code", "safety"]`` - so ``safety-refuse`` and ``safety-response`` are POOLED into one
  ``safety`` matrix (weighted by prompts) - and then, per domain, ``domain_avg = np.mean([hard, normal, easy])``;
  ``hard_acc`` / ``normal_acc`` / ``easy_acc`` overall = the mean over domains of the domain's value and
  ``total_avg_acc`` = the mean of the domain averages. The README: "Overall = Domain Avg = Difficulty Avg =
  (Chat + Code + Math + Safety) / 4" and "Hard = (Safety_Hard + Math_Hard + Chat_Hard + Code_Hard) / 4".

Here the domain means are over the domains PRESENT in the results (``domains`` in every summary says which); with
all four present this is RM-Bench's number, with fewer it is not comparable to its leaderboard (say so).

Per-prompt form (used for the CIs): with w_ij = 1[chosen_i > rejected_j] of one prompt, that prompt's hard score
is the mean of its 3 upper cells, and hard_acc = the mean of the prompts' hard scores (likewise normal, easy and
the average of the three), because every cell is a mean over the same prompts. So every cell and summary gets a
percentile bootstrap CI over prompts (:func:`flrlib.metrics.bootstrap_ci`); summaries over domains a stratified
bootstrap, each domain's prompts resampled on their own (:func:`flrlib.metrics.grouped_bootstrap`); and scorer A
minus scorer B on the same prompts a paired bootstrap with a sign-flip permutation p
(:func:`flrlib.metrics.paired_bootstrap`), stratified by domain over domains.
"""
from __future__ import annotations

import numpy as np

from . import metrics
from .paths import results_dir
from .results import RM_BENCH_AREA as AREA  # results/<profile>/rm_bench/<benchmark>__<tag>__<model_slug>.json(l)
from .results import ResultMissing, read_json, read_jsonl
STYLES = ("concise", "detailed_plain", "detailed_markdown")
DOMAIN_OF = {"chat": "chat", "code": "code", "math": "math", "safety-refuse": "safety", "safety-response": "safety"}
RM_DOMAINS = ("chat", "math", "code", "safety")  # split_dataset_by_domain's order
LEVELS = ("hard", "normal", "easy")
_UPPER, _DIAG, _LOWER = np.triu_indices(3, 1), np.diag_indices(3), np.tril_indices(3, -1)


def _scores(score_chosen, score_rejected) -> tuple[np.ndarray, np.ndarray]:
    c, r = np.asarray(score_chosen, dtype=float), np.asarray(score_rejected, dtype=float)
    if c.ndim != 2 or c.shape[1] != 3 or c.shape != r.shape:
        raise ValueError(f"scores must be (prompts, 3) arrays for chosen and rejected, got {c.shape} and {r.shape}")
    if np.isnan(c).any() or np.isnan(r).any():
        raise ValueError("RM-Bench scores contain NaN")
    return c, r


def wins(score_chosen, score_rejected) -> np.ndarray:
    """(prompts, 3, 3) array: 1 where chosen style i beats rejected style j strictly (RM-Bench's ``>``), else 0."""
    c, r = _scores(score_chosen, score_rejected)
    return (c[:, :, None] > r[:, None, :]).astype(float)


def tie_count(score_chosen, score_rejected) -> int:
    """Comparisons (prompt x 9 cells) where chosen and rejected scores are equal (RM-Bench counts them wrong)."""
    c, r = _scores(score_chosen, score_rejected)
    return int((c[:, :, None] == r[:, None, :]).sum())


def per_prompt(score_chosen, score_rejected) -> dict:
    """``{"hard", "normal", "easy", "avg"}``: each an array with one value per prompt (see the module docstring)."""
    w = wins(score_chosen, score_rejected)
    out = {"hard": w[:, _UPPER[0], _UPPER[1]].mean(1), "normal": w[:, _DIAG[0], _DIAG[1]].mean(1),
           "easy": w[:, _LOWER[0], _LOWER[1]].mean(1)}
    out["avg"] = (out["hard"] + out["normal"] + out["easy"]) / 3
    return out


def accuracy_matrix(score_chosen, score_rejected) -> np.ndarray:
    """RM-Bench's 3 x 3 ``acc_matrix`` (rows chosen style, columns rejected style)."""
    return wins(score_chosen, score_rejected).mean(0)


def difficulty(matrix) -> dict:
    """``{"hard_acc", "normal_acc", "easy_acc"}`` of a 3 x 3 matrix, RM-Bench's formulas."""
    m = np.asarray(matrix, dtype=float)
    return {"hard_acc": float(np.sum(np.triu(m, 1)) / 3), "normal_acc": float(np.mean(np.diag(m))),
            "easy_acc": float(np.sum(np.tril(m, -1)) / 3)}


def domain_metrics(score_chosen, score_rejected, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """One domain (or one file) as a flat dict for a result JSON.

    ``n`` (prompts), ``ties`` (equal-score comparisons, counted wrong), ``matrix`` (3 x 3), ``cell_<i><j>`` with
    ``_ci_low``/``_ci_high`` (i = chosen style, j = rejected style, 0 concise, 1 plain, 2 markdown),
    ``hard``/``normal``/``easy``/``avg`` with CIs (``avg`` = RM-Bench's domain average, mean of the three)."""
    c, r = _scores(score_chosen, score_rejected)
    w = wins(c, r)
    kw = {"n_boot": n_boot, "seed": seed, "alpha": alpha}
    out = {"n": int(len(c)), "ties": tie_count(c, r), "matrix": w.mean(0).tolist() if len(c) else None}
    for i in range(3):
        for j in range(3):
            v = w[:, i, j]
            lo, hi = metrics.bootstrap_ci(np.mean, v, **kw)
            out.update({f"cell_{i}{j}": float(v.mean()) if len(v) else float("nan"),
                        f"cell_{i}{j}_ci_low": lo, f"cell_{i}{j}_ci_high": hi})
    for key, v in per_prompt(c, r).items():
        lo, hi = metrics.bootstrap_ci(np.mean, v, **kw)
        out.update({key: float(v.mean()) if len(v) else float("nan"), f"{key}_ci_low": lo, f"{key}_ci_high": hi})
    return out


def _pool(rows_by_file: dict) -> dict:
    """``{file domain: rows}`` -> ``{RM-Bench domain: rows}`` (safety-refuse + safety-response -> safety)."""
    out: dict = {}
    for dom, rows in rows_by_file.items():
        if dom not in DOMAIN_OF:
            raise ValueError(f"unknown RM-Bench domain {dom!r}; expected one of {sorted(DOMAIN_OF)}")
        out.setdefault(DOMAIN_OF[dom], []).extend(rows)
    return {d: out[d] for d in RM_DOMAINS if d in out}


def _arrays(rows) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([r["chosen"] for r in rows], dtype=float).reshape(-1, 3),
            np.array([r["rejected"] for r in rows], dtype=float).reshape(-1, 3))


def summarise(rows_by_file: dict, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """RM-Bench's summary of one scorer from per-sample rows ``{file domain: [{"chosen": [3], "rejected": [3]}]}``.

    Returns ``{"domains": [present RM-Bench domains], "n": {domain: prompts}, "ties": {domain: n},
    "<domain>": {hard, normal, easy, avg (+ CIs), n}, "hard"/"normal"/"easy"/"total_avg" (+ ``_ci_low``,
    ``_ci_high``: stratified bootstrap over each domain's prompts), "matrix": {domain: 3 x 3}}``.
    ``total_avg`` = RM-Bench's ``total_avg_acc`` (mean of the domain averages) over the domains present."""
    pooled = _pool(rows_by_file)
    if not pooled:
        raise ValueError("no RM-Bench rows to summarise")
    kw = {"n_boot": n_boot, "seed": seed, "alpha": alpha}
    out: dict = {"domains": list(pooled), "n": {}, "ties": {}, "matrix": {}}
    per = {}
    for dom, rows in pooled.items():
        c, r = _arrays(rows)
        per[dom] = per_prompt(c, r)
        out["n"][dom], out["ties"][dom] = len(rows), tie_count(c, r)
        out["matrix"][dom] = accuracy_matrix(c, r).tolist()
        d = {}
        for key, v in per[dom].items():
            lo, hi = metrics.bootstrap_ci(np.mean, v, **kw)
            d.update({key: float(v.mean()), f"{key}_ci_low": lo, f"{key}_ci_high": hi})
        out[dom] = d
    for key, name in (("hard", "hard"), ("normal", "normal"), ("easy", "easy"), ("avg", "total_avg")):
        groups = [(per[d][key],) for d in pooled]
        lo, hi = metrics.grouped_bootstrap(lambda v, axis=-1: np.mean(v, axis=axis), groups, **kw)
        out.update({name: float(np.mean([out[d][key] for d in pooled])), f"{name}_ci_low": lo, f"{name}_ci_high": hi})
    return out


def paired(rows_a: dict, rows_b: dict, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Scorer a minus scorer b on the prompts both scored (matched by ``id``), per RM-Bench domain and over the
    domains present: ``{"domains", "n": {domain: n}, "<domain>": {level: {diff, ci_low, ci_high, p_value}},
    "<level>": {diff, ci_low, ci_high}}`` for level in hard, normal, easy, avg (over domains: ``total_avg``;
    stratified paired bootstrap, no p-value)."""
    pa, pb = _pool(rows_a), _pool(rows_b)
    kw = {"n_boot": n_boot, "seed": seed, "alpha": alpha}
    out: dict = {"domains": [], "n": {}}
    diffs = {}
    for dom in pa:
        if dom not in pb:
            continue
        b_by_id = {r["id"]: r for r in pb[dom]}
        both = [(r, b_by_id[r["id"]]) for r in pa[dom] if r["id"] in b_by_id]
        if not both:
            continue
        ppa, ppb = per_prompt(*_arrays([x for x, _ in both])), per_prompt(*_arrays([y for _, y in both]))
        out["domains"].append(dom)
        out["n"][dom] = len(both)
        out[dom] = {}
        diffs[dom] = {}
        for key in ("hard", "normal", "easy", "avg"):
            res = metrics.paired_bootstrap(ppa[key], ppb[key], **kw)
            out[dom][key] = {k: res[k] for k in ("diff", "ci_low", "ci_high", "p_value")}
            diffs[dom][key] = ppa[key] - ppb[key]
    if not diffs:
        raise ValueError("the two scorers share no RM-Bench prompts")
    for key, name in (("hard", "hard"), ("normal", "normal"), ("easy", "easy"), ("avg", "total_avg")):
        groups = [(diffs[d][key],) for d in diffs]
        lo, hi = metrics.grouped_bootstrap(lambda v, axis=-1: np.mean(v, axis=axis), groups, **kw)
        out[name] = {"diff": float(np.mean([diffs[d][key].mean() for d in diffs])), "ci_low": lo, "ci_high": hi}
    return out


# ----------------------------------------------------------------------------------------------------------
# result files (written by flrlib.benchmarks): results/<profile>/rm_bench/<benchmark>__<tag>__<model_slug>.json(l)
# ----------------------------------------------------------------------------------------------------------

def result_records(profile: str, tags: list[str] | None = None, models: list[str] | None = None) -> list[dict]:
    """The flat per-file records (``kind == "rm_bench"``) of a profile, with ``path`` added; raises if none."""
    folder = results_dir(profile) / AREA
    recs = []
    for f in sorted(folder.glob("*.json")) if folder.exists() else []:
        rec = read_json(f, producer="03")
        if rec.get("kind") != "rm_bench":
            continue
        if (tags and rec["tag"] not in tags) or (models and rec["model"] not in models):
            continue
        recs.append({**{k: v for k, v in rec.items() if k != "provenance"}, "path": str(f)})
    if not recs:
        raise ResultMissing(f"no RM-Bench results in {folder} - run notebook 03 (RM-Bench section) first.")
    return recs


def rows_by_scorer(profile: str, tags: list[str] | None = None, models: list[str] | None = None) -> dict:
    """``{(tag, model): {file domain: per-sample rows}}`` from the result files."""
    out: dict = {}
    for rec in result_records(profile, tags, models):
        rows = read_jsonl(rec["path"][: -len(".json")] + ".jsonl", producer="03")
        out.setdefault((rec["tag"], rec["model"]), {})[rec["domain"]] = rows
    return out


def common_rows(by_scorer: dict) -> dict:
    """Restrict every scorer of each model to the prompts all of that model's scorers scored (the ``length``
    scorer runs on every row; the others on the seeded subset), so that summaries compare like with like."""
    out = {}
    for model in {m for _, m in by_scorer}:
        keys = [k for k in by_scorer if k[1] == model]
        doms = set.intersection(*(set(by_scorer[k]) for k in keys))
        ids = {d: set.intersection(*({r["id"] for r in by_scorer[k][d]} for k in keys)) for d in doms}
        for k in keys:
            out[k] = {d: [r for r in by_scorer[k][d] if r["id"] in ids[d]] for d in sorted(doms) if ids[d]}
    return out

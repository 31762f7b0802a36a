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

Length control (every scorer, every file; the unit is the response's length in M's tokens, see
:func:`flrlib.chat.content_tokens`): pairwise records carry :func:`flrlib.metrics.pairwise_length_metrics` -
``acc_chosen_longer``, ``acc_chosen_shorter``, ``acc_near_equal_length`` (with ``n_*``), ``acc_length_balanced``
(mean of the longer/shorter strata; 0.5 for a pure length scorer), ``acc_length_residualised``,
``length_agreement``, ``corr_margin_log_length_ratio`` and ``acc_length_heuristic`` (the "longer response wins"
baseline on the same pairs), each with ``_ci_low``/``_ci_high``; rating records ``pearson_length`` (length alone
vs the target) and ``partial_pearson_given_length``; system records ``pearson_length_elo`` (mean response length
per model vs ELO) and ``partial_pearson_elo_given_length``.

RM-Bench (``kind="rm_bench"``, issue 24) files go to ``results/<profile>/rm_bench/`` instead: flat keys of
:func:`flrlib.rmbench.domain_metrics` (``metric="rm_bench_avg"``, ``hard``/``normal``/``easy``/``avg``, the 3 x 3
``matrix`` and every ``cell_<i><j>`` with CIs, ``ties``), per-sample ``{id, domain, subset, chosen: [3 scores],
rejected: [3], chosen_length: [3], rejected_length: [3], chosen_markdown: [3 x {header, list, bold}],
rejected_markdown}``, plus one ``summary__<tag>__<model_slug>.json`` per scorer (:func:`write_rm_bench_summaries`).
Pairwise records also carry ``acc_style_controlled`` (+ CI, ``style_beta``: length and markdown regressed out,
:func:`flrlib.metrics.style_controlled_accuracy`) and their per-sample lines ``chosen_markdown`` /
``rejected_markdown`` (Chatbot Arena's counts, :mod:`flrlib.style`).

Per-sample lines: pairwise ``{id, chosen, rejected, correct, chosen_length, rejected_length, category?,
chosen_categories?, rejected_categories?, chosen_followups?, rejected_followups?}``; rating ``{id, score, reward,
length, category?, categories?, followups?}``; system ``{model, id, prompt_id, reward, length, categories?,
followups?}``. ``*followups`` are the per-follow-up values (mean token log-prob; flr and legacy_repo) in bank order,
described by the record's ``followup_layout`` (``[[category, polarity], ...]``), so bank ablations run from the
result files (:func:`flrlib.metrics.bank_size_ablation`). Interrupted runs resume: scores come from the scorer's
cache. The ``length`` scorer runs on every row of a benchmark (it needs no forward pass).
"""
from __future__ import annotations

import time

import numpy as np

from . import metrics
from .results import area, stamp, write_json, write_jsonl
# the naming rules of result files live in flrlib.results (the analysis modules read them from there)
from .results import REWARD_AREA as AREA, model_slug, result_path, result_stem  # noqa: F401


def kind_of(records: list[dict]) -> str:
    if not records:
        raise ValueError("no records to score")
    r = records[0]
    if "chosen" in r:
        return "rm_bench" if isinstance(r["chosen"], list) else "pairwise"  # rm_bench: 3 + 3 styled responses
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


def _lengths(scorer, texts) -> np.ndarray:
    from .chat import content_tokens

    return np.array(content_tokens(scorer.tokenizer, texts), dtype=float)


def _values(detail: dict) -> list[float]:
    return [round(float(v), 6) for v in detail["followups"]]


def _score_pairwise(scorer, records, n_boot, seed, progress, desc):
    res = scorer.score_pairs(records, progress=progress, desc=desc)
    ch, rj = np.array([s["chosen"] for s in res]), np.array([s["rejected"] for s in res])
    lc, lr = _lengths(scorer, [r["chosen"] for r in records]), _lengths(scorer, [r["rejected"] for r in records])
    acc = metrics.accuracy_ci(ch, rj, n_boot=n_boot, seed=seed)
    correct = metrics.pairwise_correct(ch, rj)
    flat = {"metric": "accuracy", "value": acc["value"], "ci_low": acc["ci_low"], "ci_high": acc["ci_high"],
            "n": acc["n"], "ties": acc["ties"]}
    lm = metrics.pairwise_length_metrics(ch, rj, lc, lr, n_boot=n_boot, seed=seed)
    flat.update({k: v for k, v in lm.items() if k not in ("n", "ties") and not k.startswith("acc_ci") and k != "acc"})
    md_c, md_r = _markdown([r["chosen"] for r in records]), _markdown([r["rejected"] for r in records])
    if len(records) and (lc > 0).all() and (lr > 0).all():  # style control (issue 24): length + markdown
        sc = metrics.style_controlled_accuracy(ch, rj, lc, lr, [_md_vec(m) for m in md_c], [_md_vec(m) for m in md_r],
                                               n_boot=n_boot, seed=seed)
        flat.update(acc_style_controlled=sc["value"], acc_style_controlled_ci_low=sc["ci_low"],
                    acc_style_controlled_ci_high=sc["ci_high"], style_beta=sc["beta"],
                    ties_style_controlled=sc["ties"])
    cats = list(res[0]["chosen_detail"].get("categories", {})) if res else []
    for c in cats:
        flat[f"category_{c}"] = metrics.pairwise_accuracy([s["chosen_detail"]["categories"][c] for s in res],
                                                          [s["rejected_detail"]["categories"][c] for s in res])["value"]
    rows = []
    for r, s, ok, a, b, mc, mr in zip(records, res, correct, lc, lr, md_c, md_r):
        row = {"id": r["id"], "chosen": s["chosen"], "rejected": s["rejected"], "correct": float(ok),
               "chosen_length": int(a), "rejected_length": int(b), "chosen_markdown": mc, "rejected_markdown": mr}
        if r.get("category"):
            row["category"] = r["category"]
        if cats:
            row["chosen_categories"] = s["chosen_detail"]["categories"]
            row["rejected_categories"] = s["rejected_detail"]["categories"]
            row["chosen_followups"] = _values(s["chosen_detail"])
            row["rejected_followups"] = _values(s["rejected_detail"])
        rows.append(row)
    return flat, rows


def _markdown(texts) -> list[dict]:
    from .style import markdown_counts

    return [markdown_counts(t) for t in texts]


def _md_vec(m: dict) -> list[int]:
    from .style import FEATURES

    return [m[f] for f in FEATURES]


def _score_rm_bench(scorer, records, n_boot, seed, progress, desc):
    """RM-Bench (issue 24): the 3 chosen and 3 rejected styled responses of each prompt, 6 conversations per prompt;
    the metric of :func:`flrlib.rmbench.domain_metrics` (RM-Bench's ``compute_accuracy``, ``>`` only)."""
    from . import rmbench

    convs = [_conv(r, t) for r in records for side in ("chosen", "rejected") for t in r[side]]
    res = scorer.score(convs, progress=progress, desc=desc)
    texts = [t for r in records for side in ("chosen", "rejected") for t in r[side]]
    length, md = _lengths(scorer, texts), _markdown(texts)
    sc = np.array([s["reward"] for s in res], dtype=float).reshape(-1, 2, 3)
    flat = rmbench.domain_metrics(sc[:, 0], sc[:, 1], n_boot=n_boot, seed=seed)
    flat = {"metric": "rm_bench_avg", "value": flat["avg"], "ci_low": flat["avg_ci_low"],
            "ci_high": flat["avg_ci_high"], "domain": records[0].get("domain"),
            "styles": list(rmbench.STYLES), "matrix_axes": "rows: chosen style, columns: rejected style", **flat}
    rows = []
    for k, r in enumerate(records):
        a, b = slice(6 * k, 6 * k + 3), slice(6 * k + 3, 6 * k + 6)
        rows.append({"id": r["id"], "domain": r.get("domain"), "subset": r.get("subset"),
                     "chosen": sc[k, 0].tolist(), "rejected": sc[k, 1].tolist(),
                     "chosen_length": [int(x) for x in length[a]], "rejected_length": [int(x) for x in length[b]],
                     "chosen_markdown": md[a], "rejected_markdown": md[b]})
    return flat, rows


def _score_rating(scorer, records, n_boot, seed, progress, desc):
    res = scorer.score([_conv(r, r["response"]) for r in records], progress=progress, desc=desc)
    target, reward = np.array([r["score"] for r in records]), np.array([s["reward"] for s in res])
    length = _lengths(scorer, [r["response"] for r in records])
    c = metrics.correlation_ci(reward, target, "pearson", n_boot=n_boot, seed=seed)
    flat = {"metric": "pearson", "value": c["value"], "ci_low": c["ci_low"], "ci_high": c["ci_high"], "n": c["n"],
            "p_value": c["p_value"]}
    flat.update(_corr_block("", reward, target, n_boot, seed, methods=("spearman", "kendall")))
    lm = metrics.rating_length_metrics(reward, target, length, n_boot=n_boot, seed=seed)
    flat.update({k: v for k, v in lm.items() if "length" in k})
    cats = list(res[0].get("categories", {})) if res else []
    for cat in cats:
        flat[f"category_{cat}"] = metrics.correlation([s["categories"][cat] for s in res], target, "pearson")[0]
    rows = []
    for r, s, n in zip(records, res, length):
        row = {"id": r["id"], "score": r["score"], "reward": s["reward"], "length": int(n)}
        if r.get("category"):
            row["category"] = r["category"]
        if cats:
            row["categories"] = s["categories"]
            row["followups"] = _values(s)
        rows.append(row)
    return flat, rows


def system_correlations(model_means: dict, n_boot: int = 2000, seed: int = 0, elo: dict | None = None,
                        lc: dict | None = None) -> dict:
    """Correlations of model means with Arena ELO (``*_elo``) and AlpacaEval 2 LC win rate (``*_lc``); the
    targets default to AlpacaEval's (:func:`flrlib.data.system_targets`)."""
    from .data import system_targets

    if elo is None or lc is None:
        d_elo, d_lc = system_targets("alpaca_eval_system")
        elo, lc = (d_elo if elo is None else elo), (d_lc if lc is None else lc)
    out = {}
    for suffix, target in (("_elo", elo), ("_lc", lc)):
        ms = [m for m in model_means if m in target]
        x, y = [model_means[m] for m in ms], [target[m] for m in ms]
        out[f"n{suffix}"] = len(ms)
        out.update(_corr_block(suffix, x, y, n_boot, seed))
    return out


def _score_system(scorer, records, n_boot, seed, progress, desc, benchmark="alpaca_eval_system"):
    from .data import system_targets

    elo, lc = system_targets(benchmark)
    res = scorer.score([_conv(r, r["response"]) for r in records], progress=progress, desc=desc)
    length = _lengths(scorer, [r["response"] for r in records])
    models = list(dict.fromkeys(r["model"] for r in records))
    by_model = {m: [s["reward"] for r, s in zip(records, res) if r["model"] == m] for m in models}
    means = {m: float(np.mean(v)) for m, v in by_model.items()}
    mean_len = {m: float(np.mean([n for r, n in zip(records, length) if r["model"] == m])) for m in models}
    corr = system_correlations(means, n_boot=n_boot, seed=seed, elo=elo, lc=lc)
    flat = {"metric": "pearson_elo", "value": corr["pearson_elo"], "ci_low": corr["pearson_elo_ci_low"],
            "ci_high": corr["pearson_elo_ci_high"], "n": corr["n_elo"], "p_value": corr["pearson_elo_p_value"],
            "n_prompts": len({r["prompt_id"] for r in records}), **corr, "model_means": means}
    lm = metrics.system_length_metrics(means, mean_len, elo, "_elo", n_boot=n_boot, seed=seed)
    flat.update({k: v for k, v in lm.items() if "length" in k}, model_mean_lengths=mean_len)
    cats = list(res[0].get("categories", {})) if res else []
    if cats:
        ms = [m for m in models if m in elo]
        for cat in cats:
            cm = [np.mean([s["categories"][cat] for r, s in zip(records, res) if r["model"] == m]) for m in ms]
            flat[f"category_{cat}"] = metrics.correlation(cm, [elo[m] for m in ms], "pearson")[0]
    rows = []
    for r, s, n in zip(records, res, length):
        row = {"model": r["model"], "id": r["id"], "prompt_id": r["prompt_id"], "reward": s["reward"],
               "length": int(n)}
        if cats:
            row["categories"] = s["categories"]
            row["followups"] = _values(s)
        rows.append(row)
    return flat, rows


def run_benchmark(scorer, records: list[dict], benchmark: str, profile: str, tag: str | None = None, *,
                  report: dict | None = None, seed: int = 0, max_examples: int | None = None, n_boot: int = 2000,
                  progress: bool = True) -> dict:
    """Score ``records`` (one benchmark) with ``scorer``; write the flat JSON and per-sample JSONL; return the flat
    record."""
    kind = kind_of(records)
    tag = tag or scorer.config.scorer
    fn = {"pairwise": _score_pairwise, "rating": _score_rating, "system": _score_system,
          "rm_bench": _score_rm_bench}[kind]
    t0 = time.time()
    extra = {"benchmark": benchmark} if kind == "system" else {}  # which systems' ELO (AlpacaEval or WildBench)
    flat, rows = fn(scorer, records, n_boot, seed, progress, f"{benchmark} / {tag}", **extra)
    prov = scorer.provenance
    model = prov.get("model") or scorer.loaded.spec
    layout = [[c, p] for c, p, _ in scorer.bank.items()] if scorer.bank is not None else None
    record = {"benchmark": benchmark, "kind": kind, "scorer": scorer.config.scorer, "tag": tag, "model": model,
              "model_slug": model_slug(model), "profile": profile, **flat,
              "length_unit": "tokens of M (response content, no special tokens)",
              **({"followup_layout": layout} if layout else {}),
              "seconds": round(time.time() - t0, 1),
              "provenance": stamp(**prov, seed=seed, max_examples=max_examples, n_boot=n_boot, data=report or {})}
    path = result_path(profile, benchmark, tag, model, kind)
    write_jsonl(path.with_suffix(".jsonl"), rows)
    write_json(path, record)
    return record


class SuiteResult(list):
    """The flat records of :func:`run_suite`, plus ``skipped``: ``[{"benchmark", "reason"}]``."""

    def __init__(self, *a):
        super().__init__(*a)
        self.skipped: list[dict] = []


def _skip_path(profile: str, benchmark: str):
    return area(profile, AREA) / "skipped" / f"{model_slug(benchmark)}.json"


def _skip(profile: str, benchmark: str, reason: str) -> dict:
    """Record (print and write) a benchmark that cannot be run here."""
    print(f"skipped {benchmark}: {reason}")
    write_json(_skip_path(profile, benchmark), {"benchmark": benchmark, "reason": reason,
                                                "written": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return {"benchmark": benchmark, "reason": reason}


def run_suite(loaded, benchmarks: list[str], scorers: list[str] | dict, profile: str, *, max_examples: int | None = None,
              rating_examples: int | None = None, system_prompts: int | None = None, sizes: dict | None = None,
              system_models: list[str] | None = None, legacy_max_examples: int | None = 0, seed: int = 0,
              bank="paper", categories: list[str] | None = None, n_boot: int = 2000, batch_size: int = 4,
              cache="auto", progress: bool = True, rm_bench_prompts: int | None = None) -> list[dict]:
    """Notebook 03's loop: every benchmark x scorer on the same seeded subset, one result file each.

    ``scorers``: scorer names, each built on ``loaded`` with this call's bank, categories and batch size; or ready
    :class:`~flrlib.scoring.Scorer` objects by tag, ``{"ft_flr": scorer}`` (notebook 04: FT-FLR on RM-Bench; then
    ``loaded``, ``bank``, ``categories``, ``batch_size`` and ``cache`` are not used).
    * ``max_examples``: pairs per pairwise benchmark (and rows per rating benchmark unless ``rating_examples``);
    * ``system_prompts``: prompts per model at system level; ``system_models``: only these AlpacaEval models;
    * ``sizes``: per-benchmark overrides ``{name: n}``;
    * ``length`` (if in ``scorers``) scores every row of each benchmark, not the subset: it needs no forward pass;
    * ``legacy_max_examples``: rows for ``legacy_repo``, a subset of the same subset (0 skips it: it costs one
      full forward per follow-up; never run at system level);
    * ``categories``: a subset of the bank's categories (None: all); ``cache``: "auto", a path or None.
    * ``rm_bench_prompts``: prompts per RM-Bench domain file (``rm_bench_*``; None: ``max_examples``); each
      scorer's RM-Bench summary over the domains it scored is written to
      ``results/<profile>/rm_bench/summary__<tag>__<model_slug>.json`` (:func:`flrlib.rmbench.summarise`).

    A benchmark that cannot be had here (:class:`~flrlib.data.DataMissing`: Hub-only while offline, a failed
    download, ...) is skipped with its reason - printed, written to
    ``results/<profile>/reward_benchmarks/skipped/<benchmark>.json`` (``{benchmark, reason, written}``; removed
    when the benchmark later runs) and listed in the result's ``skipped`` - and the rest still run.

    Returns the flat records (a list; ``.skipped`` holds ``{"benchmark", "reason"}`` per skipped benchmark).
    """
    from .data import DataMissing, load_benchmark, select_subset
    from .followups import load_bank
    from .scoring import ScoreConfig, Scorer

    if isinstance(scorers, dict):
        made = dict(scorers)
    else:
        bank = bank if not isinstance(bank, str) else load_bank(bank)
        cfg = {"batch_size": batch_size, "categories": list(categories or [])}
        made = {s: Scorer(loaded, bank, ScoreConfig(scorer=s, **cfg), cache=cache) for s in scorers
                if not (s == "legacy_repo" and legacy_max_examples == 0)}
    out = SuiteResult()
    for name in benchmarks:
        try:
            records, report = load_benchmark(name, max_examples=None, seed=seed)
        except DataMissing as e:
            out.skipped.append(_skip(profile, name, str(e)))
            continue
        _skip_path(profile, name).unlink(missing_ok=True)
        if report["kind"] == "system" and system_models:
            records = [r for r in records if r["model"] in set(system_models)]
        n = {"system": system_prompts, "rating": max_examples if rating_examples is None else rating_examples,
             "rm_bench": max_examples if rm_bench_prompts is None else rm_bench_prompts}.get(report["kind"], max_examples)
        n = (sizes or {}).get(name, n)
        key = "prompt_id" if report["kind"] == "system" else "id"
        subset = select_subset(records, n, seed, key=key)
        report = {**report, "rows_used": len(subset), "max_examples": n}
        for s, scorer in made.items():
            if s == "legacy_repo" and report["kind"] == "system":
                continue  # one full forward per follow-up x 17 models: not worth it at system level
            rows, m = subset, n
            if s == "length":  # no forward pass: every row of the benchmark
                rows, m = records, None
            if s == "legacy_repo" and legacy_max_examples is not None:
                m = legacy_max_examples if n is None else min(n, legacy_max_examples)
                rows = select_subset(subset, m, seed, key=key)
            out.append(run_benchmark(scorer, rows, report["benchmark"], profile, tag=s, seed=seed, max_examples=m,
                                     report={**report, "rows_used": len(rows)}, n_boot=n_boot, progress=progress))
    write_rm_bench_summaries(profile, [r for r in out if r["kind"] == "rm_bench"], n_boot=n_boot, seed=seed)
    write_rewardbench_results(profile, [r for r in out if r["benchmark"] == "rewardbench"], n_boot=n_boot, seed=seed)
    return out


def write_rewardbench_results(profile: str, records: list[dict], n_boot: int = 2000, seed: int = 0) -> list:
    """For each RewardBench result of ``records`` (flat records of benchmark ``rewardbench``), from its per-sample
    file: ``results/<profile>/rewardbench/<tag>__<model_slug>.json`` in RewardBench's own results shape
    (:func:`flrlib.rewardbench.results_json`, plus ``provenance``) and ``sections__<tag>__<model_slug>.json`` (the
    section scores and score with CIs, :func:`flrlib.rewardbench.summarise`). Returns the paths written."""
    from . import rewardbench
    from .results import read_jsonl

    paths = []
    for rec in records:
        rows = read_jsonl(result_path(profile, rec["benchmark"], rec["tag"], rec["model"]).with_suffix(".jsonl"))
        stem = f"{rec['tag']}__{model_slug(rec['model'])}"
        prov = stamp(profile=profile, seed=seed, n_boot=n_boot, scorer=rec["scorer"], tag=rec["tag"],
                     rows=len(rows), note="a tie counts as wrong here, as in RewardBench's run_rm.py")
        shape = rewardbench.results_json(rows, rec["model"], f"flrlib {rec['tag']}", "tokenizer")
        paths.append(write_json(area(profile, rewardbench.AREA) / f"{stem}.json", {**shape, "provenance": prov}))
        summ = {"kind": "rewardbench_sections", "tag": rec["tag"], "model": rec["model"], "profile": profile,
                **rewardbench.summarise(rows, n_boot=n_boot, seed=seed), "provenance": prov}
        paths.append(write_json(area(profile, rewardbench.AREA) / f"sections__{stem}.json", summ))
    return paths


def write_rm_bench_summaries(profile: str, records: list[dict], n_boot: int = 2000, seed: int = 0) -> list:
    """One RM-Bench summary per (tag, model) of ``records`` (flat rm_bench records just written): RM-Bench's
    hard / normal / easy / total average over the domains present, with CIs (:func:`flrlib.rmbench.summarise`),
    at ``results/<profile>/rm_bench/summary__<tag>__<model_slug>.json``. Returns the paths written."""
    from . import rmbench
    from .results import read_jsonl

    paths = []
    for tag, model in dict.fromkeys((r["tag"], r["model"]) for r in records):
        rows = {}
        for f in sorted(area(profile, rmbench.AREA).glob(f"*__{tag}__{model_slug(model)}.jsonl")):
            if f.name.startswith("summary__"):
                continue
            per = read_jsonl(f)
            if per:
                rows[per[0]["domain"]] = per
        s = rmbench.summarise(rows, n_boot=n_boot, seed=seed)
        rec = {"kind": "rm_bench_summary", "tag": tag, "model": model, "model_slug": model_slug(model),
               "profile": profile, **s,
               "note": "means over the RM-Bench domains present (" + ", ".join(s["domains"]) + "); RM-Bench's "
                       "leaderboard averages chat, math, code and safety" + ("" if len(s["domains"]) == 4 else
                                                                             ": NOT comparable with it"),
               "provenance": stamp(profile=profile, seed=seed, n_boot=n_boot,
                                   files=sorted(f"{d}: {len(v)} prompts" for d, v in rows.items()))}
        paths.append(write_json(area(profile, rmbench.AREA) / f"summary__{tag}__{model_slug(model)}.json", rec))
    return paths

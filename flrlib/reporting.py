"""Tables and figures from result files only (never loads a model).

Reward benchmarks (notebook 03; also the FT-FLR rows of notebook 04): reads
``results/<profile>/reward_benchmarks/*.json`` / ``*.jsonl`` written by :mod:`flrlib.benchmarks`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import metrics
from .paired import model_means, paired_comparison, reward_results  # noqa: F401 - paired_comparison: FLR-vs-Direct
from .paths import results_dir
from .results import REWARD_AREA, ResultMissing, number, read_json, read_jsonl, read_per_sample  # noqa: F401

_META = ["benchmark", "kind", "scorer", "tag", "model", "metric", "value", "ci_low", "ci_high", "n"]


def per_sample(path_json: str) -> list[dict]:
    """Per-sample rows beside a result JSON (:func:`flrlib.results.read_per_sample`)."""
    return read_per_sample(path_json, producer="03")


def _cell(v, lo, hi) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    if lo is None or not np.isfinite(lo):
        return f"{v:.3f}"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def _group_average(paths: list[str], kind: str, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean over benchmarks of the metric, with a stratified bootstrap CI (each benchmark resampled on its own)."""
    groups = []
    for p in paths:
        rows = per_sample(p)
        if kind == "pairwise":
            groups.append((np.array([r["correct"] for r in rows]),))
        else:
            groups.append((np.array([r["reward"] for r in rows], float), np.array([r["score"] for r in rows], float)))
    fn = (lambda c, axis=-1: np.mean(c, axis=axis)) if kind == "pairwise" else metrics.vector_pearson
    return metrics.grouped_bootstrap(fn, groups, n_boot=n_boot, seed=seed)


def reward_table(profile: str, tags: list[str] | None = None, n_boot: int = 2000, seed: int = 0,
                 numeric: bool = False, benchmarks: list[str] | None = None, models: list[str] | None = None
                 ) -> pd.DataFrame:
    """Table 3 analogue: rows = (tag, model), columns = benchmarks (pairwise accuracy, rating Pearson, system
    Pearson vs ELO) plus ``pairwise avg`` and ``rating avg`` (stratified bootstrap CI). Cells "value [lo, hi]";
    ``numeric=True`` returns the values only."""
    df = reward_results(profile, tags, benchmarks, models)
    order = {"pairwise": 0, "rating": 1, "system": 2}
    benches = sorted(df["benchmark"].unique(), key=lambda b: (order[df[df.benchmark == b]["kind"].iloc[0]], b))
    out = []
    for (tag, model), g in df.groupby(["tag", "model"], sort=False):
        row = {"scorer": tag, "model": model}
        for b in benches:
            hit = g[g.benchmark == b]
            if len(hit):
                h = hit.iloc[0]
                row[b] = h["value"] if numeric else _cell(h["value"], h["ci_low"], h["ci_high"])
        for kind in ("pairwise", "rating"):
            sub = g[g.kind == kind]
            if len(sub):
                v = float(np.nanmean(sub["value"]))
                lo, hi = _group_average(list(sub["path"]), kind, n_boot, seed) if len(sub) else (np.nan, np.nan)
                row[f"{kind} avg"] = v if numeric else _cell(v, lo, hi)
        out.append(row)
    return pd.DataFrame(out)


def reward_long(profile: str, tags: list[str] | None = None, benchmarks: list[str] | None = None,
                models: list[str] | None = None) -> pd.DataFrame:
    """Long form for plots: benchmark, kind, tag, model, metric, value, ci_low, ci_high, n."""
    df = reward_results(profile, tags, benchmarks, models)
    return df[[c for c in _META if c in df.columns]]


def category_table(profile: str, tag: str = "flr", benchmarks: list[str] | None = None,
                   models: list[str] | None = None) -> pd.DataFrame:
    """Per-category metric of one tag: rows = (benchmark, model), columns = follow-up categories."""
    df = reward_results(profile, [tag], benchmarks, models)
    cols = [c for c in df.columns if c.startswith("category_")]
    t = df.set_index(["benchmark", "model"])[["metric", "value"] + cols]
    return t.rename(columns={c: c[len("category_"):] for c in cols})


def system_points(profile: str, tag: str = "flr", model: str | None = None) -> pd.DataFrame:
    """Per system of the (first) system-level result: mean reward (``tag``), Arena ELO and the AlpacaEval 2
    leaderboard's LC win rate (its ``length_controlled_v1`` values from the leaderboard CSV; NaN when absent, e.g.
    for WildBench's systems)."""
    from .data import system_targets

    df = reward_results(profile, [tag])
    df = df[df.kind == "system"]
    if model is not None:
        df = df[df.model == model]
    if not len(df):
        raise ResultMissing(f"no system-level result for tag {tag!r} in profile {profile!r} - run notebook 03 first.")
    means = model_means(per_sample(df.iloc[0]["path"]))
    elo, lc = system_targets(df.iloc[0]["benchmark"])
    return pd.DataFrame([{"system": m, "mean_reward": v, "elo": elo.get(m, np.nan), "lc_win_rate": lc.get(m, np.nan)}
                         for m, v in means.items()])


def plot_reward_benchmarks(profile: str, tags: list[str] | None = None, benchmarks: list[str] | None = None,
                           model: str | None = None):
    """Bar chart: metric per benchmark with 95 % CIs, one bar per tag (n in the legend), for one model M."""
    import matplotlib.pyplot as plt

    df = reward_long(profile, tags, benchmarks, [model] if model else None)
    model = model or df["model"].iloc[0]
    df = df[df.model == model]
    benches = list(dict.fromkeys(df.sort_values(["kind", "benchmark"])["benchmark"]))
    tag_list = list(dict.fromkeys(df["tag"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(benches) * max(1, len(tag_list)) / 2 + 3), 4))
    width = 0.8 / max(1, len(tag_list))
    for k, tag in enumerate(tag_list):
        sub = df[df.tag == tag].set_index("benchmark")
        xs, vals, lo, hi = [], [], [], []
        for i, b in enumerate(benches):
            if b in sub.index:
                r = sub.loc[b] if isinstance(sub.loc[b], pd.Series) else sub.loc[b].iloc[0]
                xs.append(i + (k - (len(tag_list) - 1) / 2) * width)
                vals.append(r["value"])
                lo.append(r["value"] - r["ci_low"] if np.isfinite(r["ci_low"]) else 0)
                hi.append(r["ci_high"] - r["value"] if np.isfinite(r["ci_high"]) else 0)
        ns = sorted(set(int(n) for n in sub["n"]))
        ax.bar(xs, vals, width, yerr=[lo, hi], capsize=3, label=f"{tag} (n={'/'.join(map(str, ns))})")
    kinds = df.drop_duplicates("benchmark").set_index("benchmark")["kind"]
    ax.set_xticks(range(len(benches)))
    unit = {"pairwise": "accuracy", "rating": "Pearson r", "system": "r vs Arena ELO"}
    ax.set_xticklabels([f"{b}\n({unit[kinds[b]]})" for b in benches], rotation=30, ha="right", fontsize=8)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("value with 95 % CI")
    ax.set_title(f"Reward benchmarks · {profile} · M = {model}\n(dashed: chance accuracy 0.5)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_system_scatter(profile: str, tag: str = "flr", target: str = "elo", model: str | None = None):
    """Scatter of model mean reward vs Arena ELO (or the leaderboard's ``lc_win_rate``) with Pearson/Spearman/Kendall
    in the title."""
    import matplotlib.pyplot as plt

    pts = system_points(profile, tag, model).dropna(subset=[target])
    corr = {m: metrics.correlation(pts["mean_reward"], pts[target], m)[0] for m in metrics.CORRELATIONS}
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.scatter(pts[target], pts["mean_reward"], label=f"{tag}: {len(pts)} models")
    for _, r in pts.iterrows():
        ax.annotate(r["system"], (r[target], r["mean_reward"]), fontsize=6, alpha=0.8)
    ax.set_xlabel("Chatbot Arena ELO (2024-06-07)" if target == "elo"
                  else "AlpacaEval 2 leaderboard LC win rate (%, length_controlled_v1)")
    ax.set_ylabel(f"mean {tag} reward over prompts")
    ax.set_title(f"System level ({profile}): r={corr['pearson']:.2f}, rho={corr['spearman']:.2f}, "
                 f"tau={corr['kendall']:.2f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------------------------
# Length control: is a reward more than a preference for longer responses? (from the per-sample lengths)
# ------------------------------------------------------------------------------------------------------------------

LENGTH_COLUMNS = [("acc", "raw accuracy"), ("acc_length_balanced", "length-balanced"),
                  ("acc_chosen_longer", "chosen longer"), ("acc_chosen_shorter", "chosen shorter"),
                  ("acc_near_equal_length", "near-equal length"), ("acc_length_residualised", "length-residualised"),
                  ("length_agreement", "prefers the longer")]


def _common_pairwise(profile: str, tags, models) -> dict:
    """``{(benchmark, model): {tag: [per-sample rows on the ids every tag scored]}}`` for the pairwise results whose
    per-sample files carry lengths. The ``length`` scorer runs on every row; restricting to the common ids puts
    every scorer on the same pairs."""
    df = reward_results(profile, tags, None, models)
    out = {}
    for (bench, model), g in df[df.kind == "pairwise"].groupby(["benchmark", "model"], sort=True):
        per_tag = {t: per_sample(g[g.tag == t].iloc[0]["path"]) for t in dict.fromkeys(g.tag)}
        per_tag = {t: rows for t, rows in per_tag.items() if rows and "chosen_length" in rows[0]}
        if not per_tag:
            continue
        common = set.intersection(*({r["id"] for r in rows} for rows in per_tag.values()))
        out[(bench, model)] = {t: [r for r in rows if r["id"] in common] for t, rows in per_tag.items()}
    return out


def _length_arrays(rows):
    return (np.array([r["chosen"] for r in rows], float), np.array([r["rejected"] for r in rows], float),
            np.array([r["chosen_length"] for r in rows], float), np.array([r["rejected_length"] for r in rows], float))


def length_table(profile: str, tags: list[str] | None = None, models: list[str] | None = None, n_boot: int = 2000,
                 seed: int = 0, threshold: float = 0.15, numeric: bool = False) -> pd.DataFrame:
    """Pairwise accuracy with length controlled (:func:`flrlib.metrics.pairwise_length_metrics`), one row per
    (benchmark, scorer) on the pairs every scorer scored, plus ``pairwise (pooled)`` rows over all pairwise
    benchmarks. Lengths are M's tokens. Cells "value [lo, hi]" (strata with their n); ``numeric=True`` gives the
    values, ``*_ci_low``/``*_ci_high`` and ``n_*`` columns instead."""
    groups = _common_pairwise(profile, tags, models)
    if not groups:
        raise ResultMissing(f"no pairwise results with per-sample lengths in profile {profile!r} - run notebook 03.")
    pooled: dict = {}
    entries = []
    for (bench, model), per_tag in groups.items():
        for tag, rows in per_tag.items():
            entries.append((bench, model, tag, rows))
            pooled.setdefault((model, tag), []).extend(rows)
    n_bench = {m: len({b for b, mm in groups if mm == m}) for _, m in groups}
    entries += [("pairwise (pooled)", m, t, rows) for (m, t), rows in pooled.items() if n_bench[m] > 1]
    out = []
    for bench, model, tag, rows in entries:
        lm = metrics.pairwise_length_metrics(*_length_arrays(rows), threshold=threshold, n_boot=n_boot, seed=seed)
        row = {"benchmark": bench, "scorer": tag, "model": model, "n": lm["n"]}
        for key, label in LENGTH_COLUMNS:
            if numeric:
                row.update({key: lm[key], f"{key}_ci_low": lm[f"{key}_ci_low"], f"{key}_ci_high": lm[f"{key}_ci_high"]})
            else:
                cell = _cell(lm[key], lm[f"{key}_ci_low"], lm[f"{key}_ci_high"])
                n_key = {"acc_chosen_longer": "n_chosen_longer", "acc_chosen_shorter": "n_chosen_shorter",
                         "acc_near_equal_length": "n_near_equal_length"}.get(key)
                row[label] = f"{cell} (n {lm[n_key]})" if n_key else cell
        if numeric:
            row.update({k: lm[k] for k in ("n_chosen_longer", "n_chosen_shorter", "n_near_equal_length",
                                           "corr_margin_log_length_ratio")})
        if rows and all("chosen_markdown" in r for r in rows):  # issue 24: length and markdown regressed out
            md = [[[r[f"{side}_markdown"][k] for k in ("header", "list", "bold")] for r in rows]
                  for side in ("chosen", "rejected")]
            sc = metrics.style_controlled_accuracy(*_length_arrays(rows), md[0], md[1], n_boot=n_boot, seed=seed)
            if numeric:
                row.update(acc_style_controlled=sc["value"], acc_style_controlled_ci_low=sc["ci_low"],
                           acc_style_controlled_ci_high=sc["ci_high"])
            else:
                row["style-controlled"] = _cell(sc["value"], sc["ci_low"], sc["ci_high"])
        out.append(row)
    return pd.DataFrame(out)


def length_paired_table(profile: str, a: str = "flr", b: str = "direct", models: list[str] | None = None,
                        n_boot: int = 2000, seed: int = 0, threshold: float = 0.15) -> pd.DataFrame:
    """``a`` minus ``b`` on length-balanced accuracy (:func:`flrlib.metrics.paired_length_balanced`: joint
    bootstrap CI over pairs, within-pair permutation p) per pairwise benchmark and pooled, on the pairs both scored."""
    groups = _common_pairwise(profile, [a, b], models)
    out, pooled = [], {}
    for (bench, model), per_tag in groups.items():
        if set(per_tag) != {a, b}:
            continue
        ib = {r["id"]: r for r in per_tag[b]}
        rows = [(r, ib[r["id"]]) for r in per_tag[a]]
        out.append((bench, model, rows))
        pooled.setdefault(model, []).extend(rows)
    out += [("pairwise (pooled)", m, rows) for m, rows in pooled.items() if sum(o[1] == m for o in out) > 1]
    res = []
    for bench, model, rows in out:
        ra, rb = [x for x, _ in rows], [y for _, y in rows]
        ac, ar, lc, lr = _length_arrays(ra)
        bc, br, _, _ = _length_arrays(rb)
        d = metrics.paired_length_balanced(ac, ar, bc, br, lc, lr, threshold=threshold, n_boot=n_boot, seed=seed)
        res.append({"benchmark": bench, "model": model, "a": a, "b": b, "balanced_a": d["value_a"],
                    "balanced_b": d["value_b"], "diff": d["diff"], "ci_low": d["ci_low"], "ci_high": d["ci_high"],
                    "p_value": d["p_value"], "n": d["n"]})
    if not res:
        raise ResultMissing(f"no pairwise results of both {a!r} and {b!r} with lengths in profile {profile!r}.")
    return pd.DataFrame(res)


def length_correlation_table(profile: str, tags: list[str] | None = None, models: list[str] | None = None
                             ) -> pd.DataFrame:
    """Rating and system benchmarks: the scorer's Pearson with the target, the length-only Pearson (response length
    in M's tokens, or a model's mean response length at system level, vs the target) and the scorer's partial
    correlation with the target given length, each "value [lo, hi]"."""
    df = reward_results(profile, tags, None, models)
    out = []
    for _, h in df[df.kind.isin(["rating", "system"])].iterrows():
        s = "_elo" if h["kind"] == "system" else ""
        keys = (f"pearson{s}", f"pearson_length{s}", f"partial_pearson{s}_given_length")
        if keys[1] not in h or not np.isfinite(h.get(keys[1], np.nan)):
            continue  # files written before the length controls
        row = {"benchmark": h["benchmark"], "kind": h["kind"], "scorer": h["tag"], "model": h["model"], "n": h["n"],
               "Pearson": _cell(h["value"], h["ci_low"], h["ci_high"])}  # the record's metric (vs ELO at system level)
        for key, label in zip(keys[1:], ("length-only Pearson", "partial Pearson given length")):
            row[label] = _cell(h[key], h.get(f"{key}_ci_low"), h.get(f"{key}_ci_high"))
        out.append(row)
    if not out:
        raise ResultMissing(f"no rating/system results with length controls in profile {profile!r} - run notebook 03.")
    return pd.DataFrame(out)


def plot_length_strata(profile: str, tags: list[str] | None = None, model: str | None = None):
    """Accuracy per length stratum with 95 % CIs, scorers side by side, one panel per pairwise benchmark (and the
    pooled pairs): a pure length preference scores high on "chosen longer", low on "chosen shorter" and 0.5
    length-balanced."""
    import matplotlib.pyplot as plt

    t = length_table(profile, tags, [model] if model else None, numeric=True)
    model = model or t["model"].iloc[0]
    t = t[t.model == model]
    benches = list(dict.fromkeys(t["benchmark"]))
    keys = ["acc", "acc_chosen_longer", "acc_chosen_shorter", "acc_near_equal_length", "acc_length_balanced"]
    labels = ["raw", "chosen\nlonger", "chosen\nshorter", "near-\nequal", "length-\nbalanced"]
    tag_list = list(dict.fromkeys(t["scorer"]))
    ncol = min(3, len(benches))
    nrow = -(-len(benches) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.3 * nrow), squeeze=False, sharey=True)
    width = 0.8 / max(1, len(tag_list))
    for ax, bench in zip(axes.flat, benches):
        sub = t[t.benchmark == bench].set_index("scorer")
        for k, tag in enumerate(tag_list):
            if tag not in sub.index:
                continue
            r = sub.loc[tag]
            v = np.array([r[x] for x in keys], float)
            lo = np.nan_to_num(v - np.array([r[f"{x}_ci_low"] for x in keys], float))
            hi = np.nan_to_num(np.array([r[f"{x}_ci_high"] for x in keys], float) - v)
            ax.bar(np.arange(len(keys)) + (k - (len(tag_list) - 1) / 2) * width, v, width, yerr=[lo, hi], capsize=2,
                   label=tag, color=f"C{k}")
        n = sub.iloc[0]
        ax.set_title(f"{bench} (n {int(n['n'])}: {int(n['n_chosen_longer'])} longer / "
                     f"{int(n['n_chosen_shorter'])} shorter)", fontsize=8)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1.05)
    for ax in axes.flat[len(benches):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("pairwise accuracy (95 % CI)")
    axes[0, 0].legend(fontsize=7, title="scorer", title_fontsize=7)
    fig.suptitle(f"Accuracy by length stratum ({profile}; M = {model}; lengths in M's tokens; "
                 "near-equal: |log length ratio| < 0.15)", fontsize=9)
    fig.tight_layout()
    return fig


def bank_ablation(profile: str, tag: str = "flr", model: str | None = None, n_draws: int = 20, seed: int = 0,
                  n_boot: int = 2000) -> dict:
    """:func:`flrlib.metrics.bank_size_ablation` on the per-follow-up values of ``tag``'s pairwise result files,
    all pairwise benchmarks of one model pooled: accuracy vs follow-ups per (category, polarity), per category,
    leave-one-category-out, positives only, negatives only. Adds ``n_pairs`` and ``benchmarks``."""
    df = reward_results(profile, [tag], None, [model] if model else None)
    df = df[df.kind == "pairwise"]
    model = model or (df["model"].iloc[0] if len(df) else None)
    ch, rj, layout, used = [], [], None, []
    for _, h in df[df.model == model].sort_values("benchmark").iterrows():
        rows = per_sample(h["path"])
        lay = read_json(h["path"]).get("followup_layout")
        if not rows or "chosen_followups" not in rows[0] or not lay:
            continue
        if layout is not None and lay != layout:
            raise ValueError(f"{h['path']}: a different follow-up bank layout from the other benchmarks; "
                             "pool only results of one bank")
        layout = lay
        used.append(h["benchmark"])
        ch += [r["chosen_followups"] for r in rows]
        rj += [r["rejected_followups"] for r in rows]
    if not ch:
        raise ResultMissing(f"no {tag!r} pairwise results with per-follow-up values in profile {profile!r} - "
                            "run notebook 03.")
    cats, pols = zip(*layout)
    res = metrics.bank_size_ablation(np.array(ch), np.array(rj), cats, pols, n_draws=n_draws, seed=seed, n_boot=n_boot)
    return {**res, "n_pairs": len(ch), "bank_size": len(layout), "benchmarks": used, "model": model, "tag": tag}


def bank_ablation_table(profile: str, tag: str = "flr", model: str | None = None, n_boot: int = 2000) -> pd.DataFrame:
    """The bank ablation as a table: full bank, k follow-ups per (category, polarity), positives/negatives only,
    each category alone and each left out."""
    res = bank_ablation(profile, tag, model, n_boot=n_boot)
    rows = [{"bank": "full bank", "follow-ups": res["bank_size"], **_acc(res["full"])}]
    rows += [{"bank": f"{x['k']} per category and polarity (mean of {x['n_draws']} draws, sd {x['draw_sd']:.3f})",
              "follow-ups": x["bank_size"], **_acc(x)} for x in res["by_k"]]
    rows += [{"bank": "positives only", "follow-ups": None, **_acc(res["positives_only"])},
             {"bank": "negatives only", "follow-ups": None, **_acc(res["negatives_only"])}]
    rows += [{"bank": f"{c} only", "follow-ups": None, **_acc(v)} for c, v in res["per_category"].items()]
    rows += [{"bank": f"without {c}", "follow-ups": None, **_acc(v)} for c, v in res["leave_one_out"].items()]
    t = pd.DataFrame(rows)
    t["n pairs"] = res["n_pairs"]
    return t


def _acc(x: dict) -> dict:
    return {"accuracy [95% CI]": _cell(x["value"], x["ci_low"], x["ci_high"])}


def plot_bank_size(profile: str, tag: str = "flr", model: str | None = None):
    """Accuracy vs number of follow-ups per (category, polarity), mean over random sub-banks with a 95 % CI band."""
    import matplotlib.pyplot as plt

    res = bank_ablation(profile, tag, model)
    ks = [x["bank_size"] for x in res["by_k"]]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(ks, [x["value"] for x in res["by_k"]], marker="o", label=f"{tag}: random sub-banks (mean of draws)")
    ax.fill_between(ks, [x["ci_low"] for x in res["by_k"]], [x["ci_high"] for x in res["by_k"]], alpha=0.2)
    for key, ls in (("positives_only", ":"), ("negatives_only", "-.")):
        ax.axhline(res[key]["value"], color="C3" if key.startswith("pos") else "C4", ls=ls, lw=1,
                   label=f"{key.replace('_', ' ')}: {res[key]['value']:.3f}")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="follow-ups in the bank (k per category and polarity)", ylabel="pairwise accuracy",
           title=f"Does FLR need the whole bank? ({profile}; {res['n_pairs']} pairs of {len(res['benchmarks'])} "
                 f"benchmarks; M = {res['model']})")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------------------------
# Notebook 07: every table and figure of the reproduction, rebuilt from result files only
# ------------------------------------------------------------------------------------------------------------------

# The paper's own published average pairwise accuracy (%), Llama-3-8B-Instruct as M (Zhang et al., 2025, Table 3).
PAPER_PAIRWISE_AVG = {"flr": 66.44, "direct": 56.26}


def _producer_json(profile: str, rel: str, producer: str) -> dict:
    return read_json(results_dir(profile) / rel, producer=producer)


def benchmark_table(profile: str) -> pd.DataFrame:
    """Table 2 analogue (notebook 01): benchmark, kind, rows used/dropped, mean lengths, source, licence."""
    rows = _producer_json(profile, "data/benchmarks.json", "01")["rows"]
    cols = ["benchmark", "kind", "paper", "rows_total", "rows_used", "rows_dropped", "context_turns", "context_words",
            "chosen_words", "rejected_words", "response_words", "licence"]
    df = pd.DataFrame(rows)
    return df[[c for c in cols if c in df.columns]]


def table3_with_paper(profile: str, n_boot: int = 2000) -> pd.DataFrame:
    """Table 3 analogue plus the paper's published average pairwise accuracy (Llama-3-8B-Instruct) beside it."""
    t = reward_table(profile, n_boot=n_boot)
    ref = pd.DataFrame([{"scorer": f"{k} (paper)", "model": "meta-llama/Meta-Llama-3-8B-Instruct",
                         "pairwise avg": f"{v / 100:.4f} (published)"} for k, v in PAPER_PAIRWISE_AVG.items()])
    return pd.concat([t, ref], ignore_index=True)


def ft_table(profile: str) -> pd.DataFrame:
    """FT-FLR vs FLR vs Direct on the same rows (notebook 04's comparison file): scores and paired differences."""
    comp = _producer_json(profile, "feedback/comparison.json", "04")
    scores = pd.DataFrame(comp["scores"])
    scores["cell"] = [_cell(v, lo, hi) for v, lo, hi in zip(scores.value, scores.ci_low, scores.ci_high)]
    diffs = pd.DataFrame(comp["differences"])
    diffs["cell"] = [_cell(v, lo, hi) for v, lo, hi in zip(diffs["diff"], diffs.ci_low, diffs.ci_high)]
    wide = scores.pivot_table(index="benchmark", columns="tag", values="cell", aggfunc="first")
    for _, d in diffs.iterrows():
        wide.loc[d.benchmark, f"{d.a} − {d.b}"] = d.cell
    wide["n"] = scores.groupby("benchmark")["n"].first()
    wide["metric"] = scores.groupby("benchmark")["metric"].first()
    return wide.reset_index()


def alignment_table(profile: str) -> pd.DataFrame:
    """Alignment evaluation (notebook 06): judge, candidate vs baseline, win rate [CI], LC win rate with the
    AlpacaEval GLM it comes from (``lc_glm``: ``length_controlled_minimal`` offline, the leaderboard's
    ``length_controlled_v1`` when its Hub files were reachable; :mod:`flrlib.winrate`), lengths."""
    summ = _producer_json(profile, "alignment/eval_summary.json", "06")
    rows = []
    for r in summ["rows"]:
        lc, wr, lo, hi = (number(r.get(k)) for k in ("lc_win_rate", "win_rate", "ci_low", "ci_high"))
        rows.append({"judge": r["judge"], "candidate": r["candidate"], "baseline": r["baseline"], "n": r["n"],
                     "win rate % [95% CI]": "n/a" if not np.isfinite(wr) else
                     f"{wr:.1f}" + (f" [{lo:.1f}, {hi:.1f}]" if np.isfinite(lo) else ""),
                     "LC win rate %": "n/a" if not np.isfinite(lc) else f"{lc:.1f}",
                     "LC GLM": r.get("lc_glm", "length_controlled_minimal"),
                     "avg length (chars)": round(number(r.get("avg_length")), 0),
                     "judge kind": r.get("judge_label", "")})
    return pd.DataFrame(rows)


def _training_curves(profile: str):
    import matplotlib.pyplot as plt

    panels = []
    fb = results_dir(profile) / "feedback" / "train_log.json"
    if fb.exists():
        panels.append(("FT: LoRA SFT on rewritten feedback", read_json(fb)["loss_curve"], "loss"))
    for m in ("dpo", "kto"):
        p = results_dir(profile) / "alignment" / m / "log_history.json"
        if p.exists():
            hist = [h for h in read_json(p)["log_history"] if "loss" in h]
            panels.append((f"{m.upper()} (LoRA)", hist, "loss"))
            if any("rewards/margins" in h for h in hist):
                panels.append((f"{m.upper()} reward margin", hist, "rewards/margins"))
    if not panels:
        raise ResultMissing("no training logs - run notebooks 04 and 06 first.")
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (title, hist, key) in zip(axes[0], panels):
        pts = [(h.get("step"), h.get(key)) for h in hist if h.get(key) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3)
        ax.set(title=title, xlabel="optimizer step", ylabel=key)
    fig.suptitle(f"Training curves ({profile} profile)")
    fig.tight_layout()
    return fig


def _mined_rewards(profile: str):
    import matplotlib.pyplot as plt
    import seaborn as sns

    base = results_dir(profile) / "mining"
    samples = read_jsonl(base / "samples.jsonl", producer="05")
    pairs = read_jsonl(base / "dpo_pairs.jsonl", producer="05")
    rewards = [r for s in samples for r in s["rewards"] if r is not None]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    sns.histplot(rewards, ax=axes[0], bins=30)
    axes[0].set(title=f"FLR reward of sampled responses (n={len(rewards)})", xlabel="FLR reward (nats/token)")
    sns.histplot([p["margin"] for p in pairs], ax=axes[1], bins=20, color="C2")
    axes[1].set(title=f"chosen − rejected margin of mined pairs (n={len(pairs)})", xlabel="reward margin")
    fig.tight_layout()
    return fig


def _category_heatmap(profile: str):
    import matplotlib.pyplot as plt
    import seaborn as sns

    t = category_table(profile, "flr")
    cats = [c for c in t.columns if c not in ("metric", "value")]
    data = t[cats].astype(float)
    data.index = [f"{b} ({m})" for (b, _), m in zip(t.index, t["metric"])]
    fig, ax = plt.subplots(figsize=(1.2 * len(cats) + 3, 0.45 * len(data) + 1.5))
    sns.heatmap(data, annot=True, fmt=".2f", cmap="RdBu_r", center=0.5 if "accuracy" in set(t["metric"]) else 0,
                ax=ax, cbar_kws={"label": "accuracy / correlation"})
    ax.set(title="FLR by follow-up category (each category's reward alone)", xlabel="category", ylabel="")
    fig.tight_layout()
    return fig


def _dash(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(object).where(df.notna(), "—")


def save_table(df: pd.DataFrame, out_dir, name: str, caption: str = "") -> list:
    """Write a table as Markdown and LaTeX."""
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = _dash(df)
    md = (f"**{caption}**\n\n" if caption else "") + df.to_markdown(index=False) + "\n"
    (out / f"{name}.md").write_text(md)
    (out / f"{name}.tex").write_text(df.to_latex(index=False, caption=caption or None, escape=True))
    return [out / f"{name}.md", out / f"{name}.tex"]


def save_figure(fig, out_dir, name: str) -> list:
    """Write a figure as PNG (150 dpi) and PDF."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


# -- RM-Bench and RewardBench (issue 24): from results/<profile>/rm_bench/ and rewardbench/ ----------------------

RM_BENCH_LENGTH_NOTE = ("the `length` scorer is the floor that shows what style alone does: it prefers the longer, "
                        "prettier response, so its hard accuracy is low and its easy accuracy high by construction")


def rm_bench_table(profile: str, tags: list[str] | None = None, models: list[str] | None = None, n_boot: int = 2000,
                   seed: int = 0, numeric: bool = False) -> pd.DataFrame:
    """RM-Bench per (scorer, model) on the prompts every scorer of that model scored (:func:`flrlib.rmbench.
    common_rows`): hard / normal / easy / average (RM-Bench's definitions, :mod:`flrlib.rmbench`) with 95 % CIs,
    the domains present, prompts per domain and ties (counted wrong, as RM-Bench does)."""
    from . import rmbench

    common = rmbench.common_rows(rmbench.rows_by_scorer(profile, tags, models))
    out = []
    for (tag, model), rows in sorted(common.items()):
        if not rows:
            continue
        s = rmbench.summarise(rows, n_boot=n_boot, seed=seed)
        row = {"scorer": tag, "model": model, "domains": ", ".join(f"{d} {s['n'][d]}" for d in s["domains"]),
               "ties": sum(s["ties"].values())}
        for key in ("hard", "normal", "easy", "total_avg"):
            if numeric:
                row.update({key: s[key], f"{key}_ci_low": s[f"{key}_ci_low"], f"{key}_ci_high": s[f"{key}_ci_high"]})
            else:
                row[key] = _cell(s[key], s[f"{key}_ci_low"], s[f"{key}_ci_high"])
        if tag == "length":
            row["note"] = "style-only floor (hard low by construction)"
        out.append(row)
    if not out:
        raise ResultMissing(f"no RM-Bench prompts scored by every scorer in profile {profile!r} - run notebook 03.")
    return pd.DataFrame(out)


def rm_bench_paired_table(profile: str, a: str = "flr", b: str = "direct", models: list[str] | None = None,
                          n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """``a`` minus ``b`` on RM-Bench, per domain (paired bootstrap CI, sign-flip permutation p) and over the domains
    present (stratified paired bootstrap), on the prompts both scored."""
    from . import rmbench

    by = rmbench.rows_by_scorer(profile, [a, b], models)
    out = []
    for model in sorted({m for _, m in by}):
        if (a, model) not in by or (b, model) not in by:
            continue
        p = rmbench.paired(by[(a, model)], by[(b, model)], n_boot=n_boot, seed=seed)
        for dom in p["domains"] + ["all"]:
            for key in ("hard", "normal", "easy", "avg"):
                d = p[dom][key] if dom != "all" else p["total_avg" if key == "avg" else key]
                out.append({"model": model, "domain": dom, "level": key, "n": p["n"].get(dom, sum(p["n"].values())),
                            "diff": d["diff"], "ci_low": d["ci_low"], "ci_high": d["ci_high"],
                            "p_value": d.get("p_value")})
    if not out:
        raise ResultMissing(f"no RM-Bench results of both {a!r} and {b!r} in profile {profile!r} - run notebook 03.")
    return pd.DataFrame(out)


def plot_rm_bench_matrices(profile: str, tags: list[str] | None = None, model: str | None = None):
    """One heatmap per scorer: RM-Bench's 3 x 3 accuracy matrix (rows chosen style, columns rejected style), the
    mean over the domains present of each domain's matrix (so its triangles average to the summary's hard / easy)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from . import rmbench

    common = rmbench.common_rows(rmbench.rows_by_scorer(profile, tags, [model] if model else None))
    keys = sorted(k for k, v in common.items() if v)
    if not keys:
        raise ResultMissing(f"no RM-Bench results in profile {profile!r} - run notebook 03.")
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.4), squeeze=False)
    labels = ["concise", "plain", "markdown"]
    for ax, key in zip(axes[0], keys):
        s = rmbench.summarise(common[key], n_boot=10)
        m = np.mean([s["matrix"][d] for d in s["domains"]], axis=0)
        sns.heatmap(m, vmin=0, vmax=1, annot=True, fmt=".2f", cmap="RdYlGn", cbar=False, ax=ax,
                    xticklabels=labels, yticklabels=labels)
        ax.set_title(f"{key[0]} (hard {s['hard']:.2f})")
        ax.set_xlabel("rejected style")
        ax.set_ylabel("chosen style")
    fig.suptitle("RM-Bench accuracy matrix (upper triangle = hard, diagonal = normal, lower = easy)")
    fig.tight_layout()
    return fig


def plot_rm_bench_levels(profile: str, tags: list[str] | None = None, model: str | None = None, n_boot: int = 2000):
    """Hard / normal / easy accuracy per scorer side by side, with 95 % bootstrap CIs (same prompts per scorer)."""
    import matplotlib.pyplot as plt

    t = rm_bench_table(profile, tags, [model] if model else None, n_boot=n_boot, numeric=True)
    levels = ["hard", "normal", "easy"]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(t), 3.4))
    width = 0.8 / len(levels)
    x = np.arange(len(t))
    for k, lev in enumerate(levels):
        v = t[lev].astype(float).to_numpy()
        lo = np.nan_to_num(v - t[f"{lev}_ci_low"].astype(float).to_numpy())
        hi = np.nan_to_num(t[f"{lev}_ci_high"].astype(float).to_numpy() - v)
        ax.bar(x + (k - 1) * width, v, width, yerr=[lo, hi], capsize=3, label=lev)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, [f"{r.scorer}" for r in t.itertuples()])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (ties wrong)")
    ax.set_title("RM-Bench by difficulty (95 % CI)")
    ax.legend(frameon=False, ncol=3, fontsize="small")
    fig.tight_layout()
    return fig


def rewardbench_table(profile: str) -> pd.DataFrame:
    """RewardBench v1 section scores (Chat, Chat Hard, Safety, Reasoning) and score per scorer, with CIs, from
    ``results/<profile>/rewardbench/sections__*.json`` (:func:`flrlib.rewardbench.summarise`)."""
    from . import rewardbench

    folder = results_dir(profile) / rewardbench.AREA
    files = sorted(folder.glob("sections__*.json")) if folder.exists() else []
    if not files:
        raise ResultMissing(f"no RewardBench results in {folder} - run notebook 03 with the rewardbench benchmark.")
    out = []
    for f in files:
        r = read_json(f, producer="03")
        row = {"scorer": r["tag"], "model": r["model"], "pairs": sum(r["n"].values())}
        for sec in rewardbench.SUBSET_MAPPING:
            row[sec] = (_cell(number(r["sections"][sec]), number(r.get(f"{sec}_ci_low")),
                              number(r.get(f"{sec}_ci_high"))) if sec in r["sections_present"] else "n/a")
        row["score"] = _cell(number(r["score"]), number(r.get("score_ci_low")), number(r.get("score_ci_high")))
        out.append(row)
    return pd.DataFrame(out)


def build_all(profile: str, out_dir=None, n_boot: int = 2000) -> pd.DataFrame:
    """Rebuild every table and figure of ``profile`` from its result files into ``figures/<profile>/``.

    Returns one row per artifact: name, status (``written`` or ``missing``), files or the "run notebook NN first"
    message. Nothing here loads a model or re-scores anything.
    """
    import seaborn as sns

    from .paths import figures_dir

    sns.set_theme(style="whitegrid", context="notebook")
    out = out_dir or figures_dir(profile)
    jobs = [
        ("table2_benchmarks", "table", lambda: benchmark_table(profile), "Benchmarks used (Table 2 analogue)"),
        ("table3_reward_benchmarks", "table", lambda: table3_with_paper(profile, n_boot),
         "Reward-model benchmarks: pairwise accuracy / Pearson, value [95% bootstrap CI] (Table 3 analogue)"),
        ("table_flr_vs_direct", "table", lambda: paired_comparison(profile, "flr", "direct", n_boot=n_boot),
         "FLR minus Direct, paired bootstrap CI"),
        ("table_ft_flr", "table", lambda: ft_table(profile), "FT-FLR vs FLR vs Direct on the same rows"),
        ("table_alignment", "table", lambda: alignment_table(profile), "Alignment win rates by judge"),
        ("table_length_pairwise", "table", lambda: length_table(profile, n_boot=n_boot),
         "Pairwise accuracy with length controlled (lengths in M's tokens; every scorer on the same pairs)"),
        ("table_length_flr_vs_direct", "table", lambda: length_paired_table(profile, "flr", "direct", n_boot=n_boot),
         "FLR minus Direct on length-balanced accuracy, paired bootstrap CI"),
        ("table_length_correlations", "table", lambda: length_correlation_table(profile),
         "Rating and system level: Pearson, length-only Pearson, partial Pearson given length"),
        ("table_bank_ablation", "table", lambda: bank_ablation_table(profile, "flr", n_boot=n_boot),
         "FLR bank ablation: bank size, polarity and categories (pairwise benchmarks pooled)"),
        ("fig_reward_benchmarks", "figure", lambda: plot_reward_benchmarks(profile), ""),
        ("fig_category_heatmap", "figure", lambda: _category_heatmap(profile), ""),
        ("fig_elo_scatter", "figure", lambda: plot_system_scatter(profile, "flr", "elo"), ""),
        ("fig_length_strata", "figure", lambda: plot_length_strata(profile), ""),
        ("fig_bank_size", "figure", lambda: plot_bank_size(profile, "flr"), ""),
        ("fig_training_curves", "figure", lambda: _training_curves(profile), ""),
        ("fig_mined_rewards", "figure", lambda: _mined_rewards(profile), ""),
        ("table_rm_bench", "table", lambda: rm_bench_table(profile, n_boot=n_boot),
         "RM-Bench hard / normal / easy / average [95% CI] on the prompts every scorer scored; " + RM_BENCH_LENGTH_NOTE),
        ("table_rm_bench_flr_vs_direct", "table", lambda: rm_bench_paired_table(profile, "flr", "direct", n_boot=n_boot),
         "RM-Bench, FLR minus Direct on the same prompts, paired bootstrap CI"),
        ("table_rm_bench_ft_flr_vs_flr", "table", lambda: rm_bench_paired_table(profile, "ft_flr", "flr", n_boot=n_boot),
         "RM-Bench, FT-FLR minus FLR on the same prompts, paired bootstrap CI"),
        ("table_rewardbench", "table", lambda: rewardbench_table(profile), "RewardBench v1 section scores [95% CI]"),
        ("fig_rm_bench_matrix", "figure", lambda: plot_rm_bench_matrices(profile), ""),
        ("fig_rm_bench_levels", "figure", lambda: plot_rm_bench_levels(profile, n_boot=n_boot), ""),
    ]
    report = []
    for name, kind, make, caption in jobs:
        try:
            obj = make()
        except ResultMissing as e:
            report.append({"artifact": name, "status": "missing", "detail": str(e)})
            continue
        if kind == "figure" and not hasattr(obj, "savefig"):
            obj = obj.figure if hasattr(obj, "figure") else obj[0]
        files = save_table(obj, out, name, caption) if kind == "table" else save_figure(obj, out, name)
        report.append({"artifact": name, "status": "written", "detail": ", ".join(str(f) for f in files)})
    return pd.DataFrame(report)


README_BEGIN, README_END = "<!-- RESULTS:BEGIN (generated by flrlib.reporting.update_readme) -->", "<!-- RESULTS:END -->"


def summary_markdown(profile: str = "demo") -> str:
    """The README's results summary, generated from result files (never typed)."""
    parts = []
    try:
        t = reward_table(profile, numeric=False)
        parts.append(f"Reward benchmarks ({profile} profile; value [95% bootstrap CI]; pairwise = accuracy, "
                     "rating = Pearson, system = Pearson with Arena ELO):\n\n" + _dash(t).to_markdown(index=False))
        parts.append("Paper (Llama-3-8B-Instruct as M): average pairwise accuracy FLR "
                     f"{PAPER_PAIRWISE_AVG['flr']:.2f} % vs Direct {PAPER_PAIRWISE_AVG['direct']:.2f} %.")
    except ResultMissing as e:
        parts.append(f"Reward benchmarks: {e}")
    try:
        t = length_table(profile)
        cols = ["benchmark", "scorer", "n", "raw accuracy", "length-balanced", "chosen longer", "chosen shorter"]
        text = (f"Length control ({profile} profile; pairwise accuracy [95% CI] on the pairs every scorer scored; "
                "length-balanced = mean of the chosen-longer and chosen-shorter accuracies, 0.5 for the `length` "
                "scorer by construction; lengths in M's tokens):\n\n" + _dash(t[cols]).to_markdown(index=False))
        try:
            d = length_paired_table(profile, "flr", "direct")
            pooled = d[d.benchmark == "pairwise (pooled)"]
            for _, r in (pooled if len(pooled) else d).iterrows():
                text += (f"\n\nFLR − Direct, length-balanced accuracy ({r['benchmark']}, n {int(r['n'])}): "
                         f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], permutation p {r['p_value']:.2f}.")
        except ResultMissing:
            pass
        parts.append(text)
    except ResultMissing as e:
        parts.append(f"Length control: {e}")
    try:
        t = rm_bench_table(profile)
        text = (f"RM-Bench ({profile} profile; accuracy [95% CI] on the prompts every scorer scored, ties counted "
                f"wrong as RM-Bench does; means over the domains listed - RM-Bench's leaderboard averages chat, math, "
                f"code and safety, so a row without all four is not comparable with it; {RM_BENCH_LENGTH_NOTE}):\n\n"
                + _dash(t).to_markdown(index=False))
        for a, b, label in (("flr", "direct", "FLR − Direct"), ("ft_flr", "flr", "FT-FLR − FLR")):
            try:
                d = rm_bench_paired_table(profile, a, b)
            except ResultMissing:  # one of the two scorers has no RM-Bench result
                continue
            for _, r in d[(d.domain == "all") & (d.level == "hard")].iterrows():
                text += (f"\n\n{label}, RM-Bench hard accuracy ({r['model']}, {int(r['n'])} prompts): "
                         f"{_cell(r['diff'], r['ci_low'], r['ci_high'])}.")
        parts.append(text)
    except ResultMissing:
        pass  # no RM-Bench results in this profile (yet): no paragraph, rather than a "run notebook 03" line
    lc_note = ("; LC win rates name their AlpacaEval GLM: length_controlled_minimal is not the leaderboard's "
               "length_controlled_v1")
    for name, fn, note in (("FT-FLR", ft_table, ""), ("Alignment", alignment_table, lc_note)):
        try:
            parts.append(f"{name} ({profile} profile{note}):\n\n" + _dash(fn(profile)).to_markdown(index=False))
        except ResultMissing as e:
            parts.append(f"{name}: {e}")
    reading = reading_lines(profile)
    if reading:
        parts.append("What these files say (generated sentences; the README's reading below quotes only numbers "
                     "from this block):\n\n" + "\n".join(f"- {x}" for x in reading))
    return "\n\n".join(parts) + "\n"


def _pct_range(values) -> str:
    lo, hi = f"{min(values):.1f}", f"{max(values):.1f}"  # equal once rounded: one number, not "57.6–57.6"
    return f"{lo} %" if lo == hi else f"{lo}–{hi} %"


def reading_lines(profile: str = "demo") -> list[str]:
    """The sentences of the README's reading that quote numbers, generated from the result files (notebook 04's
    comparison, notebook 06's evaluation summary) so they cannot go stale: which paired differences have a CI that
    excludes 0, each judge's range of win rates, how many LC win rates say anything, and how far DPO/KTO trained."""
    out = []
    try:
        comp = _producer_json(profile, "feedback/comparison.json", "04")
        diffs = comp["differences"]
        sure = [d for d in diffs if number(d["ci_low"]) > 0 or number(d["ci_high"]) < 0]  # NaN compares False
        pooled = [d for d in diffs if str(d["benchmark"]).startswith("pairwise pooled")]
        if pooled:
            out.append(f"Pooled over {pooled[0]['n']} pairs: " + "; ".join(
                f"{d['a']} − {d['b']} {_cell(d['diff'], d['ci_low'], d['ci_high'])}" for d in pooled) + ".")
        listed = "; ".join(f"{d['a']} − {d['b']} on {d['benchmark']} ({d['n']} rows) "
                           f"{_cell(d['diff'], d['ci_low'], d['ci_high'])}" for d in sure)
        out.append(f"FT-FLR table: {len(sure)} of {len(diffs)} paired differences have a 95 % CI that excludes 0"
                   + (f": {listed}." if sure else "."))
    except ResultMissing:
        pass
    try:
        summ = _producer_json(profile, "alignment/eval_summary.json", "06")
    except ResultMissing:
        return out
    rows = summ["rows"]
    for judge in dict.fromkeys(r["judge"] for r in rows):
        mine = [r for r in rows if r["judge"] == judge and np.isfinite(number(r.get("win_rate")))]
        by_base = {}
        for r in mine:
            by_base.setdefault(r["baseline"], []).append(r)
        text = "; ".join(f"{_pct_range([number(r['win_rate']) for r in rs])} against {b} "
                         f"({'/'.join(r['candidate'] for r in rs)}, {rs[0]['n']} instructions each)"
                         for b, rs in by_base.items())
        if text:
            out.append(f"Judge {judge}: win rate {text}.")
    lc = [number(r.get("lc_win_rate")) for r in rows]
    raw = [number(r.get("win_rate")) for r in rows]
    fitted = [(x, w) for x, w in zip(lc, raw) if np.isfinite(x)]
    out.append(f"LC win rates: {len(lc) - len(fitted)} of {len(lc)} not fitted (n/a), "
               f"{sum(abs(x - 50) < 0.05 for x, _ in fitted)} at 50.0 %, "
               f"{sum(w in (0, 100) and abs(x - w) < 0.05 for x, w in fitted)} repeat a raw 0 or 100 %.")
    prov = summ.get("provenance", {})
    trained = [f"{m.upper()} {prov[m]['global_steps']} optimizer steps on {prov[m]['n_rows']} rows, train loss "
               f"{prov[m]['train_loss']:.3f}" for m in ("dpo", "kto") if isinstance(prov.get(m), dict)
               and prov[m].get("train_loss") is not None]
    if trained:
        out.append("Training: " + "; ".join(trained) + " (an untrained policy starts at ln 2 = 0.693 for DPO and "
                   "0.5 for KTO).")
    return out


def update_readme(profile: str = "demo", readme=None) -> bool:
    """Replace the generated block of the README with :func:`summary_markdown`; returns True if it changed."""
    from pathlib import Path

    from .paths import ROOT

    path = Path(readme) if readme else ROOT / "README.md"
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{path} has no generated results block ({README_BEGIN} ... {README_END})")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_BEGIN}\n{summary_markdown(profile)}{README_END}{tail}"
    if new != text:
        path.write_text(new)
    return new != text

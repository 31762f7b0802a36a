"""Is FLR more than a length preference? Length-controlled re-analysis of pairwise reward-benchmark results.

    python benchmarks/length_analysis.py [--results benchmarks/results/h100/reward_benchmarks]
                                         [--out benchmarks/results/h100/length] [--check-rewards 0]

Reads the per-sample JSONL of ``flr`` and ``direct`` (``{id, chosen, rejected, correct, chosen_categories?}``),
rebuilds the scored pairs with :func:`flrlib.data.load_benchmark` (ids ``<benchmark>-<row>`` index the rows of
the HH-RLHF test file; the loader is deterministic) and checks that they are the same pairs: the ids must be the
seeded subset ``select_subset(records, n, seed)`` of the provenance, in the same order, for both scorers; the data
report (rows read, dropped) must be the one recorded; every ``correct`` must equal ``pairwise_correct(chosen,
rejected)``. ``--check-rewards N`` also re-scores N pairs with the Direct scorer on CPU (fp32; the results are
bf16) and checks that the rewards match their own side and not the other one (it proves the orientation).

Lengths: the response's content tokens in the SmolLM2 tokenizer (no special tokens) and its characters (the
parsed, stripped content that was scored). Scorers: flr, direct and ``length`` (reward = log length in the unit,
so its length-balanced accuracy is exactly 0.5 and its residualised accuracy exactly 0.5, all ties).
Numbers (per benchmark and pooled over all pairs; pooled = one pool, one slope): :func:`flrlib.metrics
.pairwise_length_metrics` and the paired FLR - Direct difference of the length-balanced accuracy.

Writes into ``--out``: ``<benchmark>.json`` and ``pooled.json`` (``{"benchmark", "n", "records": [one flat
record per (scorer, unit)], "paired": [...], "flr_categories": {...}, "provenance"}``), ``issue_check.json`` (the
issue's character-based numbers recomputed) and ``length_table.md``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["hh_helpful_base", "hh_helpful_online", "hh_helpful_rejection"]
TOKENIZER = "bundled:smollm2-135m-instruct"
SCORERS = ("flr", "direct")
UNITS = ("tokens", "chars")

# the issue "Is FLR more than a length preference?" (characters, 1,600 pairs, percent)
ISSUE = {"flr_acc": 57.8, "flr_acc_ci": (55.4, 60.2), "direct_acc": 54.6, "direct_acc_ci": (52.1, 57.0),
         "longer_wins": 56.0, "longer_wins_ci": (53.7, 58.5), "n_chosen_longer": 891, "flr_chosen_longer": 70.4,
         "n_chosen_shorter": 699, "flr_chosen_shorter": 41.9, "n_near_equal": 228, "flr_near_equal": 51.8,
         "flr_agreement": 64.6, "corr_margin_log_ratio": 0.45}


class Mismatch(ValueError):
    """The result files do not describe the pairs the loader rebuilds."""


# ----------------------------------------------------------------------------------------------------------
# loading and checking the committed results
# ----------------------------------------------------------------------------------------------------------

def load_results(results: Path, benchmark: str, model: str) -> dict:
    """``{"records": [pairwise records in result order], "flr": rows, "direct": rows, "provenance"}``, checked."""
    from flrlib import metrics
    from flrlib.benchmarks import result_stem
    from flrlib.data import load_benchmark, select_subset
    from flrlib.files import read_json, read_jsonl

    rows, prov = {}, None
    for s in SCORERS:
        stem = results / result_stem(benchmark, s, model)
        rows[s] = read_jsonl(stem.with_suffix(".jsonl"))
        flat = read_json(stem.with_suffix(".json"))
        prov = prov or flat["provenance"]
        for n, row in enumerate(rows[s], 1):
            for f in ("id", "chosen", "rejected", "correct"):
                if f not in row:
                    raise Mismatch(f"{stem}.jsonl:{n}: missing field {f!r}")
            if row["correct"] != metrics.pairwise_correct([row["chosen"]], [row["rejected"]])[0]:
                raise Mismatch(f"{stem}.jsonl:{n}: field 'correct' disagrees with chosen/rejected")
        if len(rows[s]) != flat["n"]:
            raise Mismatch(f"{stem}.json: n = {flat['n']} but the JSONL has {len(rows[s])} rows")
    ids = [r["id"] for r in rows["flr"]]
    if ids != [r["id"] for r in rows["direct"]]:
        raise Mismatch(f"{benchmark}: flr and direct were not scored on the same ids in the same order")
    records, report = load_benchmark(benchmark)
    want = prov["data"]
    for k in ("rows_total", "rows_valid", "dropped"):
        if report[k] != want[k]:
            raise Mismatch(f"{benchmark}: the data report differs from the recorded one: {k} {report[k]} != {want[k]}")
    subset = select_subset(records, prov["max_examples"], prov["seed"])
    if [r["id"] for r in subset] != ids:
        raise Mismatch(f"{benchmark}: the ids are not the seeded subset (max_examples {prov['max_examples']}, "
                       f"seed {prov['seed']}) of the rebuilt records")
    return {"records": subset, **rows, "provenance": prov}


def check_rewards(data: dict, n: int, model: str, tol: float = 0.1) -> dict:
    """Re-score ``n`` pairs per benchmark with Direct on CPU and compare with the committed (bf16) rewards."""
    from flrlib.models import load_model
    from flrlib.scoring import ScoreConfig, Scorer

    scorer = Scorer(load_model(model, dtype="float32", device="cpu"), config=ScoreConfig(scorer="direct"), cache=None)
    own, other = [], []
    for b, d in data.items():
        res = scorer.score_pairs(d["records"][:n], progress=False)
        for s, row in zip(res, d["direct"][:n]):
            own.append(max(abs(s["chosen"] - row["chosen"]), abs(s["rejected"] - row["rejected"])))
            other.append(max(abs(s["chosen"] - row["rejected"]), abs(s["rejected"] - row["chosen"])))
    own, other = np.array(own), np.array(other)
    out = {"pairs": len(own), "max_abs_diff_own_side": round(float(own.max()), 4),
           "median_abs_diff_swapped": round(float(np.median(other)), 4),
           "pairs_own_side_closer": int((own < other).sum()), "tolerance": tol}
    if own.max() > tol:  # bf16 vs fp32 differ by a few 0.01; other texts or swapped sides by ~0.2 or more
        raise Mismatch(f"re-scored Direct rewards differ from the committed ones by more than {tol}: {out}")
    return out


def lengths(texts: list[str], tokenizer) -> dict:
    """``{"tokens": content tokens (no special tokens), "chars": characters}`` per text."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return {"tokens": np.array([len(i) for i in ids], dtype=float), "chars": np.array([len(t) for t in texts], float)}


def raw_hh_lengths(benchmark: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Characters of the raw transcript after the last "\\n\\nAssistant:" (unstripped: the leading space counts).
    Only for reproducing the issue, whose numbers use this convention."""
    from flrlib.data import benchmark_info
    from flrlib.data.fetch import require
    from flrlib.data.pairwise import read_rows

    rows = read_rows(require(benchmark_info(benchmark)["files"][0]))
    tail = [[len(rows[int(i.rsplit("-", 1)[1])][s].rsplit("\n\nAssistant:", 1)[1]) for i in ids]
            for s in ("chosen", "rejected")]
    return np.array(tail[0], float), np.array(tail[1], float)


# ----------------------------------------------------------------------------------------------------------
# analysis
# ----------------------------------------------------------------------------------------------------------

def pairs_of(records: list[dict], scores: dict, tokenizer) -> dict:
    """Arrays for one benchmark: ``{"ids", "len": {unit: (chosen, rejected)}, scorer: (chosen, rejected),
    "flr_categories": (names, chosen [n, C], rejected [n, C]) or None}``. ``scores``: {scorer: per-sample rows}."""
    lc, lr = lengths([r["chosen"] for r in records], tokenizer), lengths([r["rejected"] for r in records], tokenizer)
    out = {"ids": [r["id"] for r in records], "len": {u: (lc[u], lr[u]) for u in UNITS}}
    for s, rows in scores.items():
        out[s] = (np.array([x["chosen"] for x in rows]), np.array([x["rejected"] for x in rows]))
    flr = scores.get("flr") or []
    if flr and "chosen_categories" in flr[0]:
        names = list(flr[0]["chosen_categories"])
        out["flr_categories"] = (names, np.array([[x["chosen_categories"][c] for c in names] for x in flr]),
                                 np.array([[x["rejected_categories"][c] for c in names] for x in flr]))
    else:
        out["flr_categories"] = None
    return out


def pool(parts: list[dict]) -> dict:
    """Concatenate the arrays of several benchmarks (categories only if every part has the same ones)."""
    out = {"ids": [i for p in parts for i in p["ids"]],
           "len": {u: tuple(np.concatenate([p["len"][u][k] for p in parts]) for k in (0, 1)) for u in UNITS}}
    for s in SCORERS:
        if all(s in p for p in parts):
            out[s] = tuple(np.concatenate([p[s][k] for p in parts]) for k in (0, 1))
    cats = [p["flr_categories"] for p in parts]
    if all(c is not None for c in cats) and len({tuple(c[0]) for c in cats}) == 1:
        out["flr_categories"] = (cats[0][0], np.concatenate([c[1] for c in cats]), np.concatenate([c[2] for c in cats]))
    else:
        out["flr_categories"] = None
    return out


def analyse(name: str, p: dict, n_boot: int, seed: int, threshold: float) -> dict:
    """Flat records per (scorer, unit), paired FLR - Direct differences, and per-category FLR numbers."""
    from flrlib import metrics

    kw = {"n_boot": n_boot, "seed": seed}
    records, paired = [], []
    scorers = [s for s in SCORERS if s in p]
    for unit in UNITS:
        lc, lr = p["len"][unit]
        rewards = {s: p[s] for s in scorers}
        rewards["length"] = (np.log(lc), np.log(lr))
        for s, (c, r) in rewards.items():
            records.append({"benchmark": name, "scorer": s, "unit": unit,
                            "mean_len_chosen": float(lc.mean()), "mean_len_rejected": float(lr.mean()),
                            **metrics.pairwise_length_metrics(c, r, lc, lr, threshold=threshold, **kw)})
        if "flr" in p and "direct" in p:
            (fc, fr), (dc, dr) = p["flr"], p["direct"]
            bal = metrics.paired_length_balanced(fc, fr, dc, dr, lc, lr, threshold=threshold, **kw)
            paired.append({"benchmark": name, "a": "flr", "b": "direct", "unit": unit, "metric": "acc_length_balanced",
                           **bal})
            if unit == UNITS[0] and len(fc) >= 2:  # (paired_bootstrap's permutation test needs 2 rows)
                raw = metrics.paired_bootstrap(metrics.pairwise_correct(fc, fr), metrics.pairwise_correct(dc, dr), **kw)
                paired.append({"benchmark": name, "a": "flr", "b": "direct", "unit": "-", "metric": "acc",
                               "value_a": float(metrics.pairwise_correct(fc, fr).mean()),
                               "value_b": float(metrics.pairwise_correct(dc, dr).mean()), **raw})
    cats = {}
    if p.get("flr_categories") is not None:
        names, cc, cr = p["flr_categories"]
        lc, lr = p["len"]["tokens"]
        loo = metrics.category_ablation(cc, cr, names, **kw)["leave_one_out"]
        for j, c in enumerate(names):
            f = metrics.pairwise_length_metrics(cc[:, j], cr[:, j], lc, lr, threshold=threshold, **kw)
            cats[c] = {k: f[k] for k in ("acc", "acc_ci_low", "acc_ci_high", "acc_length_balanced",
                                          "acc_length_balanced_ci_low", "acc_length_balanced_ci_high",
                                          "acc_length_residualised", "length_agreement")}
            cats[c]["acc_leave_one_out"] = loo[c]["value"] if c in loo else float("nan")
    return {"benchmark": name, "n": len(p["ids"]), "records": records, "paired": paired, "flr_categories": cats}


def issue_check(p: dict, raw_len: tuple, n_boot: int, seed: int) -> dict:
    """The issue's numbers recomputed with its conventions (raw-transcript characters, |log ratio| < 0.15,
    agreement = sign(margin) == sign(length difference) over all pairs), in percent, next to the issue's."""
    from flrlib import metrics

    kw = {"n_boot": n_boot, "seed": seed}
    lc, lr = raw_len
    (fc, fr), (dc, dr) = p["flr"], p["direct"]
    st = metrics.pairwise_length_strata(fc, fr, lc, lr, 0.15, **kw)
    d = metrics.log_length_ratio(lc, lr)

    def pct(a):
        return round(100 * a["value"], 1), (round(100 * a["ci_low"], 1), round(100 * a["ci_high"], 1))

    got = {}
    got["flr_acc"], got["flr_acc_ci"] = pct(metrics.accuracy_ci(fc, fr, **kw))
    got["direct_acc"], got["direct_acc_ci"] = pct(metrics.accuracy_ci(dc, dr, **kw))
    got["longer_wins"], got["longer_wins_ci"] = pct(metrics.accuracy_ci(lc, lr, **kw))
    for key, s in (("chosen_longer", "chosen_longer"), ("chosen_shorter", "chosen_shorter"), ("near_equal", "near_equal")):
        got[f"n_{key}"], got[f"flr_{key}"] = st[s]["n"], round(100 * st[s]["value"], 1)
    got["flr_agreement"] = round(100 * float(np.mean(np.sign(fc - fr) == np.sign(d))), 1)
    got["corr_margin_log_ratio"] = round(metrics.correlation(fc - fr, d)[0], 2)
    rows = [{"quantity": k, "issue": v, "recomputed": got[k], "match": got[k] == v} for k, v in ISSUE.items()]
    ci_diff = max(abs(a - b) for r in rows if r["quantity"].endswith("_ci") for a, b in zip(r["issue"], r["recomputed"]))
    return {"n": len(fc), "rows": rows, "all_match": all(r["match"] for r in rows), "max_ci_diff_pp": round(ci_diff, 1),
            "values_match": all(r["match"] for r in rows if not r["quantity"].endswith("_ci"))}


# ----------------------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------------------

def _ci(r: dict, key: str, pct: bool = True) -> str:
    f = 100 if pct else 1
    v, lo, hi = r[key], r.get(f"{key}_ci_low"), r.get(f"{key}_ci_high")
    if v is None or not np.isfinite(v):
        return "-"
    fmt = "{:.1f}" if pct else "{:.2f}"
    s = fmt.format(f * v)
    return s if lo is None or not np.isfinite(lo) else f"{s} [{fmt.format(f * lo)}, {fmt.format(f * hi)}]"


def markdown(results: list[dict], check: dict | None, extra: dict) -> str:
    lines = ["# Is FLR more than a length preference?", "",
             f"Model: {extra['model']}; source: `{extra['results']}`; {extra['n_boot']} bootstrap resamples, "
             f"seed {extra['seed']}; near-equal: |log(len_c / len_r)| < {extra['threshold']}. Accuracies in %, 95 % "
             "percentile-bootstrap CIs over pairs. *longer*/*shorter*: pairs where the chosen response is longer / "
             "shorter (exactly equal lengths in neither; near-equal pairs are also in these two: the near-equal "
             "column is an overlapping diagnostic). *balanced* = mean of longer and shorter. *residualised*: margin "
             "minus beta x log length ratio, beta the OLS slope (with intercept) over the benchmark. *agree*: how "
             "often the scorer prefers the longer response (pairs of different length). *length* = reward log "
             "length (balanced and residualised are 0.5 by construction). Pooled = all pairs as one benchmark.", ""]
    head = ("| scorer | unit | raw | longer (n) | shorter (n) | near-equal (n) | balanced | residualised | agree "
            "| corr(m, d) |")
    for res in results:
        lines += [f"## {res['benchmark']} ({res['n']} pairs)", "", head, "|" + "---|" * 10]
        for r in res["records"]:
            lines.append(f"| {r['scorer']} | {r['unit']} | {_ci(r, 'acc')} | {_ci(r, 'acc_chosen_longer')} "
                         f"({r['n_chosen_longer']}) | {_ci(r, 'acc_chosen_shorter')} ({r['n_chosen_shorter']}) | "
                         f"{_ci(r, 'acc_near_equal_length')} ({r['n_near_equal_length']}) | "
                         f"{_ci(r, 'acc_length_balanced')} | {_ci(r, 'acc_length_residualised')} | "
                         f"{_ci(r, 'length_agreement')} | {_ci(r, 'corr_margin_log_length_ratio', pct=False)} |")
        if res["paired"]:
            lines += ["", "| FLR - Direct | unit | FLR | Direct | diff [95 % CI] | p |", "|---|---|---|---|---|---|"]
            for q in res["paired"]:
                lines.append(f"| {q['metric']} | {q['unit']} | {100 * q['value_a']:.1f} | {100 * q['value_b']:.1f} | "
                             f"{100 * q['diff']:+.1f} [{100 * q['ci_low']:+.1f}, {100 * q['ci_high']:+.1f}] | "
                             f"{q['p_value']:.3f} |")
        if res["flr_categories"]:
            lines += ["", "FLR per bank category (token lengths): raw / balanced / residualised / agree; "
                      "leave-one-category-out raw", "", "| category | raw | balanced | residualised | agree | LOCO |",
                      "|---|---|---|---|---|---|"]
            for c, r in res["flr_categories"].items():
                lines.append(f"| {c} | {_ci(r, 'acc')} | {_ci(r, 'acc_length_balanced')} | "
                             f"{100 * r['acc_length_residualised']:.1f} | {100 * r['length_agreement']:.1f} | "
                             f"{100 * r['acc_leave_one_out']:.1f} |")
        lines.append("")
    if check:
        lines += ["## The issue's numbers (characters of the raw transcript, its conventions)", "",
                  f"{'All values reproduced' if check['values_match'] else 'NOT all values reproduced'}"
                  f"{'' if check['all_match'] else ' (CIs: see the rows marked no)'}. CI ends differ by at most "
                  f"{check['max_ci_diff_pp']} pp: another bootstrap draw (this one: scipy percentile bootstrap, "
                  "seed 0) or rounding.", "",
                  "| quantity | issue | recomputed | match |", "|---|---|---|---|"]
        for r in check["rows"]:
            lines.append(f"| {r['quantity']} | {r['issue']} | {r['recomputed']} | {'yes' if r['match'] else 'no'} |")
        lines.append("")
    if extra.get("reward_check"):
        lines += [f"Orientation check: Direct re-scored on CPU for {extra['reward_check']['pairs']} pairs: "
                  f"{extra['reward_check']}", ""]
    return "\n".join(lines)


def write_outputs(out: Path, results: list[dict], check: dict | None, extra: dict) -> str:
    from flrlib.files import atomic_write
    from flrlib.results import write_json

    for res in results:
        write_json(out / f"{res['benchmark']}.json", {**res, "provenance": extra})
    if check:
        write_json(out / "issue_check.json", check)
    md = markdown(results, check, extra)
    atomic_write(out / "length_table.md", md)
    return md


def run(data: dict, tokenizer, out: Path, n_boot: int, seed: int, threshold: float, extra: dict,
        raw_lengths: dict | None = None) -> str:
    """Analyse ``{benchmark: {"records", "flr", "direct"}}`` (records and per-sample rows in the same order),
    per benchmark and pooled; write and return the Markdown table. Used by this script and gpu_length.py."""
    parts = {b: pairs_of(d["records"], {s: d[s] for s in SCORERS if d.get(s)}, tokenizer) for b, d in data.items()}
    results = [analyse(b, p, n_boot, seed, threshold) for b, p in parts.items()]
    pooled = pool(list(parts.values()))
    if len(parts) > 1:
        results.append(analyse("pooled", pooled, n_boot, seed, threshold))
    check = None
    if raw_lengths is not None:
        raw = tuple(np.concatenate([raw_lengths[b][k] for b in parts]) for k in (0, 1))
        check = issue_check(pooled, raw, n_boot, seed)
    return write_outputs(out, results, check, {**extra, "n_boot": n_boot, "seed": seed, "threshold": threshold,
                                               "benchmarks": list(parts), "tokenizer": TOKENIZER,
                                               "written": time.strftime("%Y-%m-%dT%H:%M:%S")})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=HERE / "results" / "h100" / "reward_benchmarks")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "h100" / "length")
    ap.add_argument("--model", default="bundled:smollm2-135m-instruct", help="the model spec in the file names")
    ap.add_argument("--benchmarks", nargs="*", default=BENCHMARKS)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.15, help="near-equal: |log(len_c / len_r)| < threshold")
    ap.add_argument("--check-rewards", type=int, default=0, metavar="N",
                    help="re-score N pairs per benchmark with Direct on CPU to check the orientation (loads the model)")
    a = ap.parse_args(argv)

    from flrlib.data import DataMissing
    from flrlib.files import BadFile
    from flrlib.models import load_tokenizer
    from flrlib.results import ResultMissing

    try:
        data = {b: load_results(a.results, b, a.model) for b in a.benchmarks}
        raw = {b: raw_hh_lengths(b, [r["id"] for r in d["records"]]) for b, d in data.items()}
    except (Mismatch, DataMissing, BadFile, ResultMissing, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("checked: ids are the recorded seeded subsets, data reports match, 'correct' agrees with the rewards",
          flush=True)
    extra = {"model": a.model, "results": str(a.results.resolve().relative_to(HERE.parent))
             if a.results.resolve().is_relative_to(HERE.parent) else str(a.results)}
    if a.check_rewards:
        try:
            extra["reward_check"] = check_rewards(data, a.check_rewards, a.model)
        except Mismatch as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"orientation check: {extra['reward_check']}", flush=True)
    print(run(data, load_tokenizer(TOKENIZER), a.out, a.n_boot, a.seed, a.threshold, extra, raw_lengths=raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())

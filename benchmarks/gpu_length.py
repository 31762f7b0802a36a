"""FLR vs Direct vs response length on the full HH-RLHF test splits, within a wall-time budget (GPU script).

    python benchmarks/gpu_length.py [--model bundled:smollm2-135m-instruct] [--budget-s 480] [--max-pairs N]
                                    [--out results/gpu/length_full] [--batch-size 32] [--chunk 128]
    python benchmarks/gpu_length.py --model random:tiny-llama --max-pairs 8      # CPU smoke run (seconds)

What it does, all with the package's own pieces (``flrlib.data.load_benchmark``, ``flrlib.scoring.Scorer``,
``flrlib.metrics``; no second scorer):

1. Loads every pair of the splits (default: helpful-base, helpful-online, helpful-rejection-sampled, the three of
   the paper's Table 3: 6,240 source rows, 6,177 valid pairs; add ``hh_harmless_base`` with ``--benchmarks``) and
   orders them by the registry's seeded hash of the id (``sha256(f"{seed}:{id}")``, the order
   :func:`flrlib.data.select_subset` uses), all splits interleaved. Whatever prefix of that order is finished is
   therefore itself the seeded subset of that size, of every split in proportion.
2. Scores chunks of ``--chunk`` pairs with ``flr`` (paper bank) and ``direct`` (bf16 on cuda; ``--dtype auto``
   picks fp32 on CPU) and after every chunk rewrites (atomically) one per-sample JSONL per (split, scorer),
   schema of ``flrlib.benchmarks``: ``{id, chosen, rejected, correct, chosen_categories?, rejected_categories?}``.
   A new chunk starts only if its predicted time (the last chunk's) fits before ``--budget-s - --reserve-s``
   counted from the start of the script (model loading included).
3. Resumes: a rerun with the same ``--out`` reads the JSONL, checks ``run.json`` (same model, dtype, bank hash,
   seed; else it stops with an error) and scores only pairs not yet scored by both scorers.
4. Runs ``benchmarks/length_analysis.py``'s analysis (tokens of the model's tokenizer and characters; the length
   baseline needs no model) on every pair scored by both, per split and pooled, into ``<out>/length/``
   (``<split>.json``, ``pooled.json``, ``length_table.md``) and prints the table.

On a GPU machine (the data folder is git-ignored: carry ``data/hh-rlhf`` and ``data/paper``, or run ``flr data``
there; the output folder holds 12 files, so pack it to bring it back)::

    PYTHONUNBUFFERED=1 python benchmarks/gpu_length.py --out /tmp/length_full; tar czf $OUT/length_full.tgz -C /tmp length_full

It takes at most ``--budget-s`` (480 s) in all; the H100 run of gpu_table3.py scored ~4.6 pairs/s with FLR and
Direct together at batch 32, so one 480 s run covers about 1,800 of the 6,177 pairs; rerun with the same ``--out``
(brought back) to continue.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # length_analysis.py beside this file

import length_analysis  # noqa: E402

SPLITS = ["hh_helpful_base", "hh_helpful_online", "hh_helpful_rejection"]
SCORERS = ("flr", "direct")


class RunMismatch(ValueError):
    """The output folder holds a run with other settings."""


def rank(seed: int, key: str) -> str:
    """The registry's subset rank (``flrlib.data.registry``): the seeded subset of size k is the first k ids."""
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def load_pairs(splits: list[str], seed: int) -> tuple[dict, list[dict]]:
    """``({split: records in file order}, all records in the seeded hash order)``."""
    from flrlib.data import load_benchmark

    by_split = {s: load_benchmark(s)[0] for s in splits}
    order = sorted((r for recs in by_split.values() for r in recs), key=lambda r: rank(seed, r["id"]))
    return by_split, order


def jsonl_path(out: Path, split: str, scorer: str, model: str) -> Path:
    from flrlib.benchmarks import result_stem

    return out / f"{result_stem(split, scorer, model)}.jsonl"


def check_run(out: Path, settings: dict) -> None:
    """Write ``run.json`` on the first run; on a rerun refuse other settings (mixing them would be silent)."""
    from flrlib.files import read_json
    from flrlib.results import write_json

    path = out / "run.json"
    if path.exists():
        old = read_json(path)
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            raise RunMismatch(f"{path}: this folder holds a run with other settings {diff}; use another --out")
    else:
        write_json(path, settings)


def sample_row(record: dict, res: dict) -> dict:
    """One per-sample line, as ``flrlib.benchmarks`` writes it."""
    from flrlib import metrics

    row = {"id": record["id"], "chosen": res["chosen"], "rejected": res["rejected"],
           "correct": float(metrics.pairwise_correct([res["chosen"]], [res["rejected"]])[0])}
    if "categories" in res["chosen_detail"]:
        row["chosen_categories"] = res["chosen_detail"]["categories"]
        row["rejected_categories"] = res["rejected_detail"]["categories"]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="bundled:smollm2-135m-instruct")
    ap.add_argument("--dtype", default="auto", help="auto: bf16 on cuda, fp32 on CPU")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--budget-s", type=float, default=480, help="wall time of the whole script, loading included")
    ap.add_argument("--reserve-s", type=float, default=60, help="kept for the analysis at the end")
    ap.add_argument("--max-pairs", type=int, default=None, help="stop after this many pairs in all")
    ap.add_argument("--benchmarks", nargs="*", default=SPLITS)
    ap.add_argument("--out", type=Path, default=Path("results") / "gpu" / "length_full")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=128, help="pairs per chunk (the unit of saving and of the budget)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--threshold", type=float, default=0.15)
    a = ap.parse_args(argv)
    t0 = time.time()

    from flrlib.files import read_jsonl
    from flrlib.followups import load_bank
    from flrlib.models import load_model
    from flrlib.results import write_jsonl
    from flrlib.scoring import ScoreConfig, Scorer

    by_split, order = load_pairs(a.benchmarks, a.seed)
    if a.max_pairs is not None:
        order = order[: a.max_pairs]
    lm = load_model(a.model, dtype=a.dtype, device=a.device)
    bank = load_bank("paper")
    scorers = {s: Scorer(lm, bank, ScoreConfig(scorer=s, batch_size=a.batch_size), cache=None) for s in SCORERS}
    dtype = str(lm.model.dtype).replace("torch.", "")
    try:
        a.out.mkdir(parents=True, exist_ok=True)
        check_run(a.out, {"model": a.model, "dtype": dtype, "bank_hash": bank.hash, "seed": a.seed,
                          "template_hash": scorers["flr"].provenance["template_hash"]})
    except RunMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{a.model} on {lm.model.device} ({dtype}); {len(order)} pairs in {len(by_split)} splits; "
          f"budget {a.budget_s:.0f} s", flush=True)

    split_of = {r["id"]: s for s, recs in by_split.items() for r in recs}
    rows = {(sp, s): [] for sp in by_split for s in SCORERS}
    for (sp, s) in rows:
        p = jsonl_path(a.out, sp, s, a.model)
        if p.exists():
            rows[sp, s] = read_jsonl(p)
    done = set.intersection(*[{r["id"] for sp in by_split for r in rows[sp, s]} for s in SCORERS])
    todo = [r for r in order if r["id"] not in done]
    print(f"resuming: {len(done)} pairs already scored, {len(todo)} to go" if done else f"{len(todo)} pairs to score",
          flush=True)

    deadline, last = t0 + a.budget_s - a.reserve_s, 0.0
    scored = 0
    for start in range(0, len(todo), a.chunk):
        if time.time() + last > deadline:
            print(f"budget reached: stopping with {len(todo) - start} pairs not scored", flush=True)
            break
        t = time.time()
        chunk = todo[start: start + a.chunk]
        for s, scorer in scorers.items():
            have = {r["id"] for sp in by_split for r in rows[sp, s]}
            new = [r for r in chunk if r["id"] not in have]  # a resumed run may have one scorer's rows already
            for r, res in zip(new, scorer.score_pairs(new, progress=False) if new else []):
                rows[split_of[r["id"]], s].append(sample_row(r, res))
        for sp in {split_of[r["id"]] for r in chunk}:
            for s in SCORERS:
                write_jsonl(jsonl_path(a.out, sp, s, a.model), rows[sp, s])
        last = time.time() - t
        scored += len(chunk)
        print(f"{len(done) + scored} pairs scored ({len(chunk) / last:.1f} pairs/s, {time.time() - t0:.0f} s)",
              flush=True)

    data = {}
    for sp, recs in by_split.items():
        sc = {s: {r["id"]: r for r in rows[sp, s]} for s in SCORERS}
        both = [r for r in recs if all(r["id"] in sc[s] for s in SCORERS)]
        if both:
            data[sp] = {"records": both, **{s: [sc[s][r["id"]] for r in both] for s in SCORERS}}
    if not data:
        print("nothing scored yet: no analysis", flush=True)
        return 0
    extra = {"model": a.model, "dtype": dtype, "device": str(lm.model.device), "results": str(a.out),
             "pairs": {sp: len(d["records"]) for sp, d in data.items()},
             "valid_pairs": {sp: len(r) for sp, r in by_split.items()}}
    md = length_analysis.run(data, lm.tokenizer, a.out / "length", a.n_boot, a.seed, a.threshold, extra)
    print(md)
    print(f"total {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

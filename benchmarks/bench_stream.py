"""Input side of the Scorer before and after issue 17, side by side in one run: tokenisation time per
conversation and peak RSS for 10K input rows (not a timed unit test; CPU only, no forward pass).

    python benchmarks/bench_stream.py [--rows 10000] [--old-rows 200] [--json out.json]

Rows: chosen and rejected conversations of the four HH-RLHF test splits, in a seeded order, encoded for FLR
with the paper's 120-follow-up bank (the tiny model's real SmolLM2 tokenizer and template, max_tokens 2048).
Each path runs in a fresh process, so each peak RSS is its own:

  old       ``Scorer.encode`` of commit cb5a9b2 (``benchmarks/baseline.py``): every follow-up tokenised with the
            whole conversation, twice (240 tokenisations per row), and ``Scorer.score`` encoded every row before
            the first forward. Timed on the first ``--old-rows`` rows (at ~0.5 s a row here, 10K rows would take
            over an hour); its memory for ``--rows`` rows is the measured per-row growth of holding those
            encodings times ``--rows``, on top of the measured start: old ``score`` held them all at once.
  new, held the current ``Encoder`` (prefix tokenised once, follow-up ids shared), all ``--rows`` held at once.
  new       what ``Scorer.score`` now does: windows of ``stream_rows`` (2048) rows encoded, checked and sized for
            batching, then dropped (their forward would run here; it is the same work in every path).

The score cache and the returned rows (per-follow-up values of every row) are the same in every path and not
counted. Token ids are checked to be identical between old and new on the rows both encode.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPLITS = ("hh_helpful_base", "hh_helpful_online", "hh_helpful_rejection", "hh_harmless_base")


def rss_mib() -> float:
    """Current resident set size (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def conversations(n: int, seed: int = 0) -> list[list[dict]]:
    from flrlib.data import load_benchmark

    convs = []
    for split in SPLITS:
        for r in load_benchmark(split)[0]:
            for side in ("chosen", "rejected"):
                key = hashlib.sha256(f"{seed}:{r['id']}:{side}".encode()).hexdigest()
                convs.append((key, r["messages"] + [{"role": "assistant", "content": r[side]}]))
    return [c for _, c in sorted(convs, key=lambda x: x[0])[:n]]


def worker(path: str, mode: str, rows: int, old_rows: int) -> dict:
    from flrlib import models
    from flrlib.followups import load_bank

    convs = [json.loads(x) for x in Path(path).read_text().splitlines()][:rows]
    lm = models.load_model(models.TINY, dtype="float32", device="cpu")
    bank = load_bank("paper")
    if mode == "old":
        sys.path.insert(0, str(HERE))
        from baseline import old_engine

        scoring = old_engine()[1]
    else:
        from flrlib import scoring
    sc = scoring.Scorer(lm, bank, scoring.ScoreConfig(), cache=None)
    sc.encode(convs[0])  # warm-up (template compiled, boundary checked)
    start, t0 = rss_mib(), time.perf_counter()
    out = {"mode": mode, "start_rss_mib": round(start, 1)}
    if mode == "old":
        held = [sc.encode(c) for c in convs[:old_rows]]
        dt, n = time.perf_counter() - t0, len(held)
        per_row = (rss_mib() - start) / n
        out.update(rows_timed=n, ms_per_conv=1e3 * dt / n, mib_per_row=per_row,
                   peak_rss_mib=round(start + per_row * rows, 1), peak_is="extrapolated (linear)")
        out["ids"] = [(e.prefix, e.targets) for e in held[:50]]
    elif mode == "new_held":
        held = [sc.encode(c) for c in convs]
        dt, n = time.perf_counter() - t0, len(held)
        out.update(rows_timed=n, ms_per_conv=1e3 * dt / n, mib_per_row=(rss_mib() - start) / n,
                   peak_rss_mib=round(peak_mib(), 1), peak_is="measured")
        out["ids"] = [(e.prefix, e.targets) for e in held[:50]]
    else:  # the window loop of Scorer.score / Scorer._score_engine, without the forward
        step, n = sc.config.stream_rows, 0
        for s in range(0, len(convs), step):
            encs = {i: sc.encode(convs[i]) for i in range(s, min(s + step, len(convs)))}
            for i, e in encs.items():
                sc._check_length(i, e)
            shapes = {i: sc._shape(e) for i, e in encs.items()}
            sc._batches(sorted(encs, key=lambda i: shapes[i][0]), shapes)
            n += len(encs)
            del encs
        dt = time.perf_counter() - t0
        out.update(rows_timed=n, ms_per_conv=1e3 * dt / n, mib_per_row=None, peak_rss_mib=round(peak_mib(), 1),
                   peak_is="measured")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--old-rows", type=int, default=200, help="rows the old path is timed and sized on")
    ap.add_argument("--json", help="also write the numbers to this file")
    ap.add_argument("--worker", nargs=2, metavar=("ROWS_JSONL", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker[0], a.worker[1], a.rows, a.old_rows)))
        return
    convs = conversations(a.rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_text("".join(json.dumps(c) + "\n" for c in convs))
        res = {}
        for mode in ("old", "new_held", "new"):
            p = subprocess.run([sys.executable, __file__, "--rows", str(len(convs)), "--old-rows", str(a.old_rows),
                                "--worker", str(path), mode], capture_output=True, text=True, check=True)
            res[mode] = json.loads(p.stdout.strip().splitlines()[-1])
    same = res["old"]["ids"][: len(res["new_held"]["ids"])] == res["new_held"]["ids"][: len(res["old"]["ids"])]
    print(f"{len(convs)} conversations (HH-RLHF test, chosen and rejected), paper bank (120 follow-ups), FLR, "
          f"max_tokens 2048; shared machine, absolute times are indicative, ratios were taken in one run")
    print(f"{'path':<10} {'rows timed':>10} {'ms/conv':>9} {'MiB/row':>8} {'peak RSS MiB':>13}  peak")
    for mode, r in res.items():
        per = f"{r['mib_per_row']:.4f}" if r["mib_per_row"] is not None else "-"
        print(f"{mode:<10} {r['rows_timed']:>10} {r['ms_per_conv']:>9.2f} {per:>8} {r['peak_rss_mib']:>13.0f}  "
              f"{r['peak_is']} (start {r['start_rss_mib']:.0f} MiB)")
    o, n = res["old"], res["new"]
    print(f"tokenisation per conversation: old/new {o['ms_per_conv'] / n['ms_per_conv']:.1f}x · peak RSS for "
          f"{len(convs)} rows: old {o['peak_rss_mib']:.0f} MiB (extrapolated) vs new {n['peak_rss_mib']:.0f} MiB · "
          f"growth over the start: old {o['peak_rss_mib'] - o['start_rss_mib']:.0f} MiB vs new "
          f"{n['peak_rss_mib'] - n['start_rss_mib']:.0f} MiB · token ids identical on the first "
          f"{min(len(o['ids']), 50)} rows: {same}")
    if a.json:
        Path(a.json).write_text(json.dumps({m: {k: v for k, v in r.items() if k != "ids"} for m, r in res.items()},
                                           indent=1))


if __name__ == "__main__":
    main()

"""RM-Bench (all domains present) and RewardBench v1 for flr, direct and length at GPU scale (issue 24).

    python benchmarks/gpu_rmbench.py [--model bundled:smollm2-135m-instruct] [--rm-bench-prompts N] [--profile gpu]

Same code as notebook 03's RM-Bench section (``flrlib.benchmarks.run_suite``): every RM-Bench domain file in the data
folder (``rm_bench_math`` and ``rewardbench`` are downloaded when the machine is online; offline they are skipped with
the reason printed), every prompt by default. Writes ``results/<profile>/rm_bench/`` and, for RewardBench,
``results/<profile>/reward_benchmarks/rewardbench__*`` plus ``results/<profile>/rewardbench/`` (RewardBench's own
results shape and the section scores); prints the RM-Bench table on the prompts every scorer scored, FLR - Direct on
the same prompts (paired CIs), and the RewardBench sections. Nothing here is timed against anything: the seconds
printed are wall time of this run on this machine.

Cost (estimate, not measured on a GPU): RM-Bench is 1,327 prompts x 6 responses = 7,962 FLR conversations, each
with the 120 follow-ups packed; RewardBench 2,985 pairs = 5,970 conversations.
"""
from __future__ import annotations

import argparse
import time

RM_BENCH = ["rm_bench_chat", "rm_bench_code", "rm_bench_math", "rm_bench_safety_refuse", "rm_bench_safety_response"]


def main() -> None:
    import pandas as pd
    import torch

    from flrlib import reporting
    from flrlib.benchmarks import run_suite
    from flrlib.models import load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="bundled:smollm2-135m-instruct")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--profile", default="gpu")
    ap.add_argument("--rm-bench-prompts", type=int, default=None, help="prompts per RM-Bench domain (default: all)")
    ap.add_argument("--rewardbench-pairs", type=int, default=None, help="RewardBench pairs (default: all 2,985)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--scorers", nargs="*", default=["flr", "direct", "length"])
    ap.add_argument("--skip-rewardbench", action="store_true")
    a = ap.parse_args()

    lm = load_model(a.model, dtype=a.dtype)
    print(f"{a.model} on {lm.model.device} ({lm.model.dtype}); "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}", flush=True)
    t0 = time.time()
    done = []
    for b in RM_BENCH + ([] if a.skip_rewardbench else ["rewardbench"]):  # one at a time: finished files stay
        t = time.time()
        recs = run_suite(lm, [b], a.scorers, a.profile, rm_bench_prompts=a.rm_bench_prompts,
                         max_examples=a.rewardbench_pairs, batch_size=a.batch_size, cache=None, progress=False)
        for s in recs.skipped:
            print(f"{b}: skipped ({s['reason'][:200]})", flush=True)
        for r in recs:
            if r["kind"] == "rm_bench":
                print(f"{b} {r['tag']}: hard {r['hard']:.3f} normal {r['normal']:.3f} easy {r['easy']:.3f} "
                      f"n={r['n']} ties={r['ties']}", flush=True)
            else:
                print(f"{b} {r['tag']}: accuracy {r['value']:.3f} n={r['n']}", flush=True)
        done += recs
        print(f"{b}: {time.time() - t:.0f} s", flush=True)
    print(f"total {time.time() - t0:.0f} s")
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    if any(r["kind"] == "rm_bench" for r in done):
        print(reporting.rm_bench_table(a.profile, a.scorers).to_string())
        if {"flr", "direct"} <= set(a.scorers):
            print(reporting.rm_bench_paired_table(a.profile, "flr", "direct").round(4).to_string())
    if any(r["benchmark"] == "rewardbench" for r in done):
        print(reporting.rewardbench_table(a.profile).to_string())


if __name__ == "__main__":
    main()

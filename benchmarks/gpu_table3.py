"""Notebook 03's protocol (Table 3 analogue) at GPU scale: every offline benchmark, FLR and Direct, large seeded subsets.

    python benchmarks/gpu_table3.py [--model bundled:smollm2-135m-instruct] [--max-examples 1000] [--profile gpu]

Same code as notebook 03 (``flrlib.benchmarks.run_suite``), with larger subsets than a CPU allows, so that the
confidence intervals say something. It writes ``results/<profile>/reward_benchmarks/`` (read them with
``flrlib.reporting.reward_table(profile)``) and prints the table and the paired FLR - Direct differences.
The project ran it once on an H100 with the bundled SmolLM2 in bf16 (README, "Results at GPU scale").
"""
from __future__ import annotations

import argparse
import time

BENCHMARKS = ["hh_helpful_base", "hh_helpful_online", "hh_helpful_rejection", "alpaca_eval_gpt4",
              "prometheus_mt_bench", "prometheus_vicuna", "alpaca_eval_system"]


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
    ap.add_argument("--max-examples", type=int, default=1000, help="pairs per pairwise benchmark (seeded subset)")
    ap.add_argument("--rating-examples", type=int, default=None, help="rows per rating benchmark (default: all)")
    ap.add_argument("--system-prompts", type=int, default=50, help="AlpacaEval prompts per model (system level)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--benchmarks", nargs="*", default=BENCHMARKS)
    a = ap.parse_args()

    lm = load_model(a.model, dtype=a.dtype)
    print(f"{a.model} on {lm.model.device} ({lm.model.dtype}); "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}", flush=True)
    t0 = time.time()
    sizes = {"prometheus_mt_bench": a.rating_examples, "prometheus_vicuna": a.rating_examples}
    for b in a.benchmarks:  # one benchmark at a time: what finished is on disk if the run is cut
        t = time.time()
        recs = run_suite(lm, [b], ["flr", "direct"], a.profile, max_examples=a.max_examples, sizes=sizes,
                         system_prompts=a.system_prompts, batch_size=a.batch_size, cache=None, progress=False)
        print(f"{b}: " + ", ".join(f"{r['tag']} {r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] n={r['n']}"
                                   for r in recs) + f" ({time.time() - t:.0f} s)", flush=True)
    print(f"total {time.time() - t0:.0f} s")
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    print(reporting.reward_table(a.profile).to_string())
    cols = ["benchmark", "metric", "value_a", "value_b", "diff", "ci_low", "ci_high", "p_value", "n"]
    print(reporting.paired_comparison(a.profile)[cols].to_string())


if __name__ == "__main__":
    main()

"""Mean tokens per scored conversation of each offline benchmark, for the ``workload`` block of
``configs/throughput.yaml`` (read by ``flr reproduce --plan``). CPU, tokenizer only, no forward pass.

    python benchmarks/measure_workload.py [--n 200] [--seed 0]

For each benchmark: a seeded subset of ``--n`` rows (``load_benchmark``), every conversation the FLR scorer reads
(pairwise: context + chosen and context + rejected; RM-Bench: context + each of the 3 chosen and 3 rejected
responses; rating and system: context + response), encoded as the
Scorer does (base layout, paper bank, max_tokens 2048, the SmolLM2 tokenizer): mean prefix tokens (context and
response, as the model reads them) and mean response tokens. Prints YAML rows to paste.
"""
from __future__ import annotations

import argparse
import datetime

import numpy as np

OFFLINE = ["hh_helpful_base", "hh_helpful_online", "hh_helpful_rejection", "hh_harmless_base", "alpaca_eval_gpt4",
           "prometheus_mt_bench", "prometheus_vicuna", "alpaca_eval_system",
           "rm_bench_chat", "rm_bench_code", "rm_bench_safety_refuse", "rm_bench_safety_response"]  # math: online only


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from flrlib import models
    from flrlib.chat import content_tokens
    from flrlib.data import load_benchmark
    from flrlib.followups import load_bank
    from flrlib.scoring import ScoreConfig, Scorer

    sc = Scorer(models.load_model(models.TINY, dtype="float32", device="cpu"), load_bank("paper"), ScoreConfig(),
                cache=None)
    fu = sum(len(t) for t in sc.encode([{"role": "user", "content": "Hi"},
                                        {"role": "assistant", "content": "Hello."}]).targets)
    print(f"# measured {datetime.date.today()} with benchmarks/measure_workload.py --n {a.n} --seed {a.seed} "
          f"(SmolLM2 tokenizer; the paper bank is {fu} follow-up tokens)")
    for b in OFFLINE:
        recs, _ = load_benchmark(b, max_examples=a.n, seed=a.seed)
        if recs and "chosen" in recs[0]:  # RM-Bench: 3 styled responses per side
            convs = [r["messages"] + [{"role": "assistant", "content": x}] for r in recs for s in ("chosen", "rejected")
                     for x in (r[s] if isinstance(r[s], list) else [r[s]])]
        else:
            convs = [r["messages"] + [{"role": "assistant", "content": r["response"]}] for r in recs]
        prefix = [len(sc.encode(c).prefix) for c in convs]
        resp = content_tokens(sc.tokenizer, [c[-1]["content"] for c in convs])
        print(f"    {b}: {{prefix_tokens: {np.mean(prefix):.0f}, response_tokens: {np.mean(resp):.0f}, "
              f"conversations_per_row: {len(convs) / len(recs):.0f}}}")


if __name__ == "__main__":
    main()

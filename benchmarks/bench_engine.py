"""Speed and memory of the FLR engine, measured side by side in one run (not a timed unit test).

Scores the same real conversations (HH-RLHF helpful-base test, chosen responses, seeded subset) with the full
120-follow-up paper bank four ways and prints wall times, ratios, agreement and peak RSS:

  loop    authors-style: one full forward per follow-up (flrlib.scoring.naive_logprobs, the test oracle)
  padded  all (context + follow-up) sequences of a conversation in one right-padded batch, no KV cache
  engine  shared-prefix KV engine (flrlib.scoring.engine_logprobs): follow-ups packed over the prefix cache, the
          batch's conversations in one forward, chunked log-softmax (issue 17)
  old     the engine before issue 17 (commit cb5a9b2 via benchmarks/baseline.py: one packed forward per
          conversation, a host sync after each), same batches
  floor   one forward per conversation over context + all follow-up tokens (it also runs the LM head over the
          context, which the engine skips, so the engine can come in under it)

    python benchmarks/bench_engine.py [--n 20] [--model bundled:smollm2-135m-instruct] [--loop-followups 120]

``--loop-followups K`` times the loop and the padded batch on the first K follow-ups of each conversation only and
scales their times by 120/K (both cost one context recomputation per follow-up, so their time is linear in the
number of follow-ups); the output says when it did so. Engine and floor always run the full bank.
Targets (issue 3): engine >= 15x faster than the loop, <= 1.3x the floor, peak RSS <= 8 GiB.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from flrlib.data import load_benchmark
from flrlib.followups import load_bank
from flrlib.models import load_model
from flrlib.scoring import (ScoreConfig, Scorer, engine_logprobs, floor_forward, naive_logprobs,
                            padded_logprobs)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import old_engine  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="bundled:smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=20, help="conversations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--chunk-size", type=int, default=128, help="follow-ups packed per forward")
    ap.add_argument("--loop-followups", type=int, default=120)
    ap.add_argument("--json", help="also write the numbers to this file")
    a = ap.parse_args()

    lm = load_model(a.model, dtype="float32")
    bank = load_bank("paper")
    rows, _ = load_benchmark("hh_helpful_base", max_examples=a.n, seed=a.seed)
    convs = [r["messages"] + [{"role": "assistant", "content": r["chosen"]}] for r in rows]
    sc = Scorer(lm, bank, ScoreConfig(batch_size=a.batch_size, chunk_size=a.chunk_size), cache=None)
    encs = [sc.encode(c) for c in convs]
    order = sorted(range(len(encs)), key=lambda i: len(encs[i].prefix))
    prefix = [len(e.prefix) for e in encs]
    fu_tokens = sum(len(t) for t in encs[0].targets)
    print(f"model {a.model} · {torch.get_num_threads()} threads · {len(encs)} conversations · {len(bank.texts())} "
          f"follow-ups ({fu_tokens} tokens) · context tokens median {int(np.median(prefix))}, max {max(prefix)}")

    # warm-up (allocator, kernels)
    engine_logprobs(lm.model, encs[:1], sc.pad_id, a.chunk_size)

    engine, t_engine = timed(lambda: [engine_logprobs(lm.model, [encs[i] for i in order[s:s + a.batch_size]],
                                                      sc.pad_id, a.chunk_size)
                                      for s in range(0, len(order), a.batch_size)])
    engine = [row for batch in engine for row in batch]
    engine = [engine[order.index(i)] for i in range(len(encs))]
    old_logprobs = old_engine()[1].engine_logprobs
    old, t_old = timed(lambda: [old_logprobs(lm.model, [encs[i] for i in order[s:s + a.batch_size]], sc.pad_id,
                                             a.chunk_size) for s in range(0, len(order), a.batch_size)])
    old = [row for batch in old for row in batch]
    old = [old[order.index(i)] for i in range(len(encs))]
    _, t_floor = timed(lambda: floor_forward(lm.model, encs))
    k = min(a.loop_followups, len(bank.texts()))
    sub = [type(e)(e.prefix, e.targets[:k]) for e in encs]
    scale = len(bank.texts()) / k
    padded, t_padded = timed(lambda: [padded_logprobs(lm.model, [e], sc.pad_id, chunk_size=len(e.targets))[0]
                                      for e in sub])
    t_padded *= scale
    loop, t_loop = timed(lambda: naive_logprobs(lm.model, sub))
    t_loop_full = t_loop * scale

    def maxdiff(x):
        return max(float(np.abs(p[j] - q[j]).max()) for p, q in zip(x, loop) for j in range(k))

    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    res = {
        "n_conversations": len(encs), "followups": len(bank.texts()), "model": a.model,
        "threads": torch.get_num_threads(), "loop_s": round(t_loop_full, 2),
        "loop_and_padded_extrapolated_from_followups": None if k == len(bank.texts()) else k,
        "padded_s": round(t_padded, 2), "engine_s": round(t_engine, 2), "old_engine_s": round(t_old, 2),
        "floor_s": round(t_floor, 2), "speedup_engine_vs_old": round(t_old / t_engine, 2),
        "max_abs_dlp_engine_vs_old": max(float(np.abs(x - y).max()) for p, q in zip(engine, old) for x, y in zip(p, q)),
        "speedup_engine_vs_loop": round(t_loop_full / t_engine, 2),
        "speedup_engine_vs_padded": round(t_padded / t_engine, 2),
        "engine_over_floor": round(t_engine / t_floor, 3),
        "max_abs_dlp_engine_vs_loop": maxdiff(engine), "max_abs_dlp_padded_vs_loop": maxdiff(padded),
        "peak_rss_gib": round(rss_gib, 2),
    }
    note = f" (timed on {k} follow-ups, x{scale:.1f})" if k < len(bank.texts()) else ""
    print(f"loop   {t_loop_full:8.1f} s{note}\npadded {t_padded:8.1f} s{note}\nengine {t_engine:8.1f} s\n"
          f"old    {t_old:8.1f} s (engine before issue 17; new/old {t_engine / t_old:.2f}, max |d lp| "
          f"{res['max_abs_dlp_engine_vs_old']:.1e})\nfloor  {t_floor:8.1f} s")
    print(f"engine speed-up vs loop {res['speedup_engine_vs_loop']}x (target >= 15x) · vs padded "
          f"{res['speedup_engine_vs_padded']}x · engine/floor {res['engine_over_floor']} (target <= 1.3)")
    print(f"max |d lp| vs loop: engine {res['max_abs_dlp_engine_vs_loop']:.2e}, padded "
          f"{res['max_abs_dlp_padded_vs_loop']:.2e} · peak RSS {rss_gib:.2f} GiB (target <= 8)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()

"""The issue-17 engine on an 8B-shaped model with a 128K vocabulary in bf16, beside the old engine (GPU script).

    # here, once: the old engine's sources and the tokenizer, for a machine without git or the converted model
    python benchmarks/baseline.py --export .gpu/baseline
    python -c "from flrlib.models import BUNDLED, load_tokenizer; load_tokenizer(BUNDLED).save_pretrained('.gpu/tok')"
    # on the GPU machine (its python3 has torch and transformers; carry .gpu, data/hh-rlhf, data/paper):
    PYTHONPATH=. FLR_OFFLINE=1 FLR_BASELINE_DIR=.gpu/baseline PYTHONUNBUFFERED=1 \
        python3 benchmarks/gpu_engine.py --tokenizer .gpu/tok --out $OUT/gpu_engine.json
    python benchmarks/gpu_engine.py --smoke                    # CPU smoke run (tiny shapes; minutes on 2 busy cores)

The engine passes ``cache=`` (transformers 5.24, the pinned version); if the GPU machine's transformers is older,
carry the pinned wheel (``pip download --no-deps transformers==5.24.0 -d .whl`` here, ``pip install --no-deps
.whl/*.whl`` there first). It needs well under 10 minutes on an H100/H200 (model build ~20 s, every timed run a few
seconds, the fp32 oracle copy ~32 GB).

Model: a Llama with Llama-3-8B's shape (32 layers, hidden 4096, GQA 32/8, MLP 14336) and its 128,256-token
vocabulary, random weights built on the GPU in bf16 (no download), read through the SmolLM2 tokenizer (its ids are
< 49,152, so every id exists; the LM head and the log-softmax cost what Llama-3's do). Random weights measure speed
and exactness, not reward quality. Data: ``--n`` (20) HH-RLHF helpful-base test conversations (chosen responses,
seeded) x the paper's 120 follow-ups. Prints, all in one run:

1. the chip's measured bf16 matmul peak (8192^3 GEMMs);
2. old engine (commit cb5a9b2, ``benchmarks/baseline.py``) and new engine, each as ``Scorer.score`` end to end
   (encoding included) at the same ``batch_size``, then the new engine at several token budgets: conversations/s,
   achieved TFLOP/s (useful FLOPs: the decoder over every prefix and packed follow-up token, the LM head over the
   scored positions, attention over the unmasked query-key pairs) and its share of the measured peak;
3. engine vs the naive oracle (one full forward per follow-up) on ``--oracle-n`` conversations, in bf16 and in
   fp32 (a float32 copy of the same weights), old and new engine: max |d lp| per token, max |d reward|.

Targets (issue 17): >= 3x the 7.9 conversations/s measured before (so >= 23.7), >= 40 % of the measured peak.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return out, best


def matmul_peak(device: str, dtype, n: int, iters: int) -> float:
    """Measured dense matmul TFLOP/s (best of a few timed loops)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _, t = timed(lambda: [a @ b for _ in range(iters)], repeat=3)
    return 2 * n ** 3 * iters / t / 1e12


def random_llama(shape: dict, dtype, device: str, tokenizer_dir: str | None = None):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from flrlib.models import BUNDLED, Loaded, load_tokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir) if tokenizer_dir else load_tokenizer(BUNDLED)
    cfg = LlamaConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=False, max_position_embeddings=8192, **shape)
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).eval()
    torch.set_default_dtype(prev)
    for p in model.parameters():  # inference only: no autograd state on the weights
        p.requires_grad_(False)
    return Loaded(model, tok, f"random:{shape['num_hidden_layers']}x{shape['hidden_size']}-v{shape['vocab_size']}")


def useful_flops(cfg, encs) -> float:
    """Decoder linear layers over every prefix and packed token, LM head over the scored positions, attention over
    the unmasked (query, key) pairs. Padding, masked pairs and recomputation are not useful work."""
    h, layers, v = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    kv = h // cfg.num_attention_heads * cfg.num_key_value_heads
    per_token = layers * 2 * (h * (2 * h + 2 * kv) + 3 * h * cfg.intermediate_size)
    total = 0.0
    for e in encs:
        p = len(e.prefix)
        packed = [len(t) - 1 for t in e.targets]
        q = sum(packed)
        pairs = p * (p + 1) / 2 + sum(k * p + k * (k + 1) / 2 for k in packed)
        total += per_token * (p + q) + 2 * h * v * (1 + q) + layers * 4 * h * pairs
    return total


def run(scoring_mod, lm, bank, convs, cfg_kw, repeat):
    sc = scoring_mod.Scorer(lm, bank, scoring_mod.ScoreConfig(**cfg_kw), cache=None)
    sc.score(convs[:2], progress=False)  # warm-up (kernels, allocator); then a fresh in-memory cache
    sc = scoring_mod.Scorer(lm, bank, scoring_mod.ScoreConfig(**cfg_kw), cache=None)
    res, t = None, float("inf")
    for _ in range(repeat):
        sc.cache = type(sc.cache)(None)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        res, dt = timed(lambda: sc.score(convs, progress=False))
        t = min(t, dt)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return sc, res, t, peak


def oracle_check(scoring_new, scoring_old, lm, bank, convs) -> dict:
    """max |d lp| per token and max |d reward| of each engine against the naive oracle (same model, same dtype)."""
    out = {}
    new = scoring_new.Scorer(lm, bank, scoring_new.ScoreConfig(), cache=None)
    encs = [new.encode(c) for c in convs]
    oracle = scoring_new.naive_logprobs(lm.model, encs)
    for name, mod in (("new", scoring_new), ("old", scoring_old)):
        got = mod.engine_logprobs(lm.model, encs, new.pad_id, 128)
        d = max(float(np.abs(x - y).max()) for a, b in zip(got, oracle) for x, y in zip(a, b))
        def rew(rows):
            return [new._finish({"sum": [float(x.sum()) for x in r], "n": [len(x) for x in r]})["reward"] for r in rows]

        dr = max(abs(a - b) for a, b in zip(rew(got), rew(oracle)))
        out[name] = {"max_abs_dlp": d, "max_abs_dreward": dr}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20, help="HH-RLHF conversations")
    ap.add_argument("--oracle-n", type=int, default=2, help="conversations checked against the naive oracle")
    ap.add_argument("--batch-size", type=int, default=8, help="the old engine's and the comparison's batch size")
    ap.add_argument("--budgets", type=int, nargs="*", default=[16384, 32768, 65536], help="new engine token budgets")
    ap.add_argument("--max-batch", type=int, default=64, help="batch_size cap with a token budget")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-fp32", action="store_true", help="skip the fp32 oracle check (needs ~32 GB more)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on CPU: checks the script, measures nothing")
    ap.add_argument("--tokenizer", help="a saved tokenizer folder (default: the bundled SmolLM2's)")
    ap.add_argument("--out", help="write the numbers as JSON here")
    a = ap.parse_args()
    t_start = time.time()

    from baseline import old_engine

    from flrlib import scoring as scoring_new
    from flrlib.data import load_benchmark
    from flrlib.followups import load_bank

    scoring_old = old_engine()[1]
    device = "cuda" if torch.cuda.is_available() and not a.smoke else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    shape = dict(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                 intermediate_size=14336, vocab_size=128256)
    if a.smoke:
        shape.update(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                     intermediate_size=128)
        a.n, a.oracle_n, a.repeat, a.budgets = min(a.n, 4), 1, 1, a.budgets[:1]
    info = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
            "shape": shape, "dtype": str(dtype).replace("torch.", ""), "n": a.n, "smoke": a.smoke}
    import transformers

    info["transformers"] = transformers.__version__
    print(json.dumps(info), flush=True)
    peak = matmul_peak(device, dtype, 512 if a.smoke else 8192, 2 if a.smoke else 20)
    print(f"measured {info['dtype']} matmul peak: {peak:.3g} TFLOP/s", flush=True)

    lm = random_llama(shape, dtype, device, a.tokenizer)
    bank = load_bank("paper")
    rows, _ = load_benchmark("hh_helpful_base", max_examples=a.n, seed=0)
    convs = [r["messages"] + [{"role": "assistant", "content": r["chosen"]}] for r in rows]
    probe = scoring_new.Scorer(lm, bank, scoring_new.ScoreConfig(), cache=None)
    encs = [probe.encode(c) for c in convs]
    flops = useful_flops(lm.model.config, encs)
    prefix = [len(e.prefix) for e in encs]
    print(f"{lm.spec} ({sum(p.numel() for p in lm.model.parameters()) / 1e9:.2f} B parameters) on {device}; {len(convs)} "
          f"conversations x {len(bank.texts())} follow-ups; context tokens median {int(np.median(prefix))}, max "
          f"{max(prefix)}; useful work {flops / 1e12:.1f} TFLOP", flush=True)

    results = {"info": info, "matmul_peak_tflops": peak, "useful_tflop": flops / 1e12, "runs": []}
    base = {"batch_size": a.batch_size}
    plan = [("old engine", scoring_old, base), ("new engine", scoring_new, base)]
    plan += [(f"new engine, token_budget {b}", scoring_new, {"batch_size": a.max_batch, "token_budget": b})
             for b in a.budgets]
    ref = None
    print(f"{'run':<34} {'conv/s':>8} {'TFLOP/s':>8} {'% peak':>7} {'peak GiB':>9} {'max |d reward| vs old':>22}")
    for name, mod, kw in plan:
        _, res, t, mem = run(mod, lm, bank, convs, kw, a.repeat)
        rewards = [r["reward"] for r in res]
        ref = ref or rewards
        row = {"run": name, "config": kw, "seconds": t, "conversations_per_s": len(convs) / t,
               "tflops": flops / t / 1e12, "share_of_peak": flops / t / 1e12 / peak, "peak_gib": mem,
               "max_abs_dreward_vs_old": max(abs(x - y) for x, y in zip(rewards, ref))}
        results["runs"].append(row)
        print(f"{name:<34} {row['conversations_per_s']:>8.2f} {row['tflops']:>8.1f} {100 * row['share_of_peak']:>6.1f}% "
              f"{mem:>9.1f} {row['max_abs_dreward_vs_old']:>22.2e}", flush=True)
    old, best = results["runs"][0], max(results["runs"][1:], key=lambda r: r["conversations_per_s"])
    print(f"best new / old: {best['conversations_per_s'] / old['conversations_per_s']:.2f}x; vs the 7.9 conversations/s "
          f"measured on an H100 before: {best['conversations_per_s'] / 7.9:.2f}x (target >= 3x); "
          f"{100 * best['share_of_peak']:.0f} % of the measured peak (target >= 40 %)", flush=True)

    results["oracle_bf16" if dtype == torch.bfloat16 else "oracle_fp32"] = oracle_check(
        scoring_new, scoring_old, lm, bank, convs[: a.oracle_n])
    if dtype == torch.bfloat16 and not a.no_fp32:
        lm.model.float()
        results["oracle_fp32"] = oracle_check(scoring_new, scoring_old, lm, bank, convs[: a.oracle_n])
    for k in ("oracle_bf16", "oracle_fp32"):
        if k in results:
            print(f"{k} ({a.oracle_n} conversations x 120 follow-ups): " + "; ".join(
                f"{e} engine max |d lp| {v['max_abs_dlp']:.2e}, max |d reward| {v['max_abs_dreward']:.2e}"
                for e, v in results[k].items()), flush=True)
    results["total_s"] = time.time() - t_start
    print(f"total {results['total_s']:.0f} s", flush=True)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())

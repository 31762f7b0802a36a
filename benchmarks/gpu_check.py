"""GPU check of the scoring path: CUDA, bf16, oracle equality, batch invariance, speed and peak memory at 8B scale.

CI never has a GPU; this is a script you run on one (the project ran it once on an H100, see the README):

    python benchmarks/gpu_check.py                                   # random Llama-3-8B-shaped model
    python benchmarks/gpu_check.py --model meta-llama/Meta-Llama-3-8B-Instruct   # real weights, when you have them

Without ``--model`` it builds a Llama with Llama-3-8B's shape (32 layers, hidden 4096, GQA 32/8, MLP 14336) and
random weights directly on the GPU, with the SmolLM2 tokenizer (or the one in the ``--tokenizer`` folder): the same code path and
arithmetic cost as the paper profile's M, with no download. Random weights say nothing about reward quality; they
measure exactness and speed. Steps:

1. tiny random Llama, fp32 on CUDA: engine vs the naive oracle (one forward per follow-up), batch 4 vs batch 1;
2. the 8B-shaped model in bf16: the same two checks on a few conversations (bf16 tolerance);
3. ``--n`` real HH-RLHF conversations x the paper's 120 follow-ups: engine, floor (one forward over everything)
   and the per-follow-up loop (timed on ``--loop-followups`` follow-ups, scaled), peak GPU memory, and the
   ``Scorer`` end to end with the paper profile's batch size.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from flrlib.data import load_benchmark
from flrlib.followups import load_bank
from flrlib.models import Loaded, load_model
from flrlib.scoring import ScoreConfig, Scorer, engine_logprobs, floor_forward, naive_logprobs


DEVICE = "cuda"


def sync_time(fn):
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t


def random_llama(tokenizer_dir: str, dtype, **shape) -> Loaded:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from flrlib.models import BUNDLED, load_tokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir) if tokenizer_dir else load_tokenizer(BUNDLED)
    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False, **shape)
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    with torch.device(DEVICE):
        model = LlamaForCausalLM(cfg).eval()
    torch.set_default_dtype(prev)
    return Loaded(model, tok, f"random:{shape.get('num_hidden_layers')}x{shape.get('hidden_size')}")


TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
LLAMA3_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, rope_theta=500000.0, max_position_embeddings=8192, rms_norm_eps=1e-5)


def maxdiff(a, b) -> float:
    return max(float(np.abs(x - y).max()) for p, q in zip(a, b) for x, y in zip(p, q))


def exactness(lm: Loaded, bank, convs, name: str, chunk: int) -> dict:
    sc = Scorer(lm, bank, ScoreConfig(), cache=None)
    encs = [sc.encode(c) for c in convs]
    with torch.inference_mode():
        oracle = naive_logprobs(lm.model, encs)
        eng4 = engine_logprobs(lm.model, encs, sc.pad_id, chunk)
        eng1 = [engine_logprobs(lm.model, [e], sc.pad_id, chunk)[0] for e in encs]
    def rewards(lps):  # the FLR reward per conversation (mean-normalised follow-ups, all categories)
        return [sc._finish({"sum": [float(x.sum()) for x in row], "n": [len(x) for x in row]})["reward"] for row in lps]

    out = {"model": name, "dtype": str(lm.model.dtype).replace("torch.", ""), "conversations": len(encs),
           "max_abs_dlp_engine_vs_naive": maxdiff(eng4, oracle), "max_abs_dlp_batch4_vs_batch1": maxdiff(eng4, eng1),
           "max_abs_dreward_engine_vs_naive": float(np.max(np.abs(np.subtract(rewards(eng4), rewards(oracle))))),
           "mean_abs_lp": float(np.mean([np.abs(x).mean() for row in oracle for x in row]))}
    print(json.dumps(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a Hub id or folder (default: random Llama-3-8B-shaped weights)")
    ap.add_argument("--tokenizer", help="tokenizer folder for the random models (default: the bundled SmolLM2's; "
                    "the H100 run used a copy of its files, as the GPU machine had no flrlib install)")
    ap.add_argument("--n", type=int, default=20, help="real conversations for the speed part")
    ap.add_argument("--batch-size", type=int, default=8, help="conversations per prefix forward (paper profile: 8)")
    ap.add_argument("--chunk-size", type=int, default=128, help="follow-ups packed per forward")
    ap.add_argument("--loop-followups", type=int, default=24)
    ap.add_argument("--json", help="write all numbers to this file")
    ap.add_argument("--device", default="cuda", help="cpu only to try the script itself (with a small --model)")
    a = ap.parse_args()
    global DEVICE
    DEVICE = a.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA GPU here (use --device cpu --model random:tiny-llama to try the script)")
    import transformers

    res = {"gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu", "torch": torch.__version__, "transformers": transformers.__version__}
    print(json.dumps(res))
    bank = load_bank("paper")
    rows, _ = load_benchmark("hh_helpful_base", max_examples=a.n, seed=0)
    convs = [r["messages"] + [{"role": "assistant", "content": r["chosen"]}] for r in rows]

    # 1. tiny model, fp32: the CI oracle test, on CUDA
    res["tiny_fp32"] = exactness(random_llama(a.tokenizer, torch.float32, **TINY), bank, convs[:4], "tiny", 16)

    # 2./3. the paper-scale model in bf16
    if a.model:
        lm = load_model(a.model, dtype="bfloat16", device=DEVICE)
    else:
        lm, t_build = sync_time(lambda: random_llama(a.tokenizer, torch.bfloat16, **LLAMA3_8B))
        print(f"built a random Llama-3-8B-shaped model on the GPU in {t_build:.1f} s "
              f"({sum(p.numel() for p in lm.model.parameters()) / 1e9:.2f} B parameters)")
    res["paper_bf16"] = exactness(lm, bank, convs[:3], lm.spec, a.chunk_size)
    if not a.model:  # the same weights in fp32: the engine is exact, bf16 is what moves the numbers
        res["paper_fp32"] = exactness(Loaded(lm.model.float(), lm.tokenizer, lm.spec), bank, convs[:3], lm.spec,
                                      a.chunk_size)
        lm.model.to(torch.bfloat16)
        torch.cuda.empty_cache()

    sc = Scorer(lm, bank, ScoreConfig(batch_size=a.batch_size, chunk_size=a.chunk_size), cache=None)
    encs = [sc.encode(c) for c in convs]
    order = sorted(range(len(encs)), key=lambda i: len(encs[i].prefix))
    k = a.loop_followups
    sub = [type(e)(e.prefix, e.targets[:k]) for e in encs]
    with torch.inference_mode():
        engine_logprobs(lm.model, encs[:1], sc.pad_id, a.chunk_size)  # warm-up
        if DEVICE == "cuda":
            torch.cuda.reset_peak_memory_stats()
        def run_engine():
            return [engine_logprobs(lm.model, [encs[i] for i in order[s:s + a.batch_size]], sc.pad_id, a.chunk_size)
                    for s in range(0, len(order), a.batch_size)]

        _, t_first = sync_time(run_engine)  # first pass also tunes kernels for these shapes
        _, t_engine = sync_time(run_engine)
        peak_engine = torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else float("nan")
        _, t_floor = sync_time(lambda: floor_forward(lm.model, encs))
        _, t_loop = sync_time(lambda: naive_logprobs(lm.model, sub))
    t_loop *= len(bank.texts()) / k
    _, t_scorer = sync_time(lambda: sc.score(convs, progress=False))
    speed = {"conversations": len(encs), "followups": len(bank.texts()), "batch_size": a.batch_size,
             "chunk_size": a.chunk_size, "engine_s": round(t_engine, 3), "engine_first_pass_s": round(t_first, 3), "floor_s": round(t_floor, 3),
             "loop_s_extrapolated": round(t_loop, 2), "loop_timed_on_followups": k,
             "speedup_engine_vs_loop": round(t_loop / t_engine, 1), "engine_over_floor": round(t_engine / t_floor, 3),
             "scorer_end_to_end_s": round(t_scorer, 3), "conversations_per_s": round(len(encs) / t_scorer, 2),
             "peak_gpu_gib_engine": round(peak_engine, 2),
             "peak_gpu_gib_total": round(torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else float("nan"), 2)}
    res["paper_bf16_speed"] = speed
    print(json.dumps(speed))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()

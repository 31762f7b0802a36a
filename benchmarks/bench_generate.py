"""Generation throughput of the two backends of flrlib.generate, side by side in one run (not a timed unit test).

The same prompts (notebook 05's demo setting by default: 16 UltraFeedback mining prompts x 4 samples, T 0.7, top-p
0.9, 128 new tokens) are sampled

  hf      in-process: the bundled SmolLM2-135M-Instruct (safetensors, fp32 on CPU; batch of 4 prompts x 4 samples)
  openai  through llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) serving the same model's GGUF
          (the bundled Q4_1 file), started here on 127.0.0.1 with the same number of threads; the client keeps
          ``--concurrency`` requests in flight (the server itself decodes one request at a time)

each ``--repeats`` times in alternation (hf, openai, hf, openai ...), so that load from other processes on a shared
machine hits both alike. Both run with ``OMP_WAIT_POLICY=PASSIVE`` (set here before torch is imported): with
spinning OpenMP threads an oversubscribed machine made both backends several times slower (hf: 141 s instead of
61 s for the same 16 x 32 tokens here). Caches are off (every run samples everything). Prints wall times, generated tokens,
tokens/s and the openai/hf speed ratio, and writes them as JSON with ``--out``. The two backends do not run the same
arithmetic (fp32 PyTorch vs 4-bit llama.cpp kernels, pure top-p vs llama.cpp's default top-k 40 on top), so the
samples differ; this measures throughput, not equality.

    python benchmarks/bench_generate.py [--prompts 16] [--n 4] [--max-new-tokens 128] [--repeats 2] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (see the module doc)

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from llama_server import MODEL_NAME, LlamaServer  # noqa: E402

from flrlib.client import Endpoint  # noqa: E402
from flrlib.data import mining_prompts  # noqa: E402
from flrlib.generate import GenConfig, generate  # noqa: E402
from flrlib.models import BUNDLED, load_model  # noqa: E402


def run(policy, prompts, cfg) -> dict:
    t = time.perf_counter()
    rows = generate(policy, prompts, cfg, cache=None, progress=False)
    wall = time.perf_counter() - t
    tokens = sum(sum(r["n_tokens"]) for r in rows)
    return {"wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall,
            "samples": sum(len(r["responses"]) for r in rows),
            "truncated": sum(sum(r["truncated"]) for r in rows), "empty": sum(not x for r in rows for x in r["responses"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    prompts, _ = mining_prompts("ultrafeedback", max_examples=a.prompts, seed=0)
    base = dict(n=a.n, temperature=0.7, top_p=0.9, max_new_tokens=a.max_new_tokens, seed=0)
    hf_cfg = GenConfig(**base, batch_size=4)
    api_cfg = GenConfig(**base, concurrency=a.concurrency)
    lm = load_model(BUNDLED, dtype="float32", device="cpu")
    server = LlamaServer(Path("outputs/bench_generate_server.log"), threads=a.threads).start()
    endpoint = Endpoint(server.url, MODEL_NAME)
    runs = {"hf": [], "openai": []}
    try:
        run(endpoint, prompts[:1], GenConfig(**{**base, "n": 1, "max_new_tokens": 8}))  # warm-up: first request loads caches
        for k in range(a.repeats):
            for name, policy, cfg in (("hf", lm, hf_cfg), ("openai", endpoint, api_cfg)):
                r = run(policy, prompts, cfg)
                runs[name].append(r)
                print(f"[{k + 1}/{a.repeats}] {name:6s} {r['wall_s']:7.1f} s  {r['tokens']:6d} tokens  "
                      f"{r['tokens_per_s']:6.1f} tok/s  ({r['samples']} samples, {r['truncated']} hit the cap, "
                      f"{r['empty']} empty)", flush=True)
    finally:
        server.stop()
    tps = {k: sum(r["tokens"] for r in v) / sum(r["wall_s"] for r in v) for k, v in runs.items()}
    wall = {k: sum(r["wall_s"] for r in v) / len(v) for k, v in runs.items()}
    summary = {"prompts": a.prompts, "n": a.n, "max_new_tokens": a.max_new_tokens, "threads": a.threads,
               "concurrency": a.concurrency, "repeats": a.repeats, "runs": runs, "tokens_per_s": tps,
               "mean_wall_s": wall, "speedup_tokens_per_s": tps["openai"] / tps["hf"],
               "speedup_wall": wall["hf"] / wall["openai"], "torch": torch.__version__}
    print(f"{a.prompts} prompts x {a.n} samples, {a.max_new_tokens} new tokens, {a.threads} threads:")
    print(f"  hf     {wall['hf']:7.1f} s per run, {tps['hf']:6.1f} tok/s")
    print(f"  openai {wall['openai']:7.1f} s per run, {tps['openai']:6.1f} tok/s (llama.cpp server, Q4_1 GGUF)")
    print(f"  openai / hf: {summary['speedup_tokens_per_s']:.2f}x tokens/s, {summary['speedup_wall']:.2f}x wall")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

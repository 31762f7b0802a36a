"""What recomputing a Scorer's identity per conversation cost, measured side by side in one run (not a unit test).

Before the fix, ``Scorer._key`` called ``Scorer.provenance`` for every conversation, which called
``Loaded.provenance`` -> ``models.folder_hash``: every byte of the LoRA adapter folder was read and hashed once per
conversation (and once more per ``provenance`` read). Now the identity is computed once in ``Scorer.__init__``.

Set-up: the real bundled SmolLM2-135M-Instruct plus a LoRA adapter of the demo recipe's size (peft, r 8, alpha 16,
all linear layers, saved to a temp folder and loaded the way ``flr score --adapter`` loads it), the paper bank
(120 follow-ups), the ``feedback`` layout, and the same seeded HH-RLHF helpful-base conversations (chosen
responses) for both variants. The variants alternate (new, old, new, old ...) so that machine noise hits both.

    python benchmarks/bench_scorer_identity.py [--n 8] [--reps 2] [--key-calls 50]

Prints seconds per conversation for both and their ratio, and the time of ``_key`` alone per call.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from flrlib.cache import content_key
from flrlib.data import load_benchmark
from flrlib.followups import load_bank
from flrlib.models import BUNDLED, load_model
from flrlib.scoring import ScoreConfig, Scorer

IDENT = ("model", "adapter_hash", "dtype", "template_hash", "scorer", "bank_hash", "max_tokens")


class PerKeyIdentity(Scorer):
    """The behaviour before the fix: provenance (with the adapter folder hash) recomputed for every key."""

    @property
    def provenance(self) -> dict:
        return self._compute_provenance()

    def _key(self, conversation) -> str:
        p = self.provenance
        return content_key({k: p.get(k) for k in IDENT}, conversation)


def make_adapter(folder: str) -> int:
    """Save an untrained LoRA adapter of the demo recipe (r 8, alpha 16, all linear layers); returns its bytes."""
    from peft import LoraConfig, get_peft_model

    base = load_model(BUNDLED, dtype="float32", device="cpu").model
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    peft_model.save_pretrained(folder)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8, help="conversations")
    ap.add_argument("--reps", type=int, default=2, help="timed runs of each variant (alternating)")
    ap.add_argument("--key-calls", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="flr-bench-adapter-") as folder:
        size = make_adapter(folder)
        lm = load_model(BUNDLED, dtype="float32", device="cpu", adapter=folder)
        bank = load_bank("paper")
        rows, _ = load_benchmark("hh_helpful_base", max_examples=a.n, seed=a.seed)
        convs = [r["messages"] + [{"role": "assistant", "content": r["chosen"]}] for r in rows]
        cfg = ScoreConfig(layout="feedback")
        print(f"model {BUNDLED} + LoRA adapter ({size / 2**20:.1f} MiB, r 8, all linear) · {torch.get_num_threads()} "
              f"threads · {len(convs)} HH helpful-base conversations · feedback layout · {len(bank.texts())} "
              f"follow-ups · {a.reps} alternating runs per variant")

        Scorer(lm, bank, cfg, cache=None).score(convs[:1], progress=False)  # warm-up (allocator, kernels)
        per_conv = {"new": [], "old": []}
        rewards = {}
        for _ in range(a.reps):
            for name, cls in (("new", Scorer), ("old", PerKeyIdentity)):
                t = time.perf_counter()
                sc = cls(lm, bank, cfg, cache=None)  # in-memory cache: every conversation is scored
                out = sc.score(convs, progress=False)
                per_conv[name].append((time.perf_counter() - t) / len(convs))
                rewards[name] = [o["reward"] for o in out]
        assert np.allclose(rewards["new"], rewards["old"], atol=1e-6), "the two variants disagree"

        key_s = {}
        for name, cls in (("new", Scorer), ("old", PerKeyIdentity)):
            sc = cls(lm, bank, cfg, cache=None)
            assert sc._key(convs[0]) == Scorer(lm, bank, cfg, cache=None)._key(convs[0])  # same keys as before
            t = time.perf_counter()
            for i in range(a.key_calls):
                sc._key(convs[i % len(convs)])
            key_s[name] = (time.perf_counter() - t) / a.key_calls

    new, old = float(np.median(per_conv["new"])), float(np.median(per_conv["old"]))
    print("scoring, s/conversation (median of runs; all runs):")
    print(f"  new (identity once per Scorer)      {new:7.3f}   {[round(x, 3) for x in per_conv['new']]}")
    print(f"  old (identity recomputed per key)   {old:7.3f}   {[round(x, 3) for x in per_conv['old']]}")
    print(f"  old / new                           {old / new:7.3f}   (old - new: {1000 * (old - new):+.1f} ms/conv)")
    print(f"_key alone, ms/call ({a.key_calls} calls): new {1000 * key_s['new']:.3f} · old {1000 * key_s['old']:.3f} "
          f"· old / new {key_s['old'] / key_s['new']:.0f}x")


if __name__ == "__main__":
    main()

"""Several ranks on CPU (gloo): what each rank of a multi-process launch computes, against one process.

* TRL's reward calls: every rank passes its *own* completions (``GRPOTrainer._calculate_rewards`` gathers the
  rewards afterwards), so :class:`flrlib.reward.FLRReward` must score each rank's rows on that rank.
* Preference mining: the samples are generated once (rank 0) and every rank scores the same samples.
* Sharded training (LoRA SFT, DPO): a 2-rank DDP run matches one process with the same global batch.
"""
import multiprocessing as mp
import queue
import socket

import pytest

from flrlib.reward import FLRReward
from flrlib.scoring import ScoreConfig, Scorer
from helpers import user

PROMPTS = [user("What is the capital of France?"),
           [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}],
           user("Name a colour.")]
# rank 0 and rank 1 get different completions (and different numbers of them), as TRL deals them
BATCHES = {0: [(0, "The capital of France is Paris."), (1, "4"), (2, "Blue."), (0, "")],
           1: [(2, "Red, like a fire engine."), (1, "Four, obviously."), (0, "Paris, on the Seine.")]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(target, args, n=2, timeout=300):
    """Start ``n`` spawned processes ``target(rank, port, q, *args)``; return ``{rank: what it put on q}``. A rank
    that does not answer in ``timeout`` s (a hang in a collective) fails the test instead of hanging it."""
    ctx = mp.get_context("spawn")
    q, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=target, args=(r, port, q, *args)) for r in range(n)]
    for p in procs:
        p.start()
    got = {}
    try:
        for _ in procs:
            rank, out = q.get(timeout=timeout)
            got[rank] = out
    except queue.Empty:
        pytest.fail(f"ranks {sorted(set(range(n)) - set(got))} did not answer in {timeout} s (hung in a collective?)")
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
    return got


def _once_rank(rank, port, q):
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from flrlib.parallel import Rank0Failed, once

    calls = []

    def work(fail=False):
        calls.append(rank)
        if fail:
            raise ValueError("the server said no")
        return f"made by rank {rank}"

    out = {"value": once(work)}
    try:
        once(work, fail=True)
    except (ValueError, Rank0Failed) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    out["calls"] = calls
    q.put((rank, out))


@pytest.mark.integration
def test_once_runs_on_rank_0_and_shares_its_result_or_its_error():
    got = run_ranks(_once_rank, (), timeout=120)
    assert got[0]["value"] == got[1]["value"] == "made by rank 0"
    assert got[0]["calls"] == [0, 0] and got[1]["calls"] == []
    assert got[0]["error"] == "ValueError: the server said no"
    assert got[1]["error"] == "Rank0Failed: on rank 0: ValueError: the server said no"


def _reward_rank(rank, port, q, folder, bank):
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import torch

    from flrlib import models

    torch.set_num_threads(1)
    try:
        # the default Scorer: it deals batches to the ranks when every rank passes the same rows
        scorer = Scorer(models.load_model(models.TINY, dtype="float32", device="cpu"), bank, ScoreConfig(),
                        cache=folder / "s.jsonl")
        reward = FLRReward(scorer)
        rows = BATCHES[rank]
        prompts = [PROMPTS[i] for i, _ in rows]
        completions = [[{"role": "assistant", "content": c}] for _, c in rows]
        out = {"rewards": reward(prompts=prompts, completions=completions, completion_ids=[[1]] * len(rows)),
               "written": scorer.cache.written, "world": scorer.world}
        # preference mining on every rank (notebook 05): generated once (rank 0), scored data-parallel
        from flrlib import mining
        from flrlib.files import read_jsonl
        from flrlib.generate import GenConfig

        mine_dir = folder / f"mine{rank}"  # each rank its own folder, as under `flr reproduce`
        policy = models.load_model(models.TINY, dtype="float32", device="cpu")
        mining.mine(policy, scorer, [{"id": f"m{i}", "messages": p} for i, p in enumerate(PROMPTS)],
                    GenConfig(n=2, max_new_tokens=8, temperature=3.0, batch_size=3), mine_dir, progress=False)
        out["mine"] = {"samples": read_jsonl(mine_dir / "samples.jsonl"),
                       "generated": (mine_dir / "samples.cache.jsonl").exists()}
    except Exception as e:  # noqa: BLE001 - reported to the test
        out = {"error": f"{type(e).__name__}: {e}"}
    q.put((rank, out))


@pytest.mark.integration
def test_reward_scores_each_ranks_own_completions(tiny, small_bank, tmp_path):
    """Defect (#23): with WORLD_SIZE > 1 the Scorer assumed every rank passes the same rows; TRL gives each rank its
    own completions. Each rank must get its own rows' rewards, equal to one process scoring them. Then mining on
    both ranks (#23 item 2): samples generated once, by rank 0, and scored data-parallel into the same files."""
    import torch

    got = run_ranks(_reward_rank, (tmp_path, small_bank))
    assert "error" not in got[0] and "error" not in got[1], got
    assert got[0]["world"] == got[1]["world"] == 2  # a data-parallel Scorer, called the way TRL calls it
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the ranks
    try:
        for rank in (0, 1):
            rows = BATCHES[rank]
            want = FLRReward(Scorer(tiny, small_bank, ScoreConfig(), cache=None))(
                [PROMPTS[i] for i, _ in rows], [[{"role": "assistant", "content": c}] for _, c in rows])
            assert got[rank]["rewards"] == pytest.approx(want, abs=1e-5)
    finally:
        torch.set_num_threads(threads)
    assert got[0]["rewards"][3] == min(got[0]["rewards"][:3])  # the empty one: the minimum of its own call
    assert (got[0]["written"], got[1]["written"]) == (3, 3)  # each rank scored (and cached) its own rows
    assert sorted(p.name for p in tmp_path.glob("s.rank*.jsonl")) == ["s.rank0.jsonl", "s.rank1.jsonl"]
    # mining: the samples were generated once (rank 0 only) and both ranks hold the same scored samples
    m0, m1 = got[0]["mine"], got[1]["mine"]
    assert (m0["generated"], m1["generated"]) == (True, False)
    assert m0["samples"] == m1["samples"] and len(m0["samples"]) == len(PROMPTS)
    convs = [s["messages"] + [{"role": "assistant", "content": r}] for s in m0["samples"] for r in s["responses"]]
    want = Scorer(tiny, small_bank, ScoreConfig(), cache=None).score(convs, progress=False)
    assert [x for s in m0["samples"] for x in s["rewards"]] == pytest.approx([w["reward"] for w in want], abs=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# sharded training: 2 ranks x (batch 1 x 2 accumulation) against 1 process x (batch 1 x 4 accumulation)
# ----------------------------------------------------------------------------------------------------------------

TOPICS = ["the sea", "bread", "a cat", "rain", "maths", "music", "trains", "tea", "snow", "chess", "bees", "salt"]
SFT_ROWS = [{"id": f"t{i}", "prompt": f"Tell me about {t}.", "response": f"{t.capitalize()} is nice.",
             "followup": "Thanks, that helps!" if i % 2 else "That is not what I asked."} for i, t in enumerate(TOPICS)]
DPO_ROWS = [{"id": f"p{i}", "prompt": user(f"Tell me about {t}."),
             "chosen": [{"role": "assistant", "content": f"{t.capitalize()} is lovely, and here is why."}],
             "rejected": [{"role": "assistant", "content": "No."}]} for i, t in enumerate(TOPICS)]
GLOBAL_BATCH, STEPS = 4, 3  # 12 rows: one epoch


class Recording(FLRReward):
    """The real reward, recording what each call returned."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls = []

    def __call__(self, prompts, completions, **kwargs):
        out = super().__call__(prompts, completions, **kwargs)
        self.calls.append({"n": len(completions), "returned": out})
        return out


GRPO = {"max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 4, "max_completion_length": 8,
        "temperature": 3.0, "learning_rate": 1e-3}


def _train_rank(rank, port, q, world, folder, bank):
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    import torch
    from safetensors.torch import load_file

    from flrlib import align, feedback as fb, models

    torch.set_num_threads(1)
    out = {}
    try:
        tok = models.load_tokenizer(models.TINY)
        data = fb.build_sft_data(SFT_ROWS, tok, {}, leak_policy="drop", include_default_eval=False, max_length=128)
        accum = GLOBAL_BATCH // world
        sft = fb.train_adapter(data, models.TINY, fb.LoraSettings(), fb.TrainSettings(
            learning_rate=1e-3, max_steps=STEPS, batch_size=1, grad_accum=accum, max_length=128, warmup_ratio=0.0,
            scheduler="constant"), seed=0,
            dtype="float32", device="cpu", out_root=folder / f"sft-{world}" / f"rank{rank}")  # a folder per rank
        cfg = align.AlignConfig(method="dpo", learning_rate=1e-3, max_steps=STEPS, per_device_train_batch_size=1,
                                gradient_accumulation_steps=accum, max_length=128, warmup_ratio=0.0,
                                lr_scheduler_type="constant")
        dpo_dir = folder / f"dpo-{world}"  # one folder for every rank (a shared disk)
        dpo = align.train(models.TINY, DPO_ROWS, dpo_dir, cfg, device="cpu", dtype="float32")
        again = align.train(models.TINY, DPO_ROWS, dpo_dir, cfg, device="cpu", dtype="float32")
        for name, adapter, prov, hist in (("sft", sft.adapter, sft.provenance, sft.log_history),
                                          ("dpo", str(dpo_dir / "adapter"), dpo, align.read_log_history(dpo_dir))):
            out[name] = {"loss": [h["loss"] for h in hist if "loss" in h], "hash": prov.get("adapter_hash"),
                         "steps": prov.get("global_steps"), "adapter_dir": adapter,
                         "weights": {k: v.numpy()
                                     for k, v in load_file(f"{adapter}/adapter_model.safetensors").items()}}
        out["dpo_again"] = again["adapter_hash"] == dpo["adapter_hash"]
        if world > 1:  # GRPO with the FLR reward under TRL's own rank handling (each rank its own completions)
            from flrlib.reward import train_grpo

            reward = Recording(Scorer(models.load_model(models.TINY, dtype="float32", device="cpu"), bank,
                                      ScoreConfig(categories=["relevance"]), cache=None))
            prompts = [{"id": f"g{i}", "messages": DPO_ROWS[i]["prompt"]} for i in range(4)]
            rec = train_grpo(models.TINY, reward, prompts, folder / "grpo", GRPO, device="cpu", dtype="float32")
            out["grpo"] = {"calls": reward.calls, "steps": rec["steps"], "hash": rec["provenance"]["adapter_hash"]}
    except Exception as e:  # noqa: BLE001 - reported to the test
        import traceback

        out["error"] = traceback.format_exc()[-3000:]
    q.put((rank, out))


@pytest.mark.integration
def test_two_rank_training_matches_one_process_with_the_same_global_batch(small_bank, tmp_path):
    """#23 item 2: LoRA SFT and DPO train data-parallel on every rank (DDP through TRL/accelerate, gloo on CPU).
    Every rank returns rank 0's run - also a rank whose output folder is its own (the SFT folders here, as a
    scratch results folder under `flr reproduce`) - and a finished run is reused by every rank. Against one
    process with the same global batch (4 = 1 x 4 there, 2 ranks x 1 x 2 here) and data: the loss per step within
    1e-4 (relative) and every adapter weight within 1e-5 (fp32 on CPU; only the order of the sums differs;
    measured: 6e-8 and 2e-7, with LoRA B weights ~3e-3 after 3 steps). And GRPO with the FLR reward on 2 ranks: each
    rank's reward call scores that rank's 4 completions, and TRL logs the mean of both ranks' rewards."""
    import numpy as np

    one = run_ranks(_train_rank, (1, tmp_path, small_bank), n=1, timeout=600)[0]
    two = run_ranks(_train_rank, (2, tmp_path, small_bank), n=2, timeout=600)
    errors = {f"{n} rank(s), rank {r}": got["error"] for n, run in ((1, {0: one}), (2, two)) for r, got in run.items()
              if "error" in got}
    assert not errors, errors
    for name in ("sft", "dpo"):
        r0, r1, ref = two[0][name], two[1][name], one[name]
        assert r0["steps"] == r1["steps"] == ref["steps"] == STEPS
        assert r0["hash"] == r1["hash"] and r0["loss"] == r1["loss"]  # every rank returns rank 0's run
        assert np.allclose(r0["loss"], ref["loss"], rtol=1e-4, atol=0), (r0["loss"], ref["loss"])
        assert r0["weights"].keys() == ref["weights"].keys()
        diff = max(float(np.abs(r0["weights"][k] - ref["weights"][k]).max()) for k in ref["weights"])
        assert diff <= 1e-5, f"{name}: adapter differs from the single process by {diff}"
        assert any(float(np.abs(v).max()) > 0 for k, v in r0["weights"].items() if "lora_B" in k)  # it trained
    assert two[0]["sft"]["adapter_dir"] != two[1]["sft"]["adapter_dir"]  # rank 1's own folder got rank 0's files
    assert two[0]["dpo_again"] and two[1]["dpo_again"]  # the finished run is reused by both ranks
    g0, g1 = two[0]["grpo"], two[1]["grpo"]
    assert g0["hash"] == g1["hash"] and g0["steps"] == g1["steps"] and len(g0["steps"]) == GRPO["max_steps"]
    assert [c["n"] for c in g0["calls"]] == [c["n"] for c in g1["calls"]] == [4] * GRPO["max_steps"]
    for step, c0, c1 in zip(g0["steps"], g0["calls"], g1["calls"]):
        rewards = [x for x in c0["returned"] + c1["returned"] if x is not None]
        assert step["reward"] == pytest.approx(sum(rewards) / len(rewards), abs=1e-5)  # gathered from both ranks


EXIT_SCRIPT = """
import atexit, os, sys
import torch.distributed as dist
# registered first, so it runs last: after flrlib.parallel's own exit handler
atexit.register(lambda: print("initialised at exit:", dist.is_initialized(), flush=True))
from flrlib.parallel import all_gather
print("gathered:", all_gather(int(os.environ["RANK"])), flush=True)
"""


@pytest.mark.integration
def test_each_rank_destroys_its_process_group_before_the_interpreter_exits():
    """A process that exits with its gloo group alive can abort in interpreter finalisation ("terminate called
    without an active exception", SIGABRT; pytorch/pytorch#190489): a 2-rank ``flr reproduce`` in CI died so. Every
    rank that used a collective destroys the group at exit, while the interpreter is still whole."""
    import os
    import subprocess
    import sys

    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", EXIT_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2",
                                              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
             for r in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert "gathered: [0, 1]" in out
        assert "initialised at exit: False" in out, out

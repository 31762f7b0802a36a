"""Preference mining: prompt sets and their disjointness, sampling and resume, pair / label construction."""
import json

import pytest

from flrlib import mining
from flrlib.data import prompts as P
from flrlib.data.fetch import DataMissing
from flrlib.generate import GenConfig, generate
from flrlib.results import read_jsonl
from helpers import user


def _sample(id_, responses, rewards):
    return {"id": id_, "messages": user(f"prompt {id_}"), "responses": responses,
            "rewards": rewards}


# ---------------------------------------------------------------------------------------------- pairs and labels

def test_dpo_pair_is_best_vs_worst_with_rewards_kept():
    s = _sample("a", ["mid", "best", "worst", "low"], [0.1, 0.9, -0.5, -0.2])
    (p,) = mining.dpo_pairs([s])
    assert p["chosen"] == [{"role": "assistant", "content": "best"}]
    assert p["rejected"] == [{"role": "assistant", "content": "worst"}]
    assert p["prompt"] == s["messages"]
    assert (p["chosen_reward"], p["rejected_reward"]) == (0.9, -0.5)
    assert p["margin"] == pytest.approx(1.4)
    assert p["n_candidates"] == 4


def test_min_margin_ties_duplicates_and_empty_responses():
    rows = [
        _sample("small", ["x", "y"], [0.10, 0.05]),              # margin 0.05
        _sample("tie", ["x", "y"], [0.3, 0.3]),                   # margin 0: never a pair
        _sample("dup", ["same", "same", "same"], [0.1, 0.2, 0.3]),  # one distinct text: no pair
        _sample("empty", ["", "ok", "  "], [float("nan"), 0.4, float("nan")]),  # empty dropped: one left
        _sample("big", ["x", "y", ""], [1.0, -1.0, float("nan")]),
    ]
    assert [p["id"] for p in mining.dpo_pairs(rows)] == ["small", "big"]
    assert [p["id"] for p in mining.dpo_pairs(rows, min_margin=0.5)] == ["big"]


def test_kto_rows_top1_desirable_bottom1_undesirable_and_batches_apart():
    scored = [_sample(f"p{i}", ["good", "bad", "meh"], [1.0 + i, -1.0, 0.0]) for i in range(6)]
    pairs = mining.dpo_pairs(scored)
    kto = mining.kto_rows(pairs, batch_size=2, seed=0)
    assert len(kto) == 2 * len(pairs)
    for p in pairs:
        mine = [r for r in kto if r["id"] == p["id"]]
        assert {(r["completion"][0]["content"], r["label"]) for r in mine} == {("good", True), ("bad", False)}
        assert {r["reward"] for r in mine} == {p["chosen_reward"], p["rejected_reward"]}
    for bs in (2, 3):
        rows = mining.kto_rows(pairs, batch_size=bs, seed=1)
        for s in range(0, len(rows), bs):
            ids = [r["id"] for r in rows[s: s + bs]]
            assert len(ids) == len(set(ids)), f"batch {s // bs} repeats a prompt: {ids}"
    assert mining.kto_rows(pairs, 2, seed=0) == kto  # seeded


def test_trainer_columns_and_summary():
    scored = [_sample("a", ["x", "y"], [1.0, 0.0]), _sample("b", ["", "z"], [float("nan"), 2.0])]
    pairs = mining.dpo_pairs(scored)
    assert mining.trainer_columns(pairs, "dpo") == [{k: pairs[0][k] for k in ("prompt", "chosen", "rejected")}]
    kto = mining.kto_rows(pairs)
    assert set(mining.trainer_columns(kto, "kto")[0]) == {"prompt", "completion", "label"}
    with pytest.raises(ValueError, match="rows\\[0\\].*completion"):
        mining.trainer_columns(pairs, "kto")
    s = mining.summary(scored, pairs, kto)
    assert (s["n_prompts"], s["n_responses"], s["n_empty"], s["n_pairs"], s["n_kto_rows"]) == (2, 4, 1, 1, 2)
    assert s["reward_mean"] == pytest.approx(1.0) and s["margin_mean"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- prompt sets

def test_ultrafeedback_prompts_and_seeded_subsets(data_ready):
    allp = P.ultrafeedback_prompts()
    assert len(allp) == 1000 and len({p["id"] for p in allp}) == 1000
    assert all(p["messages"][-1]["role"] == "user" and p["messages"][-1]["content"].strip() for p in allp)
    a, b = P.ultrafeedback_prompts(7, seed=3), P.ultrafeedback_prompts(7, seed=3)
    assert a == b and len(a) == 7 and a != P.ultrafeedback_prompts(7, seed=4)


def test_mining_and_evaluation_prompts_are_disjoint(data_ready, monkeypatch):
    ev = P.alpaca_eval_prompts()
    assert len(ev) == 805 and ev[0]["reference"] and {e["id"] for e in ev} == set(range(805))
    train, info = P.mining_prompts("ultrafeedback", max_examples=20, seed=0)
    P.check_disjoint(train, ev)  # the real sets share nothing
    with pytest.raises(ValueError, match="must be disjoint"):
        P.check_disjoint(train, [{"id": 5, "messages": [{"role": "user", "content": "  " + P.prompt_text(train[0]).upper()}]}])
    # a mining prompt that is also an evaluation prompt is removed, and counted
    monkeypatch.setattr(P, "evaluation_instructions", lambda: {P.normalise(P.prompt_text(train[0]))})
    kept, info = P.mining_prompts("ultrafeedback", max_examples=20, seed=0)
    assert info["removed_overlap"] == 1 and info["kept"] == 19 and train[0]["id"] not in {k["id"] for k in kept}


def test_nectar_prompt_parsing_and_offline_error():
    msgs = P._nectar_messages("\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: A joke?\n\nAssistant:", "row 1")
    assert msgs == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "A joke?"}]
    with pytest.raises(ValueError, match="row 1"):
        P._nectar_messages("\n\nHuman: Hi\n\nAssistant: done", "row 1")
    with pytest.raises(DataMissing, match="offline|unreachable"):
        P.nectar_prompts(3)
    with pytest.raises(ValueError, match="source"):
        P.mining_prompts("shp")


# ---------------------------------------------------------------------------------------------- sampling

PROMPTS = [{"id": f"q{i}", "messages": user(t)}
           for i, t in enumerate(["Name a colour.", "What is 2+2?", "Say hello.", "Count to three."])]


def test_generate_samples_n_per_prompt_strips_special_tokens(tiny):
    cfg = GenConfig(n=3, max_new_tokens=6, batch_size=2, seed=0)
    out = generate(tiny, PROMPTS[:3], cfg, progress=False)
    assert [o["id"] for o in out] == ["q0", "q1", "q2"]
    for o in out:
        assert len(o["responses"]) == len(o["n_tokens"]) == len(o["truncated"]) == 3
        assert all(n <= 6 for n in o["n_tokens"])
        assert not any("<|im_end|>" in r or "<|im_start|>" in r for r in o["responses"])
    assert generate(tiny, PROMPTS[:3], cfg, progress=False) == out  # seeded
    greedy = generate(tiny, PROMPTS[:1], GenConfig(n=1, do_sample=False, max_new_tokens=5), progress=False)
    assert len(greedy[0]["responses"]) == 1
    with pytest.raises(ValueError, match="greedy"):
        GenConfig(n=2, do_sample=False)
    with pytest.raises(ValueError, match="prompts\\[0\\].*user"):
        generate(tiny, [{"id": "x", "messages": [{"role": "assistant", "content": "hi"}]}], cfg)


def test_generate_resumes_after_interruption(tiny, tmp_path, monkeypatch):
    cache = tmp_path / "samples.cache.jsonl"
    cfg = GenConfig(n=2, max_new_tokens=5, batch_size=1, seed=1)
    first = generate(tiny, PROMPTS, cfg, cache=cache, progress=False)
    lines = cache.read_text().splitlines()
    assert len(lines) == 4
    # simulate a kill: two complete lines and half of the third survive
    cache.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][: len(lines[2]) // 2])
    calls = []
    real = tiny.model.generate
    monkeypatch.setattr(tiny.model, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.warns(UserWarning, match="corrupted"):
        again = generate(tiny, PROMPTS, cfg, cache=cache, progress=False)
    assert len(calls) == 2  # only the two missing prompts were sampled
    assert again == first   # same seeds per batch: the same samples
    assert all(json.loads(x) for x in cache.read_text().splitlines())


# ---------------------------------------------------------------------------------------------- scoring + end to end

def test_mine_end_to_end_writes_trl_files(tiny, small_bank, tmp_path):
    scorer = mining.build_scorer("random:tiny-llama", loaded=tiny, bank=small_bank)
    cfg = GenConfig(n=3, max_new_tokens=8, batch_size=2, seed=0, temperature=3.0, top_p=1.0)  # tiny model: T=3 or only newlines
    summ = mining.mine(tiny, scorer, PROMPTS[:3], cfg, tmp_path, min_margin=0.0, progress=False)
    samples = read_jsonl(tmp_path / "samples.jsonl")
    pairs = read_jsonl(tmp_path / "dpo_pairs.jsonl")
    kto = read_jsonl(tmp_path / "kto_rows.jsonl")
    assert len(samples) == 3 and all(len(s["rewards"]) == 3 for s in samples)
    for s in samples:
        for r, x in zip(s["responses"], s["rewards"]):
            assert (x is None) == (not r.strip())  # an empty response has no reward: null in the file
    assert summ["n_pairs"] == len(pairs) >= 2 and len(kto) == 2 * len(pairs)
    for p in pairs:  # the pair really is best vs worst of the scored samples
        s = next(s for s in samples if s["id"] == p["id"])
        finite = [x for x in s["rewards"] if x is not None]
        assert p["chosen_reward"] == max(finite) and p["rejected_reward"] == min(finite)
    assert summ["provenance"]["scorer"]["bank"] == "small" and summ["provenance"]["policy"]["generation"]["n"] == 3
    assert "desirable" in summ["rule"]

"""Issue 5: rewriters, the no-eval-leak rule, the training format and its label masks, LoRA SFT and FT-FLR."""
import json

import numpy as np
import pytest

from flrlib import data as D
from flrlib import feedback as fb
from flrlib import paired
from flrlib import rewrite as rw
from flrlib.chat import FEEDBACK_REQUEST, flr_context, render
from helpers import user

CRIT_POS = ("The response is accurate, clear and well organised, and it gives practical steps that the user can "
            "follow right away.")
CRIT_NEG = ("The response contains a factual error about the boiling point and fails to give any example. "
            "However, the tone is polite.")


def triple(i=0, prompt="How do I boil an egg?", response="Put it in boiling water for nine minutes.",
           critique=CRIT_POS, score=5.0, **kw):
    return {"id": f"t{i}", "prompt": prompt, "messages": user(prompt),
            "response": response, "critique": critique, "score": score, "score_scale": [1, 5], **kw}


# ------------------------------------------------------------------------------------------------------------------
# rewriters
# ------------------------------------------------------------------------------------------------------------------

def test_reject_reasons():
    assert rw.reject_reason("", CRIT_POS) == "empty"
    assert rw.reject_reason("  ...  ", CRIT_POS) == "empty"
    assert rw.reject_reason("word " * 61, CRIT_POS) == "too_long"
    assert rw.reject_reason(CRIT_POS, CRIT_POS) == "copied_critique"
    # a 12-word run of the critique inside a longer message is a copy too
    assert rw.reject_reason("Wow. The response is accurate, clear and well organised, and it gives practical steps!",
                            CRIT_POS) == "copied_critique"
    assert rw.reject_reason("Thanks, that's clear and practical!", CRIT_POS) is None


def test_rule_rewriter_keeps_polarity_and_gist_without_copying():
    r = rw.RuleRewriter()
    pos, neg = r(triple(critique=CRIT_POS, score=5)), r(triple(critique=CRIT_NEG, score=1))
    assert pos == r(triple(critique=CRIT_POS, score=5))  # deterministic
    assert any(pos.startswith(o) for o in rw.POSITIVE_OPENERS) and "accurate" in pos
    assert any(neg.startswith(o) for o in rw.NEGATIVE_OPENERS)
    assert rw.WRONG in neg and "example" in neg  # the critique's two points
    mixed = r(triple(critique=CRIT_NEG, score=3))
    assert " but " in mixed and rw.WRONG in mixed
    for text, crit in ((pos, CRIT_POS), (neg, CRIT_NEG), (mixed, CRIT_NEG)):
        assert rw.reject_reason(text, crit) is None
    # without a score, polarity comes from cue words; UltraFeedback scores use their own 1-10 scale
    assert rw.polarity("Excellent, accurate, clear and thorough answer.") == "positive"
    assert rw.polarity("It lacks detail, is vague and fails to answer; not helpful.") == "negative"
    assert rw.polarity("whatever", 8, (1, 10)) == "positive" and rw.polarity("whatever", 4, (1, 10)) == "negative"


def test_hf_rewriter_runs_on_a_local_model(tiny, monkeypatch):
    """The rewriter feeds the model the chat-templated rewrite prompt (critique included) and returns its greedy
    decode, cleaned. The real ``generate`` runs under a spy that records what went in and came out; a hand-written
    argmax loop on the same prompt must give the same tokens. (The random tiny model's greedy decode is newlines
    only, so the cleaned follow-up is empty: ``rewrite_all`` would reject it as "empty".)"""
    import torch

    t = triple()
    seen = {}
    generate = tiny.model.generate

    def spy(**kw):
        seen.update(kw)
        seen["out"] = generate(**kw)
        return seen["out"]

    monkeypatch.setattr(tiny.model, "generate", spy)
    out = rw.HFRewriter(tiny, max_new_tokens=5)(t)
    tok, model = tiny.tokenizer, tiny.model
    prompt = seen["input_ids"][0].tolist()
    assert prompt == tok.apply_chat_template(rw.rewrite_messages(t), add_generation_prompt=True,
                                             return_dict=True)["input_ids"]
    text = tok.decode(prompt)
    assert all(t[k] in text for k in ("critique", "prompt", "response")) and rw.REWRITE_SYSTEM in text
    assert seen["do_sample"] is False and seen["max_new_tokens"] == 5
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    greedy = []
    with torch.no_grad():
        for _ in range(5):
            greedy.append(int(model(torch.tensor([prompt + greedy])).logits[0, -1].argmax()))
            if greedy[-1] in eos:
                break
    assert seen["out"][0, len(prompt):].tolist()[:len(greedy)] == greedy
    assert out == rw.clean(tok.decode(greedy, skip_special_tokens=True)) == ""
    assert rw.reject_reason(out, t["critique"]) == "empty"
    assert rw.HFRewriter(tiny).name == f"hf:random:tiny-llama:{tiny.provenance.get('adapter_hash')}:n64"


def test_rewrite_all_caches_and_logs_rejects(tmp_path):
    outputs = {"t0": "Thanks, that's perfect!", "t1": "", "t2": CRIT_NEG, "t3": "too long " * 40}
    calls = []

    class Stub:
        name = "stub-v1"

        def __call__(self, t):
            calls.append(t["id"])
            return outputs[t["id"]]

    rows = [triple(i, prompt=f"Question {i}?") for i in range(4)]
    rows[2]["critique"] = CRIT_NEG
    kept, rejects = rw.rewrite_all(rows, Stub(), cache=tmp_path / "rw.jsonl", progress=False)
    assert [k["id"] for k in kept] == ["t0"] and kept[0]["followup"] == "Thanks, that's perfect!"
    assert {r["id"]: r["reason"] for r in rejects} == {"t1": "empty", "t2": "copied_critique", "t3": "too_long"}
    kept2, rejects2 = rw.rewrite_all(rows, Stub(), cache=tmp_path / "rw.jsonl", progress=False)
    assert len(calls) == 4 and kept2 == kept and rejects2 == rejects  # second pass: all from the cache
    with pytest.raises(ValueError, match="'critique'"):
        rw.rewrite_all([triple(9, critique=" ")], Stub(), cache=None, progress=False)


# ------------------------------------------------------------------------------------------------------------------
# triples and the no-eval-leak rule
# ------------------------------------------------------------------------------------------------------------------

def test_ultrafeedback_rows_to_triples():
    rows = [
        {"source": "evol_instruct", "instruction": "Name a prime.", "models": ["a", "b"],
         "completions": [{"model": "a", "response": "7", "critique": "Correct and concise.", "overall_score": 9,
                          "fine-grained_score": 4.75, "annotations": {}},
                         {"model": "b", "response": "8", "critique": "Wrong: 8 is not prime.", "overall_score": 2},
                         {"model": "c", "response": "11", "critique": "", "overall_score": 8}]},
        {"source": "sharegpt", "instruction": "Hi", "completions": []},
    ]
    ts = D.ultrafeedback_triples(rows)
    assert [t["id"] for t in ts] == ["uf0:0", "uf0:1"]  # the completion without a critique gives no triple
    assert ts[1] == {"id": "uf0:1", "prompt": "Name a prime.",
                     "messages": user("Name a prime."),
                     "response": "8", "critique": "Wrong: 8 is not prime.", "score": 2.0, "score_scale": [1, 10],
                     "source": "ultrafeedback/evol_instruct", "model": "b"}
    assert len(D.ultrafeedback_triples(rows, max_examples=1, seed=3)) == 1
    with pytest.raises(ValueError, match="row 1: field 'instruction'"):
        D.ultrafeedback_triples([rows[0], {"instruction": None, "completions": []}])


def test_prometheus_vicuna_triples(data_ready):
    ts = D.prometheus_triples("vicuna", per_response=2, max_examples=5, seed=1)
    assert len(ts) == 10 and len({t["id"] for t in ts}) == 10
    t = ts[0]
    assert t["critique"] and t["response"] and t["prompt"] == t["messages"][-1]["content"]
    assert 1 <= t["score"] <= 5 and t["source"] == "prometheus_vicuna"


def test_eval_leak_is_refused_or_dropped(data_ready):
    from flrlib.data import load_prometheus

    mt = load_prometheus("mt_bench")[0]["messages"][-1]["content"]
    bench = [{"id": "b1", "messages": user("What is 2+2?"), "chosen": "4", "rejected": "5"}]
    rows = [triple(0), triple(1, prompt="  what is 2+2?\n"), triple(2, prompt=mt)]
    with pytest.raises(D.EvalLeak, match=r"'t1'.*'prompt'.*'my_bench'"):
        D.guard_eval_leak(rows, {"my_bench": bench})
    kept, rep = D.guard_eval_leak(rows, {"my_bench": bench}, policy="drop")
    assert [k["id"] for k in kept] == ["t0"]
    assert rep["dropped"] == 2
    assert {d["eval_set"] for d in rep["dropped_rows"]} == {"my_bench", "prometheus_mt_bench (all rows)"}
    # the whole Prometheus MT-Bench set is always an evaluation set, even when the caller names none or a subset
    with pytest.raises(D.EvalLeak, match="prometheus_mt_bench"):
        D.guard_eval_leak([triple(2, prompt=mt)], {})
    with pytest.raises(D.EvalLeak, match="prometheus_mt_bench"):
        D.guard_eval_leak([triple(2, prompt=mt)], {"prometheus_mt_bench": []})
    # a real overlap: two Vicuna-bench questions are also MT-Bench questions
    vic, vrep = D.guard_eval_leak(D.prometheus_triples("vicuna"), {}, policy="drop")
    assert vrep["dropped"] == 8 and len(vic) == 312
    # and training data cannot be built around the check
    with pytest.raises(D.EvalLeak):
        fb.build_sft_data([{**triple(2, prompt=mt), "followup": "Thanks!"}], None, {})
    with pytest.raises(TypeError, match="build_sft_data"):
        fb.train_adapter([{"input_ids": [1], "labels": [1]}], "random:tiny-llama")


# ------------------------------------------------------------------------------------------------------------------
# the training format and its masks
# ------------------------------------------------------------------------------------------------------------------

def _row(i=0, followup="Thanks, that's clear and practical!", **kw):
    return {**triple(i, **kw), "followup": followup}


def test_training_example_is_the_scorers_feedback_layout(tiny):
    from flrlib.scoring import ScoreConfig, Scorer

    tok, row = tiny.tokenizer, _row()
    ex = fb.sft_example(tok, row)
    conv = fb.training_conversation(row)
    ctx, role = flr_context(conv, "feedback")
    assert [m["role"] for m in ctx] + [role] == ["user", "assistant", "user", "assistant"]
    assert ctx[0]["content"] == FEEDBACK_REQUEST and ctx[1]["content"] == row["prompt"]
    assert ctx[2]["content"] == row["response"]
    # identical tokens to the full rendered conversation with the follow-up as the final assistant turn
    full = tok(render(tok, ctx + [{"role": "assistant", "content": row["followup"]}]), add_special_tokens=False)
    assert ex["input_ids"] == full["input_ids"]
    # identical prefix and target to what the FT-FLR scorer reads
    enc = Scorer(tiny, bank=_bank(row["followup"]), config=ScoreConfig(layout="feedback"), cache=None).encode(conv)
    n = len(enc.prefix)
    assert ex["input_ids"][:n] == enc.prefix and ex["prompt_tokens"] == n
    assert ex["input_ids"][n: n + len(enc.targets[0])] == enc.targets[0]
    # loss only on the final assistant turn: its content and the template's end-of-turn tokens
    labels = np.array(ex["labels"])
    assert (labels[:n] == -100).all() and (labels[n:] != -100).all()
    assert tok.decode(labels[n:].tolist()) == row["followup"] + "<|im_end|>\n"


def _span(seq, sub):
    return next(i for i in range(len(seq) - len(sub) + 1) if seq[i:i + len(sub)] == sub)


def test_sft_loss_is_on_the_followup_only_and_the_recipe_says_so(tiny):
    """Labels: -100 on everything but the follow-up f and its end-of-turn tokens; the assistant turn p is masked
    although LLaMA-Factory v0.8.3 (mask_history=False) would train on it. The recipe text says exactly that."""
    tok = tiny.tokenizer
    row = _row(prompt="Which planet is the largest?", response="Jupiter is the largest planet.",
               followup="Great, thanks for the quick answer!")
    ex = fb.sft_example(tok, row)
    ids, labels = ex["input_ids"], ex["labels"]
    trained = [i for i, lab in enumerate(labels) if lab != -100]
    assert trained == list(range(len(ids) - ex["target_tokens"], len(ids)))  # one span, at the very end
    assert [labels[i] for i in trained] == ids[trained[0]:]
    eot = tok("<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert ids[-len(eot):] == eot and tok.decode(ids[trained[0]:-len(eot)]) == row["followup"]
    for masked in (row["prompt"], row["response"], FEEDBACK_REQUEST):  # p (an assistant turn), r, the request
        sub = tok(masked, add_special_tokens=False)["input_ids"]
        at = _span(ids, sub)
        assert set(labels[at:at + len(sub)]) == {-100}, masked
    assert [m["role"] for m in flr_context(fb.training_conversation(row), "feedback")[0]][1] == "assistant"
    for text in (fb.LOSS_MASK, fb.RECIPE):
        assert "loss on the final assistant turn (the follow-up f) and its end-of-turn tokens only" in text
        assert "mask_history=False would also train on the assistant turn p" in text
    assert fb.RECIPE.startswith("paper profile: LLaMA-Factory v0.8.3 LoRA defaults")
    assert "train_on_prompt: false``)," not in fb.__doc__ and "mask_history" in fb.__doc__


def _bank(text):
    from flrlib.followups import make_bank

    return make_bank({"c": {"positive": [text], "negative": ["That's wrong."]}}, name="t")


def test_long_prompts_are_cut_like_the_scorer_and_long_responses_dropped(tiny, data_ready):
    tok = tiny.tokenizer
    long_p = " ".join(f"word{i}" for i in range(400))
    ex = fb.sft_example(tok, _row(prompt=long_p), max_length=200)
    assert len(ex["input_ids"]) <= 200 and ex["truncated_tokens"] > 0 and not ex["over_budget"]
    assert tok.decode([t for t in ex["labels"] if t != -100]).startswith("Thanks, that's clear")
    data = fb.build_sft_data([_row(0), _row(1, response="blah " * 400)], tok, {}, max_length=200)
    assert data.report["examples"] == 1 and data.report["over_budget_ids"] == ["t1"]
    assert data.report["leak_check"]["eval_sets"] == ["prometheus_mt_bench (all rows)"]


def test_trl_trains_on_exactly_these_masks(tiny, data_ready, tmp_path):
    """The batches TRL 1.16's SFTTrainer builds from our columns keep our labels (no re-tokenisation/re-masking),
    and its loss is the mean NLL of the final-turn tokens only."""
    import torch

    from flrlib.models import load_model

    rows = [_row(0),
            _row(1, prompt="Why is the sky blue?", response="Rayleigh scattering.", followup="Hmm, too vague.")]
    data = fb.build_sft_data(rows, tiny.tokenizer, {}, max_length=256)
    loaded = load_model("random:tiny-llama", dtype="float32", device="cpu")
    trainer = fb.make_trainer(data, loaded, train=fb.TrainSettings(max_steps=1, grad_accum=1, batch_size=2),
                              output_dir=tmp_path / "t")
    ds = trainer.train_dataset
    for i, ex in enumerate(data.examples):
        assert ds[i]["input_ids"] == ex["input_ids"] and ds[i]["labels"] == ex["labels"]
    batch = trainer.data_collator([ds[i] for i in range(2)])
    for i, ex in enumerate(data.examples):
        n = len(ex["labels"])
        assert batch["labels"][i, :n].tolist() == ex["labels"] and (batch["labels"][i, n:] == -100).all()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model.eval(), {k: v for k, v in batch.items()})
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    lab = batch["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), lab, ignore_index=-100, reduction="sum")
    assert float(loss) == pytest.approx(float(nll) / int((lab != -100).sum()), rel=1e-4)


# ------------------------------------------------------------------------------------------------------------------
# LoRA SFT end to end and FT-FLR
# ------------------------------------------------------------------------------------------------------------------

def test_train_adapter_and_ft_flr(tiny, data_ready, tmp_path):
    from flrlib.models import load_model

    rows = [_row(i, prompt=f"Question {i}?", response=f"Answer {i}.") for i in range(3)]
    data = fb.build_sft_data(rows, tiny.tokenizer, {}, max_length=128)
    settings = fb.TrainSettings(max_steps=2, grad_accum=1, learning_rate=5e-2, warmup_ratio=0.0)
    res = fb.train_adapter(data, "random:tiny-llama", train=settings, seed=1, device="cpu", dtype="float32",
                           out_root=tmp_path)
    from pathlib import Path

    run = Path(res.adapter).parent  # the one layout of flrlib.lora: <run>/adapter, provenance.json, log_history.json
    assert run.parent == tmp_path and (run / "adapter" / "adapter_config.json").exists()
    prov = json.loads((run / "provenance.json").read_text())
    assert json.loads((run / "log_history.json").read_text())["log_history"] == res.log_history
    assert prov["adapter_hash"] == load_model(res.adapter, device="cpu").provenance["adapter_hash"]
    # notebook 04's records are written by the library, with provenance
    import os

    os.environ["FLR_RESULTS_DIR"] = str(tmp_path / "results")
    try:
        log = fb.write_train_log("unit", res)
        fb.write_training_data("unit", data, rewriter="rule", triples_source="toy")
        fb.write_rewrites("unit", rows, [{"id": "x", "reason": "empty"}], rewriter="rule")
    finally:
        del os.environ["FLR_RESULTS_DIR"]
    area = tmp_path / "results" / "unit" / "feedback"
    assert json.loads((area / "train_log.json").read_text())["loss_curve"] == log["loss_curve"] != []
    td = json.loads((area / "training_data.json").read_text())
    assert td["data_hash"] == data.hash and td["provenance"]["rewriter"] == "rule" and "software" in td["provenance"]
    rw_lines = (area / "rewrites.jsonl").read_text().splitlines()
    assert len(rw_lines) == 4 and json.loads(rw_lines[-1])["status"] == "rejected"
    assert json.loads((area / "rewrites.json").read_text())["reasons"] == {"empty": 1}
    assert prov["base_model"] == "random:tiny-llama" and prov["data_hash"] == data.hash and prov["seed"] == 1
    assert prov["lora"] == {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}
    assert prov["layout"] == "feedback" and prov["global_steps"] == 2
    assert prov["recipe"] == fb.RECIPE and prov["loss_mask"] == fb.LOSS_MASK  # says which tokens were trained on
    assert [r["step"] for r in fb.loss_curve(res.log_history)] == [1, 2]
    again = fb.train_adapter(data, "random:tiny-llama", train=settings, seed=1, device="cpu", dtype="float32",
                             out_root=tmp_path)
    assert again.reused and again.adapter == res.adapter
    # the adapter loads through the one loader (also as a spec on its own) and changes the feedback-layout scores
    assert load_model(res.adapter, device="cpu").provenance["adapter_hash"]
    conv = fb.training_conversation(rows[0])
    ft = fb.ft_flr_scorer("random:tiny-llama", res.adapter, bank=_bank(rows[0]["followup"]), device="cpu",
                          dtype="float32", cache=None)
    assert ft.config.layout == "feedback" and ft.provenance["adapter_hash"]
    from flrlib.scoring import ScoreConfig, Scorer

    base = Scorer(tiny, _bank(rows[0]["followup"]), ScoreConfig(layout="feedback"), cache=None)
    r_ft, r_base = ft.score([conv], progress=False)[0], base.score([conv], progress=False)[0]
    assert np.isfinite(r_ft["reward"]) and r_ft["pos"] > r_base["pos"]  # trained towards this very follow-up
    unmerged = fb.ft_flr_scorer("random:tiny-llama", res.adapter, bank=_bank(rows[0]["followup"]), device="cpu",
                                dtype="float32", cache=None, merge=False)
    assert unmerged.score([conv], progress=False)[0]["followups"] == pytest.approx(r_ft["followups"], rel=1e-4)
    with pytest.raises(ValueError, match="layout='feedback'"):
        fb.ft_flr_scorer("random:tiny-llama", res.adapter, layout="base")


def test_score_or_reuse_keeps_a_covering_result_file(tiny, tmp_path, monkeypatch):
    from flrlib.scoring import ScoreConfig, Scorer

    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path))
    recs = [{"id": f"p{i}", "messages": user(f"Say {i}."), "chosen": f"{i}.",
             "rejected": "No."} for i in range(3)]
    direct = Scorer(tiny, None, ScoreConfig(scorer="direct"), cache=None)
    first = fb.score_or_reuse(direct, recs, "toy", "unit", "direct", n_boot=50, progress=False)
    assert not first["reused"] and first["n"] == 3
    again = fb.score_or_reuse(direct, recs[:2], "toy", "unit", "direct", n_boot=50, progress=False)
    assert again["reused"] and again["n"] == 3  # the larger file covers the subset: not overwritten
    other = Scorer(tiny, None, ScoreConfig(scorer="direct", system_prompt="Be brief."), cache=None)
    with pytest.raises(ValueError, match="different template_hash"):  # never clobbers notebook 03's file
        fb.score_or_reuse(other, recs[:2], "toy", "unit", "direct", n_boot=50, progress=False)
    assert not fb.score_or_reuse(other, recs[:2], "toy", "unit", "direct", overwrite=True, n_boot=50,
                                 progress=False)["reused"]


def test_eval_subsets_follow_notebook_03s_sizes(data_ready):
    sets, reports = D.eval_subsets(["hh_helpful_base", "prometheus_mt_bench"], 3, rating_examples=2, seed=0)
    assert len(sets["hh_helpful_base"]) == 3 and len(sets["prometheus_mt_bench"]) == 2
    from flrlib.data import load_benchmark

    assert sets["hh_helpful_base"] == load_benchmark("hh_helpful_base", max_examples=3, seed=0)[0]
    with pytest.raises(ValueError, match="not 'system'"):
        D.eval_subsets(["alpaca_eval_system"], 1)

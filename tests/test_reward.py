"""FLR as a TRL reward function: both of TRL's formats, empty completions, logging, cache, and real GRPOTrainer runs."""
import json
import math

import pytest

from flrlib.reward import FLRReward, conversation, grpo_prompts, train_grpo
from flrlib.scoring import ScoreConfig, Scorer
from helpers import user

PROMPTS = [user("What is the capital of France?"),
           [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}]]
ANSWERS = ["The capital of France is Paris.", "4", "Paris, of course - a lovely city on the Seine.", "Four."]


def _conv_batch():
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[1]]
    return prompts, [[{"role": "assistant", "content": a}] for a in ANSWERS]


class Recording(FLRReward):
    """The real reward, recording what the trainer passes and what it returned."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls = []

    def __call__(self, *args, **kwargs):
        out = super().__call__(*args, **kwargs)
        self.calls.append({"args": args, "kwargs": kwargs, "returned": out})
        return out


def test_conversation_reads_both_trl_formats():
    assert conversation("Hi", "Hello!") == [{"role": "user", "content": "Hi"},
                                            {"role": "assistant", "content": "Hello!"}]
    conv = conversation(PROMPTS[1], [{"role": "assistant", "content": "4"}])
    assert conv == PROMPTS[1] + [{"role": "assistant", "content": "4"}]
    blocks = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    reply = [{"role": "assistant", "content": [{"type": "text", "text": "Yo"}]}]
    assert conversation(blocks, reply)[-1]["content"] == "Yo"
    with pytest.raises(ValueError, match="plain-text prompt needs a plain-text completion"):
        conversation("Hi", [{"role": "assistant", "content": "x"}])
    with pytest.raises(ValueError, match="tool-calling"):
        conversation(PROMPTS[0], [{"role": "assistant", "content": ""}, {"role": "tool", "content": "42"}])


def test_reward_equals_scorer_in_both_formats_and_logs(tiny, small_bank):
    scorer = Scorer(tiny, small_bank, ScoreConfig(), cache=None)
    reward = FLRReward(scorer)
    prompts, completions = _conv_batch()
    logged = {}
    out = reward(prompts=prompts, completions=completions, completion_ids=[[1]] * 4, trainer_state=None,
                 log_metric=lambda k, v: logged.setdefault(k, v), log_extra=lambda c, v: None, id=["a", "b", "c", "d"])
    direct = scorer.score([p + c for p, c in zip(prompts, completions)], progress=False)
    assert out == [d["reward"] for d in direct] and all(type(x) is float for x in out)
    assert len(set(out)) == 4  # in order, one per completion
    plain = reward(prompts=[p[-1]["content"] for p in prompts[:1]], completions=ANSWERS[:1])
    assert plain == out[:1]  # a plain-text prompt is one user turn
    assert set(logged) == {"flr/completion_tokens", "flr/empty", "flr/relevance", "flr/correctness"}
    assert logged["flr/relevance"] == pytest.approx(sum(d["categories"]["relevance"] for d in direct) / 4)
    assert logged["flr/empty"] == 0
    assert logged["flr/completion_tokens"] == pytest.approx(
        sum(len(tiny.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in ANSWERS) / 4)


def test_empty_completions_are_not_scored(tiny, small_bank):
    scorer = Scorer(tiny, small_bank, ScoreConfig(), cache=None)
    prompts, completions = _conv_batch()
    completions[1] = [{"role": "assistant", "content": "  \n"}]
    full = FLRReward(scorer)(prompts, completions)
    scored = [full[i] for i in (0, 2, 3)]
    assert full[1] == min(scored)  # never above a real answer
    assert FLRReward(scorer, empty=None)(prompts, completions)[1] is None
    assert FLRReward(scorer, empty=-9.0)(prompts, completions)[1] == -9.0
    assert FLRReward(scorer)(prompts[:1], [[{"role": "assistant", "content": ""}]]) == [None]
    with pytest.raises(ValueError, match="empty must be"):
        FLRReward(scorer, empty="zero")


@pytest.mark.parametrize("name", ["direct", "length"])
def test_reference_free_scorers_under_the_same_reward(tiny, name):
    scorer = Scorer(tiny, None, ScoreConfig(scorer=name), cache=None)
    reward = FLRReward(scorer)
    assert reward.__name__ == name
    prompts, completions = _conv_batch()
    expect = [d["reward"] for d in scorer.score([p + c for p, c in zip(prompts, completions)], progress=False)]
    assert reward(prompts, completions) == expect
    if name == "length":
        assert expect == [float(len(tiny.tokenizer(a, add_special_tokens=False)["input_ids"])) for a in ANSWERS]


def test_scores_go_through_the_score_cache(tiny, small_bank, tmp_path):
    cache = tmp_path / "scores.jsonl"
    prompts, completions = _conv_batch()
    first = FLRReward(Scorer(tiny, small_bank, ScoreConfig(), cache=cache))
    a = first(prompts, completions)
    assert first.scorer.cache.written == 4
    second = FLRReward(Scorer(tiny, small_bank, ScoreConfig(), cache=cache))
    assert second(prompts, completions) == a and second.scorer.cache.written == 0


def test_grpo_prompts_are_short_seeded_mining_prompts(data_ready):
    got = grpo_prompts("ultrafeedback", 3, max_chars=120, seed=0)
    assert len(got) == 3 and all(len(p["messages"][-1]["content"]) <= 120 for p in got)
    assert got == grpo_prompts("ultrafeedback", 3, max_chars=120, seed=0)
    assert len(grpo_prompts("ultrafeedback", 2)) == 2
    with pytest.raises(ValueError, match="raise max_prompt_chars"):
        grpo_prompts("ultrafeedback", 3, max_chars=5)


GRPO = {"max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 4, "max_completion_length": 8,
        "temperature": 3.0,  # the random tiny model repeats a newline at T = 1 (empty completions)
        "learning_rate": 1e-3}


@pytest.mark.integration
def test_grpo_trainer_steps_with_the_flr_reward(tiny, small_bank, tmp_path):
    """A real GRPOTrainer (tiny policy, tiny M, LoRA) through train_grpo: what TRL passes, what it logs."""
    from safetensors.torch import load_file

    from flrlib.models import TINY

    reward = Recording(Scorer(tiny, small_bank, ScoreConfig(), cache=None))
    prompts = [{"id": "p0", "messages": PROMPTS[0]}, {"id": "p1", "messages": PROMPTS[1]}]
    rec = train_grpo(TINY, reward, prompts, tmp_path / "grpo", GRPO, device="cpu", dtype="float32")
    assert len(reward.calls) == 2  # one generation batch per step
    for call in reward.calls:
        kw = call["kwargs"]
        assert call["args"] == () and {"prompts", "completions", "completion_ids", "trainer_state", "log_metric",
                                       "log_extra"} <= set(kw)
        assert len(kw["prompts"]) == len(kw["completions"]) == 4
        assert all(p in (PROMPTS[0], PROMPTS[1]) for p in kw["prompts"])  # conversational: lists of messages
        assert all(isinstance(c, list) and c[0]["role"] == "assistant" and isinstance(c[0]["content"], str)
                   for c in kw["completions"])
    steps = rec["steps"]
    assert [s["step"] for s in steps] == [1, 2]
    for s, call in zip(steps, reward.calls):
        assert math.isfinite(s["loss"]) and math.isfinite(s["reward"])
        assert s["reward"] == pytest.approx(sum(call["returned"]) / 4, abs=1e-5)  # TRL logged what we returned
        assert s["completion_length"] > 0 and s["completion_tokens"] > 0 and s["empty"] == 0
        assert set(s["categories"]) == {"relevance", "correctness"}
    assert json.loads((tmp_path / "grpo" / "curves.json").read_text())["steps"] == steps
    assert rec["provenance"]["method"] == "grpo" and rec["provenance"]["reward_name"] == "flr"
    weights = load_file(tmp_path / "grpo" / "adapter" / "adapter_model.safetensors")
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and any(bool(v.abs().sum() > 0) for v in lora_b)  # LoRA B starts at 0: the policy was updated
    again = train_grpo(TINY, reward, prompts, tmp_path / "grpo", GRPO, device="cpu", dtype="float32")
    assert again["reused"] and again["steps"] == steps and len(reward.calls) == 2  # finished run reused


class BlankFirst(Recording):
    """The real reward, with the first completion of each call emptied (as a policy that stops at once)."""

    def __call__(self, prompts, completions, **kwargs):
        return super().__call__(prompts=prompts, completions=[""] + list(completions[1:]), **kwargs)


@pytest.mark.integration
def test_grpo_trainer_plain_text_prompts_and_an_empty_completion(tiny, small_bank, tmp_path):
    """Plain-text prompts; and what TRL 1.16 does with ``empty=None``: the ``None`` becomes NaN and the completion
    is left out of the logged reward (a 0 would have pulled the mean towards 0), as reward.py's docstring says."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from flrlib.models import TINY, load_model

    policy = load_model(TINY, dtype="float32", device="cpu")  # its own copy: M stays frozen
    reward = BlankFirst(Scorer(tiny, small_bank, ScoreConfig(categories=["relevance"]), cache=None), empty=None)
    args = GRPOConfig(output_dir=str(tmp_path), logging_steps=1, report_to=[], save_strategy="no", use_cpu=True,
                      **{**GRPO, "max_steps": 1})
    data = Dataset.from_list([{"prompt": "What is the capital of France?"}, {"prompt": "2+2?"}])
    trainer = GRPOTrainer(model=policy.model, reward_funcs=[reward], args=args, train_dataset=data,
                          processing_class=policy.tokenizer)
    trainer.train()
    (call,) = reward.calls
    assert all(isinstance(p, str) for p in call["kwargs"]["prompts"])
    assert all(isinstance(c, str) for c in call["kwargs"]["completions"])
    (log, *_) = trainer.state.log_history
    returned = call["returned"]
    assert returned[0] is None and all(isinstance(x, float) for x in returned[1:])
    assert math.isfinite(log["loss"]) and log["flr/empty"] == 0.25
    scored = sum(returned[1:]) / 3  # the None is NaN to TRL: left out, not counted as 0
    assert log["rewards/flr/mean"] == pytest.approx(scored, abs=1e-5)
    assert log["reward"] == pytest.approx(scored, abs=1e-5)
    assert "flr/relevance" in log and "flr/completion_tokens" in log

"""FLR as a reward function for TRL's online trainers (``GRPOTrainer``, ``RLOOTrainer``): no reward model, no labels.

Three lines::

    from flrlib.reward import FLRReward
    reward = FLRReward.load("bundled:smollm2-135m-instruct", categories=["relevance"])   # M, bank, scorer
    GRPOTrainer(model=policy, reward_funcs=[reward], args=GRPOConfig(...), train_dataset=prompts).train()

What TRL passes (``GRPOTrainer._calculate_rewards``, TRL 1.16): ``prompts`` and ``completions`` as keyword lists of
the same length, plus ``completion_ids``, ``trainer_state``, ``log_extra``, ``log_metric`` and every other dataset
column. Both of TRL's formats are read:

* conversational - a prompt is a list of messages, a completion is ``[{"role": "assistant", "content": ...}]``:
  the conversation M reads is ``prompt + completion``;
* plain text - prompt and completion are strings: the prompt becomes one user turn, the completion its answer
  (so pass untemplated prompts; a prompt that already holds a chat template would be templated twice).

Scores go through the same :class:`~flrlib.scoring.Scorer` (engine, cache, truncation rules) as everything else,
so any scorer works: ``flr``, the reference-free ``direct`` and the ``length`` baseline, each under one trainer.
The reward list is returned in input order.

Several processes (``accelerate launch``, DDP): TRL calls the reward on every rank with *that rank's* completions
and gathers the rewards afterwards, so a call scores its rows on its own rank (``Scorer.score(..., local=True)``:
no collective, even when the Scorer deals batches to the ranks elsewhere); M sits on the rank's own GPU
(:func:`flrlib.models.pick_device` reads ``LOCAL_RANK``).

Empty completions. An empty (or whitespace-only) completion is not scored. What TRL 1.16 does with what we return
(``GRPOTrainer._calculate_rewards`` / ``_generate_and_score_completions``; RLOO likewise): a ``None`` becomes
``NaN``; a completion whose every reward function returned NaN is "unscorable": it is left out of its group's mean
and std (and of the logged ``reward``), and its advantage is set to 0, so it neither gains nor loses probability.
So ``empty=None`` means "no learning signal from empty answers". ``empty="min"`` (default) gives it the lowest reward
among the scored completions *of the same call* - under several processes that is this rank's share of the step,
not the whole group - so an empty answer never beats a real one and is pushed down (negative advantage unless its
group ties); when every completion of the call is empty there is no minimum and it returns ``None`` (unscorable, as
above). A float gives it that fixed value (compare it with the scorer's range: FLR values are differences of mean
log-probabilities, often around 0, so 0 can beat real answers).

Logging (when TRL passes ``log_metric``; averaged per logging step into ``trainer.state.log_history``):
``<name>/<category>`` (FLR's per-category rewards, with ``log_categories``), ``<name>/completion_tokens`` (mean
completion length in M's tokens - the length trap: a policy optimised against FLR may learn to write longer
answers; TRL also logs ``completions/mean_length`` in the policy's tokens) and ``<name>/empty`` (fraction of empty
completions). TRL itself logs the reward as ``rewards/<name>/mean``.

M must be a model of its own, never the policy being trained (that would be a reward that moves with the policy):
load it separately even when it is the same checkpoint.

A short GRPO run with such a reward (notebook 06's online section) is :func:`train_grpo`; :func:`curves` reads the
reward and completion length per step from TRL's log.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .chat import content_tokens
from .scoring import ScoreConfig, Scorer, TooLong


def _text(content, where: str) -> str:
    """A message content: a string, or a list of content blocks whose text parts are joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return "".join(b.get("text", "") for b in content if b.get("type") == "text")
    raise ValueError(f"{where}: 'content' must be a string or a list of content blocks (got {type(content).__name__})")


def conversation(prompt, completion, where: str = "row") -> list[dict]:
    """One (prompt, completion) in either of TRL's formats -> the conversation M reads, ending with the response."""
    if isinstance(prompt, str):
        if not isinstance(completion, str):
            raise ValueError(f"{where}: a plain-text prompt needs a plain-text completion "
                             f"(got {type(completion).__name__})")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    if not isinstance(prompt, list) or not prompt:
        raise ValueError(f"{where}: a prompt must be a string or a non-empty list of messages "
                         f"(got {type(prompt).__name__})")
    msgs = []
    for i, m in enumerate(prompt):
        if not isinstance(m, dict) or "role" not in m:
            raise ValueError(f"{where}: prompt[{i}] must be a dict with 'role' and 'content'")
        msgs.append({"role": m["role"], "content": _text(m.get("content"), f"{where} prompt[{i}]")})
    if isinstance(completion, str):
        completion = [{"role": "assistant", "content": completion}]
    if not isinstance(completion, list) or len(completion) != 1 or not isinstance(completion[0], dict) \
            or completion[0].get("role") != "assistant":
        raise ValueError(f"{where}: a conversational completion must be one assistant message "
                         "(tool-calling completions are not supported)")
    return msgs + [{"role": "assistant", "content": _text(completion[0].get("content"), f"{where} completion")}]


class FLRReward:
    """A TRL reward function (``f(prompts, completions, **kwargs) -> list[float]``) scoring with a loaded M.

    ``scorer``: a :class:`~flrlib.scoring.Scorer` (M, bank, layout, scorer config and cache); see :meth:`load` to
    build one from a model spec. ``name``: the name TRL logs it under (default: the scorer, e.g. ``flr``).
    """

    def __init__(self, scorer: Scorer, empty="min", log_categories: bool = True, name: str | None = None):
        if not (empty is None or empty == "min" or isinstance(empty, (int, float)) and not isinstance(empty, bool)):
            raise ValueError(f"empty must be 'min', a number or None, got {empty!r}")
        self.scorer, self.empty, self.log_categories = scorer, empty, log_categories
        self.__name__ = name or scorer.config.scorer  # TRL's get_callable_name reads __name__

    @classmethod
    def load(cls, model: str, bank=None, scorer: str = "flr", categories=(), layout: str = "base",
             cache="auto", dtype: str = "auto", device: str = "auto", adapter: str | None = None,
             empty="min", log_categories: bool = True, name: str | None = None, **score_args) -> "FLRReward":
        """Load M (its own copy: never the policy object) and build the scorer. ``score_args``: other
        :class:`~flrlib.scoring.ScoreConfig` fields (``max_tokens``, ``batch_size``, ``system_prompt``, ...)."""
        from .models import load_model

        config = ScoreConfig(scorer=scorer, layout=layout, categories=list(categories or []), **score_args)
        loaded = load_model(model, dtype=dtype, device=device, adapter=adapter)
        return cls(Scorer(loaded, bank, config, cache=cache), empty=empty, log_categories=log_categories, name=name)

    def score(self, prompts: list, completions: list, progress: bool = False, local: bool = False) -> list[dict]:
        """Per row: ``{"reward": float or None (empty completion), "completion_tokens": int, ...scorer details}``.

        ``local``: score on this rank alone (see :meth:`flrlib.scoring.Scorer.score`); the default deals the rows
        to the ranks of a data-parallel Scorer, so every rank must pass the same rows (as :mod:`flrlib.rerank` does).
        A sequence too long for M raises :class:`~flrlib.scoring.TooLong` with the index of its completion."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        convs = [conversation(p, c, f"completion {i}") for i, (p, c) in enumerate(zip(prompts, completions))]
        todo = [i for i, conv in enumerate(convs) if conv[-1]["content"].strip()]
        try:
            res = (self.scorer.score([convs[i] for i in todo], progress=progress, desc="candidates", local=local)
                   if todo else [])
        except TooLong as e:
            raise TooLong(todo[e.index], e.detail) from None
        out = [{"reward": None, "completion_tokens": 0} for _ in convs]
        n_tok = content_tokens(self.scorer.tokenizer, [convs[i][-1]["content"] for i in todo])
        for i, r, n in zip(todo, res, n_tok):
            out[i] = {**r, "reward": float(r["reward"]), "completion_tokens": n}
        return out

    def __call__(self, prompts: list, completions: list, log_metric=None, **kwargs) -> list:
        """TRL's call: this rank's completions, scored on this rank (TRL gathers the rewards of all ranks)."""
        rows = self.score(prompts, completions, local=True)
        if not rows:
            return []
        rewards = [r["reward"] for r in rows]
        scored = [x for x in rewards if x is not None]
        fill = self.empty if self.empty != "min" else (min(scored) if scored else None)
        if log_metric is not None:
            name = self.__name__
            log_metric(f"{name}/completion_tokens", float(np.mean([r["completion_tokens"] for r in rows])))
            log_metric(f"{name}/empty", (len(rows) - len(scored)) / len(rows))
            cats = [r["categories"] for r in rows if "categories" in r]
            if self.log_categories and cats:
                for c in cats[0]:
                    log_metric(f"{name}/{c}", float(np.mean([d[c] for d in cats])))
        return [fill if x is None else x for x in rewards]


# ----------------------------------------------------------------------------------------------------------
# a short GRPO run with such a reward (notebook 06's GRPO section), logging reward and completion length per step
# ----------------------------------------------------------------------------------------------------------

def grpo_prompts(source: str, n: int, max_chars: int | None = None, seed: int = 0) -> list[dict]:
    """``n`` mining prompts (evaluation prompts removed) for a GRPO run: the first ``n`` of a seeded draw of ``8 n``
    whose last user message has at most ``max_chars`` characters (``None``: no limit). Short prompts keep a CPU
    run's training forward small; the draw is :func:`flrlib.data.mining_prompts`'."""
    from .data import mining_prompts

    pool, _ = mining_prompts(source, max_examples=8 * n, seed=seed)
    keep = [p for p in pool if max_chars is None or len(p["messages"][-1]["content"]) <= max_chars][:n]
    if len(keep) < n:
        raise ValueError(f"only {len(keep)} of {len(pool)} drawn {source} prompts have <= {max_chars} characters "
                         f"(asked for {n}): raise max_prompt_chars")
    return keep


def curves(log_history: list[dict], name: str) -> list[dict]:
    """Per logged step of a GRPO/RLOO run with reward ``name``: ``{step, reward, reward_std, completion_length
    (policy tokens, TRL's), completion_tokens (M's tokens), empty, categories, loss, kl, entropy, step_time}``."""
    rows = []
    for h in log_history:
        if "reward" not in h:
            continue  # the final summary line (train_loss, train_runtime, ...)
        pre = f"{name}/"
        cats = {k[len(pre):]: v for k, v in h.items()
                if k.startswith(pre) and k[len(pre):] not in ("completion_tokens", "empty")}
        rows.append({"step": h.get("step"), "reward": h["reward"], "reward_std": h.get("reward_std"),
                     "completion_length": h.get("completions/mean_length"),
                     "completion_tokens": h.get(f"{pre}completion_tokens"), "empty": h.get(f"{pre}empty"),
                     "clipped_ratio": h.get("completions/clipped_ratio"), "categories": cats, "loss": h.get("loss"),
                     "kl": h.get("kl"), "entropy": h.get("entropy"), "step_time": h.get("step_time")})
    return rows


def train_grpo(policy_model: str, reward: FLRReward, prompts: list[dict], out_dir, settings: dict,
               device: str = "auto", dtype: str = "auto", seed: int = 0, provenance: dict | None = None,
               force: bool = False) -> dict:
    """GRPO of a policy (LoRA adapter, TRL ``GRPOTrainer``) against ``reward`` on prompt records ``{id, messages}``.

    ``settings``: ``lora`` (a dict of :class:`flrlib.lora.LoraSettings` fields; default rank 8 / alpha 16 / all
    linear, as for DPO and KTO); every other key is a ``GRPOConfig`` argument (``max_steps``, ``learning_rate``,
    ``num_generations``, ``per_device_train_batch_size`` = completions per step, ``max_completion_length``,
    ``temperature``, ``beta``, ...). Training, saving and reuse are :func:`flrlib.lora.train_lora`'s
    (``out_dir/adapter``, ``provenance.json``, ``log_history.json``; an identical finished run is reused); this
    also writes ``out_dir/curves.json``: the per-step :func:`curves` (reward and completion length) and the
    provenance. Returns that record.
    """
    from .cache import content_key
    from .lora import LoraSettings, peft_config, precision, train_lora
    from .results import write_json

    settings = dict(settings)
    lora = LoraSettings(**settings.pop("lora", {}))
    fp = content_key("grpo", policy_model, settings, vars(lora), seed, reward.__name__, reward.scorer.provenance,
                     reward.empty, [p["messages"] for p in prompts])[:16]

    def build(loaded, output_dir, dev):
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        if loaded.model is reward.scorer.model:
            raise ValueError("the reward's M is the policy object itself: load M separately (a frozen copy)")
        args = GRPOConfig(output_dir=str(output_dir), logging_steps=1, report_to=[], save_strategy="no", seed=seed,
                          data_seed=seed, dataloader_num_workers=0, **precision(dev), **settings)
        data = Dataset.from_list([{"prompt": p["messages"]} for p in prompts])
        return GRPOTrainer(model=loaded.model, reward_funcs=[reward], args=args, train_dataset=data,
                           processing_class=loaded.tokenizer, peft_config=peft_config(lora))

    done = train_lora(policy_model, build, out_dir, fp, dtype=dtype, device=device, force=force, provenance={
        "method": "grpo", "settings": settings, "lora": vars(lora), "seed": seed, "reward_name": reward.__name__,
        "reward_provenance": reward.scorer.provenance, "empty_reward": reward.empty,
        "prompt_ids": [p.get("id") for p in prompts], **(provenance or {})})
    record = {"steps": curves(done.log_history, reward.__name__), "reused": done.reused,
              "provenance": done.provenance}
    write_json(Path(out_dir) / "curves.json", record)
    return record

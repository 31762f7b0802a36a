"""Score responses A and B to one conversation side by side, for the explorer and the notebooks: the chosen
scorer, Direct and ``length`` through :class:`flrlib.scoring.Scorer` (the same engine and score cache as every
other caller), plus the per-token log-probs of every follow-up so that any token view can be drawn later without
scoring again. :func:`score_responses` returns a plain dict that :mod:`flrlib.views` draws.

:func:`compare_pairs` and :func:`pair_category_frame` do the same for many pairwise records at once (notebook 02).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .followups import Bank
from .scoring import NO_BANK, ScoreConfig, Scorer, engine_logprobs
from .views import SCORER_NAMES, default_choice

PHASES = ("main", "direct", "tokens")  # the order score_responses runs them in (length needs no forward pass)


def _token_view(tokenizer, ids, lps) -> dict:
    lps = [float(x) for x in lps]
    return {"tokens": [tokenizer.decode([t]) for t in ids], "logprobs": lps, "mean": float(np.mean(lps))}


def token_views(scorer: Scorer, conversations: list[list[dict]]) -> list[list[dict]]:
    """Per-token log-probs of every target of ``scorer`` (every follow-up of its bank; the response for Direct)
    after each conversation, in one engine pass: per conversation ``[{tokens, logprobs, mean}, ...]`` in bank
    order.

    These are true log-probs under the engine whatever the scorer (for ``legacy_repo`` too); their means are the
    per-follow-up values FLR averages."""
    encs = [scorer.encode(conv) for conv in conversations]
    lps = engine_logprobs(scorer.model, encs, scorer.pad_id, scorer.config.chunk_size)
    return [[_token_view(scorer.tokenizer, ids, lp) for ids, lp in zip(enc.targets, row)]
            for enc, row in zip(encs, lps)]


def score_responses(loaded, bank: Bank | str | None, context: list[dict], responses: dict, config: ScoreConfig,
                    followup: int | None = None, cache="auto", progress: bool = True, memo: dict | None = None,
                    human: dict | None = None, on_phase=None) -> dict:
    """Score each response (``{"A": text, "B": text}``) to ``context`` with ``config.scorer``, Direct and length.

    ``followup``: index (into the scorer's bank) of the follow-up the token view starts on (None: the one that
    moved A - B most). ``memo``: a dict that keeps :class:`Scorer` objects and token views between calls.
    ``human``: the human label of a benchmark example, e.g. ``{"A": "chosen", "B": "rejected", "source": ...}``.
    ``on_phase(phase)``: called before each of :data:`PHASES` starts (the explorer's progress line).
    Returns a plain dict: ``main``, ``direct`` and ``length`` hold the Scorer's outputs per label, ``items`` the
    bank's (category, polarity, text) rows in the order of ``followups``, ``views`` the stored per-token log-probs
    (``views["followups"][label][i]`` for follow-up i, ``views["response"][label]`` for the response itself).
    """
    labels = [k for k, v in responses.items() if v is not None]
    if not labels:
        raise ValueError("no response to score: type response A")
    for lab in labels:
        if not str(responses[lab]).strip():
            raise ValueError(f"response {lab} is empty: type the assistant reply to score")
    if not context or context[-1]["role"] != "user":
        raise ValueError("conversation: the last turn must be a user turn (responses answer it)")
    memo = {} if memo is None else memo
    phase = on_phase or (lambda name: None)

    def get(cfg: ScoreConfig, use_cache=cache) -> Scorer:
        bank_key = bank.hash if isinstance(bank, Bank) else str(bank)
        key = ("scorer", loaded.spec, loaded.adapter, id(loaded.model), bank_key, repr(cfg), str(use_cache))
        if key not in memo:
            memo[key] = Scorer(loaded, bank, cfg, cache=use_cache)
        return memo[key]

    def views(scorer: Scorer, convs: list[list[dict]]) -> list[list[dict]]:
        keys = [("views", id(scorer), repr(conv)) for conv in convs]
        todo = [i for i, k in enumerate(keys) if k not in memo]
        for i, v in zip(todo, token_views(scorer, [convs[i] for i in todo]) if todo else []):
            memo[keys[i]] = v
        return [memo[k] for k in keys]

    main = get(config)
    direct = get(replace(config, scorer="direct", categories=[]))
    length = get(replace(config, scorer="length", categories=[]), use_cache=None)
    convs = [list(context) + [{"role": "assistant", "content": responses[lab]}] for lab in labels]
    phase("main")
    out_main = main.score(convs, progress=progress, desc=SCORER_NAMES[config.scorer])
    phase("direct")
    out_direct = out_main if direct is main else direct.score(convs, progress=progress, desc="Direct")
    out_length = length.score(convs, progress=False)
    phase("tokens")
    has_bank = config.scorer not in NO_BANK
    items = [list(t) for t in main.bank.items()] if has_bank else []
    stored = {"response": {lab: v[0] for lab, v in zip(labels, views(direct, convs))},
              "followups": dict(zip(labels, views(main, convs))) if has_bank else {}}
    res = {
        "scorer": config.scorer, "layout": config.layout, "norm": config.norm,
        "labels": labels, "context": list(context), "responses": {lab: responses[lab] for lab in labels},
        "main": dict(zip(labels, out_main)), "direct": dict(zip(labels, out_direct)),
        "length": dict(zip(labels, out_length)), "items": items, "views": stored, "human": human,
        "provenance": main.provenance,
    }
    if followup is not None and items and not 0 <= int(followup) < len(items):
        raise ValueError(f"follow-up index {followup} is outside the bank (0..{len(items) - 1})")
    res["followup"] = int(followup) if followup is not None and items else default_choice(res)
    return res


def compare_pairs(pairs: list[dict], scorers: dict, limits: dict | None = None, progress: bool = True) -> pd.DataFrame:
    """One row per pairwise record: chosen and rejected reward and their margin under each named Scorer.

    ``limits[name] = n`` scores only the first n pairs with that scorer (the others get NaN): for ``legacy_repo``,
    which costs one full forward per follow-up.
    """
    rows = [{"id": p["id"]} for p in pairs]
    for name, scorer in scorers.items():
        n = len(pairs) if not limits or limits.get(name) is None else min(int(limits[name]), len(pairs))
        out = scorer.score_pairs(pairs[:n], progress=progress, desc=name) if n else []
        for i, row in enumerate(rows):
            c, r = (out[i]["chosen"], out[i]["rejected"]) if i < n else (np.nan, np.nan)
            row.update({f"{name} chosen": c, f"{name} rejected": r, f"{name} margin": c - r})
    return pd.DataFrame(rows).set_index("id")


def pair_category_frame(scorer: Scorer, pairs: list[dict], progress: bool = False) -> pd.DataFrame:
    """R_k(chosen) - R_k(rejected) per pair (rows: pair ids; columns: categories) from an FLR Scorer."""
    out = scorer.score_pairs(pairs, progress=progress)
    return pd.DataFrame([{k: o["chosen_detail"]["categories"][k] - o["rejected_detail"]["categories"][k]
                          for k in scorer.bank.categories} for o in out], index=[p["id"] for p in pairs])

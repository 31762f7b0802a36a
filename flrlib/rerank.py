"""Best-of-N reranking: N candidate responses per prompt (given, or sampled from a policy) -> the best by a scorer.

Rows in: ``{id, messages (the conversation, ending with the user turn answered), responses: [str] * N}`` - the
records :func:`flrlib.generate.generate` returns - or, with a policy, prompt records ``{id, messages}`` whose N
responses are sampled through :func:`flrlib.generate.generate` (resumable through its cache).

Rows out: the same, plus ``scores`` (one per candidate, in candidate order; ``None`` for an empty response, which
is not scored and never chosen), ``order`` (candidate indices, best first; ties keep candidate order; empty ones
last), ``best_index`` and ``best`` (``None`` when every candidate is empty), ``completion_tokens`` (each
candidate's length in M's tokens: read the best one's length against the others' - a reward that prefers longer
answers shows here) and, for FLR, ``categories`` (per-candidate per-category rewards).

Scores go through :class:`flrlib.reward.FLRReward`, i.e. the same Scorer, engine and cache as everything else.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import BadFile, numbered_jsonl
from .messages import check_messages
from .reward import FLRReward


def read_candidates(path: str | Path, need_responses: bool = True) -> list[dict]:
    """Read rerank input rows; errors name the file, line and field (a :class:`~flrlib.files.BadFile`).

    A row without ``id`` gets ``row<line>``, or ``row<line>.<k>`` where a given id already is ``row<line>``.
    ``need_responses=False`` (candidates to be sampled): a row that already has ``responses`` is refused, so that
    sampling never silently replaces given candidates."""
    path = Path(path)
    rows, seen = [], {}
    numbered = list(numbered_jsonl(path))
    given = {r["id"] for _, r in numbered if isinstance(r, dict) and isinstance(r.get("id"), str)}
    for n, row in numbered:  # bad bytes / JSON: a BadFile naming the file and line
        where = f"{path}:{n}"
        if not isinstance(row, dict):
            raise BadFile(f"{where}: expected a JSON object")
        try:
            check_messages(row.get("messages"), "field 'messages'")
        except ValueError as e:
            raise BadFile(f"{where}: {e}") from None
        if row["messages"][-1]["role"] != "user":
            raise BadFile(f"{where}: field 'messages' must end with the user turn the candidates answer "
                          f"(the last one is {row['messages'][-1]['role']!r})")
        rid = row["id"] if "id" in row else _auto_id(n, given)
        if not isinstance(rid, str) or not rid.strip():
            raise BadFile(f"{where}: field 'id' must be a non-empty string (got {rid!r:.60})")
        if rid in seen:
            raise BadFile(f"{where}: field 'id': {rid!r:.60} is already the id of row {seen[rid]}")
        seen[rid] = n
        if not need_responses and "responses" in row:
            raise BadFile(f"{where}: the row already has 'responses' (candidates), and --policy-model samples new "
                          "ones in their place: drop --policy-model to rank the given candidates, or remove the field")
        if need_responses:
            resp = row.get("responses")
            if not isinstance(resp, list) or not resp or not all(isinstance(r, str) for r in resp):
                raise BadFile(f"{where}: field 'responses' must be a non-empty list of strings (the candidates)")
        rows.append({**row, "id": rid})
    if not rows:
        raise BadFile(f"{path}: no rows")
    return rows


def _auto_id(n: int, given: set) -> str:
    rid, k = f"row{n}", 0
    while rid in given:
        k += 1
        rid = f"row{n}.{k}"
    given.add(rid)
    return rid


def sample(policy, prompts: list[dict], gen_config, cache=None, progress: bool = True) -> list[dict]:
    """N candidates per prompt from a loaded policy, through :func:`flrlib.generate.generate`."""
    from .generate import generate

    return generate(policy, prompts, gen_config, cache=cache, progress=progress, desc="candidates")


def rerank(scorer, rows: list[dict], progress: bool = True) -> list[dict]:
    """Score every candidate of every row with one Scorer (one batched call) and rank them (fields: module doc)."""
    from .scoring import TooLong

    where = [(i, j) for i, row in enumerate(rows) for j in range(len(row["responses"]))]
    try:
        res = FLRReward(scorer, empty=None).score([rows[i]["messages"] for i, _ in where],
                                                  [rows[i]["responses"][j] for i, j in where], progress=progress)
    except TooLong as e:
        i, j = where[e.index]
        raise ValueError(f"row {rows[i]['id']!r} candidate {j}: {e.detail}") from None
    out, k = [], 0
    for row in rows:
        mine, k = res[k: k + len(row["responses"])], k + len(row["responses"])
        scores = [r["reward"] for r in mine]
        order = sorted(range(len(scores)), key=lambda j: (scores[j] is None, -(scores[j] or 0.0), j))
        best = order[0] if scores[order[0]] is not None else None
        rec = {**row, "scores": scores, "order": order, "best_index": best,
               "best": None if best is None else row["responses"][best],
               "completion_tokens": [r["completion_tokens"] for r in mine]}
        if any("categories" in r for r in mine):
            rec["categories"] = [r.get("categories") for r in mine]
        out.append(rec)
    return out


def summary(ranked: list[dict]) -> dict:
    """Counts and the length check: mean M-token length of the chosen candidates vs of all scored candidates."""
    chosen = [r["completion_tokens"][r["best_index"]] for r in ranked if r["best_index"] is not None]
    scored = [n for r in ranked for n, s in zip(r["completion_tokens"], r["scores"]) if s is not None]
    return {"prompts": len(ranked), "candidates": sum(len(r["responses"]) for r in ranked),
            "unscored_empty": sum(s is None for r in ranked for s in r["scores"]),
            "no_best": sum(r["best_index"] is None for r in ranked),
            "mean_best_tokens": float(np.mean(chosen)) if chosen else None,
            "mean_candidate_tokens": float(np.mean(scored)) if scored else None}


def cli(a) -> int:
    """``flr rerank`` (arguments in :mod:`flrlib.cli`): everything checkable is checked before a model loads."""
    import sys

    import json

    from .followups import load_bank
    from .generate import GenConfig
    from .models import load_model
    from .paths import cache_dir, slug
    from .results import write_jsonl
    from .scoring import NO_BANK, ScoreConfig, Scorer

    rows = read_candidates(a.input, need_responses=not a.policy_model)
    out = Path(a.output)
    if out.is_dir():
        raise BadFile(f"--output {out} is a directory; give a file path")
    cats = [c.strip() for c in a.categories.split(",") if c.strip()] if a.categories else []
    cfg = ScoreConfig(scorer=a.scorer, layout=a.layout, max_tokens=a.max_tokens, batch_size=a.batch_size,
                      categories=cats)
    bank = None
    if a.scorer not in NO_BANK:
        if a.bank not in (None, "paper") and not Path(a.bank).is_file():
            raise BadFile(f"--bank {a.bank}: no such file (a bank JSON/YAML; omit --bank for the paper's bank)")
        bank = load_bank(a.bank)
        bank.select(cats)  # unknown categories are named before any model loads (the Scorer selects them)
    if a.policy_model:
        gen = GenConfig(n=a.n, temperature=a.temperature, top_p=a.top_p, max_new_tokens=a.max_new_tokens, seed=a.seed)
        policy = load_model(a.policy_model, dtype=a.dtype, device=a.device)
        gen_cache = a.gen_cache or cache_dir() / "generations" / f"{slug(policy.spec)}.jsonl"
        rows = [{**r, **s} for r, s in zip(rows, sample(policy, rows, gen, cache=gen_cache))]
        del policy
    loaded = load_model(a.model, dtype=a.dtype, device=a.device, adapter=a.adapter)
    scorer = Scorer(loaded, bank, cfg, cache=a.cache or "auto")
    try:
        ranked = rerank(scorer, rows)
    except KeyboardInterrupt:
        print(f"interrupted: the score cache {scorer.cache.path} keeps what was scored; re-run to resume",
              file=sys.stderr)
        return 130
    prov = scorer.provenance
    write_jsonl(out, [{**r, "provenance": prov} for r in ranked])
    print(f"wrote {len(ranked)} rows to {out}: {json.dumps(summary(ranked))}")
    return 0

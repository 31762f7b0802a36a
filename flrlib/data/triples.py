"""Feedback triples ``{id, prompt, messages, response, critique, score, score_scale, source}`` for FT-FLR.

Offline: the Prometheus Vicuna set (GPT-4 feedback, :func:`prometheus_triples`). Online: UltraFeedback's GPT-4
critiques (Hub ``openbmb/UltraFeedback``; :func:`ultrafeedback_triples` parses rows of its documented schema,
:func:`load_ultrafeedback_triples` fetches them). The paper samples 100K of its 255,548 critiques.
"""
from __future__ import annotations

from .registry import load_prometheus
from .subsets import select_subset


def _last_user(messages: list[dict], where: str) -> str:
    for m in reversed(messages):
        if m.get("role") == "user" and isinstance(m.get("content"), str) and m["content"].strip():
            return m["content"]
    raise ValueError(f"{where}: field 'messages' has no user prompt")


def prometheus_triples(which: str = "vicuna", per_response: int = 1, max_examples: int | None = None,
                       seed: int = 0) -> list[dict]:
    """Triples from a Prometheus set (default: Vicuna, 320 responses x 3 GPT-4 critiques, scores 1-5).

    ``per_response``: how many of each response's critiques to use (1-3, in file order). ``max_examples``: the seeded
    nested subset of responses (``None``: all).
    """
    recs = select_subset(load_prometheus(which), max_examples, seed)
    out = []
    for rec in recs:
        where = f"prometheus/{which} row {rec.get('id')!r}"
        feedback = rec.get("feedback")
        if not isinstance(feedback, list) or not feedback:
            raise ValueError(f"{where}: field 'feedback' must be a non-empty list of critiques")
        scores = rec.get("scores") if isinstance(rec.get("scores"), list) else None
        for k, crit in enumerate(feedback[:per_response]):
            score = scores[k] if scores and k < len(scores) else rec.get("score")
            out.append({"id": f"{rec['id']}#c{k}", "prompt": _last_user(rec["messages"], where),
                        "messages": list(rec["messages"]), "response": rec["response"], "critique": crit,
                        "score": score, "score_scale": [1, 5], "source": f"prometheus_{which}",
                        "category": rec.get("category")})
    return out


def ultrafeedback_triples(rows, max_examples: int | None = None, seed: int = 0) -> list[dict]:
    """Triples from rows of ``openbmb/UltraFeedback`` (documented schema: ``source``, ``instruction``,
    ``completions`` = list of ``{model, response, critique, overall_score, fine-grained_score, ...}``).

    One triple per completion with a non-empty critique (overall_score 1-10). ``max_examples`` keeps the seeded nested
    subset of triples (the paper samples 100K of the 255,548 critiques).
    """
    out = []
    for i, row in enumerate(rows):
        where = f"openbmb/UltraFeedback row {i}"
        prompt = row.get("instruction")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"{where}: field 'instruction' must be a non-empty string")
        comps = row.get("completions")
        if not isinstance(comps, list):
            raise ValueError(f"{where}: field 'completions' must be a list")
        for j, c in enumerate(comps):
            crit, resp = c.get("critique"), c.get("response")
            if not isinstance(crit, str) or not crit.strip() or not isinstance(resp, str) or not resp.strip():
                continue  # a completion without a critique or response gives no triple
            score = c.get("overall_score")
            out.append({"id": f"uf{i}:{j}", "prompt": prompt, "messages": [{"role": "user", "content": prompt}],
                        "response": resp, "critique": crit,
                        "score": float(score) if isinstance(score, (int, float)) else None, "score_scale": [1, 10],
                        "source": f"ultrafeedback/{row.get('source', '')}", "model": c.get("model")})
    return select_subset(out, max_examples, seed)


def load_ultrafeedback_triples(max_examples: int | None = 100_000, seed: int = 0, revision: str | None = None):
    """Online only: ``datasets.load_dataset("openbmb/UltraFeedback", split="train")`` ->
    :func:`ultrafeedback_triples`."""
    from .hub import load_hub_dataset  # the prefetched folder when it is locked there, else the Hub

    ds = load_hub_dataset("openbmb/UltraFeedback", None, "train", revision, name="UltraFeedback")
    return ultrafeedback_triples(ds, max_examples=max_examples, seed=seed)

"""Rating benchmark files -> ``{id, benchmark, messages, response, score}`` records (plus a few extras).

Prometheus evaluation sets (``mt_bench_eval``, ``vicuna_eval``; also the FLASK set in the same format) embed the
conversation and the response inside a grading prompt (``instruction``)::

    ###Task Description: ...
    ###The instruction to evaluate:
    <prompt, or "Here is a previous dialogue ... \\nUser: q1\\n\\nAssistant:a1\\n\\nUser: q2\\n\\nAssistant: ">
    ###Response to evaluate:
    <response>
    ###Reference Answer (Score 5): ... ###Score Rubrics: ... ###Feedback:

We cut the prompt at those headers, turn a multi-turn dialogue into chat messages (the trailing empty
``Assistant:`` is the slot of the response), and take the mean of the three GPT-4 scores (1-5) as the target.
These sets are *proxies* of the paper's rating benchmarks: GPT-4 rubric scores, not human ratings.
"""
from __future__ import annotations

import re
from collections import Counter

from .pairwise import MalformedRow, field

_INSTR = "###The instruction to evaluate:\n"
_RESP = "###Response to evaluate:\n"
_REF = "###Reference Answer (Score 5):"
_DIALOGUE = "Here is a previous dialogue between an assistant and an user. Generate a human preferable response by the assistant.\n"
_TURN = re.compile(r"(?:^|\n\n)(User|Assistant):")


def split_prometheus_prompt(text: str) -> tuple[list[dict], str] | None:
    """Grading prompt -> (context messages ending with a user turn, response); ``None`` if the headers are missing
    or the embedded dialogue does not parse."""
    try:
        head, rest = text.split(_INSTR, 1)
        instruction, rest = rest.split("\n\n" + _RESP, 1)
        response = rest.split("\n\n" + _REF, 1)[0] if _REF in rest else None
    except ValueError:
        return None
    if response is None:
        return None
    if not instruction.startswith(_DIALOGUE):
        return [{"role": "user", "content": instruction.strip()}], response.strip()
    parts = _TURN.split(instruction[len(_DIALOGUE):])
    if parts[0].strip():
        return None
    msgs = [{"role": "user" if parts[i] == "User" else "assistant", "content": parts[i + 1].strip()}
            for i in range(1, len(parts), 2)]
    if not msgs or msgs[-1]["role"] != "assistant" or msgs[-1]["content"]:
        return None  # the dialogue must end with the empty assistant slot of the response
    msgs = msgs[:-1]
    if any(m["role"] != ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(msgs)):
        return None
    return msgs, response.strip()


def parse_prometheus_rows(rows: list[dict], benchmark: str, where: str = "prometheus") -> tuple[list[dict], dict]:
    """Prometheus rows -> rating records with ``feedback`` (the GPT-4 critiques), ``category``, ``response_source``.

    ``id`` = ``<benchmark>-<idx>-<response_source>`` (each question is answered by 4 models).
    """
    records, dropped = [], Counter()
    for i, row in enumerate(rows):
        at = f"{where}: row {i + 1}"
        parsed = split_prometheus_prompt(field(row, "instruction", at))
        scores = field(row, "gpt4_score", at, types=list)
        if parsed is None:
            dropped["grading prompt does not parse"] += 1
            continue
        messages, response = parsed
        try:
            vals = [float(s) for s in scores]
        except (TypeError, ValueError):
            raise MalformedRow(f"{at}: field 'gpt4_score' must be a list of numbers, got {scores!r:.80}") from None
        if not vals:
            dropped["no GPT-4 score"] += 1
            continue
        if not response:
            dropped["empty response"] += 1
            continue
        feedback = row.get("gpt4_feedback") or []
        records.append({"id": f"{benchmark}-{row.get('idx', i)}-{row.get('response_source', i)}", "benchmark": benchmark,
                        "messages": messages, "response": response, "score": sum(vals) / len(vals),
                        "feedback": list(feedback) if isinstance(feedback, list) else [str(feedback)],
                        "category": row.get("category", ""), "response_source": row.get("response_source", "")})
    return records, dict(dropped)

"""Typed or pasted conversation text <-> chat messages (the explorer's conversation box, notebooks).

``User:`` / ``Assistant:`` / ``System:`` lines, and HH-RLHF's ``Human:`` / ``Assistant:`` transcripts as they are
(blank lines, the trailing empty ``Assistant:`` of a prompt, a whole transcript whose last reply comes apart).
"""
from __future__ import annotations

import re

_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "system": "system"}
_ROLE_LINE = re.compile(r"^\s*(user|human|assistant|system)\s*:\s?(.*)$", re.IGNORECASE)


def split_transcript(text: str) -> tuple[list[dict], str | None]:
    """Typed or pasted text -> (context messages, trailing assistant reply or None).

    Lines starting with ``User:``/``Human:``, ``Assistant:`` or ``System:`` (any case) start a turn; other lines
    continue the previous turn (so HH-RLHF's blank-line-separated ``Human:``/``Assistant:`` transcripts paste as
    they are). Text without any role marker is one user turn. A trailing empty ``Assistant:`` (how HH prompts end)
    is dropped; a trailing non-empty assistant turn is returned separately as the reply.
    """
    text = (text or "").strip()
    if not text:
        raise ValueError("conversation is empty: type at least one 'User: ...' turn")
    lines = text.splitlines()
    if not any(_ROLE_LINE.match(line) for line in lines):
        return [{"role": "user", "content": text}], None
    msgs: list[dict] = []
    for n, line in enumerate(lines, 1):
        m = _ROLE_LINE.match(line)
        if m:
            msgs.append({"role": _ROLES[m.group(1).lower()], "content": m.group(2)})
        elif msgs:
            msgs[-1]["content"] += "\n" + line
        elif line.strip():
            raise ValueError(f"conversation line {n}: start the first turn with 'User:' (or 'Human:'), "
                             f"'Assistant:' or 'System:'")
    for m in msgs:
        m["content"] = m["content"].strip()
    if len(msgs) > 1 and msgs[-1]["role"] == "assistant" and not msgs[-1]["content"]:
        msgs.pop()  # HH prompts end with an empty "Assistant:" for the reply to come
    for i, m in enumerate(msgs):
        if not m["content"]:
            raise ValueError(f"conversation turn {i + 1} ({m['role']}) is empty")
    reply = msgs.pop()["content"] if msgs[-1]["role"] == "assistant" and len(msgs) > 1 else None
    return msgs, reply


def parse_transcript(text: str) -> list[dict]:
    """The context messages of a transcript (see :func:`split_transcript`); it must end with a user turn."""
    msgs, reply = split_transcript(text)
    if reply is not None:
        raise ValueError("conversation: the last turn is an Assistant reply; move it into response A (or B): the "
                         "conversation must end with the user turn that A and B answer")
    if msgs[-1]["role"] != "user":
        raise ValueError("conversation: the last turn must be 'User: ...' (responses A and B are the assistant's "
                         "reply)")
    return msgs


def format_transcript(messages: list[dict]) -> str:
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)

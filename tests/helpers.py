"""Helpers several test files share: strict JSON reading of result files, and small conversations and pairs."""
from __future__ import annotations

import json
from pathlib import Path


def _refuse(token: str):
    raise ValueError(f"bare {token} is not JSON (jq and JSON.parse reject it)")


def strict_json(text: str):
    """``json.loads`` as strict as RFC 8259: a bare ``NaN``, ``Infinity`` or ``-Infinity`` is a ``ValueError``."""
    return json.loads(text, parse_constant=_refuse)


def not_strict_json(paths) -> list[str]:
    """``"path: reason"`` for every ``.json`` / ``.jsonl`` file of ``paths`` that a strict parser rejects."""
    bad = []
    for p in map(Path, paths):
        text = p.read_text(encoding="utf-8")
        docs = [x for x in text.split("\n") if x.strip()] if p.suffix == ".jsonl" else [text]
        for d in docs:
            try:
                strict_json(d)
            except ValueError as e:
                bad.append(f"{p}: {e}")
                break
    return bad


def result_files(*folders) -> list[Path]:
    """Every ``.json`` / ``.jsonl`` file under the given folders (those that exist)."""
    return sorted(p for f in map(Path, folders) if f.exists() for p in f.rglob("*.json*")
                  if p.suffix in (".json", ".jsonl") and p.is_file())


# -- small conversations and records (the schemas of flrlib.data) --------------------------------------------------

def user(text: str) -> list[dict]:
    """A one-turn conversation: ``[{"role": "user", "content": text}]``."""
    return [{"role": "user", "content": text}]


def pair(pid: str, question: str | list, chosen: str, rejected: str, benchmark: str = "toy", **extra) -> dict:
    """A pairwise record ``{id, benchmark, messages, chosen, rejected, ...}``; ``question``: text or messages."""
    messages = user(question) if isinstance(question, str) else list(question)
    return {"id": pid, "benchmark": benchmark, "messages": messages, "chosen": chosen, "rejected": rejected, **extra}


# three conversations ending with an assistant turn: one turn, several turns, a system prompt (the `convs` fixture)
CONVS = (
    ({"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}),
    ({"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke about cats, a long one please."},
     {"role": "assistant", "content": "Why did the cat sit on the computer? To keep an eye on the mouse!"}),
    ({"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}),
)


def conversations() -> list[list[dict]]:
    """A fresh, mutable copy of :data:`CONVS`."""
    return [[dict(m) for m in conv] for conv in CONVS]

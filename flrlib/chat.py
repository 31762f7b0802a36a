"""Conversation layouts and the one chat renderer: messages -> (prefix token ids, target token ids).

Layouts (what M reads before the follow-up f):

* ``base`` - the conversation, ending with the response r (assistant), then f as the next **user** turn.
* ``feedback`` - role-swapped, as in the authors' fine-tuned scorer and our LoRA training data: user = a fixed
  request to ask a question and give feedback, assistant = the last user prompt p, user = r, assistant = f.
  Only the last prompt/response pair is kept.

System-prompt policy (``system_prompt``): ``None`` (default) passes no system message and lets the model's own
template decide - Llama-3 adds none, SmolLM2 and Qwen2 inject their default one. This matches the authors' code,
which never passed a system message. A string inserts that system message (use ``""`` for an empty one).

Token boundary: the full templated text is tokenised once and split at the prefix length; the prefix tokens must
be identical whatever the target is, otherwise :class:`TemplateError` is raised.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .messages import check_messages  # noqa: F401 - re-exported: the one message validator

FEEDBACK_REQUEST = "Please ask me a question and provide feedback to my answer."
LAYOUTS = ("base", "feedback")
_SENTINEL = "\ue000FLR_TARGET\ue001"


class TemplateError(ValueError):
    """The chat template does not render a stable prefix for the target (scores would be wrong)."""


def flr_context(conversation: list[dict], layout: str = "base") -> tuple[list[dict], str]:
    """Messages that precede a follow-up, and the role the follow-up takes, for a conversation ending in r."""
    check_messages(conversation, "conversation")
    if conversation[-1]["role"] != "assistant":
        raise ValueError("conversation: the last message must be the assistant response being scored")
    if layout == "base":
        return list(conversation), "user"
    if layout == "feedback":
        prompt = next((m["content"] for m in reversed(conversation[:-1]) if m["role"] == "user"), None)
        if prompt is None:
            raise ValueError("conversation: the feedback layout needs a user prompt before the response")
        return [
            {"role": "user", "content": FEEDBACK_REQUEST},
            {"role": "assistant", "content": prompt},
            {"role": "user", "content": conversation[-1]["content"]},
        ], "assistant"
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def content_tokens(tokenizer, texts) -> list[int]:
    """Length of each text in the tokenizer's tokens: the stripped text, no special tokens, at least 1.

    The unit of the ``length`` scorer and of every length control in the result files (a response's length as M
    reads it, independent of the chat template)."""
    texts = [t.strip() for t in texts]
    if not texts:
        return []
    return [max(1, len(ids)) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def render(tokenizer, messages: list[dict], system_prompt: str | None = None) -> str:
    """The one chat renderer (the model's own template, no generation prompt)."""
    if system_prompt is not None and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}] + list(messages)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


def template_hash(tokenizer, system_prompt: str | None, layout: str) -> str:
    blob = f"{tokenizer.chat_template}\x00{system_prompt!r}\x00{layout}".encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class Encoded:
    prefix: list[int]           # token ids of everything before the target's content
    targets: list[list[int]]    # token ids of each target's content (end-of-turn tokens excluded)
    truncated_tokens: int = 0   # context tokens removed from the left to fit max_tokens
    over_budget: bool = False   # the protected part alone is longer than max_tokens


def _encode_once(tokenizer, context, role, targets, system_prompt) -> Encoded:
    sentinel_text = render(tokenizer, context + [{"role": role, "content": _SENTINEL}], system_prompt)
    if sentinel_text.count(_SENTINEL) != 1:
        raise TemplateError("the chat template does not place the target content verbatim")
    prefix_text, suffix_text = sentinel_text.split(_SENTINEL)
    tok = lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
    prefix_ids = tok([prefix_text])[0]
    contents = []
    for t in targets:
        # templates may strip the content (Llama-3's does): score what the model actually reads
        contents.append(t if t == t.strip() else _rendered_content(tokenizer, context, role, t, prefix_text, system_prompt))
    full_ids = tok([prefix_text + c + suffix_text for c in contents])
    upto_ids = tok([prefix_text + c for c in contents])
    n = len(prefix_ids)
    out = []
    for c, full, upto in zip(contents, full_ids, upto_ids):
        if full[:n] != prefix_ids or full[: len(upto)] != upto:
            raise TemplateError(
                f"tokenisation is not prefix-stable at the target boundary (target {c[:40]!r}); "
                "this template/tokenizer pair cannot be scored by splitting at the prefix length"
            )
        out.append(upto[n:])
    return Encoded(prefix_ids, out)


def _rendered_content(tokenizer, context, role, target, prefix_text, system_prompt) -> str:
    full = render(tokenizer, context + [{"role": role, "content": target}], system_prompt)
    if not full.startswith(prefix_text):
        raise TemplateError("the rendered prefix changes with the target")
    rest = full[len(prefix_text):]
    for cand in (target, target.strip(), target.lstrip(), target.rstrip()):
        if cand and rest.startswith(cand):
            return cand
    raise TemplateError("the chat template rewrites the target content")


def encode(tokenizer, context: list[dict], role: str, targets: list[str], system_prompt: str | None = None,
           max_tokens: int | None = None) -> Encoded:
    """Tokenise ``context + [role: target]`` for each target and split at the shared prefix.

    If ``len(prefix) + longest target > max_tokens``, whole earlier turn pairs are dropped from the left, then the
    message just before the protected last one (the prompt) is cut from the left. Never dropped or cut: a system
    message, the feedback layout's fixed request (its first user turn, :data:`FEEDBACK_REQUEST`), the last context
    message (the response being scored, or r in the feedback layout) and the targets. So the feedback layout
    ``[request, p, r]`` keeps the request and r and cuts p from the left; the base layout drops earlier
    ``(user, assistant)`` pairs, then cuts the last prompt. If the protected part alone exceeds the budget the row
    is flagged ``over_budget``.
    """
    check_messages(list(context) + [{"role": role, "content": ""}], "context") if context else None
    enc = _encode_once(tokenizer, context, role, targets, system_prompt)
    longest = max(len(t) for t in enc.targets)
    if max_tokens is None or len(enc.prefix) + longest <= max_tokens:
        return enc
    original = len(enc.prefix)
    msgs = list(context)
    head = 1 if msgs and msgs[0]["role"] == "system" else 0
    if len(msgs) > head and msgs[head]["role"] == "user" and msgs[head]["content"] == FEEDBACK_REQUEST:
        head += 1  # the feedback layout's fixed request is part of the layout, not of the conversation
    # 1) drop whole turn pairs from the left, never the protected head nor the last two messages
    while len(msgs) - head > 2 and len(enc.prefix) + longest > max_tokens:
        msgs = msgs[:head] + msgs[head + 2:]
        enc = _encode_once(tokenizer, msgs, role, targets, system_prompt)
    # 2) cut the message before the protected last one (the prompt) from the left
    cut_idx = len(msgs) - 2
    while cut_idx >= head and len(enc.prefix) + longest > max_tokens:
        ids = tokenizer(msgs[cut_idx]["content"], add_special_tokens=False)["input_ids"]
        excess = len(enc.prefix) + longest - max_tokens
        if excess >= len(ids):
            break
        msgs[cut_idx] = {**msgs[cut_idx], "content": tokenizer.decode(ids[excess + 1:]).lstrip()}
        enc = _encode_once(tokenizer, msgs, role, targets, system_prompt)
    enc.truncated_tokens = original - len(enc.prefix)
    enc.over_budget = len(enc.prefix) + longest > max_tokens
    return enc

"""Conversation layouts and the one chat renderer: messages -> (prefix token ids, target token ids).

Layouts (what M reads before the follow-up f):

* ``base`` - the conversation, ending with the response r (assistant), then f as the next **user** turn.
* ``feedback`` - role-swapped, as in the authors' fine-tuned scorer and our LoRA training data: user = a fixed
  request to ask a question and give feedback, assistant = the last user prompt p, user = r, assistant = f.
  Only the last prompt/response pair is kept.

System-prompt policy (``system_prompt``): ``None`` (default) passes no system message and lets the model's own
template decide - Llama-3 adds none, SmolLM2 and Qwen2 inject their default one. This matches the authors' code,
which never passed a system message. A string inserts that system message (use ``""`` for an empty one).

Token boundary: the full templated text is tokenised and split at the prefix length; the prefix tokens must be
identical whatever the target is, otherwise :class:`TemplateError` is raised.

Tokenising once (:class:`Encoder`). Scoring a bank of follow-ups, the targets are the same for every conversation.
The tokenizer splits its text at added (special) tokens before anything else, so the tokens after the prefix's
last special token depend only on the text after it: the role header ("user\n" after ``<|im_start|>``), the target
and the end-of-turn suffix, the same for every conversation of a template and layout. The :class:`Encoder` checks
the boundary in full (the per-target check above) once per (role, header, suffix), keeps the targets' ids, and for
every other conversation tokenises only its prefix, once. A template whose prefix has no special token falls back
to the full check on every conversation. Same token ids either way (tests/test_chat.py compares them).
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
    """Tokenise ``context + [role: target]`` for each target and split at the shared prefix (one conversation; to
    encode many against the same targets use an :class:`Encoder`, which tokenises the targets once).

    If ``len(prefix) + longest target > max_tokens``, whole earlier turn pairs are dropped from the left, then the
    message just before the protected last one (the prompt) is cut from the left. Never dropped or cut: a system
    message, the feedback layout's fixed request (its first user turn, :data:`FEEDBACK_REQUEST`), the last context
    message (the response being scored, or r in the feedback layout) and the targets. So the feedback layout
    ``[request, p, r]`` keeps the request and r and cuts p from the left; the base layout drops earlier
    ``(user, assistant)`` pairs, then cuts the last prompt. If the protected part alone exceeds the budget the row
    is flagged ``over_budget``.
    """
    return Encoder(tokenizer, targets, system_prompt, max_tokens, reuse=False).encode(context, role)


class Encoder:
    """Encodes many conversations against one list of targets (a follow-up bank): each target's ids are computed
    and boundary-checked once per (role, header, suffix) of the template, each conversation's prefix is tokenised
    once (see the module docstring). ``reuse=False`` checks every conversation in full (the reference path).

    The returned :class:`Encoded` objects share the target id lists: treat them as read-only.
    """

    def __init__(self, tokenizer, targets: list[str], system_prompt: str | None = None,
                 max_tokens: int | None = None, reuse: bool = True):
        self.tokenizer, self.targets = tokenizer, list(targets)
        self.system_prompt, self.max_tokens, self.reuse = system_prompt, max_tokens, reuse
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        self._splitters = sorted({t.content for t in added.values() if t.content}, key=len, reverse=True)
        self._checked: dict[tuple, tuple[list[int], list[list[int]]]] = {}  # (role, header, suffix) -> ids
        self.full_checks = 0  # conversations checked in full (once per template key unless reuse=False)

    def _header(self, prefix_text: str) -> str | None:
        """The prefix text after its last added token (None: no added token, the boundary is checked every time)."""
        end = max((prefix_text.rfind(t) + len(t) for t in self._splitters if t in prefix_text), default=-1)
        return None if end < 0 else prefix_text[end:]

    def _once(self, context, role) -> Encoded:
        tok = self.tokenizer
        if self.reuse:
            sentinel_text = render(tok, context + [{"role": role, "content": _SENTINEL}], self.system_prompt)
            if sentinel_text.count(_SENTINEL) == 1:
                prefix_text, suffix_text = sentinel_text.split(_SENTINEL)
                header = self._header(prefix_text)
                key = (role, header, suffix_text)
                ref = self._checked.get(key) if header is not None else None
                if ref is not None:
                    head_ids, target_ids = ref
                    prefix_ids = tok([prefix_text], add_special_tokens=False)["input_ids"][0]
                    if prefix_ids[len(prefix_ids) - len(head_ids):] == head_ids:
                        return Encoded(prefix_ids, target_ids)
                    ref = None  # the header did not tokenise as in the reference: check this one in full
                if header is not None and ref is None:
                    enc = _encode_once(tok, context, role, self.targets, self.system_prompt)
                    self.full_checks += 1
                    head_ids = tok([header], add_special_tokens=False)["input_ids"][0] if header else []
                    if enc.prefix[len(enc.prefix) - len(head_ids):] == head_ids:
                        self._checked[key] = (head_ids, enc.targets)
                    return enc
        self.full_checks += 1
        return _encode_once(tok, context, role, self.targets, self.system_prompt)

    def encode(self, context: list[dict], role: str) -> Encoded:
        """One conversation's context (everything before the target) and the targets' role; truncation as in
        :func:`encode`."""
        tokenizer, max_tokens = self.tokenizer, self.max_tokens
        check_messages(list(context) + [{"role": role, "content": ""}], "context") if context else None
        enc = self._once(context, role)
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
            enc = self._once(msgs, role)
        # 2) cut the message before the protected last one (the prompt) from the left
        cut_idx = len(msgs) - 2
        while cut_idx >= head and len(enc.prefix) + longest > max_tokens:
            ids = tokenizer(msgs[cut_idx]["content"], add_special_tokens=False)["input_ids"]
            excess = len(enc.prefix) + longest - max_tokens
            if excess >= len(ids):
                break
            msgs[cut_idx] = {**msgs[cut_idx], "content": tokenizer.decode(ids[excess + 1:]).lstrip()}
            enc = self._once(msgs, role)
        enc = Encoded(enc.prefix, enc.targets)
        enc.truncated_tokens = original - len(enc.prefix)
        enc.over_budget = len(enc.prefix) + longest > max_tokens
        return enc

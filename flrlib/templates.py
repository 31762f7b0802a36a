"""Chat-templated text back into messages: what `flr serve` does with an RL engine's ``query``.

OpenRLHF sends the reward service the policy's text, not messages: ``query`` is
``hf_tokenizer.decode(prompt_token_ids + action_token_ids, skip_special_tokens=False)`` (its
``SingleTurnAgentExecutor.execute``), so the chat template's special tokens are in it, and ``prompts`` is the
templated prompt (ending with the assistant header of the generation prompt). :func:`parse` turns that back into
``[{"role", "content"}, ..., {"role": "assistant", "content": response}]`` for three template families:

* ``chatml`` - ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` (Qwen2/2.5/3, SmolLM2 and every other ChatML model;
  a default system message the template injected is in the text, so it is kept as the system message);
* ``llama3`` - ``<|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>`` (Llama 3,
  3.1, 3.2, 3.3; the 3.1 template's "Cutting Knowledge Date" system text is kept as the system message);
* ``mistral`` - ``<s>[INST] {user} [/INST]{assistant}</s>`` with or without the spaces (v0.1 to v0.3, Nemo,
  Small), and ``[SYSTEM_PROMPT]...[/SYSTEM_PROMPT]`` (v7 "tekken" templates). Older Mistral templates paste
  the system message into a user turn; it cannot be told apart there and stays part of that user message.

Contents are stripped of surrounding whitespace (the Llama-3 and Mistral templates strip them too). The response
ends at the template's first end-of-turn token after the last assistant header; padding and end-of-text tokens
after it are dropped, and a response without one (cut at the policy's length limit) runs to the end of the text.
A reasoning block the policy wrote (``<think>...</think>``, Qwen3) stays part of the response. Anything else -
another family, a role header missing or out of order, text between turns, no assistant header at the end - is an
:class:`Unparseable` error with the reason (the service answers 400 with it).
"""
from __future__ import annotations

import re

FAMILIES = ("chatml", "llama3", "mistral")
_MARKERS = {"chatml": "<|im_start|>", "llama3": "<|start_header_id|>", "mistral": "[INST]"}
# tokens that may follow a finished response: end of turn, end of text, padding
_TAIL = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>", "</s>", "<pad>", "<unk>",
         "<|finetune_right_pad_id|>", "<|im_sep|>")


class Unparseable(ValueError):
    """A query that is not chat-templated text of the expected family; the message says why."""


def detect(text: str) -> str | None:
    """The template family whose turn marker occurs first in ``text`` (a query or a tokenizer's chat_template)."""
    hits = [(text.find(m), fam) for fam, m in _MARKERS.items() if m in text]
    return min(hits)[1] if hits else None


def _clean_response(text: str, end_tokens: tuple[str, ...], pad: str | None) -> str:
    cut = min((i for i in (text.find(t) for t in end_tokens) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]
    else:  # no end of turn (the policy hit its length limit): drop trailing padding only
        tail = tuple(t for t in _TAIL + ((pad,) if pad else ()) if t)
        changed = True
        while changed:
            changed = False
            for t in tail:
                if text.endswith(t):
                    text, changed = text[: -len(t)], True
    return text.strip()


def _turns_chatml(text: str) -> list[tuple[str, str | None]]:
    """``[(role, content)]``; the last content is None when its turn is still open (the response follows)."""
    parts = text.split("<|im_start|>")
    if parts[0].strip():
        raise Unparseable(f"text before the first <|im_start|>: {parts[0][:60]!r}")
    turns, last = [], len(parts) - 2
    for k, part in enumerate(parts[1:]):
        role, nl, body = part.partition("\n")
        if not nl:
            raise Unparseable(f"turn {k}: no newline after the role {role[:30]!r}")
        content, end, rest = body.partition("<|im_end|>")
        if end and rest.strip():
            raise Unparseable(f"turn {k}: text after <|im_end|>: {rest.strip()[:60]!r}")
        if not end and (k < last or content.strip()):
            raise Unparseable(f"turn {k} ({role.strip()!r}) has no <|im_end|>")
        turns.append((role.strip(), content if end else None))
    return turns


def _turns_llama3(text: str) -> list[tuple[str, str | None]]:
    if text.lstrip().startswith("<|begin_of_text|>"):
        text = text.lstrip()[len("<|begin_of_text|>"):]
    parts = text.split("<|start_header_id|>")
    if parts[0].strip():
        raise Unparseable(f"text before the first <|start_header_id|>: {parts[0][:60]!r}")
    turns, last = [], len(parts) - 2
    for k, part in enumerate(parts[1:]):
        role, sep, body = part.partition("<|end_header_id|>")
        if not sep:
            raise Unparseable(f"turn {k}: <|start_header_id|> without <|end_header_id|>")
        ends = [i for i in (body.find("<|eot_id|>"), body.find("<|eom_id|>")) if i >= 0]
        if ends and body[min(ends) + len("<|eot_id|>"):].strip():
            raise Unparseable(f"turn {k}: text after <|eot_id|>: {body[min(ends) + 10:].strip()[:60]!r}")
        if not ends and (k < last or body.strip()):
            raise Unparseable(f"turn {k} ({role.strip()!r}) has no <|eot_id|>")
        turns.append((role.strip(), body[: min(ends)] if ends else None))
    return turns


_MISTRAL = re.compile(r"(\[SYSTEM_PROMPT\]|\[/SYSTEM_PROMPT\]|\[INST\]|\[/INST\]|</s>|<s>)")


def _turns_mistral(text: str) -> list[tuple[str, str | None]]:
    turns, state, buf = [], "between", ""
    for piece in _MISTRAL.split(text):
        if piece == "<s>":
            continue
        if piece in ("[INST]", "[SYSTEM_PROMPT]"):
            if state == "assistant":  # an assistant turn closed without </s> (some templates add none)
                turns.append(("assistant", buf))
            elif state != "between" or buf.strip():
                raise Unparseable(f"{piece} inside a {state} turn" if state != "between"
                                  else f"text outside a turn: {buf.strip()[:60]!r}")
            state, buf = ("user" if piece == "[INST]" else "system"), ""
        elif piece in ("[/INST]", "[/SYSTEM_PROMPT]"):
            want = "user" if piece == "[/INST]" else "system"
            if state != want:
                raise Unparseable(f"{piece} without its opening tag")
            turns.append((want, buf))
            state, buf = ("assistant" if want == "user" else "between"), ""
        elif piece == "</s>":
            if state == "assistant":
                turns.append(("assistant", buf))
                state, buf = "between", ""
        else:
            buf += piece
    if state == "assistant":
        if buf.strip():
            raise Unparseable(f"text after the last [/INST]: {buf.strip()[:60]!r}")
        turns.append(("assistant", None))
    elif state != "between":
        raise Unparseable(f"the text ends inside a {state} turn")
    elif buf.strip():
        raise Unparseable(f"text after the last turn: {buf.strip()[:60]!r}")
    return turns


_SPLIT = {"chatml": _turns_chatml, "llama3": _turns_llama3, "mistral": _turns_mistral}
_HEADER = {"chatml": "<|im_start|>assistant\n", "llama3": "<|start_header_id|>assistant<|end_header_id|>",
           "mistral": "[/INST]"}
_ENDS = {"chatml": ("<|im_end|>",), "llama3": ("<|eot_id|>", "<|eom_id|>"), "mistral": ("</s>", "[INST]")}


def parse(query: str, family: str = "auto", prompt: str | None = None, pad_token: str | None = None) -> list[dict]:
    """The messages of a templated ``query`` (prompt + response), ending with the assistant response.

    ``family``: ``chatml``, ``llama3``, ``mistral`` or ``auto`` (detected from the text). ``prompt``: the templated
    prompt, when the engine sends it (OpenRLHF's ``prompts``); if ``query`` starts with it, the response is the
    rest of the query (so a response that happens to contain a role header is still one response); otherwise the
    response follows the last assistant header. ``pad_token``: the policy's padding token, dropped from the end."""
    if not isinstance(query, str) or not query.strip():
        raise Unparseable("empty query")
    fam = detect(query) if family == "auto" else family
    if fam not in FAMILIES:
        raise Unparseable(f"no chat template recognised (looked for {', '.join(_MARKERS.values())})"
                          if family == "auto" else f"unknown template family {family!r}; known: {FAMILIES}")
    if prompt and query.startswith(prompt):
        head_text, response = prompt, query[len(prompt):]
    else:
        cut = query.rfind(_HEADER[fam])
        if cut < 0:
            raise Unparseable(f"no assistant header {_HEADER[fam]!r} before the response ({fam} template)")
        head_text, response = query[: cut + len(_HEADER[fam])], query[cut + len(_HEADER[fam]):]
    turns = _SPLIT[fam](head_text)
    if not turns or turns[-1] != ("assistant", None):
        raise Unparseable("the prompt does not end with the assistant header of a generation prompt")
    msgs = [{"role": r, "content": c.strip()} for r, c in turns[:-1]]
    for i, m in enumerate(msgs):
        if m["role"] not in ("system", "user", "assistant"):
            raise Unparseable(f"turn {i}: role {m['role']!r} is not system, user or assistant")
    if not msgs or msgs[-1]["role"] != "user":
        raise Unparseable("the response is not preceded by a user turn")
    return msgs + [{"role": "assistant", "content": _clean_response(response, _ENDS[fam], pad_token)}]

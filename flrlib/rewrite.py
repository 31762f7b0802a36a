"""Rewriting critiques into user follow-ups: what a user would say next after reading the response.

A critique ("The response is accurate but lacks examples ...") becomes a short first-person reaction
("Thanks, that's accurate, but some examples would help.") with the same polarity and gist. Three rewriters, each a
callable ``rewriter(triple) -> str`` with a ``name`` (part of the cache key):

* :class:`OpenAIRewriter` - an LLM behind an OpenAI-compatible ``/chat/completions`` endpoint (the paper's
  setting), through :class:`flrlib.client.Client`. URL, model and key come from ``FLR_REWRITE_BASE_URL`` /
  ``FLR_REWRITE_MODEL`` / ``FLR_REWRITE_API_KEY`` (``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` as fall-backs).
* :class:`HFRewriter` - a local chat model (``flrlib.models.load_model``) prompted with the same instruction.
* :class:`RuleRewriter` - deterministic, offline: polarity from the critique's score (or cue words), gist from a
  small lexicon of aspects ("examples", "depth", "accuracy" ...), phrased from fixed templates. It never copies the
  critique. Good enough to exercise the pipeline and to train a small M; not a substitute for an LLM rewriter.

:func:`rewrite_all` applies a rewriter with a cache (:class:`flrlib.cache.JsonlCache`, keyed by rewriter, prompt
version and triple) and rejects outputs that are empty, too long, or copy the critique; rejects are returned with
their reason so that the caller logs them.
"""
from __future__ import annotations

import hashlib
import re

from .cache import JsonlCache, content_key
from .paths import cache_dir

MAX_WORDS = 60          # a follow-up longer than this is rejected as "too_long"
COPY_RUN = 12           # a run of this many consecutive critique words in the follow-up is a copy
PROMPT_CHARS = 1500     # prompt / response excerpt lengths shown to an LLM rewriter

REWRITE_SYSTEM = ("You turn an evaluator's critique of an AI assistant's answer into the next message that the user "
                  "would send after reading that answer.")
REWRITE_TEMPLATE = """The user asked:
{prompt}

The assistant answered:
{response}

An evaluator's critique of the answer:
{critique}

Write the user's next message: one or two short sentences, in the first person, reacting to the answer the way the \
critique does (the same positive or negative judgement and the same main point). Do not mention a critique, an \
evaluator, a score or a rubric, and do not copy the critique's sentences. Reply with the message only."""
PROMPT_VERSION = hashlib.sha256((REWRITE_SYSTEM + REWRITE_TEMPLATE).encode()).hexdigest()[:12]


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + " [...]"


def rewrite_messages(triple: dict) -> list[dict]:
    """The chat messages sent to an LLM rewriter for one triple."""
    user = REWRITE_TEMPLATE.format(prompt=_clip(triple["prompt"], PROMPT_CHARS),
                                   response=_clip(triple["response"], PROMPT_CHARS), critique=triple["critique"])
    return [{"role": "system", "content": REWRITE_SYSTEM}, {"role": "user", "content": user}]


def clean(text: str) -> str:
    """Strip what LLMs wrap a message in: whitespace, quotes, a leading 'User:' / 'Follow-up:' label."""
    t = (text or "").strip()
    t = re.sub(r"^(\*\*)?(user|follow-?up|user'?s? (next )?message|message)(\*\*)?\s*:\s*", "", t, flags=re.I).strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'\u201c":
        t = t[1:-1].strip()
    if len(t) >= 2 and t[0] == "\u201c" and t[-1] == "\u201d":
        t = t[1:-1].strip()
    return t


# ------------------------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------------------------

def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def longest_common_run(a: list[str], b: list[str]) -> int:
    """Length of the longest run of consecutive words shared by ``a`` and ``b``."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def reject_reason(followup: str, critique: str, max_words: int = MAX_WORDS) -> str | None:
    """``None`` for a usable follow-up, else ``"empty"``, ``"too_long"`` or ``"copied_critique"``."""
    words = _words(followup or "")
    if not words:
        return "empty"
    if len(words) > max_words:
        return "too_long"
    crit = _words(critique)
    joined, cjoined = " ".join(words), " ".join(crit)
    if (len(words) >= 6 and joined in cjoined) or longest_common_run(words, crit) >= COPY_RUN:
        return "copied_critique"
    return None


# ------------------------------------------------------------------------------------------------------------------
# (c) deterministic rule-based rewriter
# ------------------------------------------------------------------------------------------------------------------

WRONG = "some of this looks wrong to me"
# (pattern in the critique, phrase for a negative reaction); first matches win, at most two are used
ISSUES = [
    (r"(not|n't|fail\w*( to)?) (follow|adhere to|comply with)( \w+)? (instruction|request|prompt)",
     "you didn't do what I asked for"),
    (r"\b(inaccura\w*|incorrect\w*|mistakes?|wrong|false|erroneous)\b"
     r"|\b(an?|minor|factual|major|some|significant|critical|crucial|calculation|arithmetic) errors?\b", WRONG),
    (r"irrelevan|off[- ]topic|does(n't| not) (directly )?address|not (directly )?relevant|misunderst",
     "it doesn't really address what I asked"),
    (r"lack(s|ing)? (of )?(depth|detail)|superficial|shallow|more detail|in-depth|not detailed|too brief|brevity",
     "I need more detail than that"),
    (r"example", "some concrete examples would help"),
    (r"vague|generic|general(ised|ized)?\b|not specific|more specific|specificity", "it's too vague for me"),
    (r"unclear|confus|hard to follow|ambiguous|disorgani[sz]ed|structure", "it's confusing to follow"),
    (r"incomplete|miss(es|ing)|omit|overlook|does not (cover|mention|include)|doesn't (cover|mention|include)",
     "you left out important points"),
    (r"verbose|too long|lengthy|redundan|repetiti|concise", "it's longer than it needs to be"),
    (r"practical|actionable|real[- ]world|applicab", "I'm not sure how to apply this in practice"),
    (r"creativ|original|engag|bland|dull", "it's a bit flat and unengaging"),
    (r"empath|tone|rude|insensitiv|polite", "the tone doesn't feel right to me"),
    (r"\b(harmful|unsafe|unethical|offensive|inappropriate)\b", "that seems unsafe or inappropriate"),
]
# (pattern, phrase for a positive reaction)
STRENGTHS = [
    (r"\b(accura\w*|correct(ly|ness)?|precise\w*)\b", "accurate"),
    (r"clear|easy to (understand|follow)|well[- ]organi[sz]ed|well[- ]structured|coheren", "clear"),
    (r"comprehensive|thorough|detailed|in-depth|extensive", "thorough"),
    (r"practical|actionable|real[- ]world|applicab|useful", "practical"),
    (r"concise|succinct|to the point", "concise"),
    (r"relevan|directly address|on[- ]topic", "exactly on point"),
    (r"creativ|original|engag|vivid|interesting", "engaging"),
    (r"empath|consider|respectful|polite|friendly", "kind"),
    (r"example", "full of good examples"),
]
POSITIVE_OPENERS = ["Thanks, that's really helpful", "Great answer, thank you", "Perfect, this is what I needed",
                    "That's excellent, thanks", "Wonderful, I appreciate it"]
NEGATIVE_OPENERS = ["Hmm, that's not what I was hoping for", "That doesn't really help me",
                    "I'm not satisfied with this", "That's not quite right", "Sorry, but this falls short"]
MIXED_OPENERS = ["Thanks, that's partly helpful", "Okay, that's a start", "That helps a little",
                 "Some of that is useful", "Not bad, but not quite there"]
NEG_CUES = r"\b(lack|lacks|lacking|however|but|fail|fails|failed|not|no|missing|could|should|would have|inaccura|" \
           r"incorrect|vague|unclear|limited|irrelevan|poor|weak|error)"
POS_CUES = r"\b(excellent|great|comprehensive|accurate|clear|thorough|detailed|well|effective|strong|perfect|" \
           r"helpful|insightful|impressive|relevant|correct)"


def _pick(options: list[str], seed_text: str) -> str:
    h = int(hashlib.sha256(seed_text.encode()).hexdigest()[:8], 16)
    return options[h % len(options)]


def polarity(critique: str, score: float | None = None, scale: tuple[float, float] = (1, 5)) -> str:
    """``positive`` / ``negative`` / ``mixed``: from the score on its scale (top / bottom third) or, if no score,
    from the balance of positive and negative cue words."""
    if score is not None:
        lo, hi = scale
        x = (float(score) - lo) / (hi - lo)
        return "positive" if x >= 2 / 3 else "negative" if x <= 1 / 3 else "mixed"
    text = critique.lower()
    neg, pos = len(re.findall(NEG_CUES, text)), len(re.findall(POS_CUES, text))
    return "positive" if pos >= 2 * max(neg, 1) else "negative" if neg >= 2 * max(pos, 1) else "mixed"


def _matches(table, text: str, k: int) -> list[str]:
    out = []
    for pat, phrase in table:
        if re.search(pat, text) and phrase not in out:
            out.append(phrase)
        if len(out) == k:
            break
    return out


def _split(critique: str) -> tuple[str, str]:
    """(praise, criticism): the sentences before / from the first one with 'however', 'but', 'lacks', 'not' ..."""
    sents = re.split(r"(?<=[.!?])\s+", critique)
    for i, s in enumerate(sents):
        if re.search(r"\b(however|but|although|could|should|lack|lacks|fail|fails|missing|not)\b", s, re.I):
            return " ".join(sents[:i]), " ".join(sents[i:])
    return critique, critique


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


class RuleRewriter:
    """Deterministic offline rewriter (see module doc). ``triple`` needs ``critique``; ``score`` and
    ``score_scale`` (default 1-5, the Prometheus scale) are used for polarity when present."""

    name = "rule-v1"

    def __call__(self, triple: dict) -> str:
        crit = triple["critique"]
        pol = polarity(crit, triple.get("score"), tuple(triple.get("score_scale") or (1, 5)))
        seed = crit + pol
        if pol == "positive":
            good = _matches(STRENGTHS, crit.lower(), 2)
            tail = f" It's {_join(good)}." if good else ""
            return f"{_pick(POSITIVE_OPENERS, seed)}!{tail}"
        praise, criticism = _split(crit)
        issues = _matches(ISSUES, criticism.lower(), 2) or ["it isn't what I needed"]
        if pol == "negative":
            return f"{_pick(NEGATIVE_OPENERS, seed)}: {_join(issues)}."
        good = [g for g in _matches(STRENGTHS, praise.lower(), 2) if not (g == "accurate" and WRONG in issues)]
        good = good[:1]
        opener = f"Thanks, it's {good[0]}" if good else _pick(MIXED_OPENERS, seed)
        return f"{opener}, but {_join(issues)}."


# ------------------------------------------------------------------------------------------------------------------
# (a) OpenAI-compatible endpoint
# ------------------------------------------------------------------------------------------------------------------

class RewriterUnavailable(RuntimeError):
    """The rewriter cannot run here (no endpoint configured, the endpoint failed ...); the message says what to set."""


class OpenAIRewriter:
    """Rewrite with a chat model behind an OpenAI-compatible API (OpenAI, vLLM, llama.cpp's server ...).

    The ``REWRITE`` endpoint of :class:`flrlib.client.Endpoint` (``FLR_REWRITE_BASE_URL`` / ``FLR_REWRITE_MODEL`` /
    ``FLR_REWRITE_API_KEY``, or ``base_url`` / ``model`` / ``api_key``); requests go through
    :class:`flrlib.client.Client`: up to ``concurrency`` in flight, the SDK's retries on 429/5xx, every answer cached
    (``cache="auto"``: ``<cache_dir>/rewrites/api/<model>.jsonl``), so an interrupted run re-sends only what is
    missing. :func:`rewrite_all` sends all missing triples at once through :meth:`many`. A triple the endpoint
    refuses (HTTP 400 ...) is recorded, not fatal: :meth:`many` returns its failure ``{"failed": {status,
    message}}`` and :func:`rewrite_all` lists it as a reject with reason ``"refused"``; ``retry_failed=True``
    re-sends recorded refusals.
    """

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key: str | None = None,
                 temperature: float = 0.0, max_tokens: int = 96, cache="auto", concurrency: int = 8,
                 timeout: float | None = None, max_retries: int | None = None, retry_failed: bool = False):
        from .client import Client, Endpoint, EndpointError
        from .paths import slug

        try:
            self.endpoint = Endpoint.from_env("REWRITE", base_url=base_url, model=model, api_key=api_key)
        except EndpointError as e:
            raise RewriterUnavailable(f"OpenAIRewriter: {e}; or use the 'rule' or 'hf' rewriter offline") from None
        path = cache_dir() / "rewrites" / "api" / f"{slug(self.endpoint.model)}.jsonl" if cache == "auto" else cache
        self.client = Client(self.endpoint, cache=path, concurrency=concurrency, timeout=timeout,
                             max_retries=max_retries, retry_failed=retry_failed)
        self.temperature, self.max_tokens = temperature, max_tokens
        self.name = f"openai:{self.endpoint.model}:t{temperature}"

    def request(self, triple: dict) -> dict:
        return {"messages": rewrite_messages(triple), "temperature": self.temperature, "max_tokens": self.max_tokens}

    def many(self, triples: list[dict], progress: bool = True) -> list:
        """One follow-up per triple, or the recorded failure ``{"failed": {...}}`` of a refused request."""
        from .client import EndpointError, failed

        try:
            replies = self.client.chat([self.request(t) for t in triples], progress=progress, desc=self.name)
        except EndpointError as e:
            raise RewriterUnavailable(str(e)) from None
        return [r if failed(r) else clean(r["choices"][0]["content"] or "") for r in replies]

    def __call__(self, triple: dict) -> str:
        out = self.many([triple], progress=False)[0]
        if isinstance(out, dict):
            raise RewriterUnavailable(f"{self.endpoint.label} refused the request: HTTP {out['failed']['status']}: "
                                      f"{out['failed']['message']}")
        return out


# ------------------------------------------------------------------------------------------------------------------
# (b) local Hugging Face chat model
# ------------------------------------------------------------------------------------------------------------------

class HFRewriter:
    """Rewrite with a local chat model (greedy decoding). ``loaded`` is a :class:`flrlib.models.Loaded`."""

    def __init__(self, loaded, max_new_tokens: int = 64):
        self.loaded, self.max_new_tokens = loaded, max_new_tokens
        self.name = f"hf:{loaded.spec}:{loaded.provenance.get('adapter_hash')}:n{max_new_tokens}"

    def __call__(self, triple: dict) -> str:
        import torch

        tok, model = self.loaded.tokenizer, self.loaded.model
        ids = tok.apply_chat_template(rewrite_messages(triple), add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True).to(model.device)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=self.max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        return clean(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))


# ------------------------------------------------------------------------------------------------------------------
# applying a rewriter: cache + rejects
# ------------------------------------------------------------------------------------------------------------------

def rewrite_all(triples: list[dict], rewriter, cache="auto", max_words: int = MAX_WORDS,
                progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Rewrite each triple's critique into ``followup``; returns ``(kept, rejects)``.

    ``kept``: the triples with ``followup`` added. ``rejects``: ``{id, critique, followup, reason}`` for outputs
    that are empty, longer than ``max_words`` words, or copy the critique, and ``{id, critique, followup: None,
    reason: "refused", failure: {status, message}}`` for a triple an API rewriter's endpoint refused (recorded in the
    rewriter's own request cache, not here, so that ``retry_failed`` can re-send it). Raw outputs are cached
    (``cache="auto"``: ``<cache_dir>/rewrites/<rewriter>.jsonl``; a path; or ``None``), so a re-run - or an
    interrupted one - only calls the rewriter for new triples.
    """
    from .parallel import once

    # under several ranks the rewriter (an endpoint or a generating model) is called once, on rank 0
    return once(_rewrite_all, triples, rewriter, cache, max_words, progress)


def _rewrite_all(triples, rewriter, cache, max_words, progress):
    from tqdm.auto import tqdm

    from .paths import slug

    if cache == "auto":
        cache = cache_dir() / "rewrites" / f"{slug(rewriter.name, 100)}.jsonl"
    store = JsonlCache(cache)
    for t in triples:
        for field in ("id", "prompt", "response", "critique"):
            if not isinstance(t.get(field), str) or (field != "id" and not t[field].strip()):
                raise ValueError(f"triple {t.get('id')!r}: field {field!r} must be a non-empty string")
    keys = [content_key(rewriter.name, PROMPT_VERSION, t["prompt"], t["response"], t["critique"], t.get("score"))
            for t in triples]
    todo = [(k, t) for k, t in {k: t for k, t in zip(keys, triples)}.items() if k not in store]
    refused = {}
    if todo and hasattr(rewriter, "many"):  # an API rewriter: all missing triples at once, concurrently
        for (k, _), out in zip(todo, rewriter.many([t for _, t in todo], progress=progress)):
            if isinstance(out, dict) and "failed" in out:
                refused[k] = out["failed"]
            else:
                store.put(k, out)
    else:
        for k, t in tqdm(todo, desc=f"rewriting ({rewriter.name})", disable=not progress, unit="critique"):
            out = rewriter(t)
            store.put(k, out if isinstance(out, str) else "")
    kept, rejects = [], []
    for k, t in zip(keys, triples):
        if k in refused:
            rejects.append({"id": t["id"], "critique": t["critique"], "followup": None, "reason": "refused",
                            "failure": refused[k]})
            continue
        out = store.get(k)
        reason = reject_reason(out, t["critique"], max_words)
        if reason:
            rejects.append({"id": t["id"], "critique": t["critique"], "followup": out, "reason": reason})
        else:
            kept.append({**t, "followup": out})
    return kept, rejects

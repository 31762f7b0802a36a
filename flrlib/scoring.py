"""Scores: ``flr`` (the paper's follow-up likelihood reward), ``direct`` (likelihood of the response),
``legacy_repo`` (the authors' released arithmetic, kept only for comparison: it is *not* a likelihood) and
``length`` (the response's length in M's tokens - stripped content, no special tokens, see
:func:`flrlib.chat.content_tokens` - the length-only baseline every reward is compared with; no forward pass).

Read top to bottom: token log-prob backends (engine, naive oracle, padded batch, floor), then the Scorer.

FLR (paper definition). For a conversation c ending in response r and follow-up f with content tokens
f_1..f_m, lp(f) = (1/m) sum_j log p(f_j | template(c), f_<j) (``norm="sum"`` drops the 1/m). Per category k:
R_k = mean_{f in pos_k} lp(f) - mean_{f in neg_k} lp(f); the reward is the mean of R_k over the chosen categories.

Engine. The templated context is run once per conversation (left-padded batch of conversations, length-sorted,
``logits_to_keep=1``): the last position gives log p(f_1 | context) for every follow-up. The remaining tokens of
up to ``chunk_size`` follow-ups are then packed back to back into ONE sequence over that conversation's prefix KV
cache, with a block-diagonal causal 4D mask and position ids restarting after the prefix, so each follow-up sees
the context and its own earlier tokens only. The context is never recomputed or copied per follow-up, and there
is no padding. ``naive`` (one full forward per follow-up) is the test oracle; ``padded`` batches full sequences
without a cache; ``floor`` (benchmark only) is one forward over the context plus all follow-up tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cache import JsonlCache, content_key
from .chat import Encoded, content_tokens, encode, flr_context, render, template_hash
from .followups import Bank, load_bank
from .paths import cache_dir

SCORERS = ("flr", "direct", "legacy_repo", "length")
NO_BANK = ("direct", "length")  # scorers that read no follow-up bank
BACKENDS = ("engine", "naive", "padded")


# ----------------------------------------------------------------------------------------------------------
# token log-prob backends: list[Encoded] -> for each conversation, for each target, a float32 array of log-probs
# ----------------------------------------------------------------------------------------------------------

def _torch():
    import torch

    return torch


def _left_pad(seqs, pad_id, device):
    torch = _torch()
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, n - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, n - len(s):] = 1
    return ids.to(device), mask.to(device)


def _right_pad(seqs, pad_id, device):
    torch = _torch()
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def _gather_logprobs(logits, targets):
    """log_softmax in fp32, then pick the target ids. logits (B, T, V), targets (B, T) -> (B, T)."""
    torch = _torch()
    logits = logits.float()
    return torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)


def _packed_mask(key_mask, seg, off, dtype):
    """Additive 4D mask (1, 1, Q, P+Q): each packed token sees the valid prefix positions and the earlier tokens of
    its own target only (block-diagonal causal). Float, not bool: eager attention adds the mask to the scores."""
    torch = _torch()
    same = (seg[:, None] == seg[None, :]) & (off[None, :] <= off[:, None])
    allowed = torch.cat([key_mask.bool()[None, :].expand(len(seg), -1), same], -1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[None, None]


def engine_logprobs(model, encs: list[Encoded], pad_id: int, chunk_size: int = 128) -> list[list[np.ndarray]]:
    """Shared-prefix engine for one batch of conversations (the caller sorts and batches them by prefix length)."""
    torch = _torch()
    from transformers import DynamicCache

    if str(getattr(model.config, "_attn_implementation", "")).startswith("flash"):
        raise ValueError("the FLR engine packs follow-ups with a custom 4D attention mask, which flash-attention "
                         "kernels ignore; load the model with attn_implementation='sdpa' (the default) or 'eager'")
    dev = model.device
    ids, mask = _left_pad([e.prefix for e in encs], pad_id, dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    result = [[None] * len(e.targets) for e in encs]
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].float(), -1).cpu()  # (B, V): log p(first target token | prefix)
        layers = [(k, v) for k, v, *_ in out.cache]
        for b, e in enumerate(encs):
            prefix_len = int(mask[b].sum())
            for s in range(0, len(e.targets), chunk_size):
                tgts = e.targets[s: s + chunk_size]
                inp = [x for t in tgts for x in t[:-1]]  # each target minus its last token, back to back
                nxt = [x for t in tgts for x in t[1:]]
                rest = np.zeros(0, dtype=np.float32)
                if inp:
                    seg = torch.tensor([j for j, t in enumerate(tgts) for _ in t[1:]], device=dev)
                    off = torch.tensor([i for t in tgts for i in range(len(t) - 1)], device=dev)
                    cache = DynamicCache(ddp_cache_data=[(k[b: b + 1], v[b: b + 1]) for k, v in layers],
                                         config=model.config)
                    logits = model(input_ids=torch.tensor([inp], device=dev),
                                   attention_mask=_packed_mask(mask[b], seg, off, model.dtype),
                                   position_ids=(prefix_len + off)[None], cache=cache, use_cache=True).logits
                    rest = _gather_logprobs(logits, torch.tensor([nxt], device=dev))[0].cpu().numpy()
                    del cache, logits
                p = 0
                for j, t in enumerate(tgts):
                    lp = [float(first[b, t[0]])] + list(rest[p: p + len(t) - 1])
                    result[b][s + j] = np.asarray(lp, dtype=np.float32)
                    p += len(t) - 1
    return result


def naive_logprobs(model, encs: list[Encoded], pad_id: int = 0, chunk_size: int = 0) -> list[list[np.ndarray]]:
    """Test oracle: one full forward per (conversation, target), no cache, no padding."""
    torch = _torch()
    res = []
    with torch.inference_mode():
        for e in encs:
            row = []
            for t in e.targets:
                ids = torch.tensor([e.prefix + t], device=model.device)
                logits = model(input_ids=ids, use_cache=False).logits[:, len(e.prefix) - 1: -1]
                row.append(_gather_logprobs(logits, ids[:, len(e.prefix):])[0].cpu().numpy())
            res.append(row)
    return res


def padded_logprobs(model, encs: list[Encoded], pad_id: int, chunk_size: int = 64) -> list[list[np.ndarray]]:
    """Full sequences (prefix + target) in right-padded batches, no cache: the context is recomputed per target."""
    torch = _torch()
    rows = [(b, t) for b, e in enumerate(encs) for t in range(len(e.targets))]
    res = [[None] * len(e.targets) for e in encs]
    with torch.inference_mode():
        for s in range(0, len(rows), chunk_size):
            chunk = rows[s: s + chunk_size]
            seqs = [encs[b].prefix + encs[b].targets[t] for b, t in chunk]
            ids, mask = _right_pad(seqs, pad_id, model.device)
            lp = _gather_logprobs(model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1], ids[:, 1:])
            lp = lp.cpu().numpy()
            for i, (b, t) in enumerate(chunk):
                n = len(encs[b].prefix)
                res[b][t] = lp[i, n - 1: n - 1 + len(encs[b].targets[t])].astype(np.float32)
    return res


def floor_forward(model, encs: list[Encoded]) -> None:
    """Benchmark floor: one forward per conversation over its prefix followed by all target tokens."""
    torch = _torch()
    with torch.inference_mode():
        for e in encs:
            ids = torch.tensor([e.prefix + [x for t in e.targets for x in t]], device=model.device)
            _gather_logprobs(model(input_ids=ids, use_cache=False).logits[:, :-1], ids[:, 1:])


BACKEND_FUNCS = {"engine": engine_logprobs, "naive": naive_logprobs, "padded": padded_logprobs}


def legacy_values(model, tokenizer, context: list[dict], role: str, followups: list[str], system_prompt=None) -> list[float]:
    """The authors' released arithmetic (run_llama3.py), reproduced exactly; NOT a likelihood.

    For each follow-up: one forward over the whole templated conversation (end-of-turn tokens included); take the
    raw logits at position ``-len(ids(f))`` where ``ids(f)`` is the follow-up tokenised on its own with special
    tokens (so a BOS is counted when the tokenizer adds one); index that vocabulary row by all of ``ids(f)``;
    average. The position is not the one that predicts f's tokens, and the values are unnormalised logits.
    """
    torch = _torch()
    vals = []
    with torch.inference_mode():
        for f in followups:
            text = render(tokenizer, context + [{"role": role, "content": f}], system_prompt)
            ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]], device=model.device)
            fids = tokenizer(f)["input_ids"]
            logits = model(input_ids=ids, use_cache=False).logits[0, -len(fids):, :]
            vals.append(float(logits[0, fids].float().mean()))
    return vals


# ----------------------------------------------------------------------------------------------------------
# the Scorer
# ----------------------------------------------------------------------------------------------------------

@dataclass
class ScoreConfig:
    scorer: str = "flr"            # flr | direct | legacy_repo
    layout: str = "base"           # base | feedback (role-swapped, for the fine-tuned M)
    norm: str = "mean"             # mean | sum over a target's tokens
    system_prompt: str | None = None  # None: the template's own default (see flrlib.chat)
    max_tokens: int = 2048         # context budget; long contexts are truncated from the left
    batch_size: int = 4            # conversations per prefix forward
    chunk_size: int = 128          # follow-ups packed per forward (128: the paper's 120 in one pass)
    backend: str = "engine"        # engine | naive | padded
    categories: list = field(default_factory=list)  # empty = all categories of the bank

    def __post_init__(self):
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {SCORERS}, got {self.scorer!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.norm not in ("mean", "sum"):
            raise ValueError(f"norm must be 'mean' or 'sum', got {self.norm!r}")
        if self.layout not in ("base", "feedback"):
            raise ValueError(f"layout must be 'base' or 'feedback', got {self.layout!r}")
        for name in ("max_tokens", "batch_size", "chunk_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _slug(spec: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in spec.replace("/", "__"))[-120:]


class TooLong(ValueError):
    """A sequence longer than the model's context length (``max_position_embeddings``), refused before scoring.

    ``index``: position of the conversation (``score``) or of the row (``score_pairs``, with ``side``) in the call.
    """

    def __init__(self, index: int, detail: str, side: str | None = None):
        self.index, self.detail, self.side = index, detail, side
        super().__init__(f"{f'row {index} ({side})' if side else f'conversation {index}'}: {detail}")


class Scorer:
    """Scores conversations (each ending in the response to score) with one model, bank and config.

    ``cache``: a path, ``"auto"`` (``<cache_dir>/scores/<model>.jsonl``), or ``None`` (in-memory only).

    The identity (provenance, and so the cache keys) is computed once here, not per conversation (hashing an
    adapter folder reads all its bytes): make a new Scorer to change the model, adapter, bank or config.
    Sequences longer than the model's context length are refused with :class:`TooLong` before anything is scored.
    """

    def __init__(self, loaded, bank: Bank | str | None = None, config: ScoreConfig | None = None, cache="auto"):
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.loaded = loaded
        self.config = config or ScoreConfig()
        if self.config.scorer in NO_BANK:
            self.bank = None
        else:
            self.bank = bank if isinstance(bank, Bank) else load_bank(bank)
            self.bank = self.bank.select(self.config.categories)
        if cache == "auto":
            cache = cache_dir() / "scores" / f"{_slug(loaded.spec)}.jsonl"
        self.cache = JsonlCache(cache)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.context_length = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        self._provenance = self._compute_provenance()
        self._ident = {k: self._provenance.get(k) for k in ("model", "adapter_hash", "dtype", "template_hash",
                                                            "scorer", "bank_hash", "max_tokens")}

    # -- provenance and keys -------------------------------------------------------------------------------
    @property
    def provenance(self) -> dict:
        return dict(self._provenance)

    def _compute_provenance(self) -> dict:
        c = self.config
        prov = {**self.loaded.provenance, "dtype": str(self.model.dtype).replace("torch.", ""),
                "template_hash": template_hash(self.tokenizer, c.system_prompt, c.layout),
                "scorer": c.scorer, "layout": c.layout, "norm": c.norm, "system_prompt": c.system_prompt,
                "max_tokens": c.max_tokens}
        if self.bank is not None:
            prov.update(self.bank.provenance())
        return prov

    def _key(self, conversation) -> str:
        return content_key(self._ident, conversation)

    def _check_length(self, index: int, enc: Encoded) -> None:
        """Refuse a sequence the model cannot read (positions past ``max_position_embeddings``)."""
        longest, limit, budget = max(len(t) for t in enc.targets), self.context_length, self.config.max_tokens
        if not limit or len(enc.prefix) + longest <= limit:
            return
        detail = (f"{len(enc.prefix) + longest} tokens (context {len(enc.prefix)} + longest target {longest}) exceed "
                  f"the model's context length {limit} (max_position_embeddings); ")
        detail += (f"lower max_tokens ({budget}) to at most {limit}" if budget > limit else
                   f"the protected part (response and follow-up) alone is over max_tokens ({budget}): shorten it")
        raise TooLong(index, detail)

    # -- encoding ------------------------------------------------------------------------------------------
    @staticmethod
    def _response(conversation) -> str:
        if conversation[-1]["role"] != "assistant" or not conversation[-1]["content"].strip():
            raise ValueError("conversation: the last message must be a non-empty assistant response")
        return conversation[-1]["content"]

    def encode(self, conversation) -> Encoded:
        c = self.config
        if c.scorer in NO_BANK:
            response = self._response(conversation)
            return encode(self.tokenizer, list(conversation[:-1]), "assistant", [response], c.system_prompt, c.max_tokens)
        ctx, role = flr_context(conversation, c.layout)
        return encode(self.tokenizer, ctx, role, self.bank.texts(), c.system_prompt, c.max_tokens)

    # -- scoring -------------------------------------------------------------------------------------------
    def score(self, conversations: list[list[dict]], progress: bool = True, desc: str = "scoring") -> list[dict]:
        """Score each conversation; cached rows are reused, new rows are appended to the cache as they finish."""
        from tqdm.auto import tqdm

        if self.config.scorer == "length":  # no forward pass, nothing worth caching
            n = content_tokens(self.tokenizer, [self._response(conv) for conv in conversations])
            return [{"reward": float(k), "n_tokens": k} for k in n]
        keys = [self._key(conv) for conv in conversations]
        todo = sorted({k: i for i, k in enumerate(keys) if k not in self.cache}.values())
        bar = tqdm(total=len(todo), desc=desc, disable=not progress or not todo, unit="conv")
        try:  # the bar is closed on Ctrl-C too, so that a caller's last message is the last line
            if self.config.scorer == "legacy_repo":
                self._score_legacy(conversations, keys, todo, bar)
            else:
                self._score_engine(conversations, keys, todo, bar)
        finally:
            bar.close()
        return [self._finish(self.cache.get(k)) for k in keys]

    def _score_legacy(self, conversations, keys, todo, bar) -> None:
        c = self.config
        for i in todo:  # the authors' arithmetic reads the whole conversation (never truncated)
            ctx, role = flr_context(conversations[i], c.layout)
            self._check_length(i, encode(self.tokenizer, ctx, role, self.bank.texts(), c.system_prompt))
        for i in todo:
            ctx, role = flr_context(conversations[i], c.layout)
            vals = legacy_values(self.model, self.tokenizer, ctx, role, self.bank.texts(), c.system_prompt)
            self.cache.put(keys[i], {"values": vals})
            bar.update(1)

    def _score_engine(self, conversations, keys, todo, bar) -> None:
        encs = {i: self.encode(conversations[i]) for i in todo}
        for i in todo:
            self._check_length(i, encs[i])
        order = sorted(todo, key=lambda i: len(encs[i].prefix))  # length-sorted batching across conversations
        fn = BACKEND_FUNCS[self.config.backend]
        bs = self.config.batch_size
        for s in range(0, len(order), bs):
            batch = order[s: s + bs]
            lps = fn(self.model, [encs[i] for i in batch], self.pad_id, self.config.chunk_size)
            for i, row in zip(batch, lps):
                e = encs[i]
                self.cache.put(keys[i], {"sum": [float(x.sum()) for x in row], "n": [len(x) for x in row],
                                         "prefix_tokens": len(e.prefix), "truncated_tokens": e.truncated_tokens,
                                         "over_budget": e.over_budget})
            bar.update(len(batch))

    def _finish(self, value: dict) -> dict:
        """Turn cached per-target sums into the reported numbers (norm applied here, so it is not in the key)."""
        c = self.config
        if c.scorer == "legacy_repo":
            per = list(value["values"])
        else:
            per = [s / n if c.norm == "mean" else s for s, n in zip(value["sum"], value["n"])]
        info = {k: value[k] for k in ("prefix_tokens", "truncated_tokens", "over_budget") if k in value}
        if c.scorer == "direct":
            return {"reward": per[0], "n_tokens": value["n"][0], **info}
        cats = {}
        items = self.bank.items()
        for cat in self.bank.categories:
            pos = [v for (cc, p, _), v in zip(items, per) if cc == cat and p == "positive"]
            neg = [v for (cc, p, _), v in zip(items, per) if cc == cat and p == "negative"]
            cats[cat] = float(np.mean(pos) - np.mean(neg))
        pos_all = [v for (_, p, _), v in zip(items, per) if p == "positive"]
        neg_all = [v for (_, p, _), v in zip(items, per) if p == "negative"]
        return {"reward": float(np.mean(list(cats.values()))), "pos": float(np.mean(pos_all)),
                "neg": float(np.mean(neg_all)), "categories": cats, "followups": per, **info}

    def score_pairs(self, rows: list[dict], progress: bool = True, desc: str = "pairs") -> list[dict]:
        """Rows ``{"messages" (context), "chosen", "rejected"}`` -> ``{"chosen": reward, "rejected": reward, ...}``."""
        convs = []
        for r in rows:
            for side in ("chosen", "rejected"):
                convs.append(list(r["messages"]) + [{"role": "assistant", "content": r[side]}])
        try:
            out = self.score(convs, progress=progress, desc=desc)
        except TooLong as e:
            raise TooLong(e.index // 2, e.detail, ("chosen", "rejected")[e.index % 2]) from None
        return [{"chosen": out[2 * i]["reward"], "rejected": out[2 * i + 1]["reward"],
                 "chosen_detail": out[2 * i], "rejected_detail": out[2 * i + 1]} for i in range(len(rows))]

    def token_logprobs(self, conversation, target: str | None = None) -> dict:
        """Per-token view (teaching): tokens and log-probs of one follow-up (FLR) or of the response (Direct)."""
        if self.config.scorer == "direct":
            enc = self.encode(conversation)
        else:
            ctx, role = flr_context(conversation, self.config.layout)
            target = target or self.bank.texts()[0]
            enc = encode(self.tokenizer, ctx, role, [target], self.config.system_prompt, self.config.max_tokens)
        self._check_length(0, enc)
        lp = engine_logprobs(self.model, [enc], self.pad_id, self.config.chunk_size)[0][0]
        toks = [self.tokenizer.decode([t]) for t in enc.targets[0]]
        return {"tokens": toks, "logprobs": [float(x) for x in lp], "mean": float(lp.mean()),
                "prefix_tokens": len(enc.prefix)}



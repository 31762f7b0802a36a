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
up to ``chunk_size`` follow-ups are then packed back to back, one row per conversation of the batch, into ONE
forward over the batch's prefix KV cache, with a block-diagonal causal 4D mask and position ids restarting after
each row's prefix, so each follow-up sees its context and its own earlier tokens only. The context is never
recomputed or copied per follow-up; the rows of a bank are equally long, so nothing is padded. Log-probs stay on
the device until the batch ends (one transfer), and the log-softmax runs over chunks of tokens through the LM head
(no fp32 [tokens x vocab] tensor). Sliding-window models (Gemma-2/3, Mistral-v0.1, ...): the cache keeps every
prefix key (a cache of full layers, not the model's windowed one) and the packed mask of a sliding-window layer
applies the window over each row's own positions, so scores equal a plain forward at any length; models with other
layer kinds (chunked, linear attention ...) are refused with the model named. ``naive`` (one full forward per
follow-up) is the test oracle; ``padded`` batches full sequences without a cache; ``floor`` (benchmark only) is one
forward over the context plus all follow-up tokens.

Scorer. Rows stream through in windows of ``stream_rows``: encoded (each prefix tokenised once, the bank's ids
shared, :class:`flrlib.chat.Encoder`), checked, cut into batches of at most ``batch_size`` rows and
``token_budget`` padded tokens, scored and appended to the cache, so memory does not grow with the input. Under a
multi-process launch the batches are dealt to the ranks (see :class:`Scorer`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cache import JsonlCache, content_key
from .chat import Encoded, Encoder, TemplateError, content_tokens, encode, flr_context, render, template_hash
from .followups import Bank, load_bank
from .parallel import all_gather, world
from .paths import cache_dir, slug

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


def _packed_mask(key_mask, seg, off, dtype, window: int | None = None):
    """Additive 4D mask (B, 1, Q, P+Q): each packed token of row b sees row b's valid prefix positions and the earlier
    tokens of its own target only (block-diagonal causal). Float, not bool: eager attention adds the mask to the
    scores. key_mask (B, P), left-padded; seg, off (B, Q): target number (-1 for padding) and offset within the
    target. ``window``: a sliding-window layer's mask as transformers builds it (a query at position q sees keys
    at positions k > q - window), positions counted in each row's own sequence (prefix, then the target)."""
    torch = _torch()
    same = (seg[:, :, None] == seg[:, None, :]) & (off[:, None, :] <= off[:, :, None])
    allowed = torch.cat([key_mask.bool()[:, None, :].expand(-1, seg.shape[1], -1), same], -1)
    if window is not None:
        prefix_pos = key_mask.cumsum(-1) - 1                      # (B, P); padding (masked anyway) is -1
        q_pos = key_mask.sum(-1, keepdim=True) + off              # (B, Q)
        k_pos = torch.cat([prefix_pos, q_pos], -1)                # (B, P+Q)
        allowed &= (q_pos[:, :, None] - k_pos[:, None, :]) < window
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


# models whose logits are exactly lm_head(decoder(...).last_hidden_state) (no logit scaling or soft-capping)
_PLAIN_HEAD = ("llama", "mistral", "qwen2", "qwen3")
_LOGIT_ELEMS = 1 << 25  # fp32 logits alive at once in the chunked log-softmax (128 MiB)


def attention_layers(model) -> tuple[set, int | None]:
    """``(layer types, sliding window)`` of a causal LM as its transformers cache sees them (``full_attention``,
    ``sliding_attention`` with its window: Gemma-2/3, Mistral-v0.1, Qwen2 with ``use_sliding_window`` ...)."""
    from transformers.cache_utils import get_layer_types_and_kwargs

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    types, kwargs = get_layer_types_and_kwargs(base.config.get_text_config(decoder=True))
    windows = {kw["sliding_window"] for t, kw in zip(types, kwargs) if t == "sliding_attention"}
    if len(windows) > 1:
        raise ValueError(f"{_name(model)}: sliding-window layers with different windows {sorted(windows)} are not "
                         "supported by the FLR engine; use backend='padded' or 'naive'")
    return set(types), (windows.pop() if windows else None)


def _name(model) -> str:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base, "config", None)
    return str(getattr(cfg, "_name_or_path", "") or getattr(cfg, "model_type", "the model"))


def _decoder_and_head(model):
    """``(decoder, lm_head)`` of a plain causal LM (peft-wrapped or not), or ``None`` (the full logits are used)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base, "config", None)
    if getattr(cfg, "model_type", None) not in _PLAIN_HEAD or getattr(cfg, "final_logit_softcapping", None):
        return None
    try:
        return base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None


def _chunked_logprobs(rows, targets, head=None):
    """log p(target) per row, fp32, without a full fp32 [tokens x vocab] tensor: ``rows`` are hidden states (N, H)
    put through ``head`` in chunks, or logits (N, V) when ``head`` is None; the log-softmax is gather - logsumexp
    over a chunk of tokens at a time."""
    torch = _torch()
    out = torch.empty(len(targets), dtype=torch.float32, device=targets.device)
    vocab = head.out_features if head is not None and hasattr(head, "out_features") else rows.shape[-1]
    step = max(1, _LOGIT_ELEMS // max(1, vocab))
    for s in range(0, len(targets), step):
        logits = (head(rows[s: s + step]) if head is not None else rows[s: s + step]).float()
        t = targets[s: s + step]
        out[s: s + step] = torch.gather(logits, -1, t[:, None])[:, 0] - torch.logsumexp(logits, -1)
    return out


def engine_logprobs(model, encs: list[Encoded], pad_id: int, chunk_size: int = 128) -> list[list[np.ndarray]]:
    """Shared-prefix engine for one batch of conversations (the caller sorts and batches them by prefix length).

    One prefix forward over the batch (left-padded, ``logits_to_keep=1``), then per chunk of ``chunk_size`` targets
    one forward over the whole batch: row b packs its chunk's targets back to back (right-padded to the longest row)
    over row b's prefix KV cache, under a block-diagonal 4D mask. Log-probs stay on the device until the batch ends
    (one transfer); the log-softmax runs in chunks of tokens (:func:`_chunked_logprobs`).
    """
    torch = _torch()
    from transformers import DynamicCache

    if str(getattr(model.config, "_attn_implementation", "")).startswith("flash"):
        raise ValueError("the FLR engine packs follow-ups with a custom 4D attention mask, which flash-attention "
                         "kernels ignore; load the model with attn_implementation='sdpa' (the default) or 'eager'")
    types, window = attention_layers(model)
    if not types <= {"full_attention", "sliding_attention"}:
        raise ValueError(f"{_name(model)} has {sorted(types)} layers; the FLR engine packs follow-ups over a KV "
                         "cache of full or sliding-window attention layers only: use backend='padded' or 'naive'")
    dev = model.device
    parts = _decoder_and_head(model)
    ids, mask = _left_pad([e.prefix for e in encs], pad_id, dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    prefix_len = mask.sum(-1)
    n_targets = max(len(e.targets) for e in encs)
    with torch.inference_mode():
        # a cache of full layers, whatever the config says: a sliding-window layer's cache would keep only the last
        # window - 1 prefix keys, and the packed targets' mask (windowed below) addresses every prefix position
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=DynamicCache(), use_cache=True,
                    logits_to_keep=1)
        last = out.logits[:, -1].float()  # (B, V): log p(first target token | prefix) = gather - logsumexp
        first_ids = torch.tensor([[t[0] for t in e.targets] + [0] * (n_targets - len(e.targets)) for e in encs],
                                 device=dev)
        first = (torch.gather(last, 1, first_ids) - torch.logsumexp(last, -1, keepdim=True)).reshape(-1)
        layers = [(k, v) for k, v, *_ in out.cache]
        del out, last
        rests = []  # per chunk: packed log-probs of the valid positions, row-major (still on the device)
        for s in range(0, n_targets, chunk_size):
            chunks = [e.targets[s: s + chunk_size] for e in encs]
            inp = [[x for t in ch for x in t[:-1]] for ch in chunks]  # each target minus its last token
            q = max(len(r) for r in inp)
            if q == 0:
                continue
            nxt = torch.tensor([x for ch in chunks for t in ch for x in t[1:]], device=dev)
            seg = torch.tensor([[j for j, t in enumerate(ch) for _ in t[1:]] + [-1] * (q - len(r))
                                for ch, r in zip(chunks, inp)], device=dev)
            off = torch.tensor([[i for t in ch for i in range(len(t) - 1)] + [0] * (q - len(r))
                                for ch, r in zip(chunks, inp)], device=dev)
            x = torch.tensor([r + [pad_id] * (q - len(r)) for r in inp], device=dev)
            full = _packed_mask(mask, seg, off, model.dtype) if "full_attention" in types else None
            win = _packed_mask(mask, seg, off, model.dtype, window) if window is not None else None
            # one mask for a model of one layer type; per layer type (the dict the hybrid models accept) otherwise
            amask = {"full_attention": full, "sliding_attention": win} if full is not None and win is not None \
                else (full if full is not None else win)
            kw = dict(attention_mask=amask, position_ids=prefix_len[:, None] + off,
                      cache=DynamicCache(ddp_cache_data=layers), use_cache=True)
            # the valid (unpadded) positions, row-major, indexed from the host: a boolean mask would sync the device
            valid = torch.tensor([b * q + i for b, r in enumerate(inp) for i in range(len(r))], device=dev)
            if parts is not None:
                hidden = parts[0](input_ids=x, **kw).last_hidden_state
                rests.append(_chunked_logprobs(hidden.flatten(0, 1).index_select(0, valid), nxt, parts[1]))
            else:
                logits = model(input_ids=x, **kw).logits
                rests.append(_chunked_logprobs(logits.flatten(0, 1).index_select(0, valid), nxt))
            del kw
        first = first.cpu().numpy().reshape(len(encs), n_targets)  # the batch's one transfer to the host
        rest = torch.cat(rests).cpu().numpy() if rests else np.zeros(0, dtype=np.float32)
    result, p = [[None] * len(e.targets) for e in encs], 0
    for s in range(0, n_targets, chunk_size):  # unpack in the order the chunks were packed: chunk, row, target
        for b, e in enumerate(encs):
            for j, t in enumerate(e.targets[s: s + chunk_size]):
                lp = np.concatenate([first[b, s + j: s + j + 1], rest[p: p + len(t) - 1]])
                result[b][s + j] = lp.astype(np.float32)
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
            # only the last len(fids) positions' logits, of which the first is read (the authors computed all of
            # them: the same numbers, up to float rounding, without a [tokens x vocab] matrix per follow-up)
            logits = model(input_ids=ids, use_cache=False, logits_to_keep=len(fids)).logits[0, -len(fids):, :]
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
    batch_size: int = 4            # at most this many conversations per forward
    chunk_size: int = 128          # follow-ups packed per forward (128: the paper's 120 in one pass)
    token_budget: int = 16384      # at most this many (padded) tokens per forward: rows x (prefix + packed targets)
    stream_rows: int = 2048        # conversations encoded and scored at a time (memory does not grow with the input)
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
        for name in ("max_tokens", "batch_size", "chunk_size", "token_budget", "stream_rows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")


class TooLong(ValueError):
    """A sequence longer than the model's context length (``max_position_embeddings``), refused before scoring.

    ``index``: position of the conversation (``score``) or of the row (``score_pairs``, with ``side``) in the call.
    """

    def __init__(self, index: int, detail: str, side: str | None = None):
        self.index, self.detail, self.side = index, detail, side
        super().__init__(f"{f'row {index} ({side})' if side else f'conversation {index}'}: {detail}")

    def __reduce__(self):  # sent between ranks
        return TooLong, (self.index, self.detail, self.side)


class Scorer:
    """Scores conversations (each ending in the response to score) with one model, bank and config.

    ``cache``: a path, ``"auto"`` (``<cache_dir>/scores/<model>.jsonl``), or ``None`` (in-memory only). Rows that
    per-rank files beside it (``<name>.rank<r>.jsonl``, from a data-parallel run) hold are reused too.

    Data parallel (``data_parallel``; default: when launched with ``WORLD_SIZE`` > 1 by ``accelerate launch`` or
    ``torchrun``): every rank calls :meth:`score` with the same conversations (``score(..., local=True)`` instead
    scores the rows this rank passes on this rank alone, with no collective: TRL's reward calls, where each rank
    has its own completions). Every rank encodes each window of the rows that some rank lacks and cuts it into the
    batches one process would (so each row is computed in the same batch, and the numbers are the single
    process's, bit for bit on identical devices); the batches are dealt to the ranks in turn, each rank scores its
    batches into its own cache file ``<name>.rank<r>.jsonl``, and after each window every rank receives the
    others' scores, so every rank returns the same, complete result. Only the caller decides who writes result
    files.

    The identity (provenance, and so the cache keys) is computed once here, not per conversation (hashing an
    adapter folder reads all its bytes): make a new Scorer to change the model, adapter, bank or config.
    Sequences longer than the model's context length are refused with :class:`TooLong` before anything is scored.
    """

    def __init__(self, loaded, bank: Bank | str | None = None, config: ScoreConfig | None = None, cache="auto",
                 data_parallel: bool | None = None):
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.loaded = loaded
        self.config = config or ScoreConfig()
        if self.config.scorer in NO_BANK:
            self.bank = None
        else:
            self.bank = bank if isinstance(bank, Bank) else load_bank(bank)
            self.bank = self.bank.select(self.config.categories)
        self.rank, self.world = world() if data_parallel is not False else (0, 1)
        if cache == "auto":
            cache = cache_dir() / "scores" / f"{slug(loaded.spec)}.jsonl"
        self.cache = self._open_cache(cache)
        self._encoder = None if self.bank is None else Encoder(self.tokenizer, self.bank.texts(),
                                                               self.config.system_prompt, self.config.max_tokens)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.context_length = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        self._provenance = self._compute_provenance()
        self._ident = {k: self._provenance.get(k) for k in ("model", "adapter_hash", "dtype", "template_hash",
                                                            "scorer", "bank_hash", "max_tokens")}

    def _open_cache(self, path) -> JsonlCache:
        if path is None:
            return JsonlCache(None)
        path = Path(path)
        ranks = sorted(path.parent.glob(f"{path.stem}.rank*{path.suffix}")) if path.parent.is_dir() else []
        if self.world == 1:
            return JsonlCache(path, read_also=ranks)
        mine = path.with_name(f"{path.stem}.rank{self.rank}{path.suffix}")
        return JsonlCache(mine, read_also=[path] + [p for p in ranks if p != mine])

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
        return self._encoder.encode(ctx, role)

    # -- scoring -------------------------------------------------------------------------------------------
    def score(self, conversations: list[list[dict]], progress: bool = True, desc: str = "scoring",
              local: bool = False) -> list[dict]:
        """Score each conversation; cached rows are reused, new rows are appended to the cache as they finish.

        Rows are encoded, checked (:class:`TooLong`) and scored ``stream_rows`` at a time, so a too-long row stops
        the call before its window is scored; the windows before it stay in the cache (a re-run resumes).

        ``local``: score these rows in this process alone, even under a data-parallel launch (no collective, so
        the other ranks need not call; new rows still go to this rank's cache file)."""
        from tqdm.auto import tqdm

        if self.config.scorer == "length":  # no forward pass, nothing worth caching
            n = content_tokens(self.tokenizer, [self._response(conv) for conv in conversations])
            return [{"reward": float(k), "n_tokens": k} for k in n]
        keys = [self._key(conv) for conv in conversations]
        first = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        todo = [i for k, i in first.items() if k not in self.cache]
        deal = (0, 1) if local else (self.rank, self.world)  # (this process's turn, processes the batches go to)
        if deal[1] > 1:  # the rows that some rank lacks, in the same order on every rank
            missing = set().union(*all_gather({keys[i] for i in todo}))
            todo = [i for k, i in first.items() if k in missing]
        bar = tqdm(total=len(todo), desc=desc if deal[1] == 1 else f"{desc} ({deal[1]} ranks)", unit="conv",
                   disable=not progress or not todo or deal[0] != 0)
        step = self.config.stream_rows
        try:  # the bar is closed on Ctrl-C too, so that a caller's last message is the last line
            for s in range(0, len(todo), step):
                window = todo[s: s + step]
                if self.config.scorer == "legacy_repo":
                    mine = self._score_legacy(conversations, keys, window, bar, deal)
                else:
                    mine = self._score_engine(conversations, keys, window, bar, deal)
                if deal[1] > 1:
                    for part in all_gather({keys[i]: self.cache.peek(keys[i]) for i in mine}):
                        for k, v in part.items():
                            self.cache.remember(k, v)
                    bar.update(len(window))
        finally:
            bar.close()
        return [self._finish(self.cache.get(k)) for k in keys]

    def _score_legacy(self, conversations, keys, todo, bar, deal) -> list[int]:
        c = self.config
        for i in todo:  # the authors' arithmetic reads the whole conversation (never truncated)
            ctx, role = flr_context(conversations[i], c.layout)
            self._check_length(i, encode(self.tokenizer, ctx, role, self.bank.texts(), c.system_prompt))
        rank, n = deal
        mine = todo[rank:: n]  # one forward per follow-up: the numbers do not depend on the split
        for i in mine:
            ctx, role = flr_context(conversations[i], c.layout)
            vals = legacy_values(self.model, self.tokenizer, ctx, role, self.bank.texts(), c.system_prompt)
            self.cache.put(keys[i], {"values": vals})
            if n == 1:
                bar.update(1)
        return mine

    def _shape(self, e: Encoded) -> tuple[int, int]:
        """``(prefix tokens, longest packed chunk)`` of a row: what a batch of it costs."""
        c = self.config
        packed = max(sum(len(t) - 1 for t in e.targets[s: s + c.chunk_size])
                     for s in range(0, len(e.targets), c.chunk_size))
        return len(e.prefix), max(packed, 1)

    def _batches(self, order: list[int], shapes: dict) -> list[list[int]]:
        """Consecutive runs of the length-sorted rows with at most ``batch_size`` rows and at most ``token_budget``
        padded tokens per forward (rows x (longest prefix + longest packed chunk)); a row over the budget alone
        is a batch of one."""
        c, out, batch, width = self.config, [], [], 0
        for i in order:
            w = sum(shapes[i])
            if batch and (len(batch) >= c.batch_size or (len(batch) + 1) * max(width, w) > c.token_budget):
                out.append(batch)
                batch, width = [], 0
            batch.append(i)
            width = max(width, w)
        return out + ([batch] if batch else [])

    def _score_engine(self, conversations, keys, todo, bar, deal) -> list[int]:
        """Score one window; returns the rows this rank scored (all of them in a single process).

        Data parallel: each rank encodes and checks a strided share of the window, the ranks swap the rows' shapes
        (and the first error, so that every rank raises it), every rank cuts the same batches and scores every
        ``world``-th one, encoding the rows of its batches that another rank checked."""
        rank, n = deal
        share = todo[rank:: n]
        encs, err = {}, None
        try:
            for i in share:
                encs[i] = self.encode(conversations[i])
                self._check_length(i, encs[i])
        except (TooLong, ValueError) as e:
            if n == 1:
                raise
            err = e if isinstance(e, (TooLong, TemplateError)) else ValueError(str(e))
        shapes = {i: self._shape(e) for i, e in encs.items()}
        if n > 1:
            parts = all_gather((err, shapes if err is None else {}))
            errors = [e for e, _ in parts if e is not None]
            if errors:
                raise min(errors, key=lambda e: getattr(e, "index", len(conversations)))
            shapes = {i: sh for _, p in parts for i, sh in p.items()}
        order = sorted(todo, key=lambda i: shapes[i][0])  # length-sorted batching across conversations
        fn = BACKEND_FUNCS[self.config.backend]
        batches = self._batches(order, shapes)[rank:: n]
        for batch in batches:
            for i in batch:
                if i not in encs:
                    encs[i] = self.encode(conversations[i])
            lps = fn(self.model, [encs[i] for i in batch], self.pad_id, self.config.chunk_size)
            for i, row in zip(batch, lps):
                e = encs.pop(i)
                self.cache.put(keys[i], {"sum": [float(x.sum()) for x in row], "n": [len(x) for x in row],
                                         "prefix_tokens": len(e.prefix), "truncated_tokens": e.truncated_tokens,
                                         "over_budget": e.over_budget})
            if n == 1:
                bar.update(len(batch))
        return [i for b in batches for i in b]

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



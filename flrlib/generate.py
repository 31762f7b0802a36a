"""Sample N responses per prompt from a policy: batched, resumable (JSONL as it goes), with a progress bar.

Paper setting: N = 8, temperature 0.7, top-p 0.9, the policy's chat template with a generation prompt. With
``n=1, do_sample=False`` the same function gives greedy evaluation outputs. Two backends, chosen by the policy given:

* ``hf`` (a :class:`flrlib.models.Loaded`; in-process, the laptop default): one ``generate`` call per batch of
  prompts with ``num_return_sequences=N``, pure top-p sampling (``top_k=0``); special tokens are stripped from the
  decoded text, ``max_new_tokens`` caps each response, prompts longer than ``max_prompt_tokens`` lose their start.
  Seeding: the torch RNG is seeded per batch from ``seed`` and the batch's prompt ids, so a rerun with the same
  ``batch_size`` reproduces the same samples on the same machine.
* ``openai`` (a :class:`flrlib.client.Endpoint`: ``vllm serve``, SGLang, TGI, llama.cpp's server ...): the server
  applies the policy's chat template; each of the N samples is one request (``n=1``; llama.cpp's server ignores
  ``n``, and vLLM/SGLang share the prompt's KV cache between the N requests through prefix caching) with its own
  seed derived from ``seed``, the prompt id and the sample index, which servers that honour ``seed`` (vLLM, SGLang,
  llama.cpp) use to make each sample reproducible. Up to ``concurrency`` requests are in flight. The server's own
  sampling defaults apply beyond temperature / top-p / max tokens (llama.cpp's server adds top-k 40; vLLM has no
  top-k by default), and its context length limits the prompt (``max_prompt_tokens`` is not applied).

Resume. ``hf``: each finished prompt is appended to a :class:`~flrlib.cache.JsonlCache` keyed by (model
provenance, sampling parameters, seed, prompt id and messages). ``openai``: every answered request is appended to
the same kind of cache by :class:`flrlib.client.Client`. Either way an interrupted run recomputes only what is
missing.

Records returned (both backends): ``{id, messages, responses: [str] * N, n_tokens: [int] * N, truncated: [bool] * N}``
(``truncated``: the response hit ``max_new_tokens``). ``openai`` only: a sample the server refused (a prompt longer
than its context, a value it rejects: see :mod:`flrlib.client`) has the response ``""`` and is listed in the
record's ``failed: [{sample, status, message}]`` (the field is absent when every sample was answered); a warning
counts them. Refusals are cached: a re-run does not re-send them unless ``retry_failed=True``.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from .cache import JsonlCache, content_key


@dataclass
class GenConfig:
    n: int = 8                  # responses per prompt (num_return_sequences)
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 512
    do_sample: bool = True      # False: greedy (n must be 1)
    batch_size: int = 4         # prompts per generate() call (each expands to n sequences)
    max_prompt_tokens: int = 1024  # longer prompts are cut from the left (the start of the conversation)
    seed: int = 0
    concurrency: int = 8        # openai backend: requests in flight (not part of any cache key)

    def __post_init__(self):
        if not (isinstance(self.temperature, (int, float)) and self.temperature >= 0):
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.n < 1 or self.batch_size < 1 or self.max_new_tokens < 1 or self.concurrency < 1:
            raise ValueError("n, batch_size, max_new_tokens and concurrency must be >= 1")
        if not self.do_sample and self.n != 1:
            raise ValueError("greedy decoding (do_sample=False) gives one response per prompt: set n=1")


def _seed_for(seed: int, ids: list[str]) -> int:
    return int(hashlib.sha256(f"{seed}\x00{'|'.join(map(str, ids))}".encode()).hexdigest()[:8], 16)


def prompt_ids(tokenizer, messages: list[dict], max_prompt_tokens: int) -> list[int]:
    """The policy's chat template with a generation prompt, token ids (left-cut to ``max_prompt_tokens``)."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    return list(ids[-max_prompt_tokens:])


def _check_prompts(prompts: list[dict]) -> None:
    from .messages import check_messages

    for i, p in enumerate(prompts):
        if "id" not in p:
            raise ValueError(f"prompts[{i}]: missing field 'id'")
        check_messages(p.get("messages"), f"prompts[{i}] ({p['id']}) field 'messages'")
        if p["messages"][-1]["role"] != "user":
            raise ValueError(f"prompts[{i}] ({p['id']}): the last message must be a user turn")


def generate(policy, prompts: list[dict], config: GenConfig | None = None, cache=None, progress: bool = True,
             desc: str = "generating", retry_failed: bool = False) -> list[dict]:
    """Sample ``config.n`` responses for each prompt record ``{id, messages}`` (see the module doc).

    ``policy``: a :class:`flrlib.models.Loaded` (backend ``hf``) or a :class:`flrlib.client.Endpoint` (backend
    ``openai``). ``cache``: a JSONL path for resuming (``None``: in memory only). ``retry_failed`` (``openai``):
    re-send the requests the server refused before.
    """
    from .client import Endpoint

    cfg = config or GenConfig()
    _check_prompts(prompts)
    if isinstance(policy, Endpoint):
        return _generate_openai(policy, prompts, cfg, cache, progress, desc, retry_failed)
    return _generate_hf(policy, prompts, cfg, cache, progress, desc)


def _generate_openai(endpoint, prompts, cfg: GenConfig, cache, progress: bool, desc: str,
                     retry_failed: bool = False) -> list[dict]:
    import warnings

    from .client import Client, failed

    client = Client(endpoint, cache=cache, concurrency=cfg.concurrency, retry_failed=retry_failed)
    sampling = dict(temperature=cfg.temperature, top_p=cfg.top_p) if cfg.do_sample else dict(temperature=0.0, top_p=1.0)
    requests = [{"messages": p["messages"], "max_tokens": cfg.max_new_tokens, "n": 1,
                 "seed": _seed_for(cfg.seed, [p["id"], k]) & 0x7FFFFFFF, **sampling}
                for p in prompts for k in range(cfg.n)]
    replies = client.chat(requests, progress=progress, desc=desc)
    out, n_failed = [], 0
    for i, p in enumerate(prompts):
        mine = replies[i * cfg.n: (i + 1) * cfg.n]
        fails = [{"sample": k, **failed(r)} for k, r in enumerate(mine) if failed(r)]
        ok = [None if failed(r) else r["choices"][0] | {"usage": r["usage"]} for r in mine]
        rec = {"id": p["id"], "messages": p["messages"],
               "responses": [(c["content"] or "").strip() if c else "" for c in ok],
               "n_tokens": [int(c["usage"].get("completion_tokens") or 0) if c else 0 for c in ok],
               "truncated": [bool(c) and c["finish_reason"] == "length" for c in ok]}
        if fails:
            rec["failed"] = fails
            n_failed += len(fails)
        out.append(rec)
    if n_failed:
        where = f" (recorded in {client.cache.path}; retry_failed=True re-sends them)" if client.cache.path else ""
        warnings.warn(f"{endpoint.label}: {n_failed} of {len(replies)} samples were refused by the server; their "
                      f"responses are empty and listed in each record's 'failed' field{where}", stacklevel=3)
    return out


def _generate_hf(loaded, prompts, cfg: GenConfig, cache, progress: bool, desc: str) -> list[dict]:
    import torch
    from tqdm.auto import tqdm

    model, tok = loaded.model, loaded.tokenizer
    params = {k: v for k, v in asdict(cfg).items() if k not in ("batch_size", "concurrency")}
    ident = {**loaded.provenance, "gen": params}
    store = JsonlCache(cache)
    keys = [content_key(ident, p["id"], p["messages"]) for p in prompts]
    todo = sorted({k: i for i, k in enumerate(keys) if k not in store}.values())
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id}
    bar = tqdm(total=len(todo), desc=desc, unit="prompt", disable=not progress or not todo)
    for s in range(0, len(todo), cfg.batch_size):
        batch = todo[s: s + cfg.batch_size]
        seqs = [prompt_ids(tok, prompts[i]["messages"], cfg.max_prompt_tokens) for i in batch]
        width = max(len(q) for q in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for j, q in enumerate(seqs):  # left padding: every prompt ends where generation starts
            ids[j, width - len(q):] = torch.tensor(q)
            mask[j, width - len(q):] = 1
        torch.manual_seed(_seed_for(cfg.seed, [prompts[i]["id"] for i in batch]))
        kw = dict(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0) if cfg.do_sample else \
            dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                 num_return_sequences=cfg.n, max_new_tokens=cfg.max_new_tokens, pad_token_id=pad, **kw)
        new = out[:, width:].cpu()
        for j, i in enumerate(batch):
            rows = new[j * cfg.n: (j + 1) * cfg.n]
            texts, n_tok, cut = [], [], []
            for r in rows.tolist():
                end = next((t for t, x in enumerate(r) if x in eos), None)
                body = r if end is None else r[:end]
                texts.append(tok.decode(body, skip_special_tokens=True).strip())
                n_tok.append(len(body))
                cut.append(end is None)
            store.put(keys[i], {"responses": texts, "n_tokens": n_tok, "truncated": cut})
        bar.update(len(batch))
    bar.close()
    out = []
    for p, k in zip(prompts, keys):
        v = store.get(k)
        out.append({"id": p["id"], "messages": p["messages"], **v})
    return out


def provenance(policy, config: GenConfig) -> dict:
    """The policy's provenance (a loaded model's, or the endpoint's model and URL) and the sampling parameters."""
    from .client import Endpoint

    if isinstance(policy, Endpoint):
        base = {"model": policy.model, "backend": "openai", "base_url": policy.base_url, "adapter": None,
                "adapter_hash": policy.revision}
    else:
        base = {**policy.provenance, "backend": "hf"}
    return {**base, "generation": asdict(config)}

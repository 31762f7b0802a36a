"""Sample N responses per prompt from a policy: batched, resumable (JSONL as it goes), with a progress bar.

Paper setting: N = 8, temperature 0.7, top-p 0.9, the policy's chat template with a generation prompt. One
``generate`` call per batch of prompts with ``num_return_sequences=N``; special tokens are stripped from the
decoded text, and ``max_new_tokens`` caps each response (a response that hit the cap is flagged ``truncated``).
With ``n=1, do_sample=False`` the same function gives greedy evaluation outputs.

Resume. Each finished prompt is appended to a :class:`~flrlib.cache.JsonlCache` keyed by (model provenance,
sampling parameters, seed, prompt id and messages); an interrupted run recomputes only the missing prompts.
Seeding. The torch RNG is seeded per batch from ``seed`` and the batch's prompt ids, so a rerun with the same
``batch_size`` reproduces the same samples on the same machine.

Records returned: ``{id, messages, responses: [str] * N, n_tokens: [int] * N, truncated: [bool] * N}``.
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

    def __post_init__(self):
        if self.n < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("n, batch_size and max_new_tokens must be >= 1")
        if not self.do_sample and self.n != 1:
            raise ValueError("greedy decoding (do_sample=False) gives one response per prompt: set n=1")


def _seed_for(seed: int, ids: list[str]) -> int:
    return int(hashlib.sha256(f"{seed}\x00{'|'.join(map(str, ids))}".encode()).hexdigest()[:8], 16)


def prompt_ids(tokenizer, messages: list[dict], max_prompt_tokens: int) -> list[int]:
    """The policy's chat template with a generation prompt, token ids (left-cut to ``max_prompt_tokens``)."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    return list(ids[-max_prompt_tokens:])


def generate(loaded, prompts: list[dict], config: GenConfig | None = None, cache=None, progress: bool = True,
             desc: str = "generating") -> list[dict]:
    """Sample ``config.n`` responses for each prompt record ``{id, messages}`` (see the module doc).

    ``cache``: a JSONL path for resuming (``None``: in memory only).
    """
    import torch
    from tqdm.auto import tqdm

    from .chat import check_messages

    cfg = config or GenConfig()
    model, tok = loaded.model, loaded.tokenizer
    params = {k: v for k, v in asdict(cfg).items() if k != "batch_size"}
    ident = {**loaded.provenance, "gen": params}
    for i, p in enumerate(prompts):
        if "id" not in p:
            raise ValueError(f"prompts[{i}]: missing field 'id'")
        check_messages(p.get("messages"), f"prompts[{i}] ({p['id']}) field 'messages'")
        if p["messages"][-1]["role"] != "user":
            raise ValueError(f"prompts[{i}] ({p['id']}): the last message must be a user turn")
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


def provenance(loaded, config: GenConfig) -> dict:
    return {**loaded.provenance, "generation": asdict(config)}

"""Clients of `flr serve` for verl and TRL: the reward is computed by the service, M never loads in the trainer.

``url``: the service's base URL (``http://host:5000``), or several, comma-separated or as a list (one
`flr serve` process per GPU, see :mod:`flrlib.serve`): each call's rows are split into contiguous shards, one per
URL (the URLs take turns being first, so one-row calls spread too), posted concurrently to the native ``/score``
endpoint, and put back in input order. A 503 (queue full, ``Retry-After``), a 504 (timeout; the rows land in the
service's cache, so the retry is a cache hit) and a refused connection (a restarting service) are retried
``retries`` times; a 4xx is raised at once with the service's reason (:class:`RemoteError`). ``token``: the
service's bearer token (default ``$FLR_SERVE_TOKEN``).

verl (custom reward function; volcengine/verl ``verl/workers/reward_manager/batch.py``). Its
``BatchRewardManager.verify`` calls::

    scores = self.compute_score(
        data_sources=data_sources,
        solution_strs=responses_str,
        ground_truths=ground_truths,
        extra_infos=extras,
        **self.reward_kwargs,
    )

with ``responses_str`` decoded ``skip_special_tokens=True`` and ``extras`` the dataset's ``extra_info`` column;
the prompt itself is not passed, so **each row's ``extra_info`` must carry it**: ``extra_info["prompt"]`` = the
prompt's messages (copy the dataset's ``prompt`` column into it when preprocessing; a plain string is read as one
user turn). A returned dict's ``score`` is the reward and its other keys are logged (``reward_extra_info``).
Config::

    reward_model.reward_manager=batch
    custom_reward_function.path=pkg://flrlib.remote
    custom_reward_function.name=compute_score
    +custom_reward_function.reward_kwargs.url=http://127.0.0.1:5000   # or '["http://h:5000","http://h:5001"]'

``compute_score_single`` has the signature of verl's per-row managers (``naive``, the reward loop:
``compute_score(data_source=, solution_str=, ground_truth=, extra_info=)``).

TRL (``GRPOTrainer(reward_funcs=[RemoteFLRReward(url)])``): TRL 1.16 awaits async reward functions
(``trl.trainer.utils.is_async_callable`` reads an async ``__call__``) on its own event loop, concurrently with the
other reward functions. Same prompt/completion formats, empty-completion rule and logged metrics as
:class:`flrlib.reward.FLRReward` (``<name>/completion_tokens`` is the length in M's tokens: the length trap).
"""
from __future__ import annotations

import asyncio
import itertools
import os
import time
from concurrent.futures import ThreadPoolExecutor

RETRY_STATUS = (502, 503, 504)


class RemoteError(RuntimeError):
    """The service refused the request (4xx, with its reason) or could not be reached after the retries."""


def urls_of(url) -> list[str]:
    """Base URLs from a string (comma-separated) or a list; a trailing ``/score`` or ``/get_reward`` is dropped."""
    if url is None:
        url = os.environ.get("FLR_SERVE_URL")
    items = url.split(",") if isinstance(url, str) else list(url or [])
    out = []
    for u in (str(x).strip().rstrip("/") for x in items):
        for tail in ("/score", "/get_reward", "/health"):
            if u.endswith(tail):
                u = u[: -len(tail)]
        if u:
            out.append(u)
    if not out:
        raise ValueError("no service URL: pass url= (e.g. http://127.0.0.1:5000) or set FLR_SERVE_URL")
    return out


_turn = itertools.count()  # rotates the first URL over calls, so that one-row calls spread over the services


def _shards(n: int, bases: list[str]) -> list[tuple[int, int, str]]:
    """Contiguous ``(start, end, base URL)`` shards of ``n`` rows, one per URL, starting at the next URL in turn."""
    if not n:
        return []
    size, first = -(-n // len(bases)), next(_turn)
    return [(s, min(n, s + size), bases[(first + k) % len(bases)]) for k, s in enumerate(range(0, n, size))]


def _headers(token) -> dict:
    token = token if token is not None else os.environ.get("FLR_SERVE_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _reason(resp) -> str:
    try:
        return resp.json().get("error") or resp.text
    except ValueError:
        return resp.text[:500]


def _wait(resp, attempt: int) -> float:
    ra = resp.headers.get("retry-after") if resp is not None else None
    return float(ra) if ra and ra.isdigit() else min(10.0, 0.5 * 2 ** attempt)


def _rows(body: dict) -> list[dict]:
    """The service's rows, each carrying the bank's category names (so that a failed row knows them too)."""
    cats = body.get("categories") or []
    return [{**r, "bank_categories": cats} for r in body["rows"]]


def _answer(resp, where: str):
    """One HTTP answer of ``/score``: its rows (200), the reason to retry (a status in :data:`RETRY_STATUS`), or
    :class:`RemoteError` (any other status). Shared by :func:`score_rows` and :func:`ascore_rows`."""
    if resp.status_code == 200:
        return _rows(resp.json())
    why = f"HTTP {resp.status_code}: {_reason(resp)}"
    if resp.status_code not in RETRY_STATUS:
        raise RemoteError(f"{where}: {why}")
    return why


def score_rows(url, rows: list[dict], token=None, timeout: float = 180.0, retries: int = 5) -> list[dict]:
    """POST ``{id, messages[, response]}`` rows to the service(s); one result row per input row, in order (the
    service's row, plus ``bank_categories``: the bank's category names, known even when every row failed)."""
    import httpx

    parts = _shards(len(rows), urls_of(url))

    def post(k: int) -> list[dict]:
        s, e, base = parts[k]
        body, last = {"rows": rows[s:e]}, None
        with httpx.Client(timeout=timeout, headers=_headers(token)) as client:
            for attempt in range(retries + 1):
                try:
                    resp = client.post(f"{base}/score", json=body)
                except httpx.TransportError as err:
                    last, resp = f"{type(err).__name__}: {err}", None
                else:
                    rows_or_why = _answer(resp, f"{base}/score (rows {s}..{e - 1})")
                    if isinstance(rows_or_why, list):
                        return rows_or_why
                    last = rows_or_why
                if attempt < retries:
                    time.sleep(_wait(resp, attempt))
        raise RemoteError(f"{base}/score (rows {s}..{e - 1}): no answer after {retries + 1} tries ({last})")

    if len(parts) <= 1:
        return [r for k in range(len(parts)) for r in post(k)]
    with ThreadPoolExecutor(len(parts)) as pool:
        return [r for part in pool.map(post, range(len(parts))) for r in part]


async def ascore_rows(url, rows: list[dict], token=None, timeout: float = 180.0, retries: int = 5) -> list[dict]:
    """:func:`score_rows` for an event loop (one ``httpx.AsyncClient`` per call, shards posted concurrently)."""
    import httpx

    parts = _shards(len(rows), urls_of(url))

    async def post(client, k: int) -> list[dict]:
        s, e, base = parts[k]
        body, last = {"rows": rows[s:e]}, None
        for attempt in range(retries + 1):
            try:
                resp = await client.post(f"{base}/score", json=body)
            except httpx.TransportError as err:
                last, resp = f"{type(err).__name__}: {err}", None
            else:
                rows_or_why = _answer(resp, f"{base}/score (rows {s}..{e - 1})")
                if isinstance(rows_or_why, list):
                    return rows_or_why
                last = rows_or_why
            if attempt < retries:
                await asyncio.sleep(_wait(resp, attempt))
        raise RemoteError(f"{base}/score (rows {s}..{e - 1}): no answer after {retries + 1} tries ({last})")

    async with httpx.AsyncClient(timeout=timeout, headers=_headers(token)) as client:
        done = await asyncio.gather(*(post(client, k) for k in range(len(parts))))
    return [r for part in done for r in part]


# ----------------------------------------------------------------------------------------------------------
# verl
# ----------------------------------------------------------------------------------------------------------

def _prompt_messages(extra_info, where: str) -> list[dict]:
    prompt = (extra_info or {}).get("prompt") if hasattr(extra_info or {}, "get") else None
    if prompt is None:
        raise ValueError(f"{where}: extra_info has no 'prompt' (verl does not pass the prompt to a reward function: "
                         "copy each row's prompt messages into extra_info['prompt'] when preparing the dataset)")
    if hasattr(prompt, "tolist"):  # numpy object arrays from parquet
        prompt = prompt.tolist()
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and prompt and all(hasattr(m, "get") for m in prompt):
        return [{"role": m.get("role"), "content": m.get("content")} for m in prompt]
    raise ValueError(f"{where}: extra_info['prompt'] must be a list of {{role, content}} messages or a string")


def _verl_record(r: dict, error_reward, where: str) -> dict:
    if r.get("error") is not None:
        if error_reward is None:
            raise RemoteError(f"{where}: {r['error']} (pass reward_kwargs error_reward=<value> to give such rows a "
                              "fixed reward instead)")
        rec = {"score": float(error_reward), "flr_completion_tokens": 0, "flr_truncated_tokens": 0, "flr_error": 1}
    else:
        rec = {"score": r["reward"], "flr_completion_tokens": r["completion_tokens"],
               "flr_truncated_tokens": r["truncated_tokens"], "flr_error": 0}
    return rec


def compute_score(data_sources, solution_strs, ground_truths, extra_infos, url=None, token=None,
                  error_reward=None, timeout: float = 180.0, retries: int = 5, **kwargs) -> list[dict]:
    """verl's batch reward manager hook: one ``{"score": reward, "flr_completion_tokens": ..., ...}`` per row.

    ``url``, ``token``, ``error_reward`` (reward of a row the service cannot score, e.g. too long; default: raise),
    ``timeout`` and ``retries`` come from ``custom_reward_function.reward_kwargs``. ``data_sources`` and
    ``ground_truths`` are not used (FLR is label-free)."""
    extra_infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    rows = [{"id": str(i), "messages": _prompt_messages(x, f"row {i}"), "response": s}
            for i, (s, x) in enumerate(zip(solution_strs, extra_infos))]
    res = score_rows(url, rows, token=token, timeout=timeout, retries=retries)
    cats = res[0]["bank_categories"] if res else []
    out = []
    for i, r in enumerate(res):
        rec = _verl_record(r, error_reward, f"row {i}")
        for c in cats:  # the same keys on every row: verl appends them into per-key lists
            rec[f"flr_{c}"] = r["categories"][c] if r.get("categories") else 0.0
        out.append(rec)
    return out


def compute_score_single(data_source, solution_str, ground_truth, extra_info=None, url=None, token=None,
                         error_reward=None, timeout: float = 180.0, retries: int = 5, **kwargs) -> dict:
    """verl's per-row hook (``naive`` reward manager, reward loop): one row per request; the service batches
    concurrent requests into engine batches."""
    return compute_score([data_source], [solution_str], [ground_truth], [extra_info], url=url, token=token,
                         error_reward=error_reward, timeout=timeout, retries=retries)[0]


# ----------------------------------------------------------------------------------------------------------
# TRL
# ----------------------------------------------------------------------------------------------------------

class RemoteFLRReward:
    """An async TRL reward function that asks `flr serve` (``f(prompts, completions, **kw) -> list[float]``).

    ``empty``: ``"min"`` (default: an empty completion gets the lowest reward of its batch), a number, or ``None``
    (TRL's "not applicable"); as :class:`flrlib.reward.FLRReward`. A completion the service cannot score for
    another reason (too long for M) raises :class:`RemoteError` naming it."""

    def __init__(self, url, token=None, name: str = "flr", empty="min", log_categories: bool = True,
                 timeout: float = 180.0, retries: int = 5):
        if not (empty is None or empty == "min" or isinstance(empty, (int, float)) and not isinstance(empty, bool)):
            raise ValueError(f"empty must be 'min', a number or None, got {empty!r}")
        self.urls, self.token, self.empty, self.log_categories = urls_of(url), token, empty, log_categories
        self.timeout, self.retries = timeout, retries
        self.__name__ = name  # TRL's get_callable_name reads __name__

    async def score(self, prompts: list, completions: list) -> list[dict]:
        from .reward import conversation

        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        rows = [{"id": str(i), "messages": conversation(p, c, f"completion {i}")}
                for i, (p, c) in enumerate(zip(prompts, completions))]
        return await ascore_rows(self.urls, rows, token=self.token, timeout=self.timeout, retries=self.retries)

    async def __call__(self, prompts: list, completions: list, log_metric=None, **kwargs) -> list:
        rows = await self.score(prompts, completions)
        if not rows:
            return []
        for i, r in enumerate(rows):
            if r["error"] is not None and not r["error"].startswith("empty response"):
                raise RemoteError(f"completion {i}: {r['error']}")
        rewards = [r["reward"] for r in rows]
        scored = [x for x in rewards if x is not None]
        fill = self.empty if self.empty != "min" else (min(scored) if scored else None)
        if log_metric is not None:
            name = self.__name__
            log_metric(f"{name}/completion_tokens", sum(r["completion_tokens"] or 0 for r in rows) / len(rows))
            log_metric(f"{name}/empty", (len(rows) - len(scored)) / len(rows))
            cats = [r["categories"] for r in rows if r.get("categories")]
            if self.log_categories and cats:
                for c in cats[0]:
                    log_metric(f"{name}/{c}", sum(d[c] for d in cats) / len(cats))
        return [fill if x is None else x for x in rewards]

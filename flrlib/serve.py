"""`flr serve`: FLR (or Direct, or length) as an HTTP reward service for OpenRLHF, verl and TRL.

One process loads M, the bank, the :class:`~flrlib.scoring.Scorer` and its cache once, and scores every request
through that same ``Scorer`` (a service is a thin face over it: it batches requests, it does not score
differently). FastAPI routes, uvicorn serves - the pair OpenRLHF's own ``openrlhf/cli/serve_rm.py`` uses.

Endpoints
---------
``POST /get_reward`` - OpenRLHF's remote reward protocol, as its client sends it. OpenRLHF 0.11
(``openrlhf/utils/agent.py``, ``SingleTurnAgentExecutor``) builds the query and posts it with aiohttp::

    query = hf_tokenizer.decode(output["observation_tokens"], skip_special_tokens=False)
    ...
    payload = {
        "query": queries_list[start_idx:end_idx],
        "prompts": prompts_list[start_idx:end_idx],
        "labels": labels_list[start_idx:end_idx],
    }
    ...
    async with session.post(url, json=data) as response:
        response.raise_for_status()
        return await response.json()

and reads ``rewards_info.get("rewards")``, ``rewards_info.get("scores")`` (falling back to the rewards) and
``rewards_info.get("extra_logs") or {}``; its ``serve_rm.py`` answers
``{"rewards": rewards, "scores": rewards, "extra_logs": {"dummy_scores": rewards}}`` - one list entry per query,
which is what this endpoint returns too (``scores`` = ``rewards``: FLR is not a 0/1 score, so OpenRLHF's dynamic
filtering thresholds do not apply to it). ``query`` is the policy's chat-templated prompt + response, special
tokens included: :mod:`flrlib.templates` turns it back into messages (ChatML for Qwen/SmolLM2, Llama-3, Mistral;
``--policy-template`` names the family or a tokenizer folder to read it from, default ``auto``), using
``prompts[i]`` to split off the response when the query starts with it. An unparseable query is a 400 that says
why. ``labels`` are accepted and ignored (FLR is label-free). ``extra_logs`` (per query, logged by OpenRLHF):
``flr/completion_tokens`` - the response's length in M's tokens, beside its reward (the length trap: a policy
optimised against a likelihood reward may learn to write longer; log it), ``flr/truncated_tokens``,
``flr/over_budget``, ``flr/error`` and ``flr/as_is`` - 1 when M's own template renders the parsed messages to
exactly the policy's text (M then reads the query as is; 0 when the policy's template differs from M's, or the
text was changed by parsing, e.g. whitespace the template strips), and ``flr/<category>`` for FLR.

``POST /score`` - the native endpoint: ``{"rows": [{"id", "messages", "response"}, ...]}`` (``messages`` is the
context ending with the user turn answered), or ``flr score``'s ``{"id", "messages"}`` rows whose last message is
the assistant response. Answers ``{"rows": [{"id", "reward", "categories" (FLR), "completion_tokens" (M's
tokens), "prefix_tokens", "truncated_tokens", "over_budget", "error"}], "categories": [the bank's], "provenance":
...}`` in input order.

``GET /health`` - model, bank and bank hash, scorer, template hashes and families, queue depth, cache counters.

Batching and queue
------------------
Requests are rows appended to one bounded queue. One worker thread takes everything queued (up to
``--max-batch-rows`` rows), waiting at most ``--max-wait-ms`` for more to arrive once the first is there, and
scores the lot in one ``Scorer.score`` call: the Scorer sorts the merged rows by length and cuts its engine batches
by ``--batch-size`` and ``--token-budget``, exactly as for a file. Cached rows (the same cache ``flr score``
uses) cost nothing. When queued rows would exceed ``--max-queue-rows`` the request is refused with 503 and a
``Retry-After`` estimated from the recent throughput; nothing grows without limit.

Rows: a row that cannot be scored (empty response; longer than M's context length, which the Scorer refuses with
``TooLong`` before scoring) is a per-row error and the other rows of the engine batch are scored as usual. The
native endpoint returns the error in the row; the OpenRLHF endpoint needs a number for every query, so it answers
422 naming the query, unless ``--error-reward`` gives the value to use (marked ``flr/error`` = 1 in extra_logs).

Operations
----------
Binds 127.0.0.1 unless ``--host`` says otherwise. ``--token`` (or ``FLR_SERVE_TOKEN``) requires
``Authorization: Bearer <token>`` on every endpoint; OpenRLHF's client sends no headers, so the token may also be
given as ``?token=`` in the URL (visible in process lists and logs: prefer a private network). A body over
``--max-body-mb`` is a 413 (read in chunks, refused as soon as it is too big). A request not answered within
``--request-timeout`` seconds gets a 504; its rows are still scored into the cache, so the client's retry is a
cache hit. A client that disconnects costs nothing more than that. Logs: one JSON line per request and per engine
batch on stderr. SIGTERM (or Ctrl-C) drains: new requests get 503 and the listening socket closes, what was
accepted is scored and answered, then the process exits (by the signal it got, as uvicorn re-raises it:
status 143 for SIGTERM, 130 for Ctrl-C).

Several GPUs (``--devices 0,1,2,3``): one ``flr serve`` process per device, on consecutive ports, printed as the
comma-separated URL list that OpenRLHF's ``--reward.remote_url`` takes (it shards each batch across the URLs and
rotates single queries over them) and that :mod:`flrlib.remote` accepts for verl and TRL. Why not one process
with several workers: each process has its own CUDA context, its own GIL for tokenisation and its own failure
domain, the engine's batches are per device anyway, and the load balancing is already in the clients that send
the requests; a restarted process resumes from the shared cache file (appends are locked, see
:mod:`flrlib.cache`).
"""
# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request) at run time
import argparse
import asyncio
import hmac
import json
import logging
import math
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass

from .chat import content_tokens, render
from .messages import check_messages
from .templates import FAMILIES, Unparseable, detect, parse

log = logging.getLogger("flrlib.serve")


def _log(event: str, **fields) -> None:
    log.info(json.dumps({"ts": round(time.time(), 3), "event": event, **fields}, ensure_ascii=False, default=str))


@dataclass
class ServeConfig:
    max_wait_ms: float = 10.0        # once a request is queued, wait this long for others to join its batch
    max_batch_rows: int = 512        # rows merged into one Scorer.score call
    max_queue_rows: int = 8192       # rows waiting; beyond this a request gets 503 + Retry-After
    max_body_bytes: int = 32 << 20   # a larger body is a 413
    request_timeout: float = 170.0   # seconds; then 504 (OpenRLHF's client gives up after 180 s)
    token: str | None = None         # bearer token required on every endpoint
    policy_template: str = "auto"    # chatml | llama3 | mistral | auto (per query)
    pad_token: str | None = None     # the policy's padding token (dropped from the end of a query)
    error_reward: float | None = None  # OpenRLHF: reward for a row that cannot be scored (None: 422)

    def __post_init__(self):
        for name in ("max_batch_rows", "max_queue_rows", "max_body_bytes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer")
        if self.max_wait_ms < 0 or self.request_timeout <= 0:
            raise ValueError("max_wait_ms must be >= 0 and request_timeout > 0")
        if self.policy_template not in FAMILIES + ("auto",):
            raise ValueError(f"policy_template must be one of {FAMILIES + ('auto',)}, got {self.policy_template!r}")


class QueueFull(Exception):
    def __init__(self, retry_after: int, detail: str):
        self.retry_after, self.detail = retry_after, detail
        super().__init__(detail)


class _Job:
    __slots__ = ("convs", "future", "rid")

    def __init__(self, convs, rid):
        self.convs, self.future, self.rid = convs, Future(), rid


class Service:
    """The queue and the one worker in front of a :class:`~flrlib.scoring.Scorer` (no HTTP here)."""

    def __init__(self, scorer, config: ServeConfig | None = None):
        self.scorer, self.config = scorer, config or ServeConfig()
        self._cond = threading.Condition()
        self._jobs: deque[_Job] = deque()
        self.queued_rows = self.busy_rows = 0
        self.draining = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._rate = None  # rows per second, moving average over engine batches
        self.stats = {"requests": 0, "rows": 0, "batches": 0, "row_errors": 0, "batch_failures": 0}
        self.started = time.time()
        self._rid = 0
        tok = scorer.tokenizer
        self.m_template = detect(getattr(tok, "chat_template", None) or "")

    # -- queue ----------------------------------------------------------------------------------------------
    def start(self) -> "Service":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="flr-serve-worker", daemon=True)
            self._thread.start()
        return self

    def next_id(self) -> int:
        self._rid += 1
        return self._rid

    def retry_after(self, rows: int = 0) -> int:
        rate = self._rate or 1.0
        return int(max(1, min(60, math.ceil((self.queued_rows + self.busy_rows + rows) / rate))))

    def submit(self, convs: list[list[dict]], rid: int = 0) -> Future:
        """Queue one request's conversations; the future's result is one row dict per conversation."""
        limit = self.config.max_queue_rows
        with self._cond:
            if self.draining or self._stop:
                raise QueueFull(self.retry_after(), "the service is shutting down")
            if len(convs) > limit:
                raise ValueError(f"query: {len(convs)} rows in one request; this service queues at most {limit} "
                                 "(--max-queue-rows): split the request")
            if self.queued_rows + len(convs) > limit:
                raise QueueFull(self.retry_after(len(convs)), f"queue full: {self.queued_rows} rows waiting, "
                                f"{len(convs)} more would exceed --max-queue-rows {limit}")
            job = _Job(convs, rid)
            self._jobs.append(job)
            self.queued_rows += len(convs)
            self._cond.notify_all()
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Stop taking work, score what is queued, stop the worker."""
        with self._cond:
            self.draining = self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _take(self) -> list[_Job] | None:
        c = self.config
        with self._cond:
            while not self._jobs and not self._stop:
                self._cond.wait()
            if not self._jobs:
                return None  # stopping, and nothing is left
            deadline = time.monotonic() + c.max_wait_ms / 1000
            while self.queued_rows < c.max_batch_rows and not self._stop:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            jobs, rows = [], 0
            while self._jobs and (not jobs or rows + len(self._jobs[0].convs) <= c.max_batch_rows):
                job = self._jobs.popleft()
                jobs.append(job)
                rows += len(job.convs)
            self.queued_rows -= rows
            self.busy_rows = rows
            return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            convs = [c for j in jobs for c in j.convs]
            t0 = time.perf_counter()
            try:
                rows = self.score_rows(convs)
            except Exception as e:  # noqa: BLE001 - an engine failure fails these requests, not the service
                self.stats["batch_failures"] += 1
                _log("batch_failed", requests=[j.rid for j in jobs], rows=len(convs), error=f"{type(e).__name__}: {e}")
                for j in jobs:
                    j.future.set_exception(e)
                continue
            finally:
                with self._cond:
                    self.busy_rows = 0
            dt = time.perf_counter() - t0
            rate = len(convs) / max(dt, 1e-6)
            self._rate = rate if self._rate is None else 0.7 * self._rate + 0.3 * rate
            self.stats["batches"] += 1
            self.stats["rows"] += len(convs)
            errs = sum(r["error"] is not None for r in rows)
            self.stats["row_errors"] += errs
            _log("batch", requests=[j.rid for j in jobs], rows=len(convs), row_errors=errs, ms=round(1000 * dt, 1),
                 queued_rows=self.queued_rows, cache_rows=len(self.scorer.cache))
            k = 0
            for j in jobs:
                j.future.set_result(rows[k: k + len(j.convs)])
                k += len(j.convs)

    # -- scoring (the worker thread only: the tokenizer is not shared between threads) ----------------------
    def score_rows(self, convs: list[list[dict]]) -> list[dict]:
        """Score conversations with the Scorer; a row that cannot be scored gets ``error`` instead of a reward."""
        from .scoring import TooLong

        errors: dict[int, str] = {}
        todo = []
        for i, conv in enumerate(convs):
            if not conv[-1]["content"].strip():
                errors[i] = "empty response (nothing to score)"
            else:
                todo.append(i)
        results: dict[int, dict] = {}
        while todo:
            try:
                res = self.scorer.score([convs[i] for i in todo], progress=False)
            except TooLong as e:  # refused before its window is scored: drop that row, score the rest
                errors[todo.pop(e.index)] = f"too long for the model: {e.detail}"
                continue
            except ValueError:  # a row the template or encoder refuses: find it by scoring rows one by one
                for i in todo:
                    try:
                        results[i] = self.scorer.score([convs[i]], progress=False)[0]
                    except ValueError as e:
                        errors[i] = str(e)
                break
            results.update(zip(todo, res))
            break
        done = sorted(results)
        n_tok = dict(zip(done, content_tokens(self.scorer.tokenizer, [convs[i][-1]["content"] for i in done])))
        out = []
        for i in range(len(convs)):
            if i in errors:
                out.append({"reward": None, "completion_tokens": None, "error": errors[i]})
                continue
            r = results[i]
            row = {"reward": float(r["reward"]), "completion_tokens": n_tok[i],
                   "prefix_tokens": r.get("prefix_tokens"), "truncated_tokens": r.get("truncated_tokens", 0),
                   "over_budget": bool(r.get("over_budget", False)), "error": None}
            if "categories" in r:
                row["categories"] = r["categories"]
            out.append(row)
        return out

    # -- parsing and rendering -----------------------------------------------------------------------------
    def as_is(self, conv: list[dict], query: str) -> bool:
        """Whether M's own template renders the parsed conversation to exactly the start of the policy's text,
        end-of-turn token included: M then reads the query as it is (what follows, padding or an end-of-text
        token, M does not read; a response cut without its end-of-turn token is not as is)."""
        if self.m_template is None:
            return False
        try:
            mine = render(self.scorer.tokenizer, conv, self.scorer.config.system_prompt).rstrip()
        except Exception:  # noqa: BLE001 - a template that refuses the messages cannot read them as is
            return False
        return query.startswith(mine)  # what follows M's last end-of-turn (padding, EOS) M does not read

    def health(self) -> dict:
        prov = self.scorer.provenance
        cache = self.scorer.cache
        return {"status": "draining" if self.draining else "ok", "model": prov.get("model"),
                "adapter": prov.get("adapter"), "scorer": prov.get("scorer"), "bank": prov.get("bank"),
                "bank_hash": prov.get("bank_hash"), "bank_size": prov.get("bank_size"),
                "template_hash": prov.get("template_hash"), "layout": prov.get("layout"), "norm": prov.get("norm"),
                "max_tokens": prov.get("max_tokens"), "m_template": self.m_template,
                "policy_template": self.config.policy_template,
                "queue": {"requests": len(self._jobs), "rows": self.queued_rows, "in_engine_rows": self.busy_rows,
                          "max_rows": self.config.max_queue_rows},
                "cache": {"path": str(cache.path) if cache.path else None, "rows": len(cache),
                          "written": cache.written, "hits": cache.hits},
                "stats": dict(self.stats), "rows_per_s": round(self._rate, 2) if self._rate else None,
                "uptime_s": round(time.time() - self.started, 1)}


# ----------------------------------------------------------------------------------------------------------
# HTTP (FastAPI)
# ----------------------------------------------------------------------------------------------------------

class HTTPFail(Exception):
    def __init__(self, status: int, detail: str, headers: dict | None = None):
        self.status, self.detail, self.headers = status, detail, headers or {}
        super().__init__(detail)


def _rows_native(data) -> tuple[list[str], list[list[dict]]]:
    """``{"rows": [...]}`` or a bare list of ``{id, messages, response}`` / ``{id, messages}`` rows."""
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not rows:
        raise HTTPFail(400, "body: expected {\"rows\": [{\"id\", \"messages\", \"response\"}, ...]} (a non-empty list)")
    ids, convs, seen = [], [], {}
    for i, row in enumerate(rows):
        where = f"rows[{i}]"
        if not isinstance(row, dict):
            raise HTTPFail(400, f"{where}: expected an object with 'id', 'messages' and 'response'")
        rid = row.get("id", f"row{i}")
        if not isinstance(rid, str) or not rid.strip():
            raise HTTPFail(400, f"{where}.id: must be a non-empty string (got {rid!r:.60})")
        if rid in seen:
            raise HTTPFail(400, f"{where}.id: {rid!r:.60} is already the id of rows[{seen[rid]}]")
        seen[rid] = i
        msgs = row.get("messages")
        if "response" in row:
            if not isinstance(row["response"], str):
                raise HTTPFail(400, f"{where}.response: must be a string (got {type(row['response']).__name__})")
            try:
                check_messages(msgs, f"{where}.messages")
            except ValueError as e:
                raise HTTPFail(400, str(e)) from None
            if msgs[-1]["role"] != "user":
                raise HTTPFail(400, f"{where}.messages: with 'response' the messages are the context and must end "
                                    f"with the user turn answered (the last one is {msgs[-1]['role']!r})")
            conv = list(msgs) + [{"role": "assistant", "content": row["response"]}]
        else:
            try:
                check_messages(msgs, f"{where}.messages")
            except ValueError as e:
                raise HTTPFail(400, str(e)) from None
            if msgs[-1]["role"] != "assistant":
                raise HTTPFail(400, f"{where}: give 'response', or end 'messages' with the assistant response")
            conv = list(msgs)
        ids.append(rid)
        convs.append([{"role": m["role"], "content": m["content"]} for m in conv])
    return ids, convs


def _rows_openrlhf(data, family: str, pad: str | None) -> tuple[list[str], list[list[dict]]]:
    if not isinstance(data, dict):
        raise HTTPFail(400, "body: expected an object {\"query\": [...], \"prompts\": [...], \"labels\": [...]}")
    queries = data.get("query")
    if not isinstance(queries, list) or not queries:
        raise HTTPFail(400, "query: expected a non-empty list of strings (the policy's templated prompt + response)")
    prompts = data.get("prompts")
    if prompts is not None and (not isinstance(prompts, list) or len(prompts) != len(queries)):
        raise HTTPFail(400, f"prompts: expected a list of {len(queries)} strings (one per query)")
    labels = data.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(queries)):
        raise HTTPFail(400, f"labels: expected a list of {len(queries)} entries (one per query)")
    convs = []
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise HTTPFail(400, f"query[{i}]: must be a string (got {type(q).__name__})")
        p = prompts[i] if prompts is not None else None
        if p is not None and not isinstance(p, str):
            raise HTTPFail(400, f"prompts[{i}]: must be a string or null (got {type(p).__name__})")
        try:
            conv = parse(q, family, prompt=p, pad_token=pad)
            check_messages(conv, "messages")
        except Unparseable as e:
            raise HTTPFail(400, f"query[{i}]: cannot read it as a {family if family != 'auto' else 'chat'}-templated "
                                f"conversation: {e}") from None
        except ValueError as e:
            raise HTTPFail(400, f"query[{i}]: the parsed {e}") from None
        convs.append(conv)
    return [f"query[{i}]" for i in range(len(queries))], convs


def create_app(service: Service):
    """The FastAPI app. Its lifespan starts the worker and, at shutdown, scores what was accepted."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    cfg = service.config

    @asynccontextmanager
    async def lifespan(app):
        service.start()
        yield
        service.draining = True
        await asyncio.get_running_loop().run_in_executor(None, service.close)
        _log("stopped", **{k: v for k, v in service.health().items() if k in ("stats", "cache")})

    app = FastAPI(title="flr serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def _auth(request: Request) -> None:
        if not cfg.token:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), cfg.token.encode()):
            raise HTTPFail(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    async def _body(request: Request):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cfg.max_body_bytes:
            raise HTTPFail(413, f"body of {declared} bytes is over the limit of {cfg.max_body_bytes} (--max-body-mb)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cfg.max_body_bytes:
                raise HTTPFail(413, f"body is over the limit of {cfg.max_body_bytes} bytes (--max-body-mb)")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except UnicodeDecodeError:
            raise HTTPFail(400, "body: not UTF-8 text") from None
        except json.JSONDecodeError as e:
            raise HTTPFail(400, f"body: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None

    async def _scored(rid: int, convs) -> list[dict]:
        if service.draining:
            raise HTTPFail(503, "the service is shutting down", {"Retry-After": "5", "Connection": "close"})
        try:
            fut = service.submit(convs, rid)
        except QueueFull as e:
            raise HTTPFail(503, e.detail, {"Retry-After": str(e.retry_after)}) from None
        except ValueError as e:
            raise HTTPFail(413, str(e)) from None
        try:  # shielded: a timeout or a disconnect leaves the rows to be scored into the cache
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), cfg.request_timeout)
        except asyncio.TimeoutError:
            raise HTTPFail(504, f"not scored within {cfg.request_timeout:g} s (--request-timeout); the rows are "
                                "still being scored into the cache: retry the same request") from None

    async def _handle(request: Request, endpoint: str, work):
        rid, t0, status, n, extra = service.next_id(), time.perf_counter(), 200, None, {}
        try:
            _auth(request)
            payload, n = await work(rid)
            return JSONResponse(payload)
        except HTTPFail as e:
            status, extra = e.status, {"error": e.detail}
            return JSONResponse({"error": e.detail}, status_code=e.status, headers=e.headers)
        except Exception as e:  # noqa: BLE001 - answered as a 500 with the reason, logged, never a traceback page
            status, extra = 500, {"error": f"{type(e).__name__}: {e}"}
            return JSONResponse({"error": f"internal error: {type(e).__name__}: {e}"}, status_code=500)
        finally:
            service.stats["requests"] += 1
            _log("request", id=rid, endpoint=endpoint, status=status, rows=n, client=getattr(request.client, "host", None),
                 ms=round(1000 * (time.perf_counter() - t0), 1), queued_rows=service.queued_rows, **extra)

    @app.post("/get_reward")
    async def get_reward(request: Request):
        async def work(rid):
            data = await _body(request)
            names, convs = _rows_openrlhf(data, cfg.policy_template, cfg.pad_token)
            rows = await _scored(rid, convs)
            rewards, logs = [], {k: [] for k in ("flr/completion_tokens", "flr/truncated_tokens", "flr/over_budget",
                                                  "flr/error", "flr/as_is")}
            cats = list(service.scorer.bank.categories) if service.scorer.bank is not None else []
            for c in cats:
                logs[f"flr/{c}"] = []
            for name, conv, q, r in zip(names, convs, data["query"], rows):
                if r["error"] is not None and cfg.error_reward is None:
                    raise HTTPFail(422, f"{name}: {r['error']} (start the service with --error-reward to give such "
                                        "rows a fixed reward instead)")
                failed = r["error"] is not None
                rewards.append(cfg.error_reward if failed else r["reward"])
                logs["flr/completion_tokens"].append(0 if failed else r["completion_tokens"])
                logs["flr/truncated_tokens"].append(0 if failed else r["truncated_tokens"])
                logs["flr/over_budget"].append(0 if failed else int(r["over_budget"]))
                logs["flr/error"].append(int(failed))
                logs["flr/as_is"].append(int(service.as_is(conv, q)))
                for c in cats:
                    logs[f"flr/{c}"].append(0.0 if failed else r["categories"][c])
            return {"rewards": rewards, "scores": rewards, "extra_logs": logs}, len(convs)

        return await _handle(request, "get_reward", work)

    @app.post("/score")
    async def score(request: Request):
        async def work(rid):
            ids, convs = _rows_native(await _body(request))
            rows = await _scored(rid, convs)
            bank = service.scorer.bank
            return {"rows": [{"id": i, **r} for i, r in zip(ids, rows)],
                    "categories": list(bank.categories) if bank is not None else [],
                    "provenance": service.scorer.provenance}, len(convs)

        return await _handle(request, "score", work)

    @app.get("/health")
    async def health(request: Request):
        async def work(rid):
            return service.health(), None

        return await _handle(request, "health", work)

    return app


# ----------------------------------------------------------------------------------------------------------
# running it
# ----------------------------------------------------------------------------------------------------------

def run(service: Service, host: str = "127.0.0.1", port: int = 5000, ready=None) -> int:
    """Serve until SIGTERM / SIGINT, then drain. ``port`` 0 picks a free port; the ``ready`` log line names it."""
    import socket

    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # refuse new work at once; uvicorn then closes the socket and waits
            if not service.draining:
                _log("draining", signal=int(sig), queued_rows=service.queued_rows, in_engine_rows=service.busy_rows)
            service.draining = True
            super().handle_exit(sig, frame)

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(service), log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=int(service.config.request_timeout) + 30)
    server = _Server(config)
    h = service.health()
    _log("ready", url=f"http://{host}:{port}", endpoints=["/get_reward", "/score", "/health"], pid=os.getpid(),
         **{k: h[k] for k in ("model", "scorer", "bank", "bank_hash", "template_hash", "m_template", "policy_template")},
         cache=h["cache"]["path"], cache_rows=h["cache"]["rows"])
    if ready is not None:
        ready(port)
    server.run(sockets=[sock])
    return 0


def _setup_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `flr serve` (flrlib/cli.py adds the subcommand)."""
    p.add_argument("--model", default="bundled:smollm2-135m-instruct", help="the scoring model M")
    p.add_argument("--scorer", default="flr", choices=["flr", "direct", "length"])
    p.add_argument("--bank", default=None, help="bank JSON/YAML (default: the paper's bank in the data folder)")
    p.add_argument("--categories", default="", help="comma-separated subset of the bank's categories")
    p.add_argument("--layout", default="base", choices=["base", "feedback"])
    p.add_argument("--norm", default="mean", choices=["mean", "sum"])
    p.add_argument("--adapter", default=None, help="adapter of M (e.g. the FT-FLR feedback adapter)")
    p.add_argument("--max-tokens", type=int, default=2048, help="context budget; longer contexts are cut from the left")
    p.add_argument("--batch-size", type=int, default=4, help="conversations per engine forward")
    p.add_argument("--chunk-size", type=int, default=128, help="follow-ups packed per forward")
    p.add_argument("--token-budget", type=int, default=16384, help="padded tokens per engine forward")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"])
    p.add_argument("--device", default="auto")
    p.add_argument("--cache", default=None, help="score cache JSONL (default: the one `flr score` uses); 'none': "
                   "in memory only")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=5000, help="port (0: any free port, named in the 'ready' log line)")
    p.add_argument("--token", default=None, help="require this bearer token (default: $FLR_SERVE_TOKEN if set)")
    p.add_argument("--policy-template", default="auto", help="the policy's chat template for /get_reward queries: "
                   "chatml, llama3, mistral, auto (detected per query) or a local tokenizer folder to read it from")
    p.add_argument("--error-reward", type=float, default=None, help="/get_reward: the reward of a query that cannot "
                   "be scored (empty or too long); default: answer 422 naming it")
    p.add_argument("--max-wait-ms", type=float, default=10.0, help="wait for more requests to batch with (ms)")
    p.add_argument("--max-batch-rows", type=int, default=512, help="rows merged into one scorer call")
    p.add_argument("--max-queue-rows", type=int, default=8192, help="rows queued before new requests get 503")
    p.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body (MiB)")
    p.add_argument("--request-timeout", type=float, default=170.0, help="seconds before a request gets 504")
    p.add_argument("--devices", default=None, help="comma-separated GPU ids: one process per device on ports "
                   "PORT, PORT+1, ... (prints the URL list for OpenRLHF's --reward.remote_url)")


def _policy_template(value: str) -> tuple[str, str | None]:
    """``(family, pad token)`` from a family name or a local tokenizer folder."""
    if value in FAMILIES + ("auto",):
        return value, None
    from .models import load_tokenizer

    tok = load_tokenizer(value)
    fam = detect(getattr(tok, "chat_template", None) or "")
    if fam is None:
        raise ValueError(f"--policy-template {value}: its chat template is none of {FAMILIES}")
    return fam, tok.pad_token


def cli(a) -> int:
    """`flr serve`: check the options, load M and the bank, build the Scorer, serve."""
    from .followups import load_bank
    from .scoring import NO_BANK, ScoreConfig, Scorer

    _setup_logging()
    if a.devices:
        return launch_devices(a)
    family, pad = _policy_template(a.policy_template)
    cats = [c.strip() for c in a.categories.split(",") if c.strip()] if a.categories else []
    cfg = ScoreConfig(scorer=a.scorer, layout=a.layout, norm=a.norm, max_tokens=a.max_tokens, batch_size=a.batch_size,
                      chunk_size=a.chunk_size, token_budget=a.token_budget, categories=cats)
    scfg = ServeConfig(max_wait_ms=a.max_wait_ms, max_batch_rows=a.max_batch_rows, max_queue_rows=a.max_queue_rows,
                       max_body_bytes=int(a.max_body_mb * (1 << 20)), request_timeout=a.request_timeout,
                       token=a.token or os.environ.get("FLR_SERVE_TOKEN") or None, policy_template=family,
                       pad_token=pad, error_reward=a.error_reward)
    bank = None
    if a.scorer not in NO_BANK:
        bank = load_bank(a.bank)
        bank.select(cats)
    from .models import load_model

    loaded = load_model(a.model, dtype=a.dtype, device=a.device, adapter=a.adapter)
    cache = None if (a.cache or "").lower() == "none" else (a.cache or "auto")
    scorer = Scorer(loaded, bank, cfg, cache=cache, data_parallel=False)
    return run(Service(scorer, scfg), a.host, a.port)


def launch_devices(a) -> int:
    """One `flr serve` per device (CUDA_VISIBLE_DEVICES), ports PORT.., all stopped together on SIGTERM/SIGINT."""
    import signal
    import subprocess

    devices = [d.strip() for d in a.devices.split(",") if d.strip()]
    if not devices or a.port == 0:
        raise ValueError("--devices needs device ids (e.g. 0,1,2,3) and a fixed --port (the first of the ports)")
    probe = argparse.ArgumentParser(add_help=False)
    add_arguments(probe)
    argv = []  # this command's options, less --devices, --port, --device and --token (passed in the environment)
    for act in probe._actions:
        value = getattr(a, act.dest, None)
        if act.dest in ("devices", "port", "device", "token", "help") or value is None or value == act.default:
            continue
        argv += [act.option_strings[0], str(value)]
    procs = []
    for k, d in enumerate(devices):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": d, **({"FLR_SERVE_TOKEN": a.token} if a.token else {})}
        cmd = [sys.executable, "-m", "flrlib.cli", "serve", *argv, "--port", str(a.port + k),
               "--device", "cuda" if a.device == "auto" else a.device]
        procs.append(subprocess.Popen(cmd, env=env))
    urls = ",".join(f"http://{a.host}:{a.port + k}/get_reward" for k in range(len(devices)))
    _log("devices", devices=devices, pids=[p.pid for p in procs], openrlhf_remote_url=urls)
    print(f"--reward.remote_url {urls}", flush=True)

    def forward(sig, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [p.wait() for p in procs]
    return max((abs(c) for c in codes), default=0)

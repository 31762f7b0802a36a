"""The one client for OpenAI-compatible endpoints (OpenAI, ``vllm serve``, SGLang, TGI, llama.cpp's server).

Generation (:mod:`flrlib.generate`, backend ``openai``), the API judge (:mod:`flrlib.judges`) and the LLM rewriter
(:mod:`flrlib.rewrite`) all send their requests through :class:`Client`; nothing else in the package speaks HTTP.

Configuration. An :class:`Endpoint` is a base URL, a model name and a key. Each role reads the same three
environment variables with its own prefix, and a parameter given in code wins over the environment:

=========  ==========================  ======================  =========================  ==========================
role       base URL                    model                   key                        defaults
=========  ==========================  ======================  =========================  ==========================
``GEN``    ``FLR_GEN_BASE_URL``        ``FLR_GEN_MODEL``       ``FLR_GEN_API_KEY``        none: set the URL and model
``JUDGE``  ``FLR_JUDGE_BASE_URL``      ``FLR_JUDGE_MODEL``     ``FLR_JUDGE_API_KEY``      OpenAI, ``gpt-4.1-2025-04-14``
``REWRITE`` ``FLR_REWRITE_BASE_URL``   ``FLR_REWRITE_MODEL``   ``FLR_REWRITE_API_KEY``    OpenAI, no model
=========  ==========================  ======================  =========================  ==========================

``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` (the SDK's own variables) are the fall-backs for every role. A local server
needs no key (a placeholder is sent); ``api.openai.com`` without a key is refused before any request.

Behaviour of :meth:`Client.chat`:

* **Bounded concurrency**: up to ``concurrency`` requests in flight (a thread pool; the SDK's client is thread-safe).
* **Timeouts and retries**: the ``openai`` SDK's own (``timeout`` seconds per request; ``max_retries`` retries with
  exponential back-off and jitter on connection errors, timeouts, 408/409/429 and 5xx, honouring ``Retry-After``).
  Anything else (400, 401, 404, a reply without choices, a server still down after the retries) stops the run with
  an :class:`EndpointError` that names the endpoint, the model and what happened, and how many answers are cached.
* **Cache and resume**: every answer is appended to a :class:`~flrlib.cache.JsonlCache` as soon as it arrives,
  keyed by (model, request). A re-run answers from the cache and sends only what is missing; an interrupted run
  loses nothing that was answered. The endpoint's URL is not part of the key: the same model name behind another URL
  (a restarted server on a new port, another replica) reuses the answers.

Only what the callers read is stored from a reply: per choice the message content, tool-call arguments,
``finish_reason`` and logprobs, plus ``usage``.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from .cache import JsonlCache, content_key

OPENAI_URL = "https://api.openai.com/v1"
# The annotator config's own model (gpt-4-1106-preview) has been shut down by OpenAI; this is the default judge
# (GPT-4 family, supports tools, temperature 0 and logprobs). Set FLR_JUDGE_MODEL to change it.
DEFAULT_JUDGE_MODEL = "gpt-4.1-2025-04-14"
ROLES = {"GEN": (None, None), "JUDGE": (OPENAI_URL, DEFAULT_JUDGE_MODEL), "REWRITE": (OPENAI_URL, None)}
NO_KEY = "not-needed"  # sent to servers that need no key (the SDK insists on one)


class EndpointError(RuntimeError):
    """A request that cannot succeed as configured, or an endpoint that stays unreachable; the message names the
    endpoint and model."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 600.0      # seconds per request
    max_retries: int = 6        # the SDK's retries (back-off 0.5 s doubling to 8 s, with jitter; Retry-After honoured)

    @classmethod
    def from_env(cls, role: str, base_url: str | None = None, model: str | None = None,
                 api_key: str | None = None) -> "Endpoint":
        """The endpoint of a role (``GEN``, ``JUDGE``, ``REWRITE``): parameters, else ``FLR_<ROLE>_*``, else
        ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``, else the role's defaults (see the module doc)."""
        role = role.upper()
        if role not in ROLES:
            raise ValueError(f"unknown endpoint role {role!r}; use one of {sorted(ROLES)}")
        url_default, model_default = ROLES[role]
        env = os.environ.get
        url = base_url or env(f"FLR_{role}_BASE_URL") or env("OPENAI_BASE_URL") or url_default
        name = model or env(f"FLR_{role}_MODEL") or model_default
        key = api_key or env(f"FLR_{role}_API_KEY") or env("OPENAI_API_KEY")
        if not url:
            raise EndpointError(f"no endpoint for {role}: set FLR_{role}_BASE_URL (e.g. http://127.0.0.1:8000/v1 for "
                                f"`vllm serve`) and FLR_{role}_MODEL, or pass base_url and model")
        if not name:
            raise EndpointError(f"no model for {role} at {url}: set FLR_{role}_MODEL or pass model")
        if "api.openai.com" in url and not key:
            raise EndpointError(f"{url} needs an API key: set FLR_{role}_API_KEY or OPENAI_API_KEY")
        return cls(url.rstrip("/"), name, key)

    @property
    def label(self) -> str:
        return f"{self.model} at {self.base_url}"


def _reply(completion) -> dict:
    """What the callers read from a chat completion (plain JSON)."""
    choices = []
    for c in completion.choices or []:
        msg = c.message
        calls = [t.function.arguments for t in (msg.tool_calls or []) if getattr(t, "function", None)]
        lp = c.logprobs.model_dump() if c.logprobs is not None else None
        choices.append({"content": msg.content, "tool_arguments": calls, "finish_reason": c.finish_reason,
                        "logprobs": lp})
    usage = completion.usage.model_dump() if completion.usage is not None else {}
    return {"choices": choices, "usage": {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens")}}


class Client:
    """Chat completions against one :class:`Endpoint` (see the module doc).

    ``cache``: a JSONL path (resumable), or ``None`` (in memory). ``timeout`` / ``max_retries`` default to the
    endpoint's. ``sent`` counts the requests this object sent,
    ``max_in_flight`` the most it had in flight at once.
    """

    def __init__(self, endpoint: Endpoint, cache=None, concurrency: int = 8, timeout: float | None = None,
                 max_retries: int | None = None):
        import openai

        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.endpoint, self.concurrency = endpoint, concurrency
        self.cache = JsonlCache(cache)
        self._sdk = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key or NO_KEY,
                                  timeout=endpoint.timeout if timeout is None else timeout,
                                  max_retries=endpoint.max_retries if max_retries is None else max_retries)
        self._lock = threading.Lock()
        self.sent = self._in_flight = self.max_in_flight = 0

    def key(self, request: dict) -> str:
        return content_key("chat", self.endpoint.model, request)

    def _send(self, request: dict) -> dict:
        import openai

        with self._lock:
            self.sent += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            reply = _reply(self._sdk.chat.completions.create(model=self.endpoint.model, **request))
        except openai.APIStatusError as e:
            raise EndpointError(f"{self.endpoint.label}: HTTP {e.status_code}: {_message(e)} (request: "
                                f"{_describe(request)})") from None
        except openai.APIConnectionError as e:  # includes timeouts, after the SDK's retries
            raise EndpointError(f"{self.endpoint.label}: unreachable after {self._sdk.max_retries} retries "
                                f"({type(e).__name__}: {e})") from None
        finally:
            with self._lock:
                self._in_flight -= 1
        if not reply["choices"]:
            raise EndpointError(f"{self.endpoint.label}: a reply without choices")
        with self._lock:
            self.cache.put(self.key(request), reply)
        return reply

    def chat(self, requests: list[dict], progress: bool = True, desc: str | None = None) -> list[dict]:
        """One reply per request (keyword arguments of ``chat.completions.create`` without ``model``), in order.

        At most ``2 * concurrency`` requests are queued at a time (a run of 800K requests does not hold 800K
        futures). On the first failure no new request is sent, the ones in flight finish (and are cached), and an
        :class:`EndpointError` says what failed and how many answers the cache holds.
        """
        from tqdm.auto import tqdm

        keys = [self.key(r) for r in requests]
        todo = list({k: r for k, r in zip(keys, requests) if k not in self.cache}.values())
        if todo:
            failed, pending, queue = None, set(), iter(todo)
            bar = tqdm(total=len(todo), desc=desc or self.endpoint.model, unit="request", disable=not progress)
            pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo)))
            try:
                while True:
                    while failed is None and len(pending) < 2 * self.concurrency:
                        request = next(queue, None)
                        if request is None:
                            break
                        pending.add(pool.submit(self._send, request))
                    if not pending:
                        break
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    bar.update(len(done))
                    failed = failed or next((f.exception() for f in done if not f.cancelled() and f.exception()), None)
                    if failed is not None:  # queued, not started: never sent
                        pending = {f for f in pending if not f.cancel()}
            except BaseException:  # Ctrl-C: nothing new is sent; what was answered is cached
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            finally:
                bar.close()
            pool.shutdown(wait=True)
            if failed is not None:
                where = f" in {self.cache.path}" if self.cache.path else " (in memory only: no cache file)"
                raise EndpointError(f"{failed} ({len(self.cache)} answers cached{where}; re-run to send only the "
                                    "missing requests)") from None
        return [self.cache.get(k) for k in keys]


def _describe(request: dict) -> str:
    msgs = request.get("messages") or [{}]
    last = str(msgs[-1].get("content", ""))
    return f"{len(msgs)} messages, the last one {last[:80]!r}{'...' if len(last) > 80 else ''}"


def _message(e) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg)[:300]
    return str(e)[:300]


def text(choice: dict) -> str:
    """A choice's answer: the message content, or the first tool call's arguments (forced function calls)."""
    if choice.get("tool_arguments"):
        return choice["tool_arguments"][0]
    return choice.get("content") or ""

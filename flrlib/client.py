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

* **Bounded concurrency**: up to ``concurrency`` requests in flight, on daemon worker threads (the SDK's client is
  thread-safe), so that Ctrl-C returns at once: nothing in flight keeps the interpreter alive.
* **Timeouts and retries**: the ``openai`` SDK's own: ``timeout`` seconds per attempt (default 120 s: a 2,048-token
  answer from a busy server at ~20 tokens/s), ``max_retries`` retries (default 3; back-off 0.5 s doubling to 8 s,
  with jitter: a server restart of a few seconds is ridden out, and a server that never answers is reported after
  at most 4 x 120 s, not 70 min) on connection errors, timeouts, 408/409/429 and 5xx. A ``Retry-After`` of up to
  120 s is waited for; the SDK does **not** retry when ``Retry-After`` exceeds 120 s (``openai._constants.
  MAX_RETRY_AFTER_DELAY``): such a 429 stops the run with a message giving the server's delay.
* **Refusals are recorded, not fatal**: a request the server refuses (HTTP 400, 413, 422: a prompt longer than the
  context, a content-policy refusal, a value it rejects) becomes a *failure* ``{"failed": {"status", "message"}}``
  in its reply slot (:func:`failed`), cached like an answer, and every other request still runs. As in
  alpaca_eval's own decoder, a refusal whose message says "Please reduce" (the context is too small for
  ``max_tokens``) is re-sent with ``max_tokens`` cut by 20 % (up to 10 times; the reply records the ``max_tokens``
  used). A reply without choices is a failure too. A re-run does **not** re-send recorded failures (they would be
  refused again; each would cost a request per run): pass ``retry_failed=True`` (``--retry-failed`` on the CLI)
  after changing the server or the request, and only they are re-sent.
* **What stops the run** (an :class:`EndpointError` naming the endpoint, the model and what to fix): 401/403 (the
  key), 404 (an unknown model or a wrong URL), any other 4xx, a 429 or 5xx still there after the retries, a server
  unreachable or silent after the retries, and anything unexpected (its type and message, under the endpoint's
  name). No new request is sent, the ones in flight finish (and are cached).
* **Cache and resume**: every answer (and failure) is appended to a :class:`~flrlib.cache.JsonlCache` as soon as it
  arrives, keyed by (model, the endpoint's ``revision`` when set, request). A re-run answers from the cache and
  sends only what is missing; an interrupted run loses nothing that was answered. The endpoint's URL is not part of
  the key: the same model name behind another URL (a restarted server on a new port, another replica) reuses the
  answers. ``revision`` says *which weights* a name stands for where the name alone does not (a LoRA adapter served
  under an alias such as ``dpo``: its folder hash), so that retrained weights are never answered from the cache.
* **Ctrl-C**: :class:`Interrupted` (a ``KeyboardInterrupt``) at once, saying how many answers are saved; answers
  arriving afterwards are dropped, not half-written.

Only what the callers read is stored from a reply: per choice the message content, tool-call arguments,
``finish_reason`` and logprobs, plus ``usage``.
"""
from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass

from .cache import JsonlCache, content_key

OPENAI_URL = "https://api.openai.com/v1"
# The annotator config's own model (gpt-4-1106-preview) has been shut down by OpenAI; this is the default judge
# (GPT-4 family, supports tools, temperature 0 and logprobs). Set FLR_JUDGE_MODEL to change it.
DEFAULT_JUDGE_MODEL = "gpt-4.1-2025-04-14"
ROLES = {"GEN": (None, None), "JUDGE": (OPENAI_URL, DEFAULT_JUDGE_MODEL), "REWRITE": (OPENAI_URL, None)}
NO_KEY = "not-needed"  # sent to servers that need no key (the SDK insists on one)
DEFAULT_TIMEOUT = 120.0   # seconds per attempt (see the module doc)
DEFAULT_RETRIES = 3
REFUSED = (400, 413, 422)  # per-request refusals: recorded as failures, the run goes on
MAX_SHRINKS = 10           # "Please reduce": re-sent with max_tokens * 0.8 at most this often (alpaca_eval's loop)
SDK_RETRY_AFTER_CAP = 120.0  # openai._constants.MAX_RETRY_AFTER_DELAY: a longer Retry-After is not retried


class EndpointError(RuntimeError):
    """A request that cannot succeed as configured, or an endpoint that stays unreachable; the message names the
    endpoint and model."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Client.chat`; ``str()`` is the one line to show ("interrupted: saved N answers ...")."""

    def __init__(self, message: str, saved: int):
        super().__init__(message)
        self.message, self.saved = message, saved

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT   # seconds per attempt
    max_retries: int = DEFAULT_RETRIES  # the SDK's retries (back-off 0.5 s doubling to 8 s, with jitter)
    revision: str | None = None  # which weights ``model`` names (e.g. an adapter's folder hash): part of the cache
    #                              key, never sent; None where the name alone identifies the weights

    def __post_init__(self):
        if not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise ValueError(f"endpoint timeout must be a positive number of seconds, got {self.timeout!r}")
        if not (isinstance(self.max_retries, int) and self.max_retries >= 0):
            raise ValueError(f"endpoint max_retries must be an integer >= 0, got {self.max_retries!r}")

    @classmethod
    def from_env(cls, role: str, base_url: str | None = None, model: str | None = None,
                 api_key: str | None = None, timeout: float | None = None, max_retries: int | None = None,
                 revision: str | None = None) -> "Endpoint":
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
        return cls(url.rstrip("/"), name, key, DEFAULT_TIMEOUT if timeout is None else timeout,
                   DEFAULT_RETRIES if max_retries is None else max_retries, revision)

    @property
    def label(self) -> str:
        return f"{self.model} at {self.base_url}"


def served_models(endpoint: Endpoint, timeout: float = 3.0) -> list[str] | None:
    """The model names the server lists at ``/v1/models``; ``None`` where it has no such list or does not answer
    (then nothing can be said). One short request, no retries."""
    import openai

    try:
        sdk = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key or NO_KEY, timeout=timeout,
                            max_retries=0)
        return [m.id for m in sdk.models.list()]
    except Exception:  # noqa: BLE001 - any failure means "unknown", never an error
        return None


def check_served(endpoint: Endpoint) -> str | None:
    """A warning when the server lists its models and ``endpoint.model`` is not among them (llama.cpp's server
    answers any name with its one model; vLLM refuses an unknown one with 404 only at the first request)."""
    names = served_models(endpoint)
    if names and endpoint.model not in names:
        return (f"warning: {endpoint.base_url}/models lists {names[:10]}, not {endpoint.model!r}: a server that "
                "accepts any name (llama.cpp) answers with its own model; check --model")
    return None


def serve_adapter(endpoint: Endpoint, name: str, path, revision: str) -> tuple[str, str | None]:
    """``(model name to request, warning or None)`` for the LoRA adapter in folder ``path`` (hash ``revision``) on
    the server of ``endpoint``, which serves the base policy.

    Notebook 06 trains its adapters and then requests them by name, so a server started before the training cannot
    have them under ``--lora-modules``. vLLM loads adapters at runtime when started with
    ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (``POST /v1/load_lora_adapter {"lora_name", "lora_path"}``; the path is
    read by the server, so it must see the same filesystem). The adapter is loaded under ``<name>-<revision[:12]>``:
    a retrained adapter gets a new name, so the server can never answer with the old weights; one already loaded
    under that name (vLLM: 400 "has already been loaded") is the same weights and is used as it is.
    A server that cannot load at runtime (404/405: vLLM without the variable, llama.cpp, SGLang's other route) but
    lists ``name`` at ``/v1/models`` (``vllm serve --lora-modules dpo=...`` started after the training) is used under
    ``name``, with a warning: which weights it loaded cannot be checked from here. Otherwise an :class:`EndpointError`
    says how to start the server."""
    from pathlib import Path

    import httpx

    versioned = f"{name}-{revision[:12]}"
    names = served_models(endpoint)
    if names and versioned in names:
        return versioned, None
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    status, message = None, ""
    try:
        r = httpx.post(f"{endpoint.base_url}/load_lora_adapter", headers=headers, timeout=endpoint.timeout,
                       json={"lora_name": versioned, "lora_path": str(Path(path).resolve())})
        status, message = r.status_code, r.text[:300]
    except httpx.HTTPError as e:  # unreachable: said below, with the server's URL
        message = f"{type(e).__name__}: {e}"
    if status == 200 or (status == 400 and "already been loaded" in message):
        return versioned, None
    if status in (401, 403):
        raise EndpointError(f"{endpoint.base_url}/load_lora_adapter refused the key (HTTP {status}): set "
                            "FLR_GEN_API_KEY")
    if status not in (None, 404, 405, 501):  # the server tried and failed (a bad adapter, rank over --max-lora-rank)
        raise EndpointError(f"{endpoint.base_url} could not load adapter {name!r} from {path} (HTTP {status}): "
                            f"{message}")
    if names and name in names:
        return name, (f"warning: {endpoint.base_url} cannot load adapters at runtime, so {name!r} is the adapter it "
                      f"was started with (--lora-modules {name}=...); restart it if {name} was trained since. Its "
                      f"outputs are cached under the hash of {path}.")
    raise EndpointError(f"{endpoint.base_url} does not serve adapter {name!r} and cannot load it at runtime "
                        f"({'unreachable: ' + message if status is None else f'HTTP {status}'}): start vLLM with "
                        f"VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora --max-lora-rank R (notebook 06 "
                        f"then loads each adapter it trains), or restart it with --lora-modules {name}={path}")


def failed(reply: dict | None) -> dict | None:
    """The recorded failure of a reply (``{"status", "message"}``), or ``None`` for an answer."""
    return reply.get("failed") if isinstance(reply, dict) else None


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
    endpoint's. ``retry_failed``: re-send requests whose cached reply is a recorded failure. ``sent`` counts the
    requests this object sent, ``max_in_flight`` the most it had in flight at once, ``refused`` the failures it
    recorded.
    """

    def __init__(self, endpoint: Endpoint, cache=None, concurrency: int = 8, timeout: float | None = None,
                 max_retries: int | None = None, retry_failed: bool = False):
        import openai

        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.endpoint, self.concurrency, self.retry_failed = endpoint, concurrency, retry_failed
        self.cache = JsonlCache(cache)
        self.timeout = endpoint.timeout if timeout is None else timeout
        self._sdk = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key or NO_KEY,
                                  timeout=self.timeout,
                                  max_retries=endpoint.max_retries if max_retries is None else max_retries)
        self._lock = threading.Lock()
        self._closed = False  # after Ctrl-C: late answers are dropped, not written
        self.sent = self._in_flight = self.max_in_flight = self.refused = 0

    def key(self, request: dict) -> str:
        if self.endpoint.revision is None:
            return content_key("chat", self.endpoint.model, request)
        return content_key("chat", self.endpoint.model, self.endpoint.revision, request)

    def _create(self, request: dict) -> dict:
        """One request (with the SDK's retries, and alpaca_eval's shrinking of ``max_tokens`` on "Please reduce");
        a reply, a recorded failure, or an :class:`EndpointError` that stops the run."""
        import openai

        label, sent = self.endpoint.label, dict(request)
        for shrink in range(MAX_SHRINKS + 1):
            with self._lock:
                self.sent += 1
            try:
                completion = self._sdk.chat.completions.create(model=self.endpoint.model, **sent)
            except openai.APIStatusError as e:
                status, msg = e.status_code, _message(e)
                if status in REFUSED:
                    smaller = _shrunk(msg, sent.get("max_tokens"))
                    if smaller and shrink < MAX_SHRINKS:
                        sent["max_tokens"] = smaller
                        continue
                    return {"failed": {"status": status, "message": msg}}
                raise EndpointError(f"{label}: HTTP {status}: {msg}{_hint(status, e, self._sdk.max_retries)} "
                                    f"(request: {_describe(request)})") from None
            except openai.APITimeoutError:
                raise EndpointError(f"{label}: no answer within {self.timeout:g} s, {self._sdk.max_retries} retries "
                                    "(set --timeout / --max-retries, or Endpoint(timeout=, max_retries=))") from None
            except openai.APIConnectionError as e:
                raise EndpointError(f"{label}: unreachable after {self._sdk.max_retries} retries "
                                    f"({type(e).__name__}: {e})") from None
            except Exception as e:  # noqa: BLE001 - anything else keeps the endpoint's name
                raise EndpointError(f"{label}: {type(e).__name__}: {e} (request: {_describe(request)})") from e
            reply = _reply(completion)
            if not reply["choices"]:
                return {"failed": {"status": 200, "message": "a reply without choices"}}
            if sent.get("max_tokens") != request.get("max_tokens"):
                reply["max_tokens"] = sent["max_tokens"]
            return reply
        raise AssertionError("unreachable")

    def _send(self, request: dict) -> dict:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            reply = self._create(request)
        finally:
            with self._lock:
                self._in_flight -= 1
        with self._lock:
            if not self._closed:
                self.refused += failed(reply) is not None
                self.cache.put(self.key(request), reply)
        return reply

    def _missing(self, key: str) -> bool:
        return key not in self.cache or (self.retry_failed and failed(self.cache.get(key)) is not None)

    def chat(self, requests: list[dict], progress: bool = True, desc: str | None = None) -> list[dict]:
        """One reply per request (keyword arguments of ``chat.completions.create`` without ``model``), in order; a
        refused request's reply is its recorded failure (:func:`failed`).

        At most ``2 * concurrency`` requests are queued at a time (a run of 800K requests does not hold 800K
        jobs). On an error that stops the run no new request is sent, the ones in flight finish (and are cached),
        and an :class:`EndpointError` says what failed and how many answers the cache holds. Ctrl-C raises
        :class:`Interrupted` at once.
        """
        from tqdm.auto import tqdm

        keys = [self.key(r) for r in requests]
        todo = list({k: r for k, r in zip(keys, requests) if self._missing(k)}.values())
        with self._lock:  # a client used again after Ctrl-C (a notebook cell re-run) caches again
            self._closed = False
        if todo:
            jobs, results, abort = queue.Queue(), queue.Queue(), threading.Event()

            def work():
                while True:
                    request = jobs.get()
                    if request is None:
                        return
                    if abort.is_set():  # a request failed for good: nothing new is sent
                        results.put((None, None))
                        continue
                    try:
                        results.put((self._send(request), None))
                    except BaseException as e:  # noqa: BLE001 - handed to the main thread
                        abort.set()
                        results.put((None, e))

            workers = [threading.Thread(target=work, daemon=True, name=f"flr-client-{i}")
                       for i in range(min(self.concurrency, len(todo)))]
            for w in workers:
                w.start()
            error, pending, queued = None, 0, iter(todo)
            bar = tqdm(total=len(todo), desc=desc or self.endpoint.model, unit="request", disable=not progress)
            try:
                while True:
                    while error is None and pending < 2 * self.concurrency:
                        request = next(queued, None)
                        if request is None:
                            break
                        jobs.put(request)
                        pending += 1
                    if not pending:
                        break
                    while True:  # a short timeout keeps Ctrl-C prompt everywhere
                        try:
                            _, e = results.get(timeout=0.2)
                            break
                        except queue.Empty:
                            continue
                    pending -= 1
                    bar.update(1)
                    error = error or e
                    while error is not None:  # queued, not started: never sent
                        try:
                            jobs.get_nowait()
                            pending -= 1
                        except queue.Empty:
                            break
            except KeyboardInterrupt:
                with self._lock:
                    self._closed = True
                    saved = self.cache.written
                where = f" in {self.cache.path}" if self.cache.path else " in memory only (no cache file)"
                raise Interrupted(f"interrupted: saved {saved} answers{where}; re-run the same command to send only "
                                  "the missing requests", saved) from None
            finally:
                bar.close()
                for _ in workers:
                    jobs.put(None)
            if error is not None:
                if not isinstance(error, EndpointError):
                    raise error
                where = f" in {self.cache.path}" if self.cache.path else " (in memory only: no cache file)"
                raise EndpointError(f"{error} ({len(self.cache)} answers cached{where}; re-run to send only the "
                                    "missing requests)") from None
        return [self.cache.get(k) for k in keys]


def _shrunk(message: str, max_tokens) -> int | None:
    """alpaca_eval's answer to "Please reduce": ``max_tokens`` * 0.8 (at least 1), or ``None`` where shrinking cannot
    help - no ``max_tokens`` to shrink, or the server's OpenAI-style message says the messages alone fill the context
    ("maximum context length is C tokens ... (M in the messages, ...)", as llama-cpp-python's server words it)."""
    if "Please reduce" not in message or not isinstance(max_tokens, int) or int(max_tokens * 0.8) < 1:
        return None
    import re

    ctx = re.search(r"maximum context length is (\d+)", message)
    used = re.search(r"\((\d+) in the messages", message)
    if ctx and used and int(used.group(1)) >= int(ctx.group(1)):
        return None
    return int(max_tokens * 0.8)


def _hint(status: int, e, retries: int) -> str:
    """What to do about a status that stops the run."""
    if status in (401, 403):
        return " - check the API key (FLR_<ROLE>_API_KEY / OPENAI_API_KEY) and its access to this model"
    if status == 404:
        return " - is the model name served at this URL (its /v1/models) and does the URL end in /v1?"
    if status == 429:
        after = _retry_after(e)
        if after is not None and after > SDK_RETRY_AFTER_CAP:
            return (f" - the server asks to wait {after:.0f} s (Retry-After), more than the openai SDK waits "
                    f"({SDK_RETRY_AFTER_CAP:.0f} s), so it was not retried; re-run after that")
        return f" - still rate-limited after {retries} retries; lower --concurrency or re-run later"
    if status >= 500:
        return f" - the server failed after {retries} retries"
    return ""


def _retry_after(e) -> float | None:
    headers = getattr(getattr(e, "response", None), "headers", None) or {}
    try:
        ms = headers.get("retry-after-ms")
        return float(ms) / 1000 if ms is not None else float(headers.get("retry-after"))
    except (TypeError, ValueError):
        return None


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

"""`flr serve` (flrlib/serve.py) against real clients on 127.0.0.1, with the tiny random model.

* chat-template parsing (flrlib/templates.py): ChatML from the tiny model's own (SmolLM2) template, Llama-3 and
  Mistral from their published templates rendered with jinja2 as transformers does;
* an in-process service (uvicorn in a thread, the session's tiny model): OpenRLHF's protocol and the native
  endpoint give exactly ``Scorer.score``'s numbers (flr, direct, length); bad JSON, wrong field types, an
  unparseable template, an oversize body, a full queue (503 + Retry-After), a timeout (504, the rows still land
  in the cache), the bearer token, a too-long row as a per-row error;
* the `flr serve` process (integration): OpenRLHF's own client function (``openrlhf`` installed ``--no-deps``) or
  the same bytes, verl's batch reward-manager call, TRL's async reward call; SIGTERM drains; the restarted
  service answers from its cache.
"""
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from flrlib.chat import content_tokens
from flrlib.scoring import ScoreConfig, Scorer
from flrlib.templates import Unparseable, detect, parse
from helpers import user

# Meta-Llama-3-8B-Instruct's chat_template (tokenizer_config.json)
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' "
          "+ message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if "
          "loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if "
          "add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
# Mistral-7B-Instruct-v0.1 / v0.2's chat_template (tokenizer_config.json)
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) "
           "%}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif "
           "message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only "
           "user and assistant roles are supported!') }}{% endif %}{% endfor %}")

CONVS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke about cats, a long one please."},
     {"role": "assistant", "content": "Why did the cat sit on the computer? To keep an eye on the mouse!"}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
    [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue, like the sky at noon."}],
]


def _jinja(template: str, messages: list[dict], **special) -> str:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise ValueError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            raise_exception=raise_exception, **special)


# ----------------------------------------------------------------------------------------------------------
# templates
# ----------------------------------------------------------------------------------------------------------

def test_chatml_query_parses_back_to_the_conversation(tiny):
    tok = tiny.tokenizer
    for conv in CONVS:
        prompt = tok.apply_chat_template(conv[:-1], tokenize=False, add_generation_prompt=True)
        query = prompt + conv[-1]["content"] + "<|im_end|><|im_end|><|im_end|>"  # EOS, then padding
        got = parse(query)
        assert got[0]["role"] == "system" and "SmolLM" in got[0]["content"]  # the template's injected default
        assert got[1:] == conv
        assert parse(query, "chatml", prompt=prompt) == got
    assert detect(tok.chat_template) == "chatml"


@pytest.mark.parametrize("family,template,special", [
    ("llama3", LLAMA3, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    ("mistral", MISTRAL, {"bos_token": "<s>", "eos_token": "</s>"}),
])
def test_llama3_and_mistral_queries_parse_back(family, template, special):
    for conv in CONVS:
        msgs = ([{"role": "system", "content": "Be terse."}] if family == "llama3" else []) + conv
        prompt = _jinja(template, msgs[:-1], **special)
        query = prompt + msgs[-1]["content"] + special["eos_token"]
        assert detect(query) == family
        assert parse(query) == msgs, query
        assert parse(query, family, prompt=prompt) == msgs
        cut = prompt + msgs[-1]["content"][:5]  # the policy hit its length limit: no end-of-turn token
        assert parse(cut)[-1] == {"role": "assistant", "content": msgs[-1]["content"][:5].strip()}
    v7 = "<s>[SYSTEM_PROMPT]Be terse.[/SYSTEM_PROMPT][INST]2+2?[/INST]4</s>"  # Mistral's v7 ("tekken") layout
    assert parse(v7) == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"},
                         {"role": "assistant", "content": "4"}]


@pytest.mark.parametrize("query,family,reason", [
    ("just some text", "auto", "no chat template recognised"),
    ("<|im_start|>user\nhi<|im_end|>\n", "auto", "no assistant header"),
    ("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello", "llama3", "no assistant header"),
    ("<|im_start|>assistant\nhello<|im_end|>\n<|im_start|>assistant\nhi", "auto", "not preceded by a user turn"),
    ("<|im_start|>user\nhi\n<|im_start|>assistant\nhi", "auto", "has no <|im_end|>"),
    ("<|im_start|>tool\nx<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na", "auto",
     "role 'tool'"),
    ("[INST] hi [INST] again [/INST] ok</s>", "auto", "inside a user turn"),
    ("", "auto", "empty query"),
])
def test_unparseable_queries_say_why(query, family, reason):
    with pytest.raises(Unparseable, match=reason.replace("|", r"\|").replace("[", r"\[")):
        parse(query, family)


# ----------------------------------------------------------------------------------------------------------
# an in-process service (uvicorn in a thread)
# ----------------------------------------------------------------------------------------------------------

class _Served:
    """A Service behind uvicorn on 127.0.0.1 and a free port, in a thread of this process."""

    def __init__(self, service):
        import uvicorn

        from flrlib.serve import create_app

        self.service = service
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", access_log=False,
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.01)
        assert self.server.started, "uvicorn did not start in 30 s"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(30)


def _scorer(tiny, bank, name: str) -> Scorer:
    return Scorer(tiny, bank, ScoreConfig(scorer=name), cache=None, data_parallel=False)


@pytest.fixture(scope="module")
def services(tiny, small_bank):
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e .[serve])")
    pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e .[serve])")
    from flrlib.serve import Service, ServeConfig

    out = {name: _Served(Service(_scorer(tiny, small_bank, name), ServeConfig(max_wait_ms=5)))
           for name in ("flr", "direct", "length")}
    yield out
    for s in out.values():
        s.stop()


def _openrlhf_inputs(tok, convs):
    """What OpenRLHF sends: the templated prompt, and ``query = hf_tokenizer.decode(prompt_ids + action_ids,
    skip_special_tokens=False)`` where the action ends with the policy's EOS (here SmolLM2's <|im_end|>)."""
    prompts = [tok.apply_chat_template(c[:-1], tokenize=False, add_generation_prompt=True) for c in convs]
    queries = []
    for p, c in zip(prompts, convs):
        ids = tok(p, add_special_tokens=False)["input_ids"] + tok(c[-1]["content"] + "<|im_end|>",
                                                                   add_special_tokens=False)["input_ids"]
        queries.append(tok.decode(ids, skip_special_tokens=False))
    return prompts, queries


def _post_like_openrlhf(url: str, payload: dict):
    """The bytes OpenRLHF's client sends: ``session.post(url, json=data)`` (aiohttp serialises with json.dumps
    and sets ``Content-Type: application/json``), 180 s timeout, ``response.raise_for_status()``."""
    import httpx

    return httpx.post(url, content=json.dumps(payload).encode(), headers={"Content-Type": "application/json"},
                      timeout=180)


@pytest.mark.parametrize("name", ["flr", "direct", "length"])
def test_openrlhf_protocol_equals_the_scorer(services, tiny, small_bank, name):
    prompts, queries = _openrlhf_inputs(tiny.tokenizer, CONVS)
    resp = _post_like_openrlhf(services[name].url + "/get_reward",
                               {"query": queries, "prompts": prompts, "labels": [None] * len(queries)})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    want = [r["reward"] for r in _scorer(tiny, small_bank, name).score(CONVS, progress=False)]
    assert body["rewards"] == want  # exactly: the same Scorer, the same rows in one batch
    assert body["scores"] == want
    logs = body["extra_logs"]
    assert logs["flr/completion_tokens"] == content_tokens(tiny.tokenizer, [c[-1]["content"] for c in CONVS])
    assert logs["flr/as_is"] == [1] * len(CONVS)  # M's template is the policy's: the query is read as it is
    assert logs["flr/error"] == [0] * len(CONVS)
    if name == "flr":
        assert set(logs) >= {"flr/relevance", "flr/correctness"}
    if name == "length":
        assert body["rewards"] == [float(n) for n in logs["flr/completion_tokens"]]
    # without prompts the query alone is parsed (the response follows the last assistant header)
    again = _post_like_openrlhf(services[name].url + "/get_reward", {"query": queries}).json()
    assert again["rewards"] == want


def test_openrlhf_own_client_function(services, tiny, small_bank):
    """OpenRLHF 0.11's own client (``SingleTurnAgentExecutor._fetch_rewards_via_http``), where it imports without
    its GPU stack (``pip install --no-deps openrlhf``, as `make test` does)."""
    agent = pytest.importorskip("openrlhf.utils.agent", reason="openrlhf (--no-deps) + aiohttp not installed")
    prompts, queries = _openrlhf_inputs(tiny.tokenizer, CONVS)
    ex = agent.SingleTurnAgentExecutor(remote_rm_url=[services["flr"].url + "/get_reward"])
    infos = asyncio.run(ex._fetch_rewards_via_http(queries, prompts, ["label"] * len(queries)))
    want = [r["reward"] for r in _scorer(tiny, small_bank, "flr").score(CONVS, progress=False)]
    assert [infos[0]["rewards"], infos[0]["scores"]] == [want, want]
    assert infos[0]["extra_logs"]["flr/as_is"] == [1] * len(CONVS)


def test_native_endpoint_rows_and_per_row_errors(services, tiny, small_bank):
    rows = [{"id": f"r{i}", "messages": c[:-1], "response": c[-1]["content"]} for i, c in enumerate(CONVS)]
    rows.insert(2, {"id": "huge", "messages": user("Talk."), "response": "word " * 5000})
    rows.append({"id": "empty", "messages": CONVS[0][:-1], "response": "  "})
    rows.append({"id": "flr-score-schema", "messages": CONVS[3]})  # `flr score`'s {id, messages} row
    resp = _post_like_openrlhf(services["flr"].url + "/score", {"rows": rows})
    assert resp.status_code == 200, resp.text
    got = {r["id"]: r for r in resp.json()["rows"]}
    assert list(got) == [r["id"] for r in rows]
    want = _scorer(tiny, small_bank, "flr").score(CONVS + [CONVS[3]], progress=False)
    for i, w in enumerate(want[:4]):
        g = got[f"r{i}"]
        assert g["error"] is None and g["reward"] == w["reward"] and g["categories"] == w["categories"]
        assert g["completion_tokens"] == content_tokens(tiny.tokenizer, [CONVS[i][-1]["content"]])[0]
        assert (g["prefix_tokens"], g["truncated_tokens"], g["over_budget"]) == (
            w["prefix_tokens"], w["truncated_tokens"], w["over_budget"])
    assert got["flr-score-schema"]["reward"] == want[3]["reward"]
    assert got["huge"]["reward"] is None and "context length 4096" in got["huge"]["error"]
    assert got["empty"]["reward"] is None and got["empty"]["error"].startswith("empty response")
    assert resp.json()["provenance"]["bank_hash"] == small_bank.hash
    # OpenRLHF needs a number for every query: a row that cannot be scored is a 422 naming it
    fine = [{"role": "user", "content": "Say something."}, {"role": "assistant", "content": "Something."}]
    _, queries = _openrlhf_inputs(tiny.tokenizer, [fine, [fine[0], {"role": "assistant", "content": "x " * 5000}]])
    bad = _post_like_openrlhf(services["flr"].url + "/get_reward", {"query": queries})
    assert bad.status_code == 422 and bad.json()["error"].startswith("query[1]: too long for the model")


@pytest.mark.parametrize("endpoint,body,status,message", [
    ("/get_reward", b"{not json", 400, "body: not valid JSON (line 1, column 2"),
    ("/get_reward", b"[1, 2]", 400, "body: expected an object"),
    ("/get_reward", json.dumps({"query": "one string"}).encode(), 400, "query: expected a non-empty list"),
    ("/get_reward", json.dumps({"query": ["<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na", 3]}).encode(),
     400, "query[1]: must be a string (got int)"),
    ("/get_reward", json.dumps({"query": ["<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na"],
                                "prompts": ["a", "b"]}).encode(), 400, "prompts: expected a list of 1 strings"),
    ("/get_reward", json.dumps({"query": ["plain text, no template"]}).encode(), 400,
     "query[0]: cannot read it as a chat-templated conversation: no chat template recognised"),
    ("/score", json.dumps({"rows": [{"id": "a", "messages": [{"role": "user", "content": 7}], "response": "x"}]})
     .encode(), 400, "rows[0].messages[0]: 'content' must be a string"),
    ("/score", json.dumps({"rows": [{"id": "a", "messages": user("q"), "response": 1}]})
     .encode(), 400, "rows[0].response: must be a string (got int)"),
    ("/score", json.dumps({"rows": [{"id": "a", "messages": user("q"), "response": "x"},
                                    {"id": "a", "messages": user("q"), "response": "y"}]})
     .encode(), 400, "rows[1].id: 'a' is already the id of rows[0]"),
    ("/score", json.dumps({"rows": []}).encode(), 400, "body: expected {\"rows\""),
])
def test_bad_input_is_a_4xx_naming_row_and_field(services, endpoint, body, status, message):
    import httpx

    resp = httpx.post(services["flr"].url + endpoint, content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"].startswith(message), resp.json()["error"]


def test_health_names_model_bank_scorer_and_queue(services, small_bank):
    import httpx

    h = httpx.get(services["flr"].url + "/health").json()
    assert (h["status"], h["model"], h["scorer"], h["bank_hash"], h["m_template"]) == (
        "ok", "random:tiny-llama", "flr", small_bank.hash, "chatml")
    assert h["queue"]["rows"] == 0 and h["queue"]["max_rows"] == 8192


def test_queue_full_timeout_token_and_size_limits(tiny, small_bank):
    """A held worker: the queue fills (503 + Retry-After), waiting requests time out (504) and their rows are
    still scored into the cache (the retry is a cache hit); the token and the body limit."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e .[serve])")
    import httpx

    from flrlib.serve import Service, ServeConfig

    scorer = _scorer(tiny, small_bank, "flr")
    gate, real_score = threading.Event(), scorer.score

    def held_score(*a, **k):  # the real scorer, started only when the test opens the gate
        gate.wait(60)
        return real_score(*a, **k)

    scorer.score = held_score
    cfg = ServeConfig(max_wait_ms=0, max_queue_rows=2, max_body_bytes=4096, request_timeout=1.0, token="s3cret")
    served = _Served(Service(scorer, cfg))
    auth = {"Authorization": "Bearer s3cret"}
    row = lambda i: {"id": f"r{i}", "messages": CONVS[i][:-1], "response": CONVS[i][-1]["content"]}  # noqa: E731
    try:
        url = served.url
        assert httpx.get(url + "/health").status_code == 401
        assert httpx.get(url + "/health", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.get(url + "/health?token=s3cret").status_code == 200
        big = httpx.post(url + "/score", headers=auth, content=b'{"rows": [' + b" " * 5000 + b"]}")
        assert big.status_code == 413 and "over the limit of 4096" in big.json()["error"]
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(httpx.post, url + "/score", json={"rows": [row(0)]}, headers=auth, timeout=30)
            deadline = time.time() + 20
            while served.service.busy_rows != 1 and time.time() < deadline:  # the worker holds r0
                time.sleep(0.01)
            second = pool.submit(httpx.post, url + "/score", json={"rows": [row(1), row(2)]}, headers=auth, timeout=30)
            while served.service.queued_rows != 2 and time.time() < deadline:
                time.sleep(0.01)
            full = httpx.post(url + "/score", json={"rows": [row(3)]}, headers=auth)
            assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1
            assert full.json()["error"].startswith("queue full: 2 rows waiting")
            too_many = httpx.post(url + "/score", json={"rows": [row(0), row(1), row(2)]}, headers=auth)
            assert too_many.status_code == 413 and "at most 2" in too_many.json()["error"]
            for fut in (first, second):
                resp = fut.result()
                assert resp.status_code == 504 and "retry the same request" in resp.json()["error"]
            gate.set()
        deadline = time.time() + 30
        while len(scorer.cache) < 3 and time.time() < deadline:
            time.sleep(0.02)
        hits = scorer.cache.hits
        again = [httpx.post(url + "/score", json={"rows": rows}, headers=auth, timeout=30)
                 for rows in ([row(0)], [row(1), row(2)])]
        assert [a.status_code for a in again] == [200, 200] and scorer.cache.hits == hits + 3  # from the cache
        want = _scorer(tiny, small_bank, "flr").score(CONVS[:3], progress=False)
        got = [r["reward"] for a in again for r in a.json()["rows"]]
        assert got == pytest.approx([w["reward"] for w in want], abs=1e-5)  # other batches: float noise only
    finally:
        gate.set()
        served.stop()


def test_remote_adapters_shard_keep_order_and_name_failures(services, tiny, small_bank):
    """flrlib.remote against the in-process service: two URLs (shards) give the one-URL answer in input order,
    verl's per-row hook equals the batch hook, a row the service cannot score raises or gets error_reward, a 4xx
    is raised with the service's reason, an unreachable service is named after the retries."""
    from flrlib import remote

    url = services["flr"].url
    rows = [{"id": str(i), "messages": c} for i, c in enumerate(CONVS)]
    one = remote.score_rows(url, rows)
    assert remote.urls_of(f"{url}/score, {url}/get_reward") == [url, url]
    assert remote.score_rows(f"{url},{url}", rows) == one
    assert asyncio.run(remote.ascore_rows([url, url, url], rows)) == one
    assert {remote._shards(1, ["a", "b"])[0][2] for _ in range(2)} == {"a", "b"}  # one-row calls take turns
    extra = {"prompt": CONVS[1][:-1]}
    single = remote.compute_score_single("chat", CONVS[1][-1]["content"], None, extra, url=url)
    assert single["score"] == one[1]["reward"] and single["flr_error"] == 0
    huge = ["word " * 5000]
    with pytest.raises(remote.RemoteError, match="row 0: too long for the model"):
        remote.compute_score(["chat"], huge, [None], [extra], url=url)
    fixed = remote.compute_score(["chat"], huge, [None], [extra], url=url, error_reward=-9.0)[0]
    assert (fixed["score"], fixed["flr_error"], fixed["flr_relevance"]) == (-9.0, 1, 0.0)
    with pytest.raises(remote.RemoteError, match=r"HTTP 400: rows\[0\]\.messages\[0\]: 'role' must be"):
        remote.score_rows(url, [{"id": "x", "messages": [{"role": "robot", "content": "hi"}], "response": "a"}])
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there
    with pytest.raises(remote.RemoteError, match="no answer after 2 tries"):
        remote.score_rows(f"http://127.0.0.1:{port}", rows, retries=1)


def test_cli_options_checked_before_serving(tiny, capsys):
    """`flr serve` binds 127.0.0.1 by default; bad options and a busy port are one-line errors (exit 2)."""
    pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install -e .[serve])")
    import argparse

    from flrlib.cli import main
    from flrlib.serve import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert (p.parse_args([]).host, p.parse_args([]).port) == ("127.0.0.1", 5000)
    from flrlib.models import tiny_folder
    from flrlib.serve import _policy_template

    assert _policy_template(str(tiny_folder())) == ("chatml", "<|im_end|>")  # read from a tokenizer folder
    assert _policy_template("llama3") == ("llama3", None)
    base = ["serve", "--model", "random:tiny-llama", "--device", "cpu", "--scorer", "length"]
    assert main(base + ["--max-queue-rows", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: max_queue_rows must be a positive integer"
    assert main(base + ["--policy-template", "chatml", "--devices", "0,1", "--port", "0"]) == 2
    assert "--devices needs device ids" in capsys.readouterr().err
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        assert main(base + ["--port", str(busy.getsockname()[1])]) == 2
    finally:
        busy.close()
    assert "cannot listen there" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# the `flr serve` process
# ----------------------------------------------------------------------------------------------------------

def _start(args: list[str], log: Path, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    import torch

    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # same arithmetic as this process
    cmd = [sys.executable, "-m", "flrlib.cli", "serve", "--model", "random:tiny-llama", "--device", "cpu",
           "--dtype", "float32", "--port", "0", *args]
    fh = open(log, "ab")
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    fh.close()
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "ready":
                url = json.loads(line)["url"]
                if json.loads(line)["pid"] == proc.pid:
                    return proc, url
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"flr serve did not get ready in {timeout} s: {log.read_text()[-3000:]}", pytrace=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory, small_bank):
    """`flr serve` with the tiny model and the small bank; batches of >= 4 rows go at once, smaller ones wait
    2 s for company (so that the SIGTERM test can catch a request in the queue)."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e .[serve])")
    d = tmp_path_factory.mktemp("serve")
    (d / "bank.json").write_text(json.dumps({"categories": small_bank.categories}))
    args = ["--bank", str(d / "bank.json"), "--cache", str(d / "cache.jsonl"), "--max-batch-rows", "4",
            "--max-wait-ms", "2000"]
    proc, url = _start(args, d / "serve.log")
    yield {"proc": proc, "url": url, "args": args, "dir": d}
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


@pytest.mark.integration
def test_real_clients_against_the_service_process(served, tiny, small_bank):
    """OpenRLHF (its bytes), verl's batch reward manager call and TRL's async reward call give the in-process
    Scorer's rewards."""
    from flrlib import remote
    from flrlib.reward import FLRReward

    want = [r["reward"] for r in _scorer(tiny, small_bank, "flr").score(CONVS, progress=False)]
    prompts, queries = _openrlhf_inputs(tiny.tokenizer, CONVS)
    body = _post_like_openrlhf(served["url"] + "/get_reward", {"query": queries, "prompts": prompts,
                                                                "labels": [""] * 4}).json()
    assert body["rewards"] == want

    # verl: BatchRewardManager.verify calls
    #     scores = self.compute_score(data_sources=data_sources, solution_strs=responses_str,
    #                                 ground_truths=ground_truths, extra_infos=extras, **self.reward_kwargs)
    # with non_tensor_batch columns (numpy object arrays) and extras[i]["rollout_reward_scores"] set; the custom
    # function's reward_kwargs are merged in (verl.trainer.ppo.reward._call_with_kwargs).
    extras = np.array([{"prompt": np.array(c[:-1], dtype=object), "index": i, "rollout_reward_scores": {}}
                       for i, c in enumerate(CONVS)], dtype=object)
    scores = remote.compute_score(data_sources=np.array(["chat"] * 4, dtype=object),
                                  solution_strs=[c[-1]["content"] for c in CONVS], ground_truths=[None] * 4,
                                  extra_infos=extras, url=served["url"])
    assert [s["score"] for s in scores] == want
    assert {k for s in scores for k in s} == {"score", "flr_completion_tokens", "flr_truncated_tokens", "flr_error",
                                              "flr_relevance", "flr_correctness"}
    with pytest.raises(ValueError, match="extra_info has no 'prompt'"):
        remote.compute_score(["chat"], ["x"], [None], [{}], url=served["url"])

    # TRL: GRPOTrainer awaits an async reward function with these keyword arguments
    from trl.trainer.utils import is_async_callable

    reward = remote.RemoteFLRReward(served["url"], name="flr_remote")
    assert is_async_callable(reward)
    trl_prompts = [c[:-1] for c in CONVS] + [CONVS[0][:-1]]
    completions = [[c[-1]] for c in CONVS] + [[{"role": "assistant", "content": ""}]]
    logged = {}
    got = asyncio.run(reward(prompts=trl_prompts, completions=completions, completion_ids=[[1]] * 5,
                             trainer_state=None, log_extra=None, log_metric=logged.__setitem__))
    local = FLRReward(_scorer(tiny, small_bank, "flr"), name="flr_local")
    assert got == local(trl_prompts, completions) and got[4] == min(got[:4])  # the empty one: the batch's minimum
    assert logged["flr_remote/completion_tokens"] == pytest.approx(
        np.mean(content_tokens(tiny.tokenizer, [c[-1]["content"] for c in CONVS]) + [0]))


@pytest.mark.integration
def test_sigterm_drains_then_the_restarted_service_answers_from_its_cache(served, tiny, small_bank):
    """Runs last against the module's process: a request waiting in the queue when SIGTERM arrives is answered
    in full, new work is refused, the process exits; restarted on the same cache it computes nothing."""
    import httpx

    url, proc = served["url"], served["proc"]
    rows = [{"id": f"d{i}", "messages": CONVS[i][:-1], "response": CONVS[i][-1]["content"] + " Indeed."}
            for i in range(2)]  # 2 rows < --max-batch-rows 4: queued for up to 2 s
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.post, url + "/score", json={"rows": rows}, timeout=60)
        deadline = time.time() + 10
        while httpx.get(url + "/health").json()["queue"]["rows"] != 2 and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        try:
            late = httpx.post(url + "/score", json={"rows": rows[:1]}, timeout=10)
            assert late.status_code == 503
        except httpx.TransportError:
            pass  # the listening socket is already closed: refused as well
        first = pending.result()
    assert first.status_code == 200 and [r["error"] for r in first.json()["rows"]] == [None, None]
    proc.wait(60)
    events = [json.loads(x)["event"] for x in (served["dir"] / "serve.log").read_text().splitlines()
              if x.startswith("{")]
    assert "draining" in events and events[-1] == "stopped"

    proc2, url2 = _start(served["args"], served["dir"] / "serve2.log")
    try:
        again = httpx.post(url2 + "/score", json={"rows": rows}, timeout=60)
        assert again.json()["rows"] == first.json()["rows"]
        cache = httpx.get(url2 + "/health").json()["cache"]
        assert cache["written"] == 0 and cache["hits"] == 2 and cache["rows"] >= 2
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.wait(60)

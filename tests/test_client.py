"""The one OpenAI-compatible client: endpoint configuration, and its retry / error policy against a scripted HTTP
endpoint on 127.0.0.1 (a few lines of http.server that answer 503, 429, 401 or a chat completion on cue: the
SDK's real retry code runs, no client code is replaced). The protocol itself runs against a real llama.cpp server in
tests/test_server.py."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fake_openai import FakeServer, completion, error

from flrlib.client import DEFAULT_JUDGE_MODEL, Client, Endpoint, EndpointError, failed
from helpers import user

COMPLETION = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                           "message": {"role": "assistant", "content": "hello"}}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


@pytest.fixture
def scripted():
    """An HTTP endpoint that answers the statuses in ``script`` in turn (then 200 with a completion)."""
    state = {"script": [], "hits": 0, "bodies": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            state["hits"] += 1
            state["bodies"].append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            status = state["script"].pop(0) if state["script"] else 200
            body = json.dumps(COMPLETION if status == 200 else {"error": {"message": f"scripted {status}"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("retry-after-ms", "10")  # keeps the SDK's back-off short in the test
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()


def test_endpoint_from_env_precedence_and_errors(monkeypatch):
    for v in ("FLR_JUDGE_BASE_URL", "FLR_JUDGE_MODEL", "FLR_JUDGE_API_KEY", "FLR_GEN_BASE_URL", "FLR_GEN_MODEL",
              "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(EndpointError, match="needs an API key.*FLR_JUDGE_API_KEY"):
        Endpoint.from_env("JUDGE")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    e = Endpoint.from_env("JUDGE")
    assert (e.base_url, e.model, e.api_key) == ("https://api.openai.com/v1", DEFAULT_JUDGE_MODEL, "sk-x")
    assert DEFAULT_JUDGE_MODEL != "gpt-4-1106-preview"  # shut down by its provider
    with pytest.raises(EndpointError, match="FLR_GEN_BASE_URL"):
        Endpoint.from_env("GEN")
    monkeypatch.setenv("FLR_GEN_BASE_URL", "http://127.0.0.1:8000/v1/")
    with pytest.raises(EndpointError, match="FLR_GEN_MODEL"):
        Endpoint.from_env("GEN")
    monkeypatch.setenv("FLR_GEN_MODEL", "policy")
    assert Endpoint.from_env("GEN") == Endpoint("http://127.0.0.1:8000/v1", "policy", "sk-x")
    assert Endpoint.from_env("gen", model="other").model == "other"  # a parameter beats the environment
    with pytest.raises(ValueError, match="unknown endpoint role"):
        Endpoint.from_env("SCORE")


def test_retries_on_429_and_5xx_then_answers_and_caches(scripted, tmp_path):
    scripted["script"] = [503, 429, 502]
    client = Client(Endpoint(scripted["url"], "m", max_retries=3), cache=tmp_path / "c.jsonl", concurrency=1)
    (reply,) = client.chat([{"messages": user("hi"), "max_tokens": 2}], progress=False)
    assert reply["choices"][0]["content"] == "hello" and reply["usage"]["completion_tokens"] == 1
    assert scripted["hits"] == 4 and scripted["bodies"][-1]["model"] == "m"
    again = Client(Endpoint(scripted["url"], "m"), cache=tmp_path / "c.jsonl")
    assert again.chat([{"messages": user("hi"), "max_tokens": 2}], progress=False) == [reply]
    assert scripted["hits"] == 4 and again.sent == 0  # answered from the cache


def test_a_request_that_cannot_succeed_is_a_clear_error(scripted, tmp_path):
    scripted["script"] = [401]
    client = Client(Endpoint(scripted["url"], "m", max_retries=3), cache=tmp_path / "c.jsonl", concurrency=1)
    with pytest.raises(EndpointError, match=rf"m at {scripted['url']}: HTTP 401: scripted 401.*0 answers cached"):
        client.chat([{"messages": user("hi")}], progress=False)
    assert scripted["hits"] == 1  # not retried
    scripted["script"] = [500] * 10
    with pytest.raises(EndpointError, match="HTTP 500"):
        client.chat([{"messages": user("again")}], progress=False)
    assert scripted["hits"] == 1 + 4  # one try and 3 retries


# ---------------------------------------------------------------------------------------------------------------------
# refusals, aborts, timeouts, Ctrl-C (tests/fake_openai.py: an endpoint answering by a function of the request)
# ---------------------------------------------------------------------------------------------------------------------


def ask(content, **kw):
    return {"messages": user(content), "max_tokens": 8, **kw}


@pytest.fixture
def fake():
    servers = []

    def make(respond=lambda body: (200, completion()), models=None, routes=None):
        servers.append(FakeServer(respond, models, routes))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


def refuse_bad(body):
    """400 for a prompt containing 'BAD' (as llama.cpp answers a prompt over its context), else an answer."""
    text = body["messages"][-1]["content"]
    if "BAD" in text:
        return error(400, f"the request exceeds the available context size ({text})")
    return 200, completion(f"answer to {text}")


def test_a_refused_request_is_recorded_cached_and_not_resent(fake, tmp_path):
    """Regression (#26 item 5, #23): one HTTP 400 used to abort chat() for good: nothing cached for it, every
    re-run stopped at the same request."""
    server = fake(refuse_bad)
    reqs = [ask("q0"), ask("BAD q1"), ask("q2"), ask("q3")]
    client = Client(Endpoint(server.url, "m", max_retries=0), cache=tmp_path / "c.jsonl", concurrency=2)
    replies = client.chat(reqs, progress=False)
    assert [failed(r) is None for r in replies] == [True, False, True, True]  # every other request finished
    assert failed(replies[1]) == {"status": 400, "message": "the request exceeds the available context size (BAD q1)"}
    assert replies[2]["choices"][0]["content"] == "answer to q2"
    assert client.refused == 1 and server.hits == 4  # a 400 is not retried
    again = Client(Endpoint(server.url, "m"), cache=tmp_path / "c.jsonl")
    assert again.chat(reqs, progress=False) == replies and again.sent == 0  # the failure is cached too
    retry = Client(Endpoint(server.url, "m"), cache=tmp_path / "c.jsonl", retry_failed=True)
    assert retry.chat(reqs, progress=False) == replies and retry.sent == 1  # only the failure is re-sent
    assert server.bodies[-1]["messages"][-1]["content"] == "BAD q1"


def test_please_reduce_shrinks_max_tokens_like_alpaca_eval(fake, tmp_path):
    def respond(body):
        if body["max_tokens"] > 50:
            return error(400, "This model's maximum context length is 60 tokens. However, you requested "
                         f"{10 + body['max_tokens']} tokens (10 in the messages, {body['max_tokens']} in the "
                         "completion). Please reduce the length of the messages or completion.")
        return 200, completion("short")

    server = fake(respond)
    client = Client(Endpoint(server.url, "m", max_retries=0), cache=tmp_path / "c.jsonl")
    (reply,) = client.chat([ask("hi", max_tokens=100)], progress=False)
    assert [b["max_tokens"] for b in server.bodies] == [100, 80, 64, 51, 40]
    assert reply["choices"][0]["content"] == "short" and reply["max_tokens"] == 40
    # the messages alone fill the context: shrinking cannot help, so it is a refusal at once
    server.respond = lambda body: error(400, "This model's maximum context length is 60 tokens. However, you "
                                        "requested 90 tokens (70 in the messages, 20 in the completion). Please "
                                        "reduce the length of the messages or completion.")
    (reply,) = client.chat([ask("long", max_tokens=20)], progress=False)
    assert failed(reply)["status"] == 400 and server.hits == 6


def test_auth_unknown_model_and_long_retry_after_stop_the_run(fake, tmp_path):
    server = fake(lambda body: error(401, "invalid api key"))
    client = Client(Endpoint(server.url, "m", max_retries=3), concurrency=1)
    with pytest.raises(EndpointError, match=r"HTTP 401: invalid api key - check the API key"):
        client.chat([ask("a"), ask("b")], progress=False)
    assert server.hits == 1  # not retried, and nothing more sent
    server.respond = lambda body: error(404, "The model `m` does not exist.")
    with pytest.raises(EndpointError, match=r"HTTP 404: The model `m` does not exist. - is the model name served"):
        client.chat([ask("c")], progress=False)
    # Retry-After beyond the SDK's 120 s cap: the SDK does not retry; the message says so and gives the delay
    server.respond = lambda body: (*error(429, "quota"), {"retry-after-ms": "600000", "retry-after": "600"})
    with pytest.raises(EndpointError, match=r"HTTP 429: quota - the server asks to wait 600 s \(Retry-After\), more "
                                            r"than the openai SDK waits \(120 s\)"):
        client.chat([ask("d")], progress=False)
    assert server.hits == 3


def test_unexpected_errors_keep_the_endpoint_name(fake):
    """Regression (#26 item 3): an exception other than an APIStatusError / APIConnectionError (here a body that is
    not JSON) used to reach the caller without the endpoint's name."""
    server = fake(lambda body: (200, b"{not json"))
    with pytest.raises(EndpointError, match=rf"^m at {server.url}: \w+"):
        Client(Endpoint(server.url, "m", max_retries=0)).chat([ask("a")], progress=False)


def test_a_server_that_never_answers_is_reported_after_the_timeout(fake):
    server = fake(respond=None)
    start = time.monotonic()
    with pytest.raises(EndpointError, match=r"no answer within 0.3 s, 1 retries \(set --timeout / --max-retries"):
        Client(Endpoint(server.url, "m", timeout=0.3, max_retries=1)).chat([ask("a")], progress=False)
    assert time.monotonic() - start < 10 and server.hits == 2
    assert (Endpoint("http://x/v1", "m").timeout, Endpoint("http://x/v1", "m").max_retries) == (120.0, 3)
    with pytest.raises(ValueError, match="timeout"):
        Endpoint("http://x/v1", "m", timeout=0)


def test_the_revision_is_part_of_the_cache_key(fake, tmp_path):
    server = fake()
    for rev in ("aaaa", "aaaa", "bbbb", None):
        Client(Endpoint(server.url, "dpo", revision=rev), cache=tmp_path / "c.jsonl").chat([ask("q")], progress=False)
    assert server.hits == 3 and {b["model"] for b in server.bodies} == {"dpo"}  # the revision is never sent


def _served_dpo(tmp_path):
    """A ``dpo`` adapter folder and a call of ``align.policy_outputs`` for the base and that adapter through the GEN
    endpoint (one prompt, greedy), as notebook 06 makes it."""
    from flrlib.align import policy_outputs
    from flrlib.generate import GenConfig

    adapter = tmp_path / "dpo" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v1")
    prompts = [{"id": "p0", "messages": user("Hello?")}]
    cfg = GenConfig(n=1, do_sample=False, max_new_tokens=4)
    return adapter, lambda: policy_outputs("base-model", {"base": None, "dpo": str(adapter)}, prompts, cfg,
                                           tmp_path / "eval", progress=False, backend="openai")


def test_served_policy_outputs_are_keyed_on_the_adapter_hash(fake, tmp_path, monkeypatch):
    """Regression (#23): with gen_backend openai, align.policy_outputs requested an adapter by its alias and the cache
    key was (alias, request): after retraining, outputs_dpo.cache.jsonl answered with the old adapter's outputs.
    Here the server is started with --lora-modules dpo=... (no runtime loading): the name is used, with a warning."""
    server = fake(lambda body: (200, completion(f"{body['model']} says hi")), models=["base-model", "dpo"])
    monkeypatch.setenv("FLR_GEN_BASE_URL", server.url)
    adapter, run = _served_dpo(tmp_path)
    out = run()
    assert out == {"base": {"p0": "base-model says hi"}, "dpo": {"p0": "dpo says hi"}} and server.hits == 2
    run()
    assert server.hits == 2  # unchanged weights: answered from the cache
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v2")  # retrained
    run()
    assert server.hits == 3 and server.bodies[-1]["model"] == "dpo"  # the new adapter is asked, the base is not


def test_adapters_trained_after_the_server_started_are_loaded_at_runtime_under_their_hash(fake, tmp_path,
                                                                                          monkeypatch, capsys):
    """Notebook 06 trains DPO/KTO and then requests them: a server started before (05 used it) cannot have them
    under --lora-modules. vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING loads each at POST /v1/load_lora_adapter, under
    <name>-<hash> so that a retrained adapter is a new name (the server can never answer with the old weights)."""
    from flrlib.models import folder_hash

    loaded = []

    def load(body):
        if body["lora_name"] in loaded:  # vLLM's answer to a second load of the same name
            return error(400, f"The lora adapter '{body['lora_name']}' has already been loaded.")
        loaded.append(body["lora_name"])
        return 200, {}

    server = fake(lambda body: (200, completion(f"{body['model']} says hi")), models=["base-model"],
                  routes={"/load_lora_adapter": load})
    monkeypatch.setenv("FLR_GEN_BASE_URL", server.url)
    adapter, run = _served_dpo(tmp_path)
    v1 = f"dpo-{folder_hash(str(adapter))[:12]}"
    out = run()
    assert out["dpo"] == {"p0": f"{v1} says hi"} and loaded == [v1]
    assert server.posts[0][1] == {"lora_name": v1, "lora_path": str(adapter.resolve())}
    run()  # "already loaded": the same weights, answered from the cache
    assert server.hits == 2 and len(server.posts) == 2
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v2")  # retrained: a new name, loaded and asked
    out = run()
    v2 = f"dpo-{folder_hash(str(adapter))[:12]}"
    assert v2 != v1 and loaded == [v1, v2] and out["dpo"] == {"p0": f"{v2} says hi"} and server.hits == 3
    assert "warning" not in capsys.readouterr().out


def test_a_server_that_cannot_serve_the_adapter_stops_with_how_to_start_it(fake, tmp_path):
    from flrlib.client import serve_adapter

    adapter = tmp_path / "kto"
    adapter.mkdir()
    bare = fake(models=["base-model"])  # no runtime loading (404), no --lora-modules
    with pytest.raises(EndpointError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING=True.*--lora-modules kto="):
        serve_adapter(Endpoint(bare.url, "base-model"), "kto", adapter, "abcdef0123456789")
    broken = fake(models=["base-model"], routes={"/load_lora_adapter": lambda b: error(500, "rank 64 > max 8")})
    with pytest.raises(EndpointError, match="could not load adapter 'kto'.*HTTP 500.*rank 64 > max 8"):
        serve_adapter(Endpoint(broken.url, "base-model"), "kto", adapter, "abcdef0123456789")
    listed = fake(models=["base-model", "kto-abcdef012345"])  # loaded earlier under this hash: no request
    assert serve_adapter(Endpoint(listed.url, "base-model"), "kto", adapter, "abcdef0123456789") == \
        ("kto-abcdef012345", None)
    assert listed.posts == []


# ------------------------------------------------------------------------------------------------- the CLI's face

def run_cli(*args):
    from flrlib.cli import main

    return main([str(a) for a in args])


def prompts_file(tmp_path, texts):
    p = tmp_path / "prompts.jsonl"
    p.write_text("".join(json.dumps({"id": f"p{i}", "instruction": t}) + "\n" for i, t in enumerate(texts)))
    return p


def test_cli_sample_writes_partial_output_with_failed_rows(fake, tmp_path, capsys):
    """Regression (#26 item 5): `flr sample` stopped at the first refused request and never wrote its output."""
    server = fake(refuse_bad, models=["m"])
    inp, out = prompts_file(tmp_path, ["q0", "BAD q1", "q2"]), tmp_path / "out.jsonl"
    assert run_cli("sample", "--input", inp, "--output", out, "--base-url", server.url, "--model", "m", "--n", 2,
                   "--max-retries", 0) == 3
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["p0", "p1", "p2"] and "failed" not in rows[0]
    assert rows[1]["responses"] == ["", ""] and [f["sample"] for f in rows[1]["failed"]] == [0, 1]
    assert rows[1]["failed"][0]["status"] == 400 and "BAD q1" in rows[1]["failed"][0]["message"]
    assert rows[2]["responses"] == ["answer to q2", "answer to q2"]
    cap = capsys.readouterr()
    assert "4 answered, 2 refused" in cap.out and "partial: 2 samples were refused" in cap.err
    assert run_cli("sample", "--input", inp, "--output", out, "--base-url", server.url, "--model", "m", "--n", 2) == 3
    assert server.hits == 6  # a re-run does not re-send the refusals ...
    assert run_cli("sample", "--input", inp, "--output", out, "--base-url", server.url, "--model", "m", "--n", 2,
                   "--retry-failed") == 3
    assert server.hits == 8  # ... unless asked to


def test_cli_sample_checks_values_and_the_model_name_before_sending(fake, tmp_path, capsys):
    server = fake(models=["smollm2"])
    inp, out = prompts_file(tmp_path, ["q0"]), tmp_path / "out.jsonl"
    base = ("sample", "--input", inp, "--output", out, "--base-url", server.url, "--model")
    assert run_cli(*base, "smollm2", "--temperature", "-1") == 2
    assert "temperature must be >= 0" in capsys.readouterr().err
    assert run_cli(*base, "smollm2", "--top-p", "2") == 2
    assert "top_p must be in (0, 1]" in capsys.readouterr().err
    assert server.hits == 0 and not out.exists()
    assert run_cli(*base, "other", "--n", 1) == 0
    assert "lists ['smollm2'], not 'other'" in capsys.readouterr().err
    assert run_cli(*base, "smollm2", "--n", 1, "--timeout", "0") == 2  # argparse: must be a positive number


def test_cli_timeout_flag_reaches_the_client(fake, tmp_path, capsys):
    server = fake(respond=None)
    inp, out = prompts_file(tmp_path, ["q0"]), tmp_path / "out.jsonl"
    assert run_cli("sample", "--input", inp, "--output", out, "--base-url", server.url, "--model", "m", "--n", 1,
                   "--timeout", "0.3", "--max-retries", "0") == 2
    assert "no answer within 0.3 s, 0 retries" in capsys.readouterr().err


@pytest.mark.integration
def test_ctrl_c_returns_at_once_with_exit_130_and_one_line(fake, tmp_path):
    """Regression (#26 item 6): Ctrl-C waited for the requests in flight (non-daemon pool threads joined at exit) and
    a second Ctrl-C ended in a threading traceback. The server answers the first prompt and never the second."""
    def respond(body):
        if "q1" in body["messages"][-1]["content"]:
            server.hang.wait()
            return 200, completion("late")
        return 200, completion("fast")

    server = fake(respond)
    inp, out = prompts_file(tmp_path, ["q0", "q1"]), tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "flrlib.cli", "sample", "--input", str(inp), "--output", str(out),
                             "--base-url", server.url, "--model", "m", "--n", "1", "--concurrency", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 120
    while server.hits < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert server.hits == 2, proc.communicate(timeout=30)
    time.sleep(0.3)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.1)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # a second Ctrl-C
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 3, "Ctrl-C did not return within ~2 s"
    assert proc.returncode == 130
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = [x for x in err.splitlines() if x.strip() and "%|" not in x]
    assert lines and lines[-1].startswith("interrupted: saved 1 answers in ") and "re-run the same command" in lines[-1]
    assert not out.exists()
    cache = tmp_path / "out.jsonl.cache.jsonl"
    assert len([x for x in cache.read_text().splitlines() if x.strip()]) == 1  # the answered one; nothing half-written


def test_cli_rewrite_records_a_refused_triple_and_goes_on(fake, tmp_path, capsys):
    """Regression (#26 item 5): `flr rewrite` (openai) stopped at the first refused request, writing nothing."""
    server = fake(refuse_bad)
    inp, out = tmp_path / "triples.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"id": f"t{i}", "prompt": "How do I boil an egg?", "response": "Boil it.",
                                       "critique": c, "score": 2}) + "\n"
                           for i, c in enumerate(["The answer lacks detail.", "BAD critique", "Too short."])))
    args = ["rewrite", "--input", inp, "--output", out, "--base-url", server.url, "--model", "m", "--max-retries", 0,
            "--cache", tmp_path / "rw.jsonl"]
    assert run_cli(*args) == 3
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["t1"]["status"] == "failed" and rows["t1"]["reason"] == "refused"
    assert rows["t1"]["failure"]["status"] == 400 and rows["t1"]["failure"]["message"].startswith("the request exceeds")
    assert {rows["t0"]["status"], rows["t2"]["status"]} <= {"kept", "rejected"}
    assert "1 refused by the endpoint" in capsys.readouterr().out
    assert run_cli(*args) == 3 and server.hits == 3  # the refusal is not re-sent


def test_ctrl_c_in_process_says_what_was_saved_and_the_client_works_again(fake, tmp_path):
    import _thread

    from flrlib.client import Interrupted

    server = fake(lambda body: (server.hang.wait(), (200, completion("late")))[1]
                  if "slow" in body["messages"][-1]["content"] else (200, completion("fast")))
    client = Client(Endpoint(server.url, "m"), cache=tmp_path / "c.jsonl", concurrency=1)
    timer = threading.Timer(0.5, _thread.interrupt_main)  # Ctrl-C while the second request hangs
    timer.start()
    start = time.monotonic()
    with pytest.raises(Interrupted, match=r"^interrupted: saved 1 answers in .*c.jsonl; re-run") as e:
        client.chat([ask("quick"), ask("slow")], progress=False)
    assert e.value.saved == 1 and time.monotonic() - start < 2.5
    (reply,) = client.chat([ask("another")], progress=False)  # the same client, used again, caches again
    assert reply["choices"][0]["content"] == "fast"
    assert len(Client(Endpoint(server.url, "m"), cache=tmp_path / "c.jsonl").cache) == 2

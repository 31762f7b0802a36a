"""The one OpenAI-compatible client: endpoint configuration, and its retry / error policy against a scripted HTTP
endpoint on 127.0.0.1 (a few lines of http.server that answer 503, 429, 401 or a chat completion on cue: the
SDK's real retry code runs, no client code is replaced). The protocol itself runs against a real llama.cpp server in
tests/test_server.py."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flrlib.client import DEFAULT_JUDGE_MODEL, Client, Endpoint, EndpointError

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
    (reply,) = client.chat([{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}], progress=False)
    assert reply["choices"][0]["content"] == "hello" and reply["usage"]["completion_tokens"] == 1
    assert scripted["hits"] == 4 and scripted["bodies"][-1]["model"] == "m"
    again = Client(Endpoint(scripted["url"], "m"), cache=tmp_path / "c.jsonl")
    assert again.chat([{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}], progress=False) == [reply]
    assert scripted["hits"] == 4 and again.sent == 0  # answered from the cache


def test_a_request_that_cannot_succeed_is_a_clear_error(scripted, tmp_path):
    scripted["script"] = [401]
    client = Client(Endpoint(scripted["url"], "m", max_retries=3), cache=tmp_path / "c.jsonl", concurrency=1)
    with pytest.raises(EndpointError, match=rf"m at {scripted['url']}: HTTP 401: scripted 401.*0 answers cached"):
        client.chat([{"messages": [{"role": "user", "content": "hi"}]}], progress=False)
    assert scripted["hits"] == 1  # not retried
    scripted["script"] = [500] * 10
    with pytest.raises(EndpointError, match="HTTP 500"):
        client.chat([{"messages": [{"role": "user", "content": "again"}]}], progress=False)
    assert scripted["hits"] == 1 + 4  # one try and 3 retries

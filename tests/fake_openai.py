"""A few lines of http.server that stand in for an OpenAI-compatible endpoint on 127.0.0.1 in the fault tests: each
chat request is answered by a Python function of its body (a completion, a 400 with a message, a 429 with
Retry-After, a body that is not JSON) or never answered at all. The openai SDK's real retry and timeout code runs
against it; no client code is replaced. The protocol itself runs against a real llama.cpp server
(tests/test_server.py)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(content: str = "hello", tool_arguments: str | None = None) -> dict:
    msg = {"role": "assistant", "content": content}
    if tool_arguments is not None:
        msg = {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": tool_arguments}}]}
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": msg}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def error(status: int, message: str) -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": "invalid_request_error", "code": status}}


class FakeServer:
    """``respond(body) -> (status, payload)`` or ``(status, payload, headers)``; ``payload`` a dict (sent as JSON)
    or bytes (sent as is). ``respond=None``: accept each chat request and never answer it (until :meth:`stop`). ``models``:
    the names ``GET /v1/models`` lists (``None``: 404). ``bodies`` holds every chat request's JSON body. ``routes``:
    other POST routes, ``{"/load_lora_adapter": respond}`` (any other path: 404); ``posts`` holds ``(path, body)`` of
    each request to them."""

    def __init__(self, respond=lambda body: (200, completion()), models: list[str] | None = None,
                 routes: dict | None = None):
        self.respond, self.models, self.bodies = respond, models, []
        self.routes, self.posts = routes or {}, []
        self.hang = threading.Event()
        self.received = threading.Event()  # set at the first chat request
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status, payload, headers=None):
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    # retry-after-ms 10 keeps the SDK's back-off short in the tests
                    for k, v in {"retry-after-ms": "10", **(headers or {})}.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:  # the client gave up on this request (a timeout, Ctrl-C)
                    pass

            def do_GET(self):  # noqa: N802 - /models answers even when chat requests hang
                if self.path.rstrip("/").endswith("/models") and server.models is not None:
                    self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    route = next((r for r in server.routes if self.path.rstrip("/").endswith(r)), None)
                    server.posts.append((self.path, body))
                    self._send(*(server.routes[route](body) if route else (404, {"error": {"message": "not found"}})))
                    return
                server.bodies.append(body)
                server.received.set()
                if server.respond is None:
                    server.hang.wait()
                    return
                self._send(*server.respond(body))

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def hits(self) -> int:
        return len(self.bodies)

    def stop(self) -> None:
        self.hang.set()
        self.httpd.shutdown()
        self.httpd.server_close()

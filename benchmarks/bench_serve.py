"""`flr serve` under load, on 127.0.0.1 only, bounded in rows and time (not a timed unit test).

    python benchmarks/bench_serve.py [--model bundled:smollm2-135m-instruct] [--rows 256] [--clients 8]
                                     [--batch 8] [--json out.json]

Rows: chosen and rejected responses of the HH-RLHF test splits (seeded order), sent as OpenRLHF sends them
(``{"query", "prompts", "labels"}`` with M's chat template, the policy's EOS after the response) to
``/get_reward``, ``--batch`` queries per request (OpenRLHF 0.11 sends one query per rollout sample, earlier
versions a micro-batch), from ``--clients`` concurrent clients (threads, each its own connection).

Phases, each against a fresh `flr serve` process with its own cache file:

  in-process  ``Scorer.score`` on all rows in one call, this process (the reference values and the baseline)
  A load      the rows through the service: throughput as a ratio to the in-process rate (target >= 0.8),
              p50 / p99 request latency, the service's peak RSS, and every row answered exactly once with its
              own reward (checked against its in-process value; other engine batches differ in float noise
              only, so the largest difference is printed)
  B kill      SIGKILL while the clients send, restart on the same port and cache: the clients retry (as
              OpenRLHF does, here for up to --retry-for s), the rows scored before the kill are answered by the
              cache; again every row exactly once and correct
  C disconnect a client sends a request and closes the socket at once: the service stays up, the rows are
              still scored into its cache, the same request answered afterwards is a cache hit
  D 503       a service with a queue of 2 rows, hit by 4 x --clients concurrent one-query requests: refused ones
              get 503 with Retry-After, the clients wait that long and retry; every row answered once, correctly

The machine this runs on may be shared: the numbers are as measured, labelled with the thread count.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from pathlib import Path

SPLITS = ("hh_helpful_base", "hh_helpful_online", "hh_helpful_rejection", "hh_harmless_base")


def conversations(n: int, seed: int = 0, max_chars: int = 1500) -> list[list[dict]]:
    from flrlib.data import load_benchmark

    convs = []
    for split in SPLITS:
        for r in load_benchmark(split)[0]:
            for side in ("chosen", "rejected"):
                conv = r["messages"] + [{"role": "assistant", "content": r[side]}]
                if r[side].strip() and sum(len(m["content"]) for m in conv) <= max_chars:
                    key = hashlib.sha256(f"{seed}:{r['id']}:{side}".encode()).hexdigest()
                    convs.append((key, conv))
    return [c for _, c in sorted(convs, key=lambda x: x[0])[:n]]


def openrlhf_rows(tok, convs) -> list[dict]:
    """Per row: the templated prompt and ``query = decode(prompt_ids + action_ids, skip_special_tokens=False)``."""
    out = []
    for i, c in enumerate(convs):
        prompt = tok.apply_chat_template(c[:-1], tokenize=False, add_generation_prompt=True)
        ids = tok(prompt, add_special_tokens=False)["input_ids"] + \
            tok(c[-1]["content"] + tok.eos_token, add_special_tokens=False)["input_ids"]
        out.append({"id": i, "prompt": prompt, "query": tok.decode(ids, skip_special_tokens=False)})
    return out


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Service:
    def __init__(self, args, port: int, cache: Path, log: Path, extra=()):
        self.cmd = [sys.executable, "-m", "flrlib.cli", "serve", "--model", args.model, "--dtype", "float32",
                    "--device", "cpu", "--port", str(port), "--cache", str(cache), "--batch-size",
                    str(args.batch_size), *(["--bank", args.bank] if args.bank else []),
                    *(["--categories", args.categories] if args.categories else []), *extra]
        self.url, self.log, self.proc = f"http://127.0.0.1:{port}", log, None

    def start(self, timeout: float = 300) -> "Service":
        import torch

        env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in self.log.read_text().splitlines():
                if line.startswith("{"):
                    rec = json.loads(line)
                    if rec.get("event") == "ready" and rec.get("pid") == self.proc.pid:
                        self.ready = rec
                        return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"flr serve did not start: {self.log.read_text()[-2000:]}")

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def health(self) -> dict:
        import httpx

        return httpx.get(self.url + "/health", timeout=30).json()

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(120)


def load(url: str, reqs: list[list[dict]], clients: int, retry_for: float, on_done=None) -> dict:
    """``clients`` threads take requests from one queue and POST them as OpenRLHF does, retrying refused
    connections and 502/503/504 (waiting Retry-After) for up to ``retry_for`` s. Returns per-row rewards,
    latencies, counts of 503s and connection errors."""
    import httpx

    todo, lock = deque(reqs), threading.Lock()
    got, lat, stats = {}, [], Counter()

    def client():
        with httpx.Client(timeout=180) as http:
            while True:
                with lock:
                    if not todo:
                        return
                    req = todo.popleft()
                body = json.dumps({"query": [r["query"] for r in req], "prompts": [r["prompt"] for r in req],
                                   "labels": [None] * len(req)}).encode()
                t0, deadline = time.perf_counter(), time.time() + retry_for
                while True:
                    try:
                        resp = http.post(url + "/get_reward", content=body, headers={"Content-Type": "application/json"})
                    except httpx.TransportError:
                        stats["connection_errors"] += 1
                        resp = None
                    if resp is not None and resp.status_code == 200:
                        break
                    if resp is not None:
                        stats[f"http_{resp.status_code}"] += 1
                        if resp.status_code == 503 and "retry-after" not in resp.headers:
                            stats["503_without_retry_after"] += 1
                        if resp.status_code not in (502, 503, 504):
                            raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:300]}")
                    if time.time() > deadline:
                        raise RuntimeError(f"no answer in {retry_for} s")
                    ra = resp.headers.get("retry-after") if resp is not None else None
                    time.sleep(float(ra) if ra and ra.isdigit() else 0.5)
                dt = time.perf_counter() - t0
                rewards = resp.json()["rewards"]
                with lock:
                    lat.append(dt)
                    for r, x in zip(req, rewards):
                        got.setdefault(r["id"], []).append(x)
                    if on_done:
                        on_done(len(lat))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"wall_s": time.perf_counter() - t0, "rewards": got, "latency_s": lat, "stats": dict(stats)}


def check(got: dict, want: list[float]) -> dict:
    """Every row answered exactly once, with its own reward (largest difference from its in-process value)."""
    missing = [i for i in range(len(want)) if i not in got]
    dup = [i for i, v in got.items() if len(v) != 1]
    diffs = [abs(v[0] - want[i]) for i, v in got.items() if len(v) == 1]
    # a reward given to the wrong row would be far from that row's value: rows differ by much more than noise
    spread = statistics.median(abs(a - b) for a, b in zip(want, want[1:])) if len(want) > 1 else 0.0
    wrong = [i for i, v in got.items() if len(v) == 1 and abs(v[0] - want[i]) > max(1e-4, 1e-3 * spread)]
    return {"rows": len(want), "answered": len(got), "missing": len(missing), "duplicated": len(dup),
            "misassigned": len(wrong), "max_abs_diff": max(diffs, default=0.0), "median_gap_between_rows": spread,
            "ok": not missing and not dup and not wrong}


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="bundled:smollm2-135m-instruct")
    ap.add_argument("--bank", default=None, help="default: the paper's bank")
    ap.add_argument("--categories", default="")
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8, help="queries per request")
    ap.add_argument("--batch-size", type=int, default=4, help="the Scorer's batch size (both sides)")
    ap.add_argument("--retry-for", type=float, default=180.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from flrlib.followups import load_bank
    from flrlib.models import load_model
    from flrlib.results import stamp, write_json
    from flrlib.scoring import ScoreConfig, Scorer

    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    convs = conversations(args.rows)
    cats = [c for c in args.categories.split(",") if c]
    loaded = load_model(args.model, dtype="float32", device="cpu")
    scorer = Scorer(loaded, load_bank(args.bank), ScoreConfig(categories=cats, batch_size=args.batch_size),
                    cache=tmp / "inproc.jsonl", data_parallel=False)
    print(f"{len(convs)} rows, {args.clients} clients x {args.batch} queries per request, model {args.model}, "
          f"torch threads {torch.get_num_threads()} (machine possibly shared: contended numbers)", flush=True)
    warm = conversations(args.rows + 2)[args.rows:]  # two other rows: first-call costs are paid before timing
    scorer.score(warm, progress=False)
    t0 = time.perf_counter()
    want = [r["reward"] for r in scorer.score(convs, progress=False)]
    inproc_s = time.perf_counter() - t0
    rows = openrlhf_rows(loaded.tokenizer, convs)
    reqs = [rows[s: s + args.batch] for s in range(0, len(rows), args.batch)]
    report = {"rows": len(rows), "clients": args.clients, "batch": args.batch, "model": args.model,
              "torch_threads": torch.get_num_threads(), "inprocess_s": inproc_s,
              "inprocess_rows_per_s": len(rows) / inproc_s}
    print(f"in-process Scorer.score: {inproc_s:.2f} s, {len(rows) / inproc_s:.2f} rows/s", flush=True)

    # A: load
    port = free_port()
    svc = Service(args, port, tmp / "a.jsonl", tmp / "a.log").start()
    load(svc.url, [openrlhf_rows(loaded.tokenizer, warm)], 1, args.retry_for)  # the same warm-up, not timed
    res = load(svc.url, reqs, args.clients, args.retry_for)
    a = {"wall_s": res["wall_s"], "rows_per_s": len(rows) / res["wall_s"],
         "ratio_to_inprocess": (len(rows) / res["wall_s"]) / report["inprocess_rows_per_s"],
         "latency_p50_s": pct(res["latency_s"], 50), "latency_p99_s": pct(res["latency_s"], 99),
         "service_peak_rss_mib": svc.peak_rss_mib(), "client_stats": res["stats"], **check(res["rewards"], want)}
    svc.stop()
    report["A_load"] = a
    print(f"A load: {a['rows_per_s']:.2f} rows/s = {a['ratio_to_inprocess']:.2f} x in-process (target >= 0.8); "
          f"latency p50 {a['latency_p50_s']:.2f} s, p99 {a['latency_p99_s']:.2f} s; service peak RSS "
          f"{a['service_peak_rss_mib']:.0f} MiB; rows {a['answered']}/{a['rows']}, missing {a['missing']}, "
          f"duplicated {a['duplicated']}, misassigned {a['misassigned']}, max |diff| {a['max_abs_diff']:.2e}",
          flush=True)

    # B: kill -9 mid-load, restart on the same port and cache
    svc = Service(args, port, tmp / "b.jsonl", tmp / "b.log").start()
    killed = {}

    def kill_when(done):
        if done >= max(1, len(reqs) // 3) and not killed:
            killed["at_requests"] = done
            svc.proc.kill()
            killed["cache_lines"] = len((tmp / "b.jsonl").read_text().splitlines()) if (tmp / "b.jsonl").exists() else 0

            def restart():
                svc.proc.wait(30)
                svc.start()
            threading.Thread(target=restart, daemon=True).start()

    res = load(svc.url, reqs, args.clients, args.retry_for, on_done=kill_when)
    h = svc.health()
    again = load(svc.url, reqs, args.clients, args.retry_for)  # everything once more: the cache answers it all
    h_again = svc.health()
    b = {**killed, "restarted_cache_rows": svc.ready.get("cache_rows"), "computed_after_restart": h["cache"]["written"],
         "computed_on_resend": h_again["cache"]["written"] - h["cache"]["written"],
         "resend_identical": again["rewards"] == res["rewards"], "client_stats": res["stats"],
         **check(res["rewards"], want)}
    b["ok"] = b["ok"] and b["resend_identical"] and b["computed_on_resend"] == 0
    report["B_kill_restart"] = b
    print(f"B kill -9 after {b.get('at_requests')} of {len(reqs)} requests ({b.get('cache_lines')} rows in the cache "
          f"file), restart on the same port and cache: it loaded {b['restarted_cache_rows']} rows and computed "
          f"{b['computed_after_restart']}; clients saw {res['stats']}; rows {b['answered']}/{b['rows']}, missing "
          f"{b['missing']}, duplicated {b['duplicated']}, misassigned {b['misassigned']}; all requests sent again: "
          f"{b['computed_on_resend']} rows computed, answers identical: {b['resend_identical']}", flush=True)

    # C: a client that disconnects mid-request
    before = h["cache"]["rows"]
    fresh = openrlhf_rows(loaded.tokenizer, [c[:-1] + [{"role": "assistant", "content": c[-1]["content"] + " Bye."}]
                                             for c in convs[: args.batch]])
    body = json.dumps({"query": [r["query"] for r in fresh], "prompts": [r["prompt"] for r in fresh]}).encode()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /get_reward HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    s.close()
    deadline = time.time() + args.retry_for
    while svc.health()["cache"]["rows"] < before + len(fresh) and time.time() < deadline:
        time.sleep(0.2)
    h1 = svc.health()
    res = load(svc.url, [fresh], 1, args.retry_for)
    h2 = svc.health()
    c = {"scored_after_disconnect": h1["cache"]["rows"] - before, "rows_sent": len(fresh),
         "hits_on_retry": h2["cache"]["hits"] - h1["cache"]["hits"], "service_alive": svc.proc.poll() is None}
    report["C_disconnect"] = c
    print(f"C disconnect: {c['scored_after_disconnect']}/{c['rows_sent']} rows scored into the cache after the "
          f"client left; the same request again: {c['hits_on_retry']} cache hits; service alive: "
          f"{c['service_alive']}", flush=True)
    svc.stop()

    # D: the 503 path
    svc = Service(args, port, tmp / "d.jsonl", tmp / "d.log",
                  extra=["--max-queue-rows", "2", "--max-batch-rows", "2", "--max-wait-ms", "0"]).start()
    res = load(svc.url, [[r] for r in rows], 4 * args.clients, args.retry_for)  # one query per request
    d = {"client_stats": res["stats"], **check(res["rewards"], want)}
    d["ok"] = d["ok"] and res["stats"].get("http_503", 0) > 0 and "503_without_retry_after" not in res["stats"]
    svc.stop()
    report["D_503"] = d
    print(f"D 503 (queue of 2 rows, {4 * args.clients} clients sending one query each): clients saw "
          f"{res['stats']}; rows {d['answered']}/{d['rows']}, missing {d['missing']}, duplicated {d['duplicated']}, "
          f"misassigned {d['misassigned']}", flush=True)

    report["ok"] = all(report[k]["ok"] for k in ("A_load", "B_kill_restart", "D_503")) and \
        c["scored_after_disconnect"] == len(fresh) and c["service_alive"]
    if args.json:
        write_json(args.json, {**report, "provenance": stamp(model=args.model, bench="bench_serve",
                                                                 bank_hash=scorer.provenance.get("bank_hash"))})
    print("all checks passed" if report["ok"] else "SOME CHECKS FAILED", flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

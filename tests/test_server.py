"""Generation, rewriting and AlpacaEval judging through a real OpenAI-compatible server: llama.cpp's
(llama-cpp-python[server]) on 127.0.0.1, serving the bundled SmolLM2-135M GGUF (the ``llama_server`` fixture).
The verdicts of a 135M judge are noise; what is tested is the protocol: requests, parsing, caching, concurrency,
resumption after the server dies."""
import json
import math
import threading
import time

import pytest

from flrlib import judge as J
from flrlib.client import Client, Endpoint, EndpointError
from flrlib.generate import GenConfig, generate
from helpers import user

pytestmark = pytest.mark.integration  # starts llama.cpp server processes

PROMPTS = [{"id": f"q{i}", "messages": user(t)}
           for i, t in enumerate(["Name a colour.", "What is 2+2?", "Say hello to Ada.", "Count to three.",
                                  "Give me a fruit.", "What is the capital of Italy?"])]


def endpoint(server, **kw):
    from llama_server import MODEL_NAME

    return Endpoint(server.url, MODEL_NAME, **kw)


def cache_keys(path):
    return [json.loads(x)["key"] for x in path.read_text().splitlines() if x.strip()]


def test_generate_n_samples_per_prompt_seeded_and_cached(llama_server, tmp_path):
    cfg = GenConfig(n=3, temperature=1.0, top_p=0.95, max_new_tokens=12, seed=0, concurrency=2)
    cache = tmp_path / "samples.cache.jsonl"
    out = generate(endpoint(llama_server), PROMPTS[:3], cfg, cache=cache, progress=False)
    assert [o["id"] for o in out] == ["q0", "q1", "q2"] and out[0]["messages"] == PROMPTS[0]["messages"]
    for o in out:  # the records of the hf backend
        assert set(o) == {"id", "messages", "responses", "n_tokens", "truncated"}
        assert len(o["responses"]) == len(o["n_tokens"]) == len(o["truncated"]) == 3
        assert all(0 < n <= 12 for n in o["n_tokens"]) and all(t == (n == 12) for n, t in zip(o["n_tokens"], o["truncated"]))
        assert not any("<|im_end|>" in r or "<|im_start|>" in r for r in o["responses"])  # the server's chat template
    assert sum(len(set(o["responses"])) for o in out) > 3  # different seeds, different samples
    assert len(cache_keys(cache)) == 9  # one cached request per sample
    again = generate(endpoint(llama_server), PROMPTS[:3], cfg, cache=cache, progress=False)
    assert again == out and len(cache_keys(cache)) == 9  # answered from the cache
    fresh = generate(endpoint(llama_server), PROMPTS[:1], cfg, cache=None, progress=False)
    assert fresh[0]["responses"] == out[0]["responses"]  # the server honours the per-sample seeds
    greedy = generate(endpoint(llama_server), PROMPTS[:1], GenConfig(n=1, do_sample=False, max_new_tokens=6),
                      progress=False)
    assert len(greedy[0]["responses"]) == 1


def test_concurrency_is_bounded_and_replies_stay_in_order(llama_server):
    reqs = [{"messages": p["messages"], "max_tokens": 8, "temperature": 0.0} for p in PROMPTS]
    serial = Client(endpoint(llama_server), concurrency=1)
    one = serial.chat(reqs, progress=False)
    assert serial.max_in_flight == 1 and serial.sent == 6
    parallel = Client(endpoint(llama_server), concurrency=3)
    three = parallel.chat(reqs, progress=False)
    assert parallel.max_in_flight == 3 and parallel.sent == 6
    assert [r["choices"][0]["content"] for r in three] == [r["choices"][0]["content"] for r in one]


def test_openai_rewriter_through_the_server(llama_server, tmp_path):
    from flrlib import rewrite as rw

    triples = [{"id": f"t{i}", "prompt": "How do I boil an egg?", "response": "Put it in boiling water.",
                "critique": c, "score": s} for i, (c, s) in enumerate([
                    ("The response is accurate and clear.", 5), ("The response lacks detail and examples.", 2)])]
    r = rw.OpenAIRewriter(model="smollm2", base_url=llama_server.url, cache=tmp_path / "api.jsonl", max_tokens=24)
    assert r.name == "openai:smollm2:t0.0"
    kept, rejects = rw.rewrite_all(triples, r, cache=tmp_path / "rewrites.jsonl", progress=False)
    assert len(kept) + len(rejects) == 2 and r.client.sent == 2
    assert all(isinstance(k["followup"], str) and k["followup"] for k in kept)
    assert {x["reason"] for x in rejects} <= {"empty", "too_long", "copied_critique"}
    again = rw.OpenAIRewriter(model="smollm2", base_url=llama_server.url, cache=tmp_path / "api.jsonl", max_tokens=24)
    assert rw.rewrite_all(triples, again, cache=None, progress=False) == (kept, rejects) and again.client.sent == 0
    with pytest.raises(rw.RewriterUnavailable, match="FLR_REWRITE_MODEL"):
        rw.OpenAIRewriter(base_url=llama_server.url, model=None)


@pytest.mark.parametrize("annotator", ["alpaca_eval_gpt4_turbo_fn", "weighted_alpaca_eval_gpt4_turbo"])
def test_alpaca_eval_annotator_end_to_end(llama_server, tmp_path, annotator):
    """alpaca_eval's PairwiseAnnotator builds the prompts and parses the answers; the requests go to the server."""
    from flrlib.judges import AlpacaEvalJudge

    judge = AlpacaEvalJudge(annotator, endpoint=endpoint(llama_server), cache=tmp_path / "judge.jsonl")
    assert judge.name == f"alpaca_eval:{annotator}:smollm2"
    items = [{"id": i, "instruction": p["messages"][0]["content"], "output_1": "I don't know.",
              "output_2": f"Here is a careful answer to: {p['messages'][0]['content']}", "generator_1": "ref",
              "generator_2": "cand"} for i, p in enumerate(PROMPTS[:3])]
    summary, judged = J.evaluate({it["id"]: it["instruction"] for it in items},
                                 {"ref": {it["id"]: it["output_1"] for it in items},
                                  "cand": {it["id"]: it["output_2"] for it in items}},
                                 [("ref", "cand")], [(judge, "independent")], n_boot=100, lc_n_boot=0, progress=False)
    assert len(judged) == 3 and judge.client.sent == 3
    replies = [json.loads(x)["value"] for x in (tmp_path / "judge.jsonl").read_text().splitlines()]
    if annotator.endswith("_fn"):  # the config's forced function call came back as tool-call arguments
        assert all(r["choices"][0]["tool_arguments"] for r in replies)
        assert all(math.isnan(r["p_first"]) or r["p_first"] in (0.0, 1.0) for r in judged)  # a ranking: 1 or 2
    else:  # logprobs of m / M: a probability
        assert all(r["choices"][0]["logprobs"]["content"][0]["top_logprobs"] for r in replies)
    verdicts = [r for r in judged if not math.isnan(r["win"])]
    assert verdicts, "no parsable verdict at all"
    s = summary[0]
    assert s["n"] + s["n_failed"] == 3 and s["n"] == len(verdicts) and s["judge"] == judge.name
    assert s["lc_glm"] == "length_controlled_minimal" and s["lc_note"]  # 3 verdicts: not fitted, and it says why
    again = AlpacaEvalJudge(annotator, endpoint=endpoint(llama_server), cache=tmp_path / "judge.jsonl")
    assert [r["win"] for r in J.judge_pairs(again, items, progress=False)] == pytest.approx(
        [r["win"] for r in judged], nan_ok=True)
    assert again.client.sent == 0  # resumed from the cache


def test_cli_sample_and_judge_through_the_server(llama_server, tmp_path, data_ready, monkeypatch):
    from flrlib.cli import main

    monkeypatch.setenv("FLR_CACHE_DIR", str(tmp_path / "cache"))
    prompts = tmp_path / "prompts.jsonl"
    from flrlib.data import alpaca_eval_prompts

    ae = sorted(alpaca_eval_prompts(), key=lambda e: len(e["reference"]) + len(e["instruction"]))[:2]  # short prompts
    prompts.write_text("".join(json.dumps({"id": e["id"], "instruction": e["instruction"]}) + "\n" for e in ae))
    out = tmp_path / "samples.jsonl"
    assert main(["sample", "--input", str(prompts), "--output", str(out), "--base-url", llama_server.url,
                 "--model", "smollm2", "--greedy", "--max-new-tokens", "8", "--concurrency", "2"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [e["id"] for e in ae] and all(len(r["responses"]) == 1 for r in rows)
    outputs = tmp_path / "model_outputs.json"
    outputs.write_text(json.dumps([{"instruction": e["instruction"], "output": r["responses"][0], "generator": "smol"}
                                   for e, r in zip(ae, rows)]))
    res = tmp_path / "judged"
    assert main(["judge", "--candidate", str(outputs), "--output", str(res), "--base-url", llama_server.url,
                 "--model", "smollm2", "--annotator", "weighted_alpaca_eval_gpt4_turbo", "--n-boot", "100"]) == 0
    summ = json.loads((res / "summary.json").read_text())["rows"][0]
    assert (summ["baseline"], summ["candidate"], summ["n"] + summ["n_failed"]) == ("gpt4_1106_preview", "smol", 2)
    judged = [json.loads(x) for x in (res / "judgements.jsonl").read_text().splitlines()]
    assert {j["id"] for j in judged} == {e["id"] for e in ae}  # AlpacaEval instruction indices
    ref = {e["id"]: e["reference"] for e in ae}
    assert all(j["output_1"] == ref[j["id"]] for j in judged)  # the reference outputs of the data folder
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "messages": [{"role": "assistant", "content": "hi"}]}\n')
    assert main(["sample", "--input", str(bad), "--output", str(out), "--base-url", llama_server.url,
                 "--model", "smollm2"]) == 2


def test_server_killed_mid_run_clear_error_then_resume(llama_server, tmp_path):
    """Kill -9 a server after a few answers: the run stops with an error naming the endpoint; a re-run against
    another server (the session's, on another port: the cache key has no URL) sends only the missing requests."""
    from llama_server import LlamaServer

    cache = tmp_path / "samples.cache.jsonl"
    cfg = GenConfig(n=2, temperature=1.0, max_new_tokens=8, seed=3, concurrency=1)
    doomed = LlamaServer(tmp_path / "doomed.log", n_ctx=1024).start()
    stop = threading.Event()

    def killer():
        while not stop.is_set():
            if cache.exists() and len(cache_keys(cache)) >= 2:
                doomed.kill()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=killer, daemon=True)
    watcher.start()
    try:
        with pytest.raises(EndpointError) as err:
            generate(endpoint(doomed, max_retries=1, timeout=30), PROMPTS[:4], cfg, cache=cache, progress=False)
    finally:
        stop.set()
        doomed.stop()
    msg = str(err.value)
    assert doomed.url in msg and "unreachable" in msg and "re-run" in msg
    assert 2 <= len(cache_keys(cache)) < 8
    assert llama_server.port != doomed.port
    out = generate(endpoint(llama_server), PROMPTS[:4], cfg, cache=cache, progress=False)
    keys = cache_keys(cache)
    assert len(keys) == len(set(keys)) == 8  # every sample once: what the first run got was not sent again
    assert [len(o["responses"]) for o in out] == [2] * 4


def test_a_prompt_over_the_context_is_a_recorded_failure_and_the_rest_finishes(llama_server, tmp_path, capsys):
    """Regression (#26 item 5): llama.cpp answers a prompt longer than its context with HTTP 400 ("... Please reduce
    the length of the messages ..."); `flr sample` used to stop there for good. Now the other prompts are answered,
    the output is written with the failed row recorded, and the exit status (3) says it is partial. Shrinking
    max_tokens cannot help when the messages alone fill the context, so the request is sent once."""
    from flrlib.cli import main

    inp, out = tmp_path / "prompts.jsonl", tmp_path / "samples.jsonl"
    rows = [{"id": "short", "instruction": "Name a colour."}, {"id": "long", "instruction": "word " * 6000}]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["sample", "--input", str(inp), "--output", str(out), "--base-url", llama_server.url, "--model", "smollm2",
            "--greedy", "--max-new-tokens", "6"]
    assert main(args) == 3
    short, long = [json.loads(x) for x in out.read_text().splitlines()]
    assert short["responses"][0] and "failed" not in short
    (f,) = long["failed"]
    assert long["responses"] == [""] and f["sample"] == 0 and f["status"] == 400
    assert "maximum context length is 4096 tokens" in f["message"]
    assert "partial: 1 samples were refused" in capsys.readouterr().err
    cache = out.with_name(out.name + ".cache.jsonl")
    assert len(cache_keys(cache)) == 2
    assert main(args) == 3 and len(cache_keys(cache)) == 2  # answered and refused alike come from the cache

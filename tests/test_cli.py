"""`flr score` end to end on the tiny model, and its input errors (file, line, field)."""
import json

import pytest

from flrlib.cli import InputError, main, read_score_rows
from helpers import user


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_score_responses_and_pairs(tmp_path, data_ready):
    inp = _write(tmp_path / "in.jsonl", [
        {"id": "a", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
        {"id": "b", "messages": user("2+2?"), "chosen": "4", "rejected": "5"},
    ])
    out = tmp_path / "out.jsonl"
    rc = main(["score", "--model", "random:tiny-llama", "--input", str(inp), "--output", str(out),
               "--categories", "relevance", "--cache", str(tmp_path / "c.jsonl"), "--device", "cpu"])
    assert rc == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows[0]["id"] == "a" and isinstance(rows[0]["reward"], float) and list(rows[0]["categories"]) == ["relevance"]
    assert rows[1]["prefers_chosen"] == (rows[1]["chosen_reward"] > rows[1]["rejected_reward"])
    assert rows[0]["provenance"]["bank_hash"] and not (tmp_path / "out.jsonl.tmp").exists()


def test_score_registered_benchmarks_rm_bench_included(results, data_ready, capsys):
    """`flr score --benchmark`: notebook 03's loop for one scorer, RM-Bench (its 3 x 3 summary) and a pairwise set."""
    rc = main(["score", "--benchmark", "rm_bench_chat,hh_helpful_base", "--model", "random:tiny-llama",
               "--categories", "relevance", "--max-examples", "2", "--profile", "t", "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "rm_bench_chat" in out and "rm_bench_avg" in out and "hh_helpful_base" in out
    summ = json.loads((results / "t" / "rm_bench" / "summary__flr__random_tiny-llama.json").read_text())
    assert summ["domains"] == ["chat"] and summ["n"]["chat"] == 2 and len(summ["matrix"]["chat"]) == 3
    per = (results / "t" / "rm_bench" / "rm_bench_chat__flr__random_tiny-llama.jsonl").read_text().splitlines()
    assert len(per) == 2  # one line per prompt (its 3 + 3 styled responses)
    assert main(["score", "--benchmark", "nope"]) == 2
    assert "unknown nope; registered:" in capsys.readouterr().err
    assert main(["score", "--benchmark", "rm_bench_chat", "--input", "x.jsonl"]) == 2
    assert main(["score"]) == 2 and "needs --input and --output" in capsys.readouterr().err


def _loopback_port() -> int:
    """A free port on 127.0.0.1, after checking that loopback connects (in a fresh network namespace it does not,
    and torchrun's rendezvous would wait for minutes): fail at once with the reason instead."""
    import socket

    try:
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            socket.create_connection(srv.getsockname(), timeout=2).close()
            return srv.getsockname()[1]
    except OSError as e:
        pytest.fail(f"127.0.0.1 is not usable here ({e}): torchrun needs the loopback interface up", pytrace=False)


@pytest.mark.integration
def test_score_shards_across_processes_with_accelerate(tmp_path, data_ready):
    """2 CPU processes (torchrun; on GPUs `accelerate launch --multi_gpu` starts the same ranks): `flr score` is a
    thin caller of the Scorer's data-parallel mode (the one mechanism): the batches are dealt to the ranks, each
    caches its own into <cache>.rank<r>.jsonl, rank 0 writes the output in input order, nothing else is left."""
    import os
    import subprocess
    import sys

    port = _loopback_port()
    msgs = user("Name a colour.")
    inp = _write(tmp_path / "in.jsonl", [{"id": f"r{i}", "messages": msgs + [{"role": "assistant", "content": c}]}
                                         for i, c in enumerate(["Blue.", "Red!", "Green, like grass.", "Sky blue."
                                                                "", "I do not know."])])
    args = ["score", "--model", "random:tiny-llama", "--input", str(inp), "--categories", "relevance"]
    assert main(args + ["--output", str(tmp_path / "one.jsonl"), "--cache", str(tmp_path / "c1.jsonl")]) == 0
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), "-m", "flrlib.cli", *args,
           "--output", str(tmp_path / "two.jsonl"), "--cache", str(tmp_path / "c2.jsonl")]
    try:  # two ranks load torch and the tiny model: well under a minute when the machine is not overloaded
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=150)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"torchrun did not finish in 150 s (port {port}); stderr tail: {(e.stderr or b'')[-2000:]!r}",
                    pytrace=False)
    assert run.returncode == 0, run.stderr[-3000:]
    one = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert [r["id"] for r in two] == [f"r{i}" for i in range(5)]
    assert [r["reward"] for r in two] == pytest.approx([r["reward"] for r in one], abs=1e-5)
    assert sorted(p.name for p in tmp_path.glob("c2.rank*.jsonl")) == ["c2.rank0.jsonl", "c2.rank1.jsonl"]
    assert not list(tmp_path.glob("two.jsonl.*")) and not (tmp_path / "c2.jsonl").exists()
    cached = [len((tmp_path / f"c2.rank{r}.jsonl").read_text().splitlines()) for r in (0, 1)]
    assert sorted(cached) == [1, 4]  # the Scorer's batches (4 rows, then 1), not a strided split of the rows


@pytest.mark.parametrize("line, msg", [
    ("{not json", r"in.jsonl:2: not valid JSON"),
    (json.dumps({"id": 1}), r"in.jsonl:2: missing field 'messages'"),
    (json.dumps({"messages": [{"role": "robot", "content": "x"}]}), r"in.jsonl:2: field messages\[0\]: 'role'"),
    (json.dumps({"messages": user("x")}), r"in.jsonl:2: field 'messages': the last"),
    (json.dumps({"messages": user("x"), "chosen": "a", "rejected": ""}),
     r"in.jsonl:2: field 'rejected'"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
                 "chosen": "a", "rejected": "b"}), r"in.jsonl:2: field 'messages': .*must end with the user turn"),
    (json.dumps({"id": "row1", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}),
     r"in.jsonl:2: field 'id': 'row1' is already the id of line 1"),
    (json.dumps({"id": 7, "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}),
     r"in.jsonl:2: field 'id' must be a non-empty string \(got 7\)"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, line, msg):
    good = json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]})
    inp = _write(tmp_path / "in.jsonl", [good, line])
    with pytest.raises(InputError, match=msg):
        read_score_rows(inp)
    assert main(["score", "--input", str(inp), "--output", str(tmp_path / "o.jsonl")]) == 2


def test_non_utf8_input_names_file_and_line(tmp_path, capsys):
    good = json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]})
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(good.encode() + b"\n" + good.encode().replace(b'"y"', b'"\xff"') + b"\n")
    assert main(["score", "--input", str(inp), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "in.jsonl:2: not valid UTF-8 (byte 0xff" in capsys.readouterr().err


def _bank(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


@pytest.mark.parametrize("extra, msg", [
    (["--categories", "relevance,nonsense"], r"has no categories \['nonsense'\]"),
    (["--output", "{tmp}"], r"--output .* is a directory"),
    (["--cache", "{tmp}"], r"--cache .* is a directory"),
    (["--bank", "{tmp}/b.yaml"], r"b.yaml:2: not valid YAML"),
    (["--bank", "{tmp}/b.json"], r"b.json:1: not valid JSON"),
    (["--dtype", "float8"], r"argument --dtype: invalid choice: 'float8'"),
    (["--batch-size", "0"], r"argument --batch-size: must be a positive integer, got '0'"),
    (["--chunk-size", "-2"], r"argument --chunk-size: must be a positive integer"),
    (["--max-tokens", "0"], r"argument --max-tokens: must be a positive integer"),
])
def test_bad_arguments_are_one_line_errors_before_the_model_loads(tmp_path, data_ready, capsys, extra, msg):
    """`--model random:nope` cannot load: each bad argument must be reported first, in one line, without a
    traceback, and leave nothing behind."""
    import re

    _bank(tmp_path, "b.yaml", "relevance:\n  positive: [a: b: c]\n")
    _bank(tmp_path, "b.json", '{"relevance": }')
    inp = _write(tmp_path / "in.jsonl", [{"messages": [{"role": "user", "content": "x"},
                                                       {"role": "assistant", "content": "y"}]}])
    args = {"--model": "random:nope", "--input": str(inp), "--output": str(tmp_path / "o.jsonl")}
    extra = [x.replace("{tmp}", str(tmp_path)) for x in extra]
    args.update(dict(zip(extra[::2], extra[1::2])))
    before = set(tmp_path.iterdir())
    assert main(["score", *[x for kv in args.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert re.search(msg, last), err
    assert "Traceback" not in err and "random:nope" not in err
    assert set(tmp_path.iterdir()) == before  # no output, no temp file


def test_truncation_is_reported_and_too_long_rows_are_refused(tmp_path, data_ready, capsys):
    prompt = [{"role": "user", "content": "Please read this. " + "blah " * 10_000}]
    inp = _write(tmp_path / "in.jsonl", [
        {"id": "long-prompt", "messages": prompt + [{"role": "assistant", "content": "Done."}]},
        {"id": "short", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
        {"id": "pair", "messages": prompt, "chosen": "Read.", "rejected": "No."},
    ])
    out = tmp_path / "out.jsonl"
    args = ["score", "--model", "random:tiny-llama", "--input", str(inp), "--output", str(out),
            "--categories", "relevance", "--cache", str(tmp_path / "c.jsonl"), "--device", "cpu"]
    assert main(args) == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["long-prompt"]["truncated_tokens"] > 7000 and rows["long-prompt"]["over_budget"] is False
    assert rows["short"]["truncated_tokens"] == 0 and rows["short"]["over_budget"] is False
    assert rows["pair"]["chosen_truncated_tokens"] > 7000 and rows["pair"]["rejected_truncated_tokens"] > 7000
    assert rows["pair"]["chosen_over_budget"] is False and rows["pair"]["rejected_over_budget"] is False
    err = capsys.readouterr().err.strip().splitlines()
    assert [x for x in err if x.startswith("warning:")] == [err[-1]]
    assert err[-1].startswith("warning: 3 of 4 scored sequences had their context cut")
    # a response longer than the model's 4096 positions is refused, naming the row
    inp = _write(tmp_path / "in2.jsonl", [
        {"id": "ok", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
        {"id": "huge", "messages": [{"role": "user", "content": "Hi"},
                                    {"role": "assistant", "content": "blah " * 10_000}]},
    ])
    args[args.index("--input") + 1] = str(inp)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "in2.jsonl:2: row 'huge':" in err and "context length 4096 (max_position_embeddings)" in err


@pytest.mark.integration
def test_ctrl_c_says_what_was_saved_and_resumes(tmp_path, data_ready):
    """A real SIGINT during scoring: one line (rows saved, how to resume), exit 130; the re-run completes."""
    import signal
    import subprocess
    import sys
    import time

    n = 24
    inp = _write(tmp_path / "in.jsonl", [{"id": f"r{i}", "messages": [
        {"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]}
        for i in range(n)])
    cache = tmp_path / "c.jsonl"
    cmd = [sys.executable, "-m", "flrlib.cli", "score", "--model", "random:tiny-llama", "--input", str(inp),
           "--output", str(tmp_path / "o.jsonl"), "--cache", str(cache), "--batch-size", "1", "--device", "cpu",
           "--categories", "relevance"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (cache.exists() and cache.read_bytes()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    saved = len(cache.read_text().splitlines())
    assert 0 < saved < n and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"interrupted: {saved} new scores were saved to the cache {cache} ({saved} "
                                            "in it); re-run the same command to resume (only the missing rows are "
                                            "computed)")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(cache.read_text().splitlines()) == n and len((tmp_path / "o.jsonl").read_text().splitlines()) == n

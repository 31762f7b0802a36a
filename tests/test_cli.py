"""`flr score` end to end on the tiny model, and its input errors (file, line, field)."""
import json

import pytest

from flrlib.cli import InputError, main, read_score_rows


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_score_responses_and_pairs(tmp_path, data_ready):
    inp = _write(tmp_path / "in.jsonl", [
        {"id": "a", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
        {"id": "b", "messages": [{"role": "user", "content": "2+2?"}], "chosen": "4", "rejected": "5"},
    ])
    out = tmp_path / "out.jsonl"
    rc = main(["score", "--model", "random:tiny-llama", "--input", str(inp), "--output", str(out),
               "--categories", "relevance", "--cache", str(tmp_path / "c.jsonl"), "--device", "cpu"])
    assert rc == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows[0]["id"] == "a" and isinstance(rows[0]["reward"], float) and list(rows[0]["categories"]) == ["relevance"]
    assert rows[1]["prefers_chosen"] == (rows[1]["chosen_reward"] > rows[1]["rejected_reward"])
    assert rows[0]["provenance"]["bank_hash"] and not (tmp_path / "out.jsonl.tmp").exists()


def test_score_shards_across_processes_with_accelerate(tmp_path, data_ready):
    """2 CPU processes (torchrun; on GPUs `accelerate launch --multi_gpu` starts the same ranks): accelerate's
    PartialState gives each rank a strided slice, rank 0 merges the parts in input order."""
    import os
    import subprocess
    import sys

    msgs = [{"role": "user", "content": "Name a colour."}]
    inp = _write(tmp_path / "in.jsonl", [{"id": f"r{i}", "messages": msgs + [{"role": "assistant", "content": c}]}
                                         for i, c in enumerate(["Blue.", "Red!", "Green, like grass.", "Sky blue."
                                                                "", "I do not know."])])
    args = ["score", "--model", "random:tiny-llama", "--input", str(inp), "--categories", "relevance"]
    assert main(args + ["--output", str(tmp_path / "one.jsonl"), "--cache", str(tmp_path / "c1.jsonl")]) == 0
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29531", "-m", "flrlib.cli", *args,
                          "--output", str(tmp_path / "two.jsonl"), "--cache", str(tmp_path / "c2.jsonl")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    one = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert [r["id"] for r in two] == [f"r{i}" for i in range(5)]
    assert [r["reward"] for r in two] == pytest.approx([r["reward"] for r in one], abs=1e-5)
    assert sorted(p.name for p in tmp_path.glob("c2.rank*.jsonl")) == ["c2.rank0.jsonl", "c2.rank1.jsonl"]
    assert not list(tmp_path.glob("two.jsonl.*"))  # parts merged and removed


@pytest.mark.parametrize("line, msg", [
    ("{not json", r"in.jsonl:2: not valid JSON"),
    (json.dumps({"id": 1}), r"in.jsonl:2: missing field 'messages'"),
    (json.dumps({"messages": [{"role": "robot", "content": "x"}]}), r"in.jsonl:2: field messages\[0\]: 'role'"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}]}), r"in.jsonl:2: field 'messages': the last"),
    (json.dumps({"messages": [{"role": "user", "content": "x"}], "chosen": "a", "rejected": ""}),
     r"in.jsonl:2: field 'rejected'"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, line, msg):
    good = json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]})
    inp = _write(tmp_path / "in.jsonl", [good, line])
    with pytest.raises(InputError, match=msg):
        read_score_rows(inp)
    assert main(["score", "--input", str(inp), "--output", str(tmp_path / "o.jsonl")]) == 2

"""WildBench V2 system-level loader on a tiny fixture in the Hub dataset's schema (tests/fixtures/wildbench_v2/,
written from allenai/WildBench's ``save_outputs``; the Hub is not reachable from the tests)."""
import json

import pytest

from flrlib import data
from flrlib.data import wildbench
from flrlib.data.fetch import DataMissing
from flrlib.data.pairwise import MalformedRow, read_rows
from flrlib.paths import ROOT
from helpers import user

FIXTURE = ROOT / "tests" / "fixtures" / "wildbench_v2"
MODELS = ["gpt-4o-2024-05-13", "claude-3-haiku-20240307", "Llama-2-7b-chat-hf"]


def test_records_cover_the_tasks_every_model_answered(data_ready):
    entry = {**data.benchmark_info("wildbench_v2_system"), "models": MODELS}
    records, dropped, total = wildbench.load("wildbench_v2_system", entry, folder=FIXTURE)
    assert total == 9 and dropped == {"empty output": 1, "task not answered by every model": 2}
    assert {r["prompt_id"] for r in records} == {"wb-0001", "wb-0002"} and len(records) == 6
    r = next(r for r in records if r["model"] == "gpt-4o-2024-05-13" and r["prompt_id"] == "wb-0002")
    assert r["messages"] == user("What is 17 * 23?") and r["response"] == "17 * 23 = 391."
    assert r["category"] == "Math" and r["id"] == "wildbench_v2_system-wb-0002-gpt-4o-2024-05-13"
    elo = wildbench.arena_elo()
    assert len(elo) == 30 and all(m in elo for m in MODELS)  # the configs are named as the Arena list


def test_multi_turn_history_becomes_alternating_messages():
    rows = read_rows(FIXTURE / "gpt-4o-2024-05-13.jsonl")
    parsed, _ = wildbench.parse_outputs(rows, "gpt-4o-2024-05-13", "fixture")
    assert [m["role"] for m in parsed["wb-0003"][0]] == ["user", "assistant", "user"]


def test_malformed_rows_name_the_row_and_field():
    row = json.loads((FIXTURE / "gpt-4o-2024-05-13.jsonl").read_text().splitlines()[0])
    with pytest.raises(MalformedRow, match=r"row 1: field 'chat_history' must be a list of strings with an odd"):
        wildbench.parse_outputs([{**row, "chat_history": ["q", "a"]}], "m", "x.jsonl")
    with pytest.raises(MalformedRow, match=r"row 2: field 'session_id': 'wb-0001' appears twice"):
        wildbench.parse_outputs([row, row], "m", "x.jsonl")
    with pytest.raises(MalformedRow, match="missing field 'output'"):
        wildbench.parse_outputs([{k: v for k, v in row.items() if k != "output"}], "m", "x.jsonl")


def test_offline_without_files_says_so(data_ready):
    with pytest.raises(DataMissing, match=r"no model outputs in .*wildbench_v2 .*this run is offline: run `flr data --prefetch"):
        data.load_benchmark("wildbench_v2_system")

"""Benchmark loaders: parsers on hand-made rows shaped like the real ones, the registry, subsets, real files."""
import gzip
import json

import pytest

from flrlib import data
from flrlib.data import hub, pairwise, rating
from flrlib.data.fetch import DataMissing
from flrlib.data.pairwise import MalformedRow
from helpers import user

# ---------------------------------------------------------------------------------------------------------------
# HH-RLHF
# ---------------------------------------------------------------------------------------------------------------


def hh(*turns):
    return "".join(f"\n\n{role}: {text}" for role, text in turns)


def test_hh_transcript_parses_into_chat_messages():
    msgs = pairwise.parse_hh_transcript(hh(("Human", "Hi"), ("Assistant", "Hello!"), ("Human", "Joke?"),
                                           ("Assistant", "No.")))
    assert msgs == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "Joke?"}, {"role": "assistant", "content": "No."}]
    assert pairwise.parse_hh_transcript("preamble" + hh(("Human", "Hi"))) is None
    assert pairwise.parse_hh_transcript(hh(("Human", "a"), ("Human", "b"))) is None


def test_hh_rows_keep_matching_contexts_and_count_drops():
    ctx = [("Human", "Where is Paris?")]
    rows = [
        {"chosen": hh(*ctx, ("Assistant", "In France.")), "rejected": hh(*ctx, ("Assistant", "No idea."))},
        {"chosen": hh(*ctx, ("Assistant", "In France.")), "rejected": hh(("Human", "Other"), ("Assistant", "x"))},
        {"chosen": hh(*ctx, ("Assistant", "Same")), "rejected": hh(*ctx, ("Assistant", "Same"))},
        {"chosen": hh(*ctx, ("Assistant", "")), "rejected": hh(*ctx, ("Assistant", "y"))},
        {"chosen": hh(*ctx, ("Human", "again")), "rejected": hh(*ctx, ("Assistant", "y"))},
        {"chosen": hh(*ctx, ("Assistant", "a"), ("Human", "b")), "rejected": hh(*ctx, ("Assistant", "a"), ("Human", "c"))},
    ]
    recs, dropped = pairwise.parse_hh_rows(rows, "hh_test")
    assert [r["id"] for r in recs] == ["hh_test-0"]
    assert recs[0]["messages"] == user("Where is Paris?")
    assert (recs[0]["chosen"], recs[0]["rejected"]) == ("In France.", "No idea.")
    assert dropped == {"contexts of chosen and rejected differ": 1, "identical responses": 1, "empty response": 1,
                       "turns not alternating Human/Assistant": 1, "does not end with an Assistant turn": 1}


def test_hh_row_without_field_names_row_and_field():
    with pytest.raises(MalformedRow, match=r"file.jsonl: row 2: missing field 'rejected'"):
        pairwise.parse_hh_rows([{"chosen": hh(("Human", "a"), ("Assistant", "b")), "rejected": hh(("Human", "a"), ("Assistant", "c"))},
                                {"chosen": "x"}], "hh", where="file.jsonl")


def test_read_rows_reports_bad_json_line(tmp_path):
    p = tmp_path / "x.jsonl.gz"
    with gzip.open(p, "wt") as fh:
        fh.write('{"a": 1}\n{broken\n')
    with pytest.raises(MalformedRow, match=r"x.jsonl.gz:2: not valid JSON"):
        pairwise.read_rows(p)


# ---------------------------------------------------------------------------------------------------------------
# AlpacaEval annotations, Prometheus
# ---------------------------------------------------------------------------------------------------------------


def test_alpaca_eval_preferences_ties_and_nulls():
    base = {"instruction": "Name a fruit.", "output_1": "Apple", "output_2": "A banana", "generator_1": "m1",
            "generator_2": "m2", "dataset": "helpful_base"}
    prefs = [1, 2.0, 0, 1.5, None, 1.3]
    recs, dropped = pairwise.parse_alpaca_eval_annotations([{**base, "preference": p} for p in prefs], "ae", "t")
    assert [(r["chosen"], r["rejected"], r["generators"]) for r in recs] == [
        ("Apple", "A banana", ["m1", "m2"]), ("A banana", "Apple", ["m2", "m1"])]
    assert recs[0]["messages"] == user("Name a fruit.") and recs[0]["category"] == "helpful_base"
    assert dropped == {"tie (preference 0 or 1.5)": 2, "null preference": 1, "fractional preference": 1}
    with pytest.raises(MalformedRow, match="row 1: field 'preference' is not a number"):
        pairwise.parse_alpaca_eval_annotations([{**base, "preference": "left"}], "ae", "t")


def prometheus_prompt(instruction, response):
    return ("###Task Description:\nAn instruction ...\n\n###The instruction to evaluate:\n" + instruction +
            "\n\n###Response to evaluate:\n" + response + "\n\n###Reference Answer (Score 5):\nref\n\n"
            "###Score Rubrics:\n[x]\nScore 1: bad\n\n###Feedback: ")


def test_prometheus_single_turn_and_dialogue():
    single = prometheus_prompt("How do I sleep better?", "Keep a schedule.")
    dia = prometheus_prompt("Here is a previous dialogue between an assistant and an user. Generate a human "
                            "preferable response by the assistant.\nUser: Q1\n\nAssistant:A1 line\n\nmore\n\n"
                            "User: Q2\n\nAssistant: ", "R2")
    rows = [{"idx": 1, "response_source": "vicuna", "category": "generic", "instruction": single,
             "gpt4_score": [4, 5, 5], "gpt4_feedback": ["good", "great", "fine"]},
            {"idx": 2, "response_source": "gpt", "category": "writing", "instruction": dia, "gpt4_score": ["2", 3, 4],
             "gpt4_feedback": ["meh"]},
            {"idx": 3, "instruction": "no headers here", "gpt4_score": [1]}]
    recs, dropped = rating.parse_prometheus_rows(rows, "pv")
    assert recs[0]["messages"] == user("How do I sleep better?")
    assert recs[0]["response"] == "Keep a schedule." and recs[0]["score"] == pytest.approx(14 / 3)
    assert recs[0]["feedback"] == ["good", "great", "fine"] and recs[0]["id"] == "pv-1-vicuna"
    assert recs[1]["messages"] == [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1 line\n\nmore"},
                                   {"role": "user", "content": "Q2"}]
    assert recs[1]["response"] == "R2" and recs[1]["score"] == 3.0
    assert dropped == {"grading prompt does not parse": 1}
    with pytest.raises(MalformedRow, match="row 1: missing field 'gpt4_score'"):
        rating.parse_prometheus_rows([{"instruction": single}], "pv")
    with pytest.raises(MalformedRow, match="must be a list of numbers"):
        rating.parse_prometheus_rows([{"instruction": single, "gpt4_score": ["x"]}], "pv")


# ---------------------------------------------------------------------------------------------------------------
# Hub-only parsers on rows shaped like the documented schemas
# ---------------------------------------------------------------------------------------------------------------


def test_shp_and_beavertails_and_alpaca_farm():
    shp = [{"post_id": "p1", "domain": "askscience", "history": "Why is the sky blue?", "human_ref_A": "Rayleigh.",
            "human_ref_B": "Magic.", "labels": 1, "score_A": 10, "score_B": 2},
           {"post_id": "p1", "domain": "askscience", "history": "Why?", "human_ref_A": "a", "human_ref_B": "b",
            "labels": 0}]
    recs, _ = hub.parse_shp(shp)
    assert (recs[0]["chosen"], recs[1]["chosen"]) == ("Rayleigh.", "b") and recs[0]["category"] == "askscience"
    with pytest.raises(MalformedRow, match="field 'labels' must be 0 or 1"):
        hub.parse_shp([{**shp[0], "labels": 2}])

    bt = [{"prompt": "How to pick a lock?", "response_0": "I can't help.", "response_1": "Use a pin.",
           "is_response_0_safe": True, "is_response_1_safe": False, "better_response_id": 1, "safer_response_id": 0}]
    assert pairwise.parse_pku_saferlhf(bt)[0][0]["chosen"] == "Use a pin."
    assert pairwise.parse_pku_saferlhf(bt, label="safer_response_id")[0][0]["chosen"] == "I can't help."

    af = [{"instruction": "Translate", "input": "bonjour", "output_1": "hello", "output_2": "bye", "preference": 1},
          {"instruction": "Say hi", "input": "", "output_1": "hi", "output_2": "hey", "preference": 2},
          {"instruction": "x", "input": "", "output_1": "a", "output_2": "b", "preference": 0}]
    recs, dropped = hub.parse_alpaca_farm(af)
    assert recs[0]["messages"][0]["content"] == "Translate\n\nbonjour" and recs[1]["chosen"] == "hey"
    assert dropped == {"tie or invalid preference": 1}


def test_mt_bench_human_keeps_turn1_drops_ties_and_diverging_turn2():
    def conv(a1, a2):
        return [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": a1},
                {"role": "user", "content": "Q2"}, {"role": "assistant", "content": a2}]
    rows = [{"question_id": 81, "model_a": "x", "model_b": "y", "winner": "model_b", "judge": "author_0", "turn": 1,
             "conversation_a": conv("A1", "A2"), "conversation_b": conv("B1", "B2")},
            {"question_id": 81, "model_a": "x", "model_b": "y", "winner": "model_a", "judge": "author_0", "turn": 2,
             "conversation_a": conv("A1", "A2"), "conversation_b": conv("B1", "B2")},
            {"question_id": 82, "model_a": "x", "model_b": "y", "winner": "tie", "judge": "author_1", "turn": 1,
             "conversation_a": conv("A1", "A2"), "conversation_b": conv("B1", "B2")}]
    recs, dropped = pairwise.parse_mt_bench_human(rows)
    assert len(recs) == 1 and recs[0]["messages"] == user("Q1")
    assert (recs[0]["chosen"], recs[0]["rejected"]) == ("B1", "A1")
    assert dropped == {"contexts of the two models differ (turn 2)": 1, "tie": 1}


def _mt_row(qid, a, b, winner, judge, turn=1, answers=None):
    ans = answers or {}

    def conv(m):
        return [{"role": "user", "content": f"Q{qid}"}, {"role": "assistant", "content": ans.get(m, f"{m} answer")},
                {"role": "user", "content": "Q2"}, {"role": "assistant", "content": f"{m} second"}]
    return {"question_id": qid, "model_a": a, "model_b": b, "winner": winner, "judge": judge, "turn": turn,
            "conversation_a": conv(a), "conversation_b": conv(b)}


def test_mt_bench_human_aggregates_the_judges_votes_per_pair():
    """Issue #26: several judges' votes on one pair became separate, conflicting records. Rows are grouped by
    (question, sorted model pair, turn) as FastChat's compute_agreement.py groups them; the majority wins.
    Hand-made rows in the split's schema (the real split is Hub-only: not reachable from the test machines)."""
    rows = [_mt_row(81, "x", "y", "model_a", "expert_1"), _mt_row(81, "y", "x", "model_b", "author_0"),  # x, x
            _mt_row(81, "x", "y", "model_b", "expert_2"),                                                # y
            _mt_row(82, "x", "y", "model_a", "expert_1"), _mt_row(82, "x", "y", "model_b", "author_2"),  # split
            _mt_row(83, "x", "y", "tie", "expert_1"), _mt_row(83, "y", "x", "tie (bothbad)", "expert_3"),  # all ties
            _mt_row(84, "x", "y", "tie", "expert_1"), _mt_row(84, "x", "y", "model_b", "expert_4"),      # y, a tie
            _mt_row(81, "x", "y", "model_a", "expert_1", turn=2)]                                         # turn 2
    recs, dropped = pairwise.parse_mt_bench_human(rows)
    by_q = {r["category"]: r for r in recs}
    assert len(recs) == len(by_q) == 2  # one record per judged pair, never two conflicting ones
    assert (by_q["81"]["chosen"], by_q["81"]["rejected"]) == ("x answer", "y answer")
    assert by_q["81"]["generators"] == ["x", "y"]
    assert by_q["81"]["votes"] == {"chosen": 2, "rejected": 1, "tie": 0}
    assert sorted(by_q["81"]["judges"]) == ["author_0", "expert_1", "expert_2"]
    assert by_q["84"]["chosen"] == "y answer" and by_q["84"]["votes"] == {"chosen": 1, "rejected": 0, "tie": 1}
    assert by_q["81"]["messages"] == user("Q81")
    assert dropped == {"judges split evenly": 1, "tie": 1, "contexts of the two models differ (turn 2)": 1}
    with pytest.raises(MalformedRow, match="row 1: missing field 'judge'"):
        pairwise.parse_mt_bench_human([{k: v for k, v in rows[0].items() if k != "judge"}])


def test_beavertails_pairs_are_pku_saferlhf_and_qa_rows_are_refused():
    """Issue #26: PKU-Alignment/BeaverTails rows are QA classifications (one response, is_safe); the pairs are
    PKU-SafeRLHF's. A BeaverTails row gets a message naming the right source; ``both`` keeps the pairs whose
    helpfulness and safety labels agree (one reading of the authors' unpublished "beavertails_holistic" file)."""
    rows = [{"prompt": "How to pick a lock?", "response_0": "I can't help.", "response_1": "Use a pin.",
             "better_response_id": 1, "safer_response_id": 0},
            {"prompt": "Bake bread?", "response_0": "Flour, water, yeast, salt; knead, rise, bake.", "response_1": "No.",
             "better_response_id": 0, "safer_response_id": 0}]
    assert [r["chosen"] for r in pairwise.parse_pku_saferlhf(rows)[0]] == ["Use a pin.", rows[1]["response_0"]]
    assert pairwise.parse_pku_saferlhf(rows, label="safer_response_id")[0][0]["chosen"] == "I can't help."
    recs, dropped = pairwise.parse_pku_saferlhf(rows, label="both")
    assert [r["id"] for r in recs] == ["beavertails-1"] and dropped == {"helpfulness and safety labels disagree": 1}
    qa = [{"prompt": "How to pick a lock?", "response": "Use a pin.", "category": {"violence": False}, "is_safe": False}]
    with pytest.raises(MalformedRow, match=r"row 1: a PKU-Alignment/BeaverTails QA classification row.*PKU-SafeRLHF"):
        pairwise.parse_pku_saferlhf(qa)
    with pytest.raises(ValueError, match="label must be one of"):
        pairwise.parse_pku_saferlhf(rows, label="holistic")


def test_pairwise_hub_parsers_read_the_fixture_layout():
    """The parquet layout of the rehearsal fixture (hand-made rows, see tests/fixtures/hub/README.md) and the
    PKU-SafeRLHF JSON lines fixture parse with the new parsers."""
    from pathlib import Path

    pd = pytest.importorskip("pandas")
    fx = Path(__file__).parent / "fixtures" / "hub"
    mt = pd.read_parquet(fx / "lmsys/mt_bench_human_judgments/data/human-00000-of-00001.parquet")
    rows = [{**r, "conversation_a": list(r["conversation_a"]), "conversation_b": list(r["conversation_b"])}
            for r in mt.to_dict("records")]
    recs, dropped = pairwise.parse_mt_bench_human(rows)
    assert len(recs) == 2 and dropped == {"tie": 1}
    safe = [json.loads(x) for x in (fx / "PKU-Alignment/PKU-SafeRLHF/data/Alpaca-7B/test.jsonl").read_text().splitlines()
            if x.strip()]
    assert pairwise.parse_pku_saferlhf(safe)[0]


def test_helpsteer_and_feedback_bench():
    recs, _ = hub.parse_helpsteer([{"prompt": "p", "response": "r", "helpfulness": 3, "correctness": 4,
                                    "coherence": 4, "complexity": 1, "verbosity": 2}])
    assert recs[0]["score"] == 3.0 and recs[0]["messages"] == user("p")
    recs, dropped = hub.parse_feedback_bench([{"orig_instruction": "i", "orig_response": "r", "orig_score": "4",
                                               "orig_criteria": "c"},
                                              {"orig_instruction": "i", "orig_response": "r", "orig_score": "n/a"}])
    assert recs[0]["score"] == 4.0 and dropped == {"score not a number": 1}
    with pytest.raises(MalformedRow, match="missing field 'orig_response'"):
        hub.parse_feedback_bench([{"orig_instruction": "i", "orig_score": 3}])


@pytest.fixture
def online(monkeypatch):
    """No offline switch set and the Hub 'reachable' (no real network is used: the download is replaced)."""
    from flrlib import net

    for v in net.SWITCHES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(net, "reachable", lambda host, *a, **k: True)
    return monkeypatch


def test_alpaca_farm_reads_its_data_file_not_the_loading_script(online, tmp_path):
    import huggingface_hub

    rows = [{"instruction": "Translate", "input": "bonjour", "output_1": "hello", "output_2": "bye", "preference": 1,
             "raw_preference": 1},
            {"instruction": "Say hi", "input": "", "output_1": "hi", "output_2": "hey", "preference": 2,
             "raw_preference": 4}]
    (tmp_path / "alpaca_human_preference.json").write_text(json.dumps(rows))
    calls = []

    def download(repo_id, filename, **kw):
        calls.append((repo_id, filename, kw))
        return str(tmp_path / filename)

    online.setattr(huggingface_hub, "hf_hub_download", download)
    recs, rep = data.load_benchmark("alpaca_farm")
    assert calls == [("tatsu-lab/alpaca_farm", "alpaca_human_preference.json", {"repo_type": "dataset", "revision": None})]
    assert [r["chosen"] for r in recs] == ["hello", "hey"] and rep["rows_total"] == 2
    assert recs[0]["messages"] == user("Translate\n\nbonjour")


def test_hub_errors_say_offline_only_when_offline(online):
    import huggingface_hub

    from flrlib import net

    def fail(*a, **k):
        raise OSError("404 Client Error: Entry Not Found")

    online.setattr(huggingface_hub, "hf_hub_download", fail)
    with pytest.raises(DataMissing, match="could not download alpaca_human_preference.json.*404") as e:
        data.load_benchmark("alpaca_farm")
    assert "offline" not in str(e.value)
    online.setattr(net, "reachable", lambda host, *a, **k: False)
    with pytest.raises(DataMissing, match="huggingface.co is unreachable") as e:
        data.load_benchmark("shp")
    assert "offline" not in str(e.value)
    online.setenv("FLR_OFFLINE", "1")
    with pytest.raises(DataMissing, match="this run is offline"):
        data.load_benchmark("alpaca_farm")


def test_hub_benchmarks_fail_clearly_offline():
    for name in data.benchmark_names(offline=False):
        with pytest.raises(DataMissing, match="offline"):  # "not available offline" / "this run is offline: ..."
            data.load_benchmark(name)


# ---------------------------------------------------------------------------------------------------------------
# registry, missing files, user JSONL
# ---------------------------------------------------------------------------------------------------------------


def test_registry_entries_are_complete(data_ready):
    from flrlib.data.registry import registry

    reg = registry()
    assert {"pairwise", "rating", "system", "rm_bench"} == {e["kind"] for e in reg.values()}
    for name, e in reg.items():
        assert {"kind", "loader", "source", "licence", "size", "offline"} <= set(e), name
        if e["offline"] and e["kind"] != "system":
            for f in e["files"]:
                assert (data_ready / f).exists(), f
    assert len(data.benchmark_names("pairwise")) >= 8 and len(data.benchmark_names("rating")) >= 4


def test_missing_benchmark_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FLR_DATA_DIR", str(tmp_path))
    with pytest.raises(DataMissing, match="flr data"):
        data.load_benchmark("hh_helpful_base")
    with pytest.raises(KeyError, match="unknown benchmark"):
        data.load_benchmark("no_such_benchmark")


def test_user_jsonl_pairwise_and_rating(tmp_path):
    p = tmp_path / "mine.jsonl"
    p.write_text(json.dumps({"id": "a", "messages": user("hi"), "chosen": "hello",
                             "rejected": "go away"}) + "\n")
    recs, rep = data.load_benchmark(str(p))
    assert rep["kind"] == "pairwise" and rep["benchmark"] == "mine" and recs[0]["chosen"] == "hello"
    r = tmp_path / "rate.jsonl"
    r.write_text(json.dumps({"messages": user("hi"), "response": "hello", "score": 4}) + "\n"
                 + json.dumps({"messages": user("q"), "response": "a", "score": "high"}) + "\n")
    with pytest.raises(MalformedRow, match=r"rate.jsonl: row 2: field 'score' has type str"):
        data.load_benchmark(str(r))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}],
                               "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(MalformedRow, match="row 1: field 'messages' must end with the user turn"):
        data.load_benchmark(str(bad))
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "x"}],
                               "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(MalformedRow, match=r"bad.jsonl: row 1: field messages\[1\]: two 'user' turns in a row"):
        data.load_benchmark(str(bad))


# ---------------------------------------------------------------------------------------------------------------
# the real offline files
# ---------------------------------------------------------------------------------------------------------------


def test_offline_benchmarks_load_with_reports(data_ready):
    for name in data.benchmark_names(offline=True):
        if name == "alpaca_eval_system":
            continue
        recs, rep = data.load_benchmark(name)
        assert rep["rows_used"] == len(recs) > 0 and rep["kind"] in ("pairwise", "rating", "rm_bench")
        assert rep["rows_used"] == rep["rows_valid"], name
        assert rep["rows_valid"] + sum(rep["dropped"].values()) == rep["rows_total"], name
        assert len({r["id"] for r in recs}) == len(recs)
        for r in recs[:50]:
            assert r["messages"][-1]["role"] == "user" and r["benchmark"] == name
    recs, rep = data.load_benchmark("hh_helpful_base")
    assert rep["rows_total"] == 2354 and rep["dropped"]["turns not alternating Human/Assistant"] > 0


def test_seeded_subsets_are_stable_and_nested(data_ready):
    a, rep = data.load_benchmark("hh_helpful_online", max_examples=10, seed=0)
    b, _ = data.load_benchmark("hh_helpful_online", max_examples=10, seed=0)
    c, _ = data.load_benchmark("hh_helpful_online", max_examples=25, seed=0)
    d, _ = data.load_benchmark("hh_helpful_online", max_examples=10, seed=1)
    assert [r["id"] for r in a] == [r["id"] for r in b] and rep["rows_used"] == 10
    assert {r["id"] for r in a} < {r["id"] for r in c}
    assert {r["id"] for r in a} != {r["id"] for r in d}


def test_prometheus_and_alpaca_eval_outputs(data_ready):
    mt = data.load_prometheus("mt_bench")
    assert len(mt) == 320 and all(len(r["messages"]) == 3 and len(r["feedback"]) == 3 for r in mt)
    assert {r["category"] for r in mt} >= {"writing", "math", "coding"}
    assert all(1 <= r["score"] <= 5 for r in mt)
    models = data.alpaca_eval_models()
    assert len(models) == 17 and "dbrx-instruct" in models and "text_davinci_003" not in models
    ref = {r["id"]: r["instruction"] for r in data.load_alpaca_eval_outputs("gpt4_1106_preview")}
    short = data.load_alpaca_eval_outputs("llama-2-70b-chat-hf")
    assert len(ref) == 805 and len(short) == 804 and all(ref[r["id"]] == r["instruction"] for r in short)


def test_system_subset_same_prompts_for_every_model(data_ready):
    recs, rep = data.load_benchmark("alpaca_eval_system", max_examples=3, seed=0)
    assert rep["kind"] == "system" and len(recs) == 3 * 17
    by_model = {}
    for r in recs:
        by_model.setdefault(r["model"], set()).add(r["prompt_id"])
        assert r["response"].strip()
    assert len(by_model) == 17 and len({frozenset(v) for v in by_model.values()}) == 1
    assert rep["dropped"]["empty output for some model"] > 0


def test_converters_agree_with_the_raw_mirror_files(data_ready):
    """Each loader checked against the unmodified public file it reads, by an independent reading of that file."""
    import csv
    import statistics

    from flrlib.chat import check_messages

    raw = pairwise.read_rows(data_ready / "hh-rlhf/helpful-base/test.jsonl.gz")
    recs, _ = data.load_benchmark("hh_helpful_base")
    for r in recs:
        row = raw[int(r["id"].rsplit("-", 1)[1])]
        assert row["chosen"].rstrip().endswith(r["chosen"]) and row["rejected"].rstrip().endswith(r["rejected"])
        assert row["chosen"].count("\n\nHuman:") == sum(m["role"] == "user" for m in r["messages"])
    files = {f.split("/")[-1].split(".")[0]: pairwise.read_rows(data_ready / f)
             for f in data.benchmark_info("alpaca_eval_gpt4")["files"]}
    recs, _ = data.load_benchmark("alpaca_eval_gpt4")
    for r in recs:
        tag, i = r["id"][len("alpaca_eval_gpt4-"):].rsplit("-", 1)
        row = files[tag][int(i)]
        want = (row["output_1"], row["output_2"]) if float(row["preference"]) == 1 else (row["output_2"], row["output_1"])
        assert (r["chosen"], r["rejected"]) == want and r["messages"][0]["content"] == row["instruction"]
    for name, f, turns in (("prometheus_mt_bench", "mt_bench_eval", 3), ("prometheus_vicuna", "vicuna_eval", 1)):
        raw = pairwise.read_rows(data_ready / f"prometheus/{f}.json.gz")
        recs, _ = data.load_benchmark(name)
        assert len(recs) == len(raw) == 320
        for r, row in zip(recs, raw):
            assert r["response"] in row["instruction"] and r["messages"][-1]["content"] in row["instruction"]
            assert r["score"] == pytest.approx(statistics.mean(float(s) for s in row["gpt4_score"]))
            assert len(r["messages"]) == turns
    with open(data_ready / "alpaca_eval/leaderboard_alpaca_eval_2.csv", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    j = rows[0].index("length_controlled_winrate")
    assert data.lc_win_rates(2) == {r[0]: float(r[j]) for r in rows[1:] if r[j]}
    with gzip.open(data_ready / "ultrafeedback/train_clean.jsonl.gz", "rt", encoding="utf-8") as fh:
        prompts = [json.loads(line)["prompt"] for line in fh if line.strip()]
    assert [r["messages"][0]["content"] for r in data.ultrafeedback_prompts()] == prompts
    # every offline record is a valid conversation once its response is appended (role order included)
    for name in data.benchmark_names(offline=True):
        for r in data.load_benchmark(name)[0]:
            resp = r.get("chosen") or r["response"]
            for t in resp if isinstance(resp, list) else [resp]:  # rm_bench: 3 styled responses per side
                check_messages(list(r["messages"]) + [{"role": "assistant", "content": t}])


def test_nectar_transcripts_must_alternate():
    from flrlib.data.prompts import _nectar_messages

    assert _nectar_messages("\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:", "n") == [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    with pytest.raises(ValueError, match=r"n field 'prompt' turns\[1\]: two 'user' turns in a row"):
        _nectar_messages("\n\nHuman: a\n\nHuman: c\n\nAssistant:", "n")


def test_overview_record_of_notebook_01(data_ready, tmp_path, monkeypatch):
    """Notebook 01's Table-2 record is written by the library, with provenance; a missing file is listed."""
    import json

    from flrlib import data

    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path))
    missing = tmp_path / "nope.jsonl"
    rows, loaded, unavailable = data.overview(["hh_helpful_base", "prometheus_mt_bench"], max_examples=5, seed=0)
    assert [r["benchmark"] for r in rows] == ["hh_helpful_base", "prometheus_mt_bench"]
    assert rows[0]["rows_used"] == 5 and len(loaded["hh_helpful_base"]) == 5 and not unavailable
    path = data.write_overview("unit", rows, {str(missing): "gone"}, [{"model": "x", "arena_elo": 1.0}], max_examples=5)
    rec = json.loads(path.read_text())
    assert rec["rows"][0]["benchmark"] == "hh_helpful_base" and rec["unavailable"] == {str(missing): "gone"}
    assert rec["provenance"]["max_examples"] == 5 and "software" in rec["provenance"]


def test_every_seeded_subset_nests(data_ready):
    """One subset rule everywhere: a smaller subset of prompts, triples or benchmark rows lies inside a larger one."""
    from flrlib import data
    from flrlib.data.subsets import select_indices

    for draw in (lambda n: data.alpaca_eval_prompts(n, seed=3), lambda n: data.ultrafeedback_prompts(n, seed=3),
                 lambda n: data.prometheus_triples("vicuna", max_examples=n, seed=3),
                 lambda n: data.load_benchmark("hh_helpful_base", max_examples=n, seed=3)[0]):
        small, large = {r["id"] for r in draw(5)}, {r["id"] for r in draw(20)}
        assert len(small) == 5 and len(large) == 20 and small < large
    assert set(select_indices(1000, 7, 1, "nectar-")) < set(select_indices(1000, 70, 1, "nectar-"))
    assert select_indices(10, None) == list(range(10))


def test_system_targets_follow_the_benchmark(data_ready):
    from flrlib import data

    elo, lc = data.system_targets("alpaca_eval_system")
    assert len(elo) == 17 and set(elo) <= set(lc) | set(elo) and lc
    wb_elo, wb_lc = data.system_targets("wildbench_v2_system")
    assert len(wb_elo) == 30 and wb_lc == {}  # WildBench's 30 systems have an Arena ELO, no AlpacaEval LC win rate

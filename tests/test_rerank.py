"""Best-of-N reranking: order against scores computed directly with the Scorer, sampling, and `flr rerank`."""
import json

import pytest

from flrlib import cli, rerank
from flrlib.files import BadFile
from flrlib.scoring import ScoreConfig, Scorer
from helpers import user

ROWS = [
    {"id": "france", "messages": user("What is the capital of France?"),
     "responses": ["Paris.", "The capital of France is Paris, on the Seine.", "", "I like trains.", "Paris."]},
    {"id": "math", "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}],
     "responses": ["4", "Four, because two plus two makes four."]},
]


def _direct(scorer, row):
    """The scores of one row's non-empty candidates, computed with the Scorer itself."""
    convs = [row["messages"] + [{"role": "assistant", "content": r}] for r in row["responses"] if r.strip()]
    return iter(d["reward"] for d in scorer.score(convs, progress=False))


@pytest.mark.parametrize("name", ["flr", "direct", "length"])
def test_rerank_order_matches_direct_scores(tiny, small_bank, name):
    scorer = Scorer(tiny, small_bank, ScoreConfig(scorer=name), cache=None)
    ranked = rerank.rerank(scorer, ROWS, progress=False)
    for row, out in zip(ROWS, ranked):
        direct = _direct(scorer, row)
        expect = [next(direct) if r.strip() else None for r in row["responses"]]
        assert out["scores"] == expect
        real = [j for j, s in enumerate(expect) if s is not None]
        assert out["order"][: len(real)] == sorted(real, key=lambda j: -expect[j])  # stable: ties keep order
        assert set(out["order"]) == set(range(len(expect))) and all(expect[j] is None for j in out["order"][len(real):])
        assert out["best_index"] == max(real, key=lambda j: (expect[j], -j))
        assert out["best"] == row["responses"][out["best_index"]]
        assert out["completion_tokens"] == [len(tiny.tokenizer(r.strip(), add_special_tokens=False)["input_ids"])
                                            for r in row["responses"]]
        assert ("categories" in out) == (name == "flr")
    if name == "length":  # the length baseline picks the longest candidate
        assert [r["best_index"] for r in ranked] == [1, 1]
    s = rerank.summary(ranked)
    assert (s["prompts"], s["candidates"], s["unscored_empty"], s["no_best"]) == (2, 7, 1, 0)
    assert ranked[0]["scores"][0] == ranked[0]["scores"][4]  # duplicate candidates, same score (cache key)


def test_all_empty_candidates_give_no_best(tiny, small_bank):
    scorer = Scorer(tiny, small_bank, ScoreConfig(), cache=None)
    (out,) = rerank.rerank(scorer, [{**ROWS[0], "responses": ["", " "]}], progress=False)
    assert out["scores"] == [None, None] and out["best_index"] is None and out["best"] is None
    assert rerank.summary([out])["no_best"] == 1


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.mark.integration  # loads models in-process and samples through the generation backend
def test_flr_rerank_cli(tmp_path, tiny, small_bank, capsys):
    bank = tmp_path / "bank.json"
    bank.write_text(json.dumps({"categories": small_bank.categories}))
    inp, out = _write(tmp_path / "in.jsonl", ROWS), tmp_path / "out.jsonl"
    common = ["--model", "random:tiny-llama", "--bank", str(bank), "--dtype", "float32", "--device", "cpu",
              "--cache", str(tmp_path / "scores.jsonl")]
    assert cli.main(["rerank", "--input", inp, "--output", str(out), *common]) == 0
    got = [json.loads(x) for x in out.read_text().splitlines()]
    expect = rerank.rerank(Scorer(tiny, small_bank, ScoreConfig(), cache=None), ROWS, progress=False)
    assert [g["scores"] for g in got] == [e["scores"] for e in expect]  # same weights, same engine
    assert [g["best_index"] for g in got] == [e["best_index"] for e in expect]
    assert got[0]["provenance"]["scorer"] == "flr" and '"prompts": 2' in capsys.readouterr().out
    # sampled through the generation backend: candidates come from the policy
    assert cli.main(["rerank", "--input", _write(tmp_path / "p.jsonl", [{"id": "q", "messages": ROWS[0]["messages"]}]),
                     "--output", str(out), "--policy-model", "random:tiny-llama", "--n", "2", "--max-new-tokens", "4",
                     "--temperature", "3.0", "--top-p", "1.0", "--gen-cache", str(tmp_path / "gen.jsonl"),
                     "--categories", "relevance", *common]) == 0
    (row,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(row["responses"]) == len(row["scores"]) == 2 and row["provenance"]["bank"].endswith("[relevance]")
    direct = _direct(Scorer(tiny, small_bank, ScoreConfig(categories=["relevance"]), cache=None), row)
    assert row["scores"] == [next(direct) if r.strip() else None for r in row["responses"]]


@pytest.mark.parametrize("row, message", [
    ({"id": "a", "messages": user("q")}, "in.jsonl:2: field 'responses' must be"),
    ({"id": "a", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}],
      "responses": ["x"]}, "in.jsonl:2: field 'messages' must end with the user turn"),
    ({"id": "ok", "messages": user("q"), "responses": ["x"]}, "in.jsonl:2: field 'id'"),
    ({"messages": [{"role": "bot", "content": "q"}], "responses": ["x"]}, "in.jsonl:2: field 'messages'[0]: 'role'"),
])
def test_rerank_input_errors_name_file_line_and_field(tmp_path, capsys, row, message):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(ROWS[0] | {"id": "ok"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(BadFile, match=message.replace("[", r"\[")):
        rerank.read_candidates(path)
    assert cli.main(["rerank", "--input", str(path), "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "o.jsonl").exists()


def test_automatic_ids_never_collide_with_given_ones(tmp_path):
    """Regression (#26 item 10): a row without id became 'row1', and a later row whose given id is 'row1' was then
    refused as a duplicate of a row that had no id at all."""
    path = tmp_path / "in.jsonl"
    rows = [{k: v for k, v in ROWS[0].items() if k != "id"}, ROWS[1] | {"id": "row1"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["id"] for r in rerank.read_candidates(path)] == ["row1.1", "row1"]
    path.write_text("".join(json.dumps(r) + "\n" for r in [ROWS[1] | {"id": "row1"}, ROWS[1] | {"id": "row1"}]))
    with pytest.raises(BadFile, match="in.jsonl:2: field 'id': 'row1' is already the id of row 1"):
        rerank.read_candidates(path)  # a real duplicate is still one


def test_rerank_cli_refuses_to_replace_candidates_and_names_the_bank_flag(tmp_path, capsys):
    """Regression (#26 items 9, 10): --policy-model silently replaced the candidates the rows had; a missing --bank
    file was an [Errno 2] naming no flag."""
    inp, out = _write(tmp_path / "in.jsonl", ROWS), tmp_path / "o.jsonl"
    assert cli.main(["rerank", "--input", inp, "--output", str(out), "--policy-model", "random:tiny-llama"]) == 2
    err = capsys.readouterr().err
    assert "in.jsonl:1: the row already has 'responses'" in err and "drop --policy-model" in err
    assert cli.main(["rerank", "--input", inp, "--output", str(out), "--bank", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --bank {tmp_path / 'nope.json'}: no such file") and not out.exists()

"""The explorer's callbacks, driven directly with the tiny model: set inputs, click Score, read the outputs back and
compare them with what the scoring engine (an independent Scorer) gives for the same input. The pure parts
(transcript parser, verdict text, stale logic, box sizes, estimates) are tested on their own."""
import re

import numpy as np
import pytest
from helpers import pair, user

from flrlib import compare, explore, scoring
from flrlib.scoring import ScoreConfig, Scorer

CONTEXT = "User: Hi!\nAssistant: Hello! How can I help?\nUser: What is the capital of France?\nPlease be brief."
RESP_A = "The capital of France is Paris."
RESP_B = "I don't know, maybe ask someone else."
HH = ("\n\nHuman: What is the capital of France?\n\nAssistant: Paris.\n\nHuman: And of Italy?\nI forgot.\n\n"
      "Assistant:")


_ENGINE = {}


def engine(loaded, bank, responses, **cfg):
    """The engine's numbers for the test conversation (no cache file: computed here, independently of the widget)."""
    key = (id(bank), tuple(responses), repr(sorted(cfg.items())))
    if key not in _ENGINE:
        context = explore.parse_transcript(CONTEXT)
        scorer = Scorer(loaded, bank, ScoreConfig(**cfg), cache=None)
        convs = [context + [{"role": "assistant", "content": r}] for r in responses]
        _ENGINE[key] = scorer, scorer.score(convs, progress=False)
    return _ENGINE[key]


def numbers(html: str) -> list[float]:
    return [float(x.replace("−", "-")) for x in re.findall(r"[-−+]?\d+\.\d{3}\b", html)]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("explore") / "scores.jsonl"


def make_ui(loaded, bank, cache, examples=None):
    u = explore.Explorer(loaded=loaded, bank=bank, cache=cache, examples=examples)
    u.conversation.value, u.response_a.value, u.response_b.value = CONTEXT, RESP_A, RESP_B
    return u


@pytest.fixture
def ui(tiny, small_bank, shared_cache):
    return make_ui(tiny, small_bank, shared_cache)


@pytest.fixture(scope="module")
def scored(tiny, small_bank, shared_cache):
    """One scored explorer, shared by the read-only checks below."""
    u = make_ui(tiny, small_bank, shared_cache)
    u.score_button.click()
    assert u.last_error is None, u.last_error
    return u


class Counter:
    """Counts calls of the Scorer and of the engine (wraps the real functions; nothing is replaced)."""

    def __init__(self, monkeypatch):
        self.score = self.engine = 0
        real_score, real_engine = scoring.Scorer.score, compare.engine_logprobs

        def score(*a, **k):
            self.score += 1
            return real_score(*a, **k)

        def eng(*a, **k):
            self.engine += 1
            return real_engine(*a, **k)

        monkeypatch.setattr(scoring.Scorer, "score", score)
        monkeypatch.setattr(compare, "engine_logprobs", eng)  # the explorer's scoring module calls it


# -- transcripts ------------------------------------------------------------------------------------------------

def test_parse_transcript_turns_and_continuations():
    msgs = explore.parse_transcript(CONTEXT)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[2]["content"] == "What is the capital of France?\nPlease be brief."
    assert explore.parse_transcript(explore.format_transcript(msgs)) == msgs
    assert explore.parse_transcript("  just a question?  ") == user("just a question?")


def test_hh_transcripts_paste_as_they_are():
    msgs = explore.parse_transcript(HH)  # HH's Human:/Assistant: lines, blank lines, the trailing empty Assistant:
    assert msgs == [{"role": "user", "content": "What is the capital of France?"},
                    {"role": "assistant", "content": "Paris."},
                    {"role": "user", "content": "And of Italy?\nI forgot."}]
    ctx, reply = explore.split_transcript(HH + " Rome.")  # a whole HH transcript: the last reply comes apart
    assert ctx == msgs and reply == "Rome."
    with pytest.raises(ValueError, match="move it into response A"):
        explore.parse_transcript(HH + " Rome.")


@pytest.mark.parametrize("text, msg", [
    ("", "empty"),
    ("User: hi\nAssistant: hello", "move it into response A"),
    ("Assistant: hello", "last turn must be 'User"),
    ("hello\nUser: hi", "line 1"),
    ("User: hi\nAssistant:\nUser: again", "turn 2 (assistant) is empty"),
])
def test_parse_transcript_errors(text, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        explore.parse_transcript(text)


# -- pure helpers: stale logic, box sizes, estimates ------------------------------------------------------------

def test_changed_inputs_and_box_rows_and_estimates():
    old = {k: "x" for k in explore.INPUT_NAMES}
    assert explore.changed_inputs(None, old) == [] and explore.changed_inputs(old, dict(old)) == []
    assert explore.changed_inputs(old, dict(old, scorer="direct", **{"response B": "y"})) == ["response B", "scorer"]
    assert "response B, scorer" in explore.stale_message(["response B", "scorer"])

    assert explore.box_rows("") == 3 and explore.box_rows("a\nb\nc\nd") == 5
    assert explore.box_rows("x" * 181, chars_per_line=90) == 4  # 3 wrapped lines + 1
    assert explore.box_rows("\n" * 100) == 30

    est = explore.estimate_seconds("flr", 2, 120, {})
    assert est["main"] == pytest.approx(2 * 120 * explore.DEFAULT_RATES["flr"])
    assert est["total"] == pytest.approx(est["main"] + est["direct"] + est["tokens"])
    legacy = explore.estimate_seconds("legacy_repo", 2, 120, {})
    assert legacy["main"] > 10 * est["main"]  # the dropdown's warning: legacy costs minutes, FLR seconds
    measured = explore.estimate_seconds("legacy_repo", 2, 120, {"flr": 2 * explore.DEFAULT_RATES["flr"]})
    assert measured["main"] == pytest.approx(2 * legacy["main"])  # a measured FLR rate scales the guesses
    assert explore.estimate_seconds("direct", 2, 0, {})["direct"] == 0


# -- the Score callback ---------------------------------------------------------------------------------------------

def test_score_click_shows_engine_numbers(scored, tiny, small_bank):
    ui = scored
    assert ui.status.value.startswith("✓ scored")
    for phase in ("FLR", "Direct", "tokens"):
        assert phase in ui.status.value  # each phase's time
    scorer, (a, b) = engine(tiny, small_bank, [RESP_A, RESP_B])
    _, (da, db) = engine(tiny, None, [RESP_A, RESP_B], scorer="direct")
    _, (la, lb) = engine(tiny, None, [RESP_A, RESP_B], scorer="length")

    # verdict: FLR, mean positives, mean negatives, Direct and length for A then B, as printed
    got = numbers(ui.summary.value)
    for want in (a["reward"], a["pos"], a["neg"], da["reward"], b["reward"], b["pos"], b["neg"], db["reward"]):
        assert explore.fmt(want) in ui.summary.value
        assert min(abs(g - want) for g in got) < 1e-3
    assert f"<td>{la['reward']:.0f}</td>" in ui.summary.value and f"<td>{lb['reward']:.0f}</td>" in ui.summary.value
    assert ("FLR prefers A" if a["reward"] > b["reward"] else "FLR prefers B") in ui.summary.value
    assert ("Direct prefers A" if da["reward"] > db["reward"] else "Direct prefers B") in ui.summary.value
    assert "length (longer wins) prefers " + ("A" if la["reward"] > lb["reward"] else "B") in ui.summary.value
    assert "How to read" in ui.summary.value and "human label" not in ui.summary.value  # typed: no label

    # per-category A - B chart: one bar per category and the mean, heights = the engine's R_k(A) - R_k(B)
    bars = ui.figures["categories"].axes[0].containers[0]
    want = [a["categories"][c] - b["categories"][c] for c in small_bank.categories]
    np.testing.assert_allclose(bars.datavalues[::-1], want + [a["reward"] - b["reward"]], atol=1e-6)
    assert ui.category_chart.value.startswith("<img") and "base64," in ui.category_chart.value

    # follow-ups that moved most: engine values; effects sum to the reward difference
    moves = explore.followup_moves(ui.result)
    np.testing.assert_allclose(moves["A"], a["followups"], atol=1e-6)
    np.testing.assert_allclose(moves["B"], b["followups"], atol=1e-6)
    assert moves["effect"].sum() == pytest.approx(a["reward"] - b["reward"], abs=1e-9)
    top = moves.loc[moves["effect"].abs().idxmax()]
    assert ui.moves.value.count("<tr>") == 1 + len(small_bank.items())  # header + the 8 follow-ups (10 shown)
    assert ui.followup.value == top["index"]  # the token view opens on the follow-up that moved most

    # stored per-token log-probs of every follow-up: their means are the engine's per-follow-up values
    for lab, row in (("A", a), ("B", b)):
        views = ui.result["views"]["followups"][lab]
        assert [v["mean"] for v in views] == pytest.approx(row["followups"], abs=1e-4)
        assert ["".join(v["tokens"]) for v in views] == small_bank.texts()
        assert ui.result["views"]["response"][lab]["mean"] == pytest.approx((da, db)[lab == "B"]["reward"], abs=1e-4)
    assert ui.tokens.value.count("<span") == sum(len(ui.result["views"]["followups"][lab][int(top["index"])]
                                                     ["tokens"]) for lab in "AB")


def test_token_view_and_sorting_rerender_without_scoring(scored, monkeypatch):
    ui = scored
    calls = Counter(monkeypatch)
    before = ui.tokens.value
    ui.followup.value = 6  # "That's wrong."
    assert ui.tokens.value != before and "That&#x27;s wrong." in ui.tokens.value
    assert "correctness −1" in ui.tokens.value
    ui.followup.value = "response"
    assert "Direct reads the response itself" in ui.tokens.value
    ui.moves_sort.value = "most for B"
    effects = [float(x.replace("−", "-")) for x in re.findall(r"<td><b>([−+][\d.e−+]+)</b>", ui.moves.value)]
    assert effects == sorted(effects) and len(effects) == 8
    ui.moves_count.value = 10
    assert calls.score == 0 and calls.engine == 0 and ui.score_calls == 1  # nothing was scored again


def test_stale_results_are_marked_until_scored_again(ui):
    ui.score_button.click()
    assert ui.stale_inputs() == [] and "flr-stale" not in ui.results._dom_classes
    for field, value in (("response_b", "Rome."), ("scorer", "direct"), ("categories", ("relevance",)),
                         ("layout", "feedback"), ("model", "another/model")):
        old = getattr(ui, field).value
        getattr(ui, field).value = value
        assert ui.stale_inputs(), field
        assert "flr-stale" in ui.results._dom_classes and "inputs changed" in ui.stale_banner.value
        assert "press Score" in ui.status.value
        getattr(ui, field).value = old  # back to the scored inputs: current again
        assert ui.stale_inputs() == [] and "flr-stale" not in ui.results._dom_classes, field
        assert ui.status.value.startswith("✓ scored")
    ui.followup.value = 0  # a view, not an input
    assert ui.stale_inputs() == []
    ui.response_a.value = "Paris, of course."
    assert ui.stale_inputs() == ["response A"]
    ui.score_button.click()
    assert ui.stale_inputs() == [] and ui.result["responses"]["A"] == "Paris, of course."


def test_score_goes_through_the_shared_cache(tiny, small_bank, tmp_path, monkeypatch):
    cache = tmp_path / "scores.jsonl"
    ui = make_ui(tiny, small_bank, cache)
    ui.score_button.click()
    lines = cache.read_text().splitlines()
    assert len(lines) == 4  # A and B under FLR, A and B under Direct (length needs no cache)
    scorer, _ = engine(tiny, small_bank, [RESP_A])
    conv = explore.parse_transcript(CONTEXT) + [{"role": "assistant", "content": RESP_A}]
    assert scorer._key(conv) in cache.read_text()  # the same key any other caller of the Scorer uses
    first = ui.summary.value
    calls = Counter(monkeypatch)
    ui.score_button.click()
    assert len(cache.read_text().splitlines()) == 4 and ui.summary.value == first  # nothing recomputed
    assert calls.engine == 0  # the token views are kept too
    memo = {}  # a notebook's own score_responses call, then an explorer given the same memo: nothing recomputed
    context = explore.parse_transcript(CONTEXT)
    explore.score_responses(tiny, small_bank, context, {"A": RESP_A, "B": RESP_B}, ScoreConfig(), cache=cache,
                            progress=False, memo=memo)
    engine_calls = calls.engine
    other = explore.Explorer(loaded=tiny, bank=small_bank, cache=cache, memo=memo)
    other.conversation.value, other.response_a.value, other.response_b.value = CONTEXT, RESP_A, RESP_B
    other.score_button.click()
    assert calls.engine == engine_calls and other.result["views"] == ui.result["views"]


@pytest.mark.parametrize("scorer, layout", [("direct", "base"), ("legacy_repo", "base"), ("flr", "feedback")])
def test_other_scorers_and_layouts(ui, tiny, small_bank, scorer, layout):
    ui.scorer.value, ui.layout.value = scorer, layout
    ui.score_button.click()
    assert ui.last_error is None, ui.last_error
    _, (a, b) = engine(tiny, small_bank, [RESP_A, RESP_B], scorer=scorer, layout=layout)
    assert explore.fmt(a["reward"]) in ui.summary.value and explore.fmt(b["reward"]) in ui.summary.value
    assert explore.SCORER_NAMES[scorer] in ui.summary.value
    if scorer == "direct":
        assert ui.result["followup"] == "response" and "uses no follow-ups" in ui.moves.value
        assert "".join(ui.result["views"]["response"]["A"]["tokens"]) == RESP_A
        assert ui.category_chart.value == "" and "<img" not in ui.summary.value
    else:
        assert ui.result["main"]["A"]["followups"] == pytest.approx(a["followups"], abs=1e-5)
    if scorer == "legacy_repo":
        assert "only the sign of A − B" in ui.summary.value and "raw logits" in ui.tokens.value


def test_categories_and_single_response(ui, tiny, small_bank):
    ui.categories.value = ("correctness",)
    ui.response_b.value = "  "
    ui.score_button.click()
    assert ui.last_error is None, ui.last_error
    assert ui.result["labels"] == ["A"]
    assert len(ui.followup.options) == 1 + 4  # the token-view picker follows the result's follow-ups
    assert ui.followup.options[1][0].startswith("correctness +1: ")
    _, (a,) = engine(tiny, small_bank, [RESP_A], categories=["correctness"])
    assert ui.result["main"]["A"]["reward"] == pytest.approx(a["reward"], abs=1e-6)
    assert list(explore.category_frame(ui.result).index) == ["correctness", "reward (mean)"]
    assert "add response B" in ui.summary.value and "Add response B" in ui.moves.value


ERRORS = [
    ("response_a", "   ", "response A is empty"),
    ("conversation", "Assistant: hello", "last turn must be 'User"),
    ("model", "no-such-org/no-such-model", "not reachable (offline)"),
    ("bank", "/nonexistent/bank.json", "there is no file '/nonexistent/bank.json'"),
]


def test_errors_are_shown_in_the_widget(ui):
    for field, value, msg in ERRORS:
        ui.score_button.click()  # a good result first: an error must clear it
        assert ui.summary.value and ui.last_error is None, field
        good = getattr(ui, field).value
        getattr(ui, field).value = value
        if field == "bank":
            assert msg in ui.error.value.replace("&#x27;", "'")  # reported as soon as the field changes
        ui.score_button.click()
        assert ui.last_error is not None and msg in ui.last_error, field
        assert msg.replace("'", "&#x27;") in ui.error.value and "Traceback" not in ui.error.value
        assert "Errno" not in ui.error.value
        assert ui.summary.value == "" and ui.result is None and not ui.score_button.disabled
        assert ui.results.layout.display == "none" and "<img" not in ui.category_chart.value  # no empty image
        getattr(ui, field).value = good
    ui.conversation.value = "Human: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant:"  # HH style: fine
    ui.score_button.click()
    assert ui.last_error is None and [m["role"] for m in ui.result["context"]] == ["user", "assistant", "user"]


def test_bank_error_clears_when_the_field_is_fixed(ui, tmp_path):
    ui.bank.value = str(tmp_path)
    assert "is a folder" in ui.error.value
    bad = tmp_path / "bad.json"
    bad.write_text('{"relevance": {"positive": []}}')
    ui.bank.value = str(bad)
    assert "is not a valid bank" in ui.error.value and "Errno" not in ui.error.value
    ui.bank.value = "small"  # the bank object the explorer was given
    assert ui.error.value == "" and list(ui.categories.options) == ["relevance", "correctness"]


def test_example_picker_human_label_and_pasted_reply(tiny, small_bank):
    ex = [pair("p1", "Q1?", "yes", "no, not at all, never"),
          {"id": "p2", "benchmark": "toy", "messages": user("Q2?"), "response": "maybe"}]
    u = explore.Explorer(examples=ex, loaded=tiny, bank=small_bank, cache=None)
    assert (u.conversation.value, u.response_a.value, u.response_b.value) == ("User: Q1?", "yes",
                                                                              "no, not at all, never")
    assert "A is the response the annotators chose" in u.example_note.value
    u.score_button.click()
    res = u.result
    assert res["human"] == {"A": "chosen", "B": "rejected", "source": "toy/p1"}
    assert "the annotators chose A and rejected B" in u.summary.value
    assert "A (chosen by annotators)" in u.summary.value and "B (rejected)" in u.summary.value
    lines = explore.verdict_lines(res)
    rows = {r["key"]: r for r in explore.verdict_rows(res)}
    for key, name in (("main", "FLR"), ("direct", "Direct"), ("length", "length")):
        line = next(x for x in lines if x.startswith(name))
        assert ("— agrees with the human label" in line) == (rows[key]["pick"] == "A")
        assert ("— disagrees with the human label" in line) == (rows[key]["pick"] == "B")
    assert rows["length"]["pick"] == "B" and "the longer response (" in lines[3]
    link = lines[-1]
    assert link.startswith("FLR picks the " + ("longer" if rows["main"]["pick"] == "B" else "shorter"))
    flipped = dict(res, human={"A": "rejected", "B": "chosen"})  # the same numbers under the opposite label
    assert [r["agrees"] for r in explore.verdict_rows(flipped)] == [not r["agrees"] for r in rows.values()]
    assert explore.explain(res).startswith(lines[0]) and "Length: A has" in explore.explain(res)

    u.example.value = 1
    assert (u.conversation.value, u.response_a.value, u.response_b.value) == ("User: Q2?", "maybe", "")
    assert u.example.options[0][1] == -1 and "toy/p2: Q2?" in u.example.options[2][0]
    u.response_a.value = "maybe not"  # typing leaves the example: the picker says so and keeps the typed text
    assert u.example.value == -1 and u.response_a.value == "maybe not" and u.conversation.value == "User: Q2?"
    assert u.human_label() is None and u.example_note.value == ""

    u.response_a.value = ""  # a whole HH transcript pasted: its last reply becomes response A
    u.conversation.value = HH + " Rome."
    assert u.response_a.value == "Rome." and "moved into response A" in u.conversation_note.value
    u.response_b.value = "Milan."
    assert "moved into response A" in u.conversation_note.value  # the note stays until the conversation changes
    assert explore.parse_transcript(u.conversation.value)[-1]["content"] == "And of Italy?\nI forgot."
    assert u.conversation.rows >= 5
    u.layout.value = "feedback"
    assert "reads only the last user turn: 1 earlier" in u.conversation_note.value
    u.conversation.value = "User: something else"
    assert u.conversation_note.value == ""


def test_boxes_grow_and_help_lines(tiny, small_bank):
    u = explore.Explorer(loaded=tiny, bank=small_bank, cache=None)
    u.conversation.value = "\n".join(f"User: turn {i}\nAssistant: reply {i}" for i in range(6)) + "\nUser: last"
    assert u.conversation.rows == 14  # 13 lines + 1: the last user turn is visible
    u.response_a.value = "word " * 60  # 300 characters wrap to 4 lines
    assert u.response_a.rows == 5
    assert "base: M reads the whole conversation" in u.setup_help.value
    u.layout.value, u.scorer.value = "feedback", "legacy_repo"
    assert "only the LAST user prompt" in u.setup_help.value
    assert "one full forward per follow-up" in u.setup_help.value and "8 follow-ups" in u.setup_help.value


def test_static_fallback_renders_the_same_views(ui, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    explore.show(ui, interactive=False)
    assert ui.last_error is None
    kinds = [type(o).__name__ for o in shown]
    assert kinds == ["HTML", "Image", "HTML", "HTML"]  # verdict, per-category chart, moves, token view
    assert shown[0].data == explore.verdict_html(ui.result)
    assert shown[1].data[:4] == b"\x89PNG"
    assert shown[2].data == explore.moves_html(ui.result) and shown[3].data == explore.tokens_html(ui.result)
    ui.response_a.value = ""
    shown.clear()
    explore.show(ui, interactive=False)
    assert len(shown) == 1 and "response A is empty" in shown[0].data
    shown.clear()
    explore.show(ui, interactive=True)
    assert shown == [ui]


def test_notebook_helpers_compare_pairs_and_heatmap(tiny, small_bank):
    pairs = [pair("p1", "Capital of France?", "Paris.", "Berlin."), pair("p2", "2+2?", "4", "5")]
    flr = Scorer(tiny, small_bank, ScoreConfig(), cache=None)
    legacy = Scorer(tiny, small_bank, ScoreConfig(scorer="legacy_repo"), cache=None)
    table = explore.compare_pairs(pairs, {"flr": flr, "legacy_repo": legacy}, limits={"legacy_repo": 1},
                                  progress=False)
    want = flr.score_pairs(pairs, progress=False)
    assert list(table.index) == ["p1", "p2"]
    assert table["flr chosen"].tolist() == pytest.approx([w["chosen"] for w in want])
    assert table["flr margin"].tolist() == pytest.approx([w["chosen"] - w["rejected"] for w in want])
    assert not np.isnan(table.loc["p1", "legacy_repo margin"]) and np.isnan(table.loc["p2", "legacy_repo margin"])

    cats = explore.pair_category_frame(flr, pairs)
    assert list(cats.columns) == list(small_bank.categories)
    d = want[1]["chosen_detail"]["categories"]["correctness"] - want[1]["rejected_detail"]["categories"]["correctness"]
    assert cats.loc["p2", "correctness"] == pytest.approx(d)
    fig = explore.category_heatmap(cats, "t")
    assert [t.get_text() for t in fig.axes[0].texts] == [f"{v:.3f}" for v in cats.to_numpy().ravel()]

    shown = explore.conversation_html(user("<b>x</b>"), {"A": "a & b"})
    assert "&lt;b&gt;x&lt;/b&gt;" in shown and "a &amp; b" in shown


# -- the modules behind explore ---------------------------------------------------------------------------------

def test_explore_keeps_every_name_the_notebooks_and_tests_use():
    """Issue #26: explore.py was split into transcripts, compare (scoring A and B), views and widget; the
    names the notebooks and tests take from explore all still resolve, to the one definition in its module."""
    import json

    from flrlib import transcripts, views, widget
    from flrlib.paths import ROOT

    used = set()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "tests").glob("*.py")):
        text = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"]) if nb.suffix == ".ipynb" \
            else nb.read_text()
        used |= set(re.findall(r"\bexplore\.([A-Za-z_]\w*)", text)) - {"py"}  # not the file name explore.py
    assert {"Explorer", "show", "parse_transcript", "score_responses", "verdict_html"} <= used
    missing = sorted(n for n in used if not hasattr(explore, n))
    assert not missing, f"explore lacks {missing}"
    assert explore.Explorer is widget.Explorer and explore.parse_transcript is transcripts.parse_transcript
    assert explore.verdict_html is views.verdict_html and explore.score_responses is compare.score_responses


def test_the_views_and_transcripts_load_no_model_and_no_widget():
    import ast
    from pathlib import Path

    import flrlib

    def imports(name):
        tree = ast.parse((Path(flrlib.__file__).parent / f"{name}.py").read_text())
        return {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level} | \
            {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}

    assert imports("transcripts") == {"re"}  # text <-> messages, nothing else
    assert not imports("views") & {"scoring", "models", "widget", "compare", "torch", "transformers", "ipywidgets"}
    assert not imports("compare") & {"widget", "ipywidgets"}

"""The explorer's callbacks, driven directly with the tiny model: set inputs, click Score, read the outputs back and
compare them with what the scoring engine (an independent Scorer) gives for the same input."""
import re

import numpy as np
import pytest

from flrlib import explore
from flrlib.scoring import ScoreConfig, Scorer

CONTEXT = "User: Hi!\nAssistant: Hello! How can I help?\nUser: What is the capital of France?\nPlease be brief."
RESP_A = "The capital of France is Paris."
RESP_B = "I don't know, maybe ask someone else."


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
    return [float(x) for x in re.findall(r"-?\d+\.\d{3}\b", html)]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("explore") / "scores.jsonl"


def make_ui(loaded, bank, cache):
    u = explore.Explorer(loaded=loaded, bank=bank, cache=cache)
    u.conversation.value, u.response_a.value, u.response_b.value = CONTEXT, RESP_A, RESP_B
    return u


@pytest.fixture
def ui(tiny, small_bank, shared_cache):
    return make_ui(tiny, small_bank, shared_cache)


# -- transcripts ------------------------------------------------------------------------------------------------

def test_parse_transcript_turns_and_continuations():
    msgs = explore.parse_transcript(CONTEXT)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[2]["content"] == "What is the capital of France?\nPlease be brief."
    assert explore.parse_transcript(explore.format_transcript(msgs)) == msgs
    assert explore.parse_transcript("  just a question?  ") == [{"role": "user", "content": "just a question?"}]


@pytest.mark.parametrize("text, msg", [
    ("", "empty"),
    ("User: hi\nAssistant: hello", "last turn must be 'User"),
    ("hello\nUser: hi", "line 1"),
    ("User: hi\nAssistant:\nUser: again", "turn 2 (assistant) is empty"),
])
def test_parse_transcript_errors(text, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        explore.parse_transcript(text)


# -- the Score callback ---------------------------------------------------------------------------------------------

def test_score_click_shows_engine_numbers(ui, tiny, small_bank):
    ui.followup.value = 6  # the first correctness negative: "That's wrong."
    ui.score_button.click()
    assert ui.last_error is None, ui.last_error
    assert ui.status.value.startswith("✓ scored")
    scorer, (a, b) = engine(tiny, small_bank, [RESP_A, RESP_B])
    _, (da, db) = engine(tiny, None, [RESP_A, RESP_B], scorer="direct")

    # summary table: FLR, mean positives, mean negatives, Direct for A then B, as printed
    got = numbers(ui.summary.value)
    for want in (a["reward"], a["pos"], a["neg"], da["reward"], b["reward"], b["pos"], b["neg"], db["reward"]):
        assert explore.fmt(want) in ui.summary.value
        assert min(abs(g - want) for g in got) < 1e-3
    assert ("FLR prefers A" if a["reward"] > b["reward"] else "FLR prefers B") in ui.summary.value

    # bar chart: one bar per follow-up, heights = the engine's per-follow-up log-probs
    fig = ui.figures["followups"]
    pos_ax, neg_ax = fig.axes[:2]
    items = small_bank.items()
    for ax, pol in ((pos_ax, "positive"), (neg_ax, "negative")):
        idx = [i for i, (_, p, _) in enumerate(items) if p == pol]
        for cont, row in zip(ax.containers, (a, b)):
            np.testing.assert_allclose(cont.datavalues, [row["followups"][i] for i in idx], atol=1e-5)
    assert ui.followup_plot.value[:4] == b"\x89PNG"

    # per-category table
    cats = explore.category_frame(ui.result)
    for cat in small_bank.categories:
        assert cats.loc[cat, "A"] == pytest.approx(a["categories"][cat], abs=1e-6)
        assert cats.loc[cat, "B"] == pytest.approx(b["categories"][cat], abs=1e-6)
        assert explore.fmt(a["categories"][cat]) in ui.category_table.value

    # per-token view of the chosen follow-up: its mean is the bar's value
    assert ui.result["followup"]["text"] == "That's wrong."
    for lab, row in (("A", a), ("B", b)):
        view = ui.result["tokens"][lab]
        assert np.mean(view["logprobs"]) == pytest.approx(row["followups"][6], abs=1e-4)
        assert "".join(view["tokens"]) == "That's wrong."
    assert "That&#x27;s wrong." in ui.tokens.value or "That's wrong." in ui.tokens.value
    assert ui.tokens.value.count("<span") == sum(len(v["tokens"]) for v in ui.result["tokens"].values())


def test_score_goes_through_the_shared_cache(tiny, small_bank, tmp_path):
    cache = tmp_path / "scores.jsonl"
    ui = make_ui(tiny, small_bank, cache)
    ui.score_button.click()
    lines = cache.read_text().splitlines()
    assert len(lines) == 4  # A and B under FLR, A and B under Direct
    scorer, _ = engine(tiny, small_bank, [RESP_A])
    conv = explore.parse_transcript(CONTEXT) + [{"role": "assistant", "content": RESP_A}]
    assert scorer._key(conv) in cache.read_text()  # the same key any other caller of the Scorer uses
    first = ui.summary.value
    ui.score_button.click()
    assert len(cache.read_text().splitlines()) == 4 and ui.summary.value == first  # nothing recomputed


@pytest.mark.parametrize("scorer, layout", [("direct", "base"), ("legacy_repo", "base"), ("flr", "feedback")])
def test_other_scorers_and_layouts(ui, tiny, small_bank, scorer, layout):
    ui.scorer.value, ui.layout.value = scorer, layout
    ui.score_button.click()
    assert ui.last_error is None, ui.last_error
    _, (a, b) = engine(tiny, small_bank, [RESP_A, RESP_B], scorer=scorer, layout=layout)
    assert explore.fmt(a["reward"]) in ui.summary.value and explore.fmt(b["reward"]) in ui.summary.value
    assert explore.SCORER_NAMES[scorer] in ui.summary.value
    if scorer == "direct":
        assert ui.result["followup"] is None and "no categories" in ui.category_table.value
        assert "".join(ui.result["tokens"]["A"]["tokens"]) == RESP_A
    else:
        assert ui.result["main"]["A"]["followups"] == pytest.approx(a["followups"], abs=1e-5)


def test_categories_and_single_response(ui, tiny, small_bank):
    ui.categories.value = ("correctness",)
    assert len(ui.followup.options) == 4  # the token-view picker follows the categories
    ui.response_b.value = "  "
    ui.score_button.click()
    assert ui.last_error is None, ui.last_error
    assert ui.result["labels"] == ["A"]
    _, (a,) = engine(tiny, small_bank, [RESP_A], categories=["correctness"])
    assert ui.result["main"]["A"]["reward"] == pytest.approx(a["reward"], abs=1e-6)
    assert list(explore.category_frame(ui.result).index) == ["correctness", "reward (mean)"]


@pytest.mark.parametrize("field, value, msg", [
    ("response_a", "   ", "response A is empty"),
    ("conversation", "User: hi\nAssistant: hello", "last turn must be 'User"),
    ("model", "no-such-org/no-such-model", "not reachable (offline)"),
    ("bank", "/nonexistent/bank.json", "No such file"),
])
def test_errors_are_shown_in_the_widget(ui, field, value, msg):
    ui.score_button.click()  # a good result first: an error must clear it
    assert ui.summary.value
    getattr(ui, field).value = value
    if field == "bank":
        assert msg in ui.error.value  # reported as soon as the field changes
    ui.score_button.click()
    assert ui.last_error is not None and msg in ui.last_error
    assert msg.replace("'", "&#x27;") in ui.error.value and "Traceback" not in ui.error.value
    assert ui.summary.value == "" and ui.result is None and not ui.score_button.disabled


def test_example_picker_fills_the_inputs(tiny, small_bank):
    ex = [{"id": "p1", "benchmark": "toy", "messages": [{"role": "user", "content": "Q1?"}], "chosen": "yes",
           "rejected": "no"},
          {"id": "p2", "benchmark": "toy", "messages": [{"role": "user", "content": "Q2?"}], "response": "maybe"}]
    u = explore.Explorer(examples=ex, loaded=tiny, bank=small_bank, cache=None)
    assert (u.conversation.value, u.response_a.value, u.response_b.value) == ("User: Q1?", "yes", "no")
    u.example.value = 1
    assert (u.conversation.value, u.response_a.value, u.response_b.value) == ("User: Q2?", "maybe", "")
    assert u.example.options[0][1] == -1 and "toy/p2: Q2?" in u.example.options[2][0]
    u.response_a.value = "maybe not"  # typing leaves the example: the picker says so and keeps the typed text
    assert u.example.value == -1 and u.response_a.value == "maybe not" and u.conversation.value == "User: Q2?"


def test_static_fallback_renders_the_same_views(ui, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    explore.show(ui, interactive=False)
    assert ui.last_error is None
    kinds = [type(o).__name__ for o in shown]
    assert kinds == ["HTML", "Image", "HTML", "HTML"]
    assert shown[0].data == explore.summary_html(ui.result)
    assert shown[1].data[:4] == b"\x89PNG"
    ui.response_a.value = ""
    shown.clear()
    explore.show(ui, interactive=False)
    assert len(shown) == 1 and "response A is empty" in shown[0].data
    shown.clear()
    explore.show(ui, interactive=True)
    assert shown == [ui]


def test_notebook_helpers_compare_pairs_and_heatmap(tiny, small_bank):
    pairs = [{"id": "p1", "messages": [{"role": "user", "content": "Capital of France?"}], "chosen": "Paris.",
              "rejected": "Berlin."},
             {"id": "p2", "messages": [{"role": "user", "content": "2+2?"}], "chosen": "4", "rejected": "5"}]
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

    shown = explore.conversation_html([{"role": "user", "content": "<b>x</b>"}], {"A": "a & b"})
    assert "&lt;b&gt;x&lt;/b&gt;" in shown and "a &amp; b" in shown

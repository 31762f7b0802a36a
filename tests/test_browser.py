"""Real-browser check: notebook 02 in JupyterLab, driven by headless Chromium, walked as a class would
(``browser_driver.walk``): the human-label line of a benchmark example, the token view changing without a second
scoring call, stale results marked after an input change, an HH transcript pasted and scored with the engine's
numbers. Screenshots of each state go to outputs/browser/ (git-ignored). Skips only when chromium or playwright is
missing (CI installs both)."""
import json
import time

import pytest

import browser_driver as drv
from flrlib import explore
from flrlib.paths import outputs_dir
from flrlib.scoring import ScoreConfig, Scorer

MISSING = drv.missing()

# installed in the notebook's kernel after the first Score: counts every scoring call and engine pass from then on
COUNT = """
import flrlib.compare as _e, flrlib.scoring as _s  # compare.py holds the explorer's scoring since the split
_calls = {"score": 0, "engine": 0}
_real = (_s.Scorer.score, _e.engine_logprobs)
def _score(*a, **k):
    _calls["score"] += 1
    return _real[0](*a, **k)
def _engine(*a, **k):
    _calls["engine"] += 1
    return _real[1](*a, **k)
_s.Scorer.score, _e.engine_logprobs = _score, _engine
"""


@pytest.mark.browser
@pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
def test_explorer_in_jupyterlab(tmp_path, tiny, data_ready):
    t0 = time.time()
    nb = drv.prepare(tmp_path, drv.TINY_PARAMS)
    shots = outputs_dir("browser") / "test"
    with drv.jupyterlab(tmp_path) as url, drv.open_notebook(url, nb.name, tmp_path, shots) as lab:
        before = lab.state()
        assert before["images"] == 0 and "Score" in before["widget_text"]  # nothing shown yet: no broken image
        assert "A is the response the annotators chose" in before["widget_text"]
        assert before["box_hides"] <= 2  # the example's conversation fits its box
        lab.shot("01_before_scoring")

        # 1. a benchmark example: the verdict comes first and names the human label
        ex = lab.score()
        assert ex["error_text"] == "", ex["error_text"]
        assert "the annotators chose A and rejected B" in ex["summary_text"]
        assert "A (chosen by annotators)" in ex["summary_text"] and "B (rejected)" in ex["summary_text"]
        for name in ("FLR", "Direct", "length (longer wins)"):  # each scorer's line says "agrees"/"disagrees"
            line = [x for x in ex["summary_text"].splitlines() if x.startswith((name + " prefers", name + ":"))
                    and "human label" in x]
            assert len(line) == 1 and "agrees with the human label" in line[0], ex["summary_text"]
        text = ex["widget_text"]  # the verdict first, then the follow-ups that moved, then the token view
        assert text.index("the annotators chose A") < text.index("Follow-ups that moved most") \
            < text.index("the log-prob of each of its tokens")
        lab.shot("02_verdict_benchmark_example")
        assert ex["chart_width"] > 500  # the per-category A - B chart arrived as an image
        seen = " | ".join(ex["status_seen"])
        assert "step 1 of 3" in seen and "elapsed" in seen and "about" in seen, seen  # phase, time, estimate
        assert lab.kernel(COUNT) == ""

        # 2. another follow-up in the token view: re-rendered from stored values, no scoring call
        lab.pick_token_view(3)
        lab.wait_text(".flr-token-panel", f"t !== {json.dumps(ex['tokens_text'])} && t.length > 0")
        tv = lab.state()
        assert tv["tokens_text"] != ex["tokens_text"] and "#2" in tv["tokens_text"]
        lab.ui.locator(".flr-moves-sort select").select_option(label="most for B")
        lab.wait_text(".flr-moves", "t.includes('effect towards B')")
        lab.shot("03_token_view_changed")
        counts = json.loads(lab.kernel("import json; print(json.dumps(dict(_calls, clicks=ui.score_calls)))"))
        assert counts == {"score": 0, "engine": 0, "clicks": 1}, counts

        # 3. an input changed: the results are greyed out and say so
        lab.fill(b="No, and do not ask me again.")
        lab.wait_text(".flr-status", "t.includes('inputs changed')")
        stale = lab.state()
        assert stale["stale"] and "inputs changed (response B) — press Score" in stale["widget_text"]
        lab.shot("04_stale_after_edit")

        # 4. an HH transcript pasted whole (its last reply moves into A), scored: the engine's numbers, no label
        lab.fill(a="")
        lab.fill(conversation=drv.HH_TRANSCRIPT, b=drv.HH_REJECTED)
        lab.wait_text(".flr-explorer", "t.includes('moved into response A')")
        hh = lab.score()
        lab.shot("05_hh_transcript_scored")
        assert hh["error_text"] == "" and not hh["stale"] and hh["box_hides"] <= 2
        assert "human label" not in hh["summary_text"] and "annotators" not in hh["summary_text"]
        got = json.loads(lab.kernel("import json; print(json.dumps([ui.result['context'], ui.result['responses']]))"))

        # 5. the set-up tab: the model field shows its whole value, each layout and scorer is explained
        lab.ui.locator(".lm-TabBar-tab", has_text="model · bank · scorer").click()
        lab.wait_text(".flr-setup-help", "t.includes('base: M reads')")
        model = lab.ui.locator(".flr-model-field input")
        assert model.evaluate("i => i.scrollWidth <= i.clientWidth"), "the model field cuts its value off"
        assert "legacy" not in lab.ui.locator(".flr-setup-help").inner_text()
        scorer = lab.ui.locator(".widget-dropdown", has_text="scorer").locator("select")
        scorer.select_option(label=explore.SCORER_NAMES["legacy_repo"])
        lab.wait_text(".flr-setup-help", "t.includes('one full forward per follow-up')")
        lab.shot("06_setup_tab_legacy_explained")
    context, responses = got
    want_ctx, reply = explore.split_transcript(drv.HH_TRANSCRIPT)
    assert context == want_ctx and responses == {"A": reply, "B": drv.HH_REJECTED}
    convs = [want_ctx + [{"role": "assistant", "content": r}] for r in (reply, drv.HH_REJECTED)]
    flr = Scorer(tiny, "paper", ScoreConfig(scorer="flr"), cache=None).score(convs, progress=False)
    direct = Scorer(tiny, None, ScoreConfig(scorer="direct"), cache=None).score(convs, progress=False)
    shown = drv.numbers(hh["summary_text"].replace("−", "-"))
    for want in (flr[0]["reward"], flr[1]["reward"], flr[0]["pos"], flr[0]["neg"], direct[0]["reward"],
                 direct[1]["reward"]):
        assert min(abs(x - want) for x in shown) <= 1.5e-3, (want, hh["summary_text"])
    assert all((shots / f"{n}.png").stat().st_size > 10_000 for n in ("02_verdict_benchmark_example",
                                                                       "05_hh_transcript_scored"))
    assert time.time() - t0 < 240

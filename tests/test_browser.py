"""Real-browser check: notebook 02 in JupyterLab, driven by headless Chromium; the explorer's Score button shows the
engine's FLR and Direct numbers. Skips only when chromium or playwright is missing (CI installs both)."""
import time

import pytest

import browser_driver as drv
from flrlib import explore
from flrlib.paths import outputs_dir
from flrlib.scoring import ScoreConfig, Scorer

CONVERSATION = "User: Can you recommend a good book about the history of mathematics?"
RESP_A = "Try 'Journey through Genius' by William Dunham: it tells the stories of great theorems and their authors."
RESP_B = "No."


MISSING = drv.missing()


@pytest.mark.browser
@pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
def test_explorer_in_jupyterlab(tmp_path, tiny, data_ready):
    t0 = time.time()
    nb = drv.prepare(tmp_path, drv.TINY_PARAMS)
    shot = outputs_dir("browser") / "explorer_tiny.png"
    with drv.jupyterlab(tmp_path) as url:
        out = drv.run_explorer(url, nb.name, CONVERSATION, RESP_A, RESP_B, shot, tmp_path)
    assert out["error_text"] == "", out["error_text"]

    # the numbers the engine gives for the same input (computed here, in the test process)
    convs = [explore.parse_transcript(CONVERSATION) + [{"role": "assistant", "content": r}] for r in (RESP_A, RESP_B)]
    flr = Scorer(tiny, "paper", ScoreConfig(scorer="flr"), cache=None).score(convs, progress=False)
    direct = Scorer(tiny, None, ScoreConfig(scorer="direct"), cache=None).score(convs, progress=False)
    shown = drv.numbers(out["summary_text"])
    assert "FLR" in out["summary_text"] and "Direct" in out["summary_text"]
    for want in (flr[0]["reward"], flr[1]["reward"], flr[0]["pos"], flr[0]["neg"], direct[0]["reward"],
                 direct[1]["reward"]):
        assert min(abs(x - want) for x in shown) <= 1.5e-3, (want, out["summary_text"])
    assert "Per-category reward" in out["widget_text"] and "mean log p" in out["widget_text"]
    assert out["plot_width"] > 500  # the follow-up bar chart arrived as an image
    assert shot.exists() and shot.stat().st_size > 10_000
    assert time.time() - t0 < 180

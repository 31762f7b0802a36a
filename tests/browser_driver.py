"""Drive notebook 02's explorer in a real JupyterLab with headless Chromium (Playwright). Used by test_browser.py.

Run directly for the screenshots with another model (e.g. the bundled SmolLM2)::

    .venv/bin/python tests/browser_driver.py --model bundled:smollm2-135m-instruct --out outputs/browser/smollm2

What it does: copies notebook 02 into a temporary folder with its parameters overridden (as papermill would), starts
JupyterLab there on a free localhost port (token off, its own config/runtime/settings folders, result folders in
the temporary folder, so nothing is written into notebooks/ or results/), opens the notebook in Chromium, runs all
cells, then walks the explorer as a class would (``walk``): scores the first benchmark example, changes the token
view, edits a response, pastes an HH transcript and scores it, with a screenshot of each state (``outputs/`` is
git-ignored).

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and ``pip install playwright`` (never
``playwright install``: the system Chromium is used through ``executable_path``).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "02_flr_scoring.ipynb"
# without these Chromium hangs on network lookups on a machine without internet
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SETTINGS = {"@jupyterlab/notebook-extension/tracker": {"autoStartDefaultKernel": True, "windowingMode": "none"},
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}}
TINY_PARAMS = {"profile": "smoke", "model": "random:tiny-llama", "device": "cpu", "dtype": "float32",
               "max_examples": 4, "n_pairs": 1, "n_legacy_pairs": 0, "interactive": True}


def chromium_path() -> str | None:
    path = os.environ.get("FLR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if Path(path).exists() else None


def missing() -> str | None:
    """Why the browser check cannot run here (None when it can)."""
    if chromium_path() is None:
        return "chromium is not installed (Debian: apt-get install -y chromium; or set FLR_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return ("playwright is not installed (pip install playwright; it drives the system chromium: "
                "no `playwright install`)")
    return None


def prepare(workdir: Path, params: dict) -> Path:
    """Copy notebook 02 into ``workdir`` with ``params`` appended to its parameters cell."""
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\n# browser check\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
    target = workdir / NOTEBOOK.name
    nbformat.write(nb, target)
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(workdir: Path, timeout: float = 60):
    """A JupyterLab server in ``workdir`` on a free localhost port; yields its base URL; stops it and its kernels."""
    port = _free_port()
    private = workdir / ".jupyter-private"
    for name, values in SETTINGS.items():  # start the notebook's kernel without asking; no news, no update check
        f = private / "settings" / f"{name}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(private / "config"), JUPYTER_RUNTIME_DIR=str(private / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(private / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(private / "ws"),
               JUPYTER_DATA_DIR=str(private / "data"), IPYTHONDIR=str(private / "ipython"),
               FLR_RESULTS_DIR=str(workdir / "results"),
               FLR_FIGURES_DIR=str(workdir / "figures"), FLR_OUTPUTS_DIR=str(workdir / "outputs"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", FLR_OFFLINE="1")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--allow-root", "--IdentityProvider.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           f"--ServerApp.root_dir={workdir}", "--ServerApp.port_retries=0", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
           "--LabApp.expose_app_in_browser=True"]
    log = open(workdir / "jupyterlab.log", "w")
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None:
                tail = (workdir / "jupyterlab.log").read_text()[-2000:]
                raise RuntimeError(f"JupyterLab exited with {proc.returncode}: {tail}")
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() - t0 > timeout:
                raise TimeoutError(f"JupyterLab did not answer on {url} within {timeout} s")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(OSError):  # shuts the kernels down too
            urllib.request.urlopen(urllib.request.Request(f"{url}/api/shutdown", method="POST"), timeout=10).close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


class Lab:
    """Notebook 02 open in JupyterLab in headless Chromium, all cells run: the explorer's inputs and outputs as
    plain strings, the notebook's kernel one call away, screenshots on request."""

    def __init__(self, page, shots: Path):
        self.page, self.shots, self.t0 = page, shots, time.time()
        self.ui = page.locator(".flr-explorer")

    def log(self, step: str) -> None:
        print(f"[browser {time.time() - self.t0:5.1f} s] {step}", file=sys.stderr, flush=True)

    def kernel(self, code: str) -> str:
        """Run ``code`` in the notebook's kernel (not in a cell); returns what it printed."""
        return self.page.evaluate(
            """async (code) => {
                 const k = window.jupyterapp.shell.currentWidget.context.sessionContext.session.kernel;
                 const f = k.requestExecute({code, store_history: false});
                 let out = '';
                 f.onIOPub = (m) => { if (m.header.msg_type === 'stream') out += m.content.text;
                                      if (m.header.msg_type === 'error') out += 'ERROR ' + m.content.evalue; };
                 await f.done; return out; }""", code)

    def fill(self, conversation: str | None = None, a: str | None = None, b: str | None = None) -> None:
        boxes = self.ui.locator("textarea")
        for k, text in enumerate((conversation, a, b)):
            if text is not None:
                boxes.nth(k).fill(text)
                boxes.nth(k).blur()

    def wait_text(self, selector: str, predicate_js: str, timeout: float = 30) -> None:
        """Wait until ``predicate_js`` (a JS expression in ``t``, the innerText of ``selector`` inside the explorer,
        or of the explorer itself for ``.flr-explorer``) holds."""
        css = selector if selector == ".flr-explorer" else f".flr-explorer {selector}"
        self.page.wait_for_function(
            f"() => {{ const e = document.querySelector({json.dumps(css)}); const t = e ? e.innerText : '';"
            f" return {predicate_js}; }}", timeout=timeout * 1000)

    def score(self, timeout: float = 120) -> dict:
        """Click Score, wait for the result (or an error); returns :meth:`state` with ``status_seen``, the texts
        the status line showed while scoring."""
        self.page.evaluate(
            """() => { const el = document.querySelector('.flr-explorer .flr-status'); window.__flrSeen = [];
                       window.__flrObs && window.__flrObs.disconnect();
                       window.__flrObs = new MutationObserver(() => window.__flrSeen.push(el.innerText));
                       window.__flrObs.observe(el, {subtree: true, childList: true, characterData: true}); }""")
        self.ui.locator(".flr-score").click()
        self.page.wait_for_function(
            "() => { const t = document.querySelector('.flr-explorer .flr-status').innerText;"
            "        return t.includes('scored in') || t.includes('not scored'); }", timeout=timeout * 1000)
        out = self.state()
        out["status_seen"] = self.page.evaluate("() => window.__flrSeen")
        return out

    def pick_token_view(self, index: int) -> None:
        self.ui.locator(".flr-token-picker select").select_option(index=index)

    def state(self) -> dict:
        def text(sel):
            loc = self.ui.locator(sel)
            return loc.first.inner_text() if loc.count() else ""

        return {"widget_text": self.ui.inner_text(), "summary_text": text(".flr-explorer-summary"),
                "error_text": text(".flr-error"), "status_text": text(".flr-status"),
                "tokens_text": text(".flr-token-panel"), "moves_text": text(".flr-moves"),
                "stale": self.ui.locator(".flr-results.flr-stale").count() > 0,
                "images": self.ui.locator("img").count(),
                "chart_width": self.ui.locator("img.flr-chart").first.evaluate("i => i.naturalWidth")
                if self.ui.locator("img.flr-chart").count() else 0,
                # the conversation box shows its whole text (it grew instead of hiding the last turn)
                "box_hides": self.ui.locator(".flr-conversation-box textarea").evaluate(
                    "t => t.scrollHeight - t.clientHeight")}

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.ui.screenshot(path=str(path))
        self.log(f"screenshot {path}")
        return path


@contextlib.contextmanager
def open_notebook(url: str, notebook: str, workdir: Path, shots: Path, run_timeout: float = 150,
                  viewport: dict | None = None):
    """Open ``notebook`` in Chromium, run all cells, wait for the explorer; yields a :class:`Lab`."""
    from playwright.sync_api import sync_playwright

    ms = 1000
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(workdir / ".chromium-profile"), executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS,
            viewport=viewport or {"width": 1280, "height": 2400})
        page = None
        try:
            page = ctx.new_page()
            lab = Lab(page, shots)
            lab.log("chromium started")
            page.goto(f"{url}/lab/tree/{notebook}", wait_until="domcontentloaded", timeout=60 * ms)
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60 * ms)
            page.wait_for_function("() => window.jupyterapp !== undefined", timeout=30 * ms)
            page.wait_for_function(  # the notebook's own kernel started and idle (run-all would start a second one)
                """() => { const w = window.jupyterapp.shell.currentWidget;
                           const k = w && w.context && w.context.sessionContext.session
                                     && w.context.sessionContext.session.kernel;
                           return k && k.connectionStatus === 'connected' && k.status === 'idle'; }""",
                timeout=90 * ms)
            lab.log("notebook open, kernel idle: running all cells")
            ok = page.evaluate(
                """async (t) => await Promise.race([
                       window.jupyterapp.commands.execute('notebook:run-all-cells'),
                       new Promise((_, reject) => setTimeout(() => reject(new Error('run-all timed out')), t))])""",
                run_timeout * ms)
            if ok is False:
                errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
                detail = errors.last.inner_text()[-1500:] if errors.count() else "?"
                raise AssertionError(f"a notebook cell failed: {detail}")
            lab.ui.wait_for(state="visible", timeout=30 * ms)
            lab.ui.scroll_into_view_if_needed()
            lab.log("all cells ran; the explorer is shown")
            yield lab
        except Exception:
            if page is not None:  # what the page looked like when it failed
                with contextlib.suppress(Exception):
                    shots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(shots / "failed.png"))
            raise
        finally:
            ctx.close()


# a pasted HH-RLHF transcript: Human:/Assistant: turns, blank lines, ending with the assistant's reply
HH_TRANSCRIPT = ("Human: Can you recommend a good book about the history of mathematics?\n\n"
                 "Assistant: Sure. Do you prefer a narrative history or one with the mathematics worked out?\n\n"
                 "Human: A narrative one, please, something a curious teenager could read.\n\n"
                 "Assistant: Try 'Journey through Genius' by William Dunham: it tells the stories of great theorems "
                 "and the people who proved them, one chapter each.")
HH_REJECTED = "No."


def walk(lab: Lab) -> dict:
    """The classroom walk: score the first benchmark example, change the token view, edit an input, paste an HH
    transcript and score it; a screenshot of each state. Returns each step's :meth:`Lab.state`."""
    steps = {"before": lab.state()}
    lab.shot("01_before_scoring")
    steps["example"] = lab.score(timeout=600)
    lab.shot("02_verdict_benchmark_example")
    before = steps["example"]["tokens_text"]
    lab.pick_token_view(3)
    lab.wait_text(".flr-token-panel", f"t !== {json.dumps(before)} && t.length > 0")
    steps["token_view"] = lab.state()
    lab.ui.locator(".flr-token-panel").scroll_into_view_if_needed()
    lab.shot("03_token_view_changed")
    lab.fill(b=HH_REJECTED + " Really.")
    lab.wait_text(".flr-status", "t.includes('inputs changed')")
    steps["stale"] = lab.state()
    lab.shot("04_stale_after_edit")
    lab.fill(a="")  # a whole HH transcript pasted: its last reply goes into response A
    lab.fill(conversation=HH_TRANSCRIPT, b=HH_REJECTED)
    lab.wait_text(".flr-explorer", "t.includes('moved into response A')")
    steps["hh"] = lab.score(timeout=600)
    lab.shot("05_hh_transcript_scored")
    return steps


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", text)]


def main(argv=None) -> int:  # pragma: no cover - manual screenshots
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:tiny-llama")
    ap.add_argument("--out", default=str(ROOT / "outputs" / "browser" / "manual"), help="screenshot folder")
    a = ap.parse_args(argv)
    reason = missing()
    if reason:
        print("cannot run:", reason)
        return 2
    params = dict(TINY_PARAMS, model=a.model)
    if not a.model.startswith("random:"):
        params.update(profile="demo", device="auto", dtype="auto", n_pairs=6, n_legacy_pairs=0, max_examples=40)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="flr-browser-") as tmp:
        work = Path(tmp)
        nb = prepare(work, params)
        with jupyterlab(work) as url, open_notebook(url, nb.name, work, Path(a.out), run_timeout=900) as lab:
            steps = walk(lab)
    out = {k: {f: v[f] for f in ("summary_text", "status_text", "error_text", "stale")} for k, v in steps.items()}
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

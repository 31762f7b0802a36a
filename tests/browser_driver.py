"""Drive notebook 02's explorer in a real JupyterLab with headless Chromium (Playwright). Used by test_browser.py.

Run directly for a screenshot with another model (e.g. the bundled SmolLM2)::

    .venv/bin/python tests/browser_driver.py --model bundled:smollm2-135m-instruct --out outputs/browser/smollm2.png

What it does: copies notebook 02 into a temporary folder with its parameters overridden (as papermill would), starts
JupyterLab there on a free localhost port (token off, its own config/runtime/settings folders, result folders in
the temporary folder, so nothing is written into notebooks/ or results/), opens the notebook in Chromium, runs all
cells, types a conversation and two responses into the explorer, clicks Score, waits for the result and saves a
screenshot of the widget.

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


def run_explorer(url: str, notebook: str, conversation: str, response_a: str, response_b: str, screenshot: Path,
                 workdir: Path, run_timeout: float = 150, score_timeout: float = 120) -> dict:
    """Open the notebook, run all cells, fill the explorer, click Score; returns the texts the widget shows."""
    from playwright.sync_api import sync_playwright

    ms, t0 = 1000, time.time()

    def log(step: str) -> None:
        print(f"[browser {time.time() - t0:5.1f} s] {step}", file=sys.stderr, flush=True)

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(workdir / ".chromium-profile"), executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 2600})
        page = None
        try:
            log("chromium started")
            page = ctx.new_page()
            page.goto(f"{url}/lab/tree/{notebook}", wait_until="domcontentloaded", timeout=60 * ms)
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60 * ms)
            page.wait_for_function("() => window.jupyterapp !== undefined", timeout=30 * ms)
            page.wait_for_function(  # the notebook's own kernel started and idle (run-all would start a second one)
                """() => { const w = window.jupyterapp.shell.currentWidget;
                           const k = w && w.context && w.context.sessionContext.session
                                     && w.context.sessionContext.session.kernel;
                           return k && k.connectionStatus === 'connected' && k.status === 'idle'; }""",
                timeout=90 * ms)
            log("notebook open, kernel idle: running all cells")
            ok = page.evaluate(
                """async (t) => await Promise.race([
                       window.jupyterapp.commands.execute('notebook:run-all-cells'),
                       new Promise((_, reject) => setTimeout(() => reject(new Error('run-all timed out')), t))])""",
                run_timeout * ms)
            if ok is False:
                errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
                detail = errors.last.inner_text()[-1500:] if errors.count() else "?"
                raise AssertionError(f"a notebook cell failed: {detail}")
            ui = page.locator(".flr-explorer")
            ui.wait_for(state="visible", timeout=30 * ms)
            log("all cells ran; filling the explorer")
            boxes = ui.locator("textarea")
            for box, text in zip((boxes.nth(0), boxes.nth(1), boxes.nth(2)), (conversation, response_a, response_b)):
                box.fill(text)
                box.blur()
            ui.locator("button", has_text=re.compile(r"^\s*Score\s*$")).click()
            log("Score clicked")
            page.wait_for_function(
                "() => { const t = document.querySelector('.flr-explorer').innerText;"
                "        return t.includes('scored in') || t.includes('Error:'); }", timeout=score_timeout * ms)
            summary = ui.locator(".flr-explorer-summary")
            error = ui.locator(".flr-error")
            out = {"widget_text": ui.inner_text(),
                   "summary_text": summary.inner_text() if summary.count() else "",
                   "error_text": error.inner_text() if error.count() else "",
                   "plot_width": ui.locator("img").first.evaluate("img => img.naturalWidth")
                   if ui.locator("img").count() else 0}
            summary.scroll_into_view_if_needed() if summary.count() else None
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            ui.screenshot(path=str(screenshot))
            out["screenshot"] = str(screenshot)
            log(f"done: {screenshot}")
            return out
        except Exception:
            if page is not None:  # what the page looked like when it failed
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(screenshot.with_name(screenshot.stem + "-failed.png")))
            raise
        finally:
            ctx.close()


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", text)]


def main(argv=None) -> int:  # pragma: no cover - manual screenshots
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:tiny-llama")
    ap.add_argument("--out", default=str(ROOT / "outputs" / "browser" / "explorer.png"))
    ap.add_argument("--conversation", default="User: Can you recommend a good book about the history of mathematics?")
    ap.add_argument("--a", default="Try 'Journey through Genius' by William Dunham: it tells the stories of great "
                                   "theorems and the people who proved them.")
    ap.add_argument("--b", default="No.")
    a = ap.parse_args(argv)
    reason = missing()
    if reason:
        print("cannot run:", reason)
        return 2
    params = dict(TINY_PARAMS, model=a.model)
    if not a.model.startswith("random:"):
        params.update(profile="demo", device="auto", dtype="auto")
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="flr-browser-") as tmp:
        work = Path(tmp)
        nb = prepare(work, params)
        with jupyterlab(work) as url:
            out = run_explorer(url, nb.name, a.conversation, a.a, a.b, Path(a.out), work, run_timeout=500,
                               score_timeout=300)
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps({k: v for k, v in out.items() if k != "widget_text"}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

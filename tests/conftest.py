"""Shared fixtures. Tests never touch the network: the Hub and downloads are switched off here.

The test session has its own cache and results folders (a temporary folder, removed at the end): score, judge,
rewrite and generation caches, adapters, result files and figures all go there, so a test never reads a value an
older engine cached in the user's cache and leaves nothing in it. The one thing shared is the converted models
folder (``<user cache>/models``, linked into the session's cache): tests only read it, apart from the one-time
conversion `flr setup` would make anyway. A session-finish check names anything else a test left in the user's
cache (:func:`pytest_sessionfinish`).
"""
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["FLR_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

USER_CACHE = Path(os.environ.get("FLR_CACHE_DIR") or Path.home() / ".cache" / "flrlib").expanduser().resolve()
SESSION_DIR = Path(tempfile.mkdtemp(prefix="flr-tests-")).resolve()
SESSION_ENV = {"FLR_CACHE_DIR": str(SESSION_DIR / "cache"), "FLR_RESULTS_DIR": str(SESSION_DIR / "results"),
               "FLR_FIGURES_DIR": str(SESSION_DIR / "figures")}
(USER_CACHE / "models").mkdir(parents=True, exist_ok=True)
(SESSION_DIR / "cache").mkdir()
(SESSION_DIR / "cache" / "models").symlink_to(USER_CACHE / "models", target_is_directory=True)
os.environ.update(SESSION_ENV)
_STARTED = time.time()

import pytest  # noqa: E402

from flrlib import models  # noqa: E402


@pytest.fixture(autouse=True)
def _session_folders():
    """Every test starts in the session's folders, even after a test that set and deleted one of the variables
    itself instead of through ``monkeypatch``."""
    os.environ.update(SESSION_ENV)


def _leaked() -> list[Path]:
    """Files outside ``models/`` of the user's cache written since the session began."""
    if not USER_CACHE.exists():
        return []
    return sorted(p for p in USER_CACHE.rglob("*") if p.is_file() and not p.is_symlink()
                  and p.relative_to(USER_CACHE).parts[0] != "models" and p.stat().st_mtime >= _STARTED)


def pytest_sessionfinish(session, exitstatus):
    """Remove the session's folders (``FLR_KEEP_TEST_DIRS=1`` keeps them) and check the user's cache: a file there
    named after the test-only tiny model is a test's leak and fails the session; any other new file is reported
    (it may come from another `flr` run on this machine at the same time)."""
    leaked = _leaked()
    tiny = [p for p in leaked if "tiny" in p.name]
    if tiny:
        session.exitstatus = 1
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leaked and reporter is not None:
        reporter.write_line(("FAILED: tests wrote" if tiny else "warning: new files") + f" in the user's cache "
                            f"{USER_CACHE} outside models/ (tests have their own, {SESSION_ENV['FLR_CACHE_DIR']}): "
                            + ", ".join(str(p.relative_to(USER_CACHE)) for p in leaked[:10]), red=bool(tiny))
    bad = _not_strict_results(session)
    if bad:
        session.exitstatus = 1
        if reporter is not None:
            reporter.write_line(f"FAILED: {len(bad)} result files written by this session are not strict JSON "
                                f"(flrlib.results writes undefined numbers as null): " + "; ".join(bad[:5]), red=True)
    if os.environ.get("FLR_KEEP_TEST_DIRS") != "1":
        shutil.rmtree(SESSION_DIR, ignore_errors=True)


def _not_strict_results(session) -> list[str]:
    """Result files this session wrote (its results folder, and every ``results`` folder under pytest's temporary
    folders, e.g. the smoke-profile notebooks' run) that a strict JSON parser rejects."""
    from helpers import not_strict_json, result_files

    folders = [SESSION_DIR / "results"]
    factory = getattr(session.config, "_tmp_path_factory", None)
    try:
        base = factory.getbasetemp() if factory is not None else None
    except (OSError, ValueError):
        base = None
    if base is not None and base.exists():
        folders += [d for d in base.rglob("results") if d.is_dir()]
    return not_strict_json(result_files(*folders))


@pytest.fixture(scope="session")
def data_ready():
    """The data folder, populated from the mirror (never downloaded in tests)."""
    from flrlib.data import fetch
    from flrlib.paths import data_dir

    fetch(online=False, verbose=False)
    return data_dir()


@pytest.fixture(scope="session")
def tiny():
    """Tiny random-weight Llama (2 layers, hidden 64) with the real SmolLM2 tokenizer; built once, in seconds."""
    return models.load_model(models.TINY, dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def smol():
    """The real bundled SmolLM2-135M-Instruct (end-to-end tests only)."""
    return models.load_model(models.BUNDLED, dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def paper_bank(data_ready):
    from flrlib.followups import load_bank

    return load_bank("paper")


@pytest.fixture(scope="session")
def small_bank():
    """Two categories x 2 + 2 utterances: quick engine tests."""
    from flrlib.followups import make_bank

    return make_bank({
        "relevance": {"positive": ["That answers my question perfectly.", "Thanks, that helps!"],
                      "negative": ["That's not what I was asking.", "Huh?"]},
        "correctness": {"positive": ["That is correct.", "You are right, thank you very much for checking."],
                        "negative": ["That's wrong.", "I think you made a mistake there."]},
    }, name="small")


@pytest.fixture
def convs():
    """Three conversations ending with an assistant turn (tests/helpers.py's CONVS, a fresh copy)."""
    from helpers import conversations

    return conversations()


@pytest.fixture
def results(tmp_path, monkeypatch):
    """A results folder of the test's own (FLR_RESULTS_DIR), for tests that read back what they wrote."""
    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """llama.cpp's OpenAI-compatible server on 127.0.0.1 and a free port, serving the bundled SmolLM2 GGUF as model
    ``smollm2`` (tests/llama_server.py); stopped at the end of the session. Needs the ``server`` extra
    (``pip install -e .[server]``, which `make test` installs); skipped with that reason without it."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed (pip install -e .[server])")
    from llama_server import LlamaServer

    server = LlamaServer(tmp_path_factory.mktemp("llama_server") / "server.log").start()
    yield server
    server.stop()

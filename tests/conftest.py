"""Shared fixtures. Tests never touch the network: the Hub and downloads are switched off here."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["FLR_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from flrlib import models  # noqa: E402


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
    return [
        [{"role": "user", "content": "What is the capital of France?"},
         {"role": "assistant", "content": "The capital of France is Paris."}],
        [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"},
         {"role": "user", "content": "Tell me a joke about cats, a long one please."},
         {"role": "assistant", "content": "Why did the cat sit on the computer? To keep an eye on the mouse!"}],
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4"}],
    ]


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

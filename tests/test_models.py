"""Model loading: the bundled GGUF model, the tiny model, clear errors for what cannot be loaded here."""
import time

import pytest

from flrlib import models
from helpers import user


def test_tiny_model_shape(tiny):
    cfg = tiny.model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size) == (2, 64)
    assert cfg.vocab_size == len(tiny.tokenizer) and tiny.tokenizer.chat_template


def test_unknown_specs_fail_fast_with_a_suggestion(tmp_path):
    with pytest.raises(models.ModelNotAvailable, match="Known"):
        models.resolve("bundled:nope")
    t = time.time()
    with pytest.raises(models.ModelNotAvailable, match="bundled"):
        models.load_model("someone/model-that-is-not-cached", device="cpu")
    assert time.time() - t < 10  # offline: no long network hang
    (tmp_path / "empty").mkdir()
    with pytest.raises(models.ModelNotAvailable, match="config.json"):
        models.resolve(str(tmp_path / "empty"))


def test_flr_offline_alone_keeps_model_loading_off_the_network(monkeypatch):
    """Only FLR_OFFLINE=1 set: no DNS query, no connection, and an error that says the run is offline."""
    import socket

    def forbidden(*a, **k):
        raise AssertionError(f"network call while FLR_OFFLINE=1: {a!r:.80}")

    for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("FLR_OFFLINE", "1")
    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    with pytest.raises(models.ModelNotAvailable, match=r"not reachable \(offline\): one of FLR_OFFLINE"):
        models.load_model("some-org/does-not-exist", device="cpu")


def test_importing_flrlib_switches_the_hf_libraries_offline():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code = "import flrlib, huggingface_hub.constants as c, os; print(c.HF_HUB_OFFLINE, os.environ['HF_DATASETS_OFFLINE'])"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "FLR_OFFLINE": "1"}, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "1"], out.stderr


def test_folder_hash_changes_with_content(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"1")
    h1 = models.folder_hash(tmp_path)
    (tmp_path / "a.bin").write_bytes(b"2")
    assert models.folder_hash(tmp_path) != h1


@pytest.mark.slow
def test_bundled_model_answers_coherently(smol):
    """The Q4_1 GGUF was converted once to a plain fp32 safetensors model (TRL and peft refuse quantised ones)."""
    import json

    import torch
    from safetensors import safe_open

    folder = models.bundled_folder()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    with safe_open(folder / "model.safetensors", "pt") as f:
        names = list(f.keys())
        assert len(names) > 100 and {f.get_slice(n).get_dtype() for n in names} == {"F32"}
    assert getattr(smol.model, "hf_quantizer", None) is None
    assert {p.dtype for p in smol.model.parameters()} == {torch.float32}
    assert 130e6 < sum(p.numel() for p in smol.model.parameters()) < 140e6  # SmolLM2-135M
    q = user("What is the capital of France?")
    ids = smol.tokenizer.apply_chat_template(q, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = smol.model.generate(**ids, max_new_tokens=20, do_sample=False)
    assert "Paris" in smol.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_auto_device_is_this_ranks_gpu(monkeypatch):
    """Defect (#23): under a multi-process launch every rank's model went to "cuda" (GPU 0). With WORLD_SIZE > 1
    the automatic device is the GPU of the process's LOCAL_RANK; a plain run keeps "cuda"; too few GPUs is
    refused."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    for var in ("WORLD_SIZE", "LOCAL_RANK", "RANK"):
        monkeypatch.delenv(var, raising=False)
    assert models.pick_device() == "cuda" and models.pick_device("cpu") == "cpu"
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert models.pick_device() == "cuda:2" and models.pick_device("cuda:0") == "cuda:0"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert models.pick_dtype("auto", "cuda:2") == torch.bfloat16  # a GPU named with its index is still a GPU
    monkeypatch.setenv("LOCAL_RANK", "5")
    with pytest.raises(models.ModelNotAvailable, match="LOCAL_RANK=5 but this process sees 4 GPU"):
        models.pick_device()

"""Model loading: the bundled GGUF model, the tiny model, clear errors for what cannot be loaded here."""
import time

import pytest

from flrlib import models


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


def test_folder_hash_changes_with_content(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"1")
    h1 = models.folder_hash(tmp_path)
    (tmp_path / "a.bin").write_bytes(b"2")
    assert models.folder_hash(tmp_path) != h1


@pytest.mark.slow
def test_bundled_model_answers_coherently(smol):
    assert smol.model.hf_quantizer is None if hasattr(smol.model, "hf_quantizer") else True
    assert (models.bundled_folder() / "model.safetensors").exists()
    q = [{"role": "user", "content": "What is the capital of France?"}]
    ids = smol.tokenizer.apply_chat_template(q, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = smol.model.generate(**ids, max_new_tokens=20, do_sample=False)
    assert "Paris" in smol.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

"""The scoring engine against its oracle, batch invariance, the arithmetic of each scorer, resume, layouts."""
import json
import warnings

import numpy as np
import pytest
import torch

from flrlib.chat import FEEDBACK_REQUEST, TemplateError, encode, flr_context, render
from flrlib.scoring import (ScoreConfig, Scorer, engine_logprobs, legacy_values, naive_logprobs,
                            padded_logprobs)
from helpers import user


def _max_diff(a, b):
    return max(float(np.abs(x - y).max()) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def _encs(loaded, bank, convs, layout="base"):
    sc = Scorer(loaded, bank, ScoreConfig(layout=layout), cache=None)
    return sc, [sc.encode(c) for c in convs]


@pytest.mark.parametrize("layout", ["base", "feedback"])
def test_engine_matches_naive_oracle(tiny, small_bank, convs, layout):
    sc, encs = _encs(tiny, small_bank, convs, layout)
    oracle = naive_logprobs(tiny.model, encs)
    for chunk in (3, 64):
        got = engine_logprobs(tiny.model, encs, sc.pad_id, chunk_size=chunk)
        assert [len(x) for r in got for x in r] == [len(x) for r in oracle for x in r]
        assert _max_diff(got, oracle) <= 1e-4
    assert _max_diff(padded_logprobs(tiny.model, encs, sc.pad_id, 16), oracle) <= 1e-4


def test_engine_mask_works_with_eager_attention_and_refuses_flash(tiny, small_bank, convs):
    """The packed 4D mask is additive, so eager attention (which adds it to the scores) gives the oracle too."""
    sc, encs = _encs(tiny, small_bank, convs)
    oracle = naive_logprobs(tiny.model, encs)
    impl = tiny.model.config._attn_implementation
    try:
        tiny.model.set_attn_implementation("eager")
        assert _max_diff(engine_logprobs(tiny.model, encs, sc.pad_id, chunk_size=5), oracle) <= 1e-4
        tiny.model.config._attn_implementation = "flash_attention_2"
        with pytest.raises(ValueError, match="attn_implementation='sdpa'"):
            engine_logprobs(tiny.model, encs, sc.pad_id)
    finally:
        tiny.model.config._attn_implementation = impl
        tiny.model.set_attn_implementation(impl)


def test_batch_size_does_not_change_scores(tiny, paper_bank, convs):
    res = {}
    for bs, chunk in ((1, 1000), (3, 17), (2, 64)):
        sc = Scorer(tiny, paper_bank, ScoreConfig(batch_size=bs, chunk_size=chunk), cache=None)
        res[bs] = sc.score(convs, progress=False)
    for bs in (3, 2):
        for a, b in zip(res[1], res[bs]):
            assert abs(a["reward"] - b["reward"]) <= 1e-4
            assert np.allclose(a["followups"], b["followups"], atol=1e-4)


def test_flr_reward_is_paper_definition(tiny, small_bank, convs):
    sc = Scorer(tiny, small_bank, ScoreConfig(), cache=None)
    out = sc.score(convs[:1], progress=False)[0]
    enc = sc.encode(convs[0])
    lps = naive_logprobs(tiny.model, [enc])[0]
    per = {t: float(x.mean()) for t, x in zip(small_bank.texts(), lps)}
    expected = {}
    for cat, d in small_bank.categories.items():
        expected[cat] = np.mean([per[t] for t in d["positive"]]) - np.mean([per[t] for t in d["negative"]])
    assert out["categories"] == pytest.approx(expected, abs=1e-4)
    assert out["reward"] == pytest.approx(np.mean(list(expected.values())), abs=1e-4)
    # each follow-up's tokens are exactly its text: the template's end-of-turn tokens are not scored
    assert tiny.tokenizer.decode(enc.targets[0]) == small_bank.texts()[0]
    # sum normalisation multiplies by the token count
    ssum = Scorer(tiny, small_bank, ScoreConfig(norm="sum"), cache=None).score(convs[:1], progress=False)[0]
    assert ssum["followups"][0] == pytest.approx(per[small_bank.texts()[0]] * len(enc.targets[0]), rel=1e-4)


def test_first_followup_token_uses_correct_shift(tiny, small_bank, convs):
    """lp of the first follow-up token comes from the logits at the last prefix position."""
    sc = Scorer(tiny, small_bank, ScoreConfig(), cache=None)
    enc = sc.encode(convs[0])
    ids = torch.tensor([enc.prefix + enc.targets[0]])
    with torch.no_grad():
        logits = tiny.model(ids).logits[0]
    manual = torch.log_softmax(logits[len(enc.prefix) - 1], -1)[enc.targets[0][0]].item()
    got = engine_logprobs(tiny.model, [enc], sc.pad_id)[0][0][0]
    assert got == pytest.approx(manual, abs=1e-5)


def test_direct_is_mean_logprob_of_response(tiny, convs):
    sc = Scorer(tiny, None, ScoreConfig(scorer="direct"), cache=None)
    out = sc.score(convs, progress=False)
    for conv, o in zip(convs, out):
        enc = sc.encode(conv)
        assert tiny.tokenizer.decode(enc.targets[0]) == conv[-1]["content"]
        assert o["reward"] == pytest.approx(float(naive_logprobs(tiny.model, [enc])[0][0].mean()), abs=1e-4)
        assert o["n_tokens"] == len(enc.targets[0])


def test_legacy_repo_reproduces_authors_arithmetic(tiny, small_bank, convs):
    conv = convs[0]
    ctx, role = flr_context(conv, "base")
    f = small_bank.texts()[0]
    text = render(tiny.tokenizer, ctx + [{"role": role, "content": f}])
    ids = tiny.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    fids = tiny.tokenizer(f).input_ids
    with torch.no_grad():
        logits = tiny.model(input_ids=ids).logits[0, -len(fids):, :]
    expected = logits[0, fids].mean().item()
    assert legacy_values(tiny.model, tiny.tokenizer, ctx, role, [f])[0] == pytest.approx(expected, abs=1e-5)
    out = Scorer(tiny, small_bank, ScoreConfig(scorer="legacy_repo"), cache=None).score([conv], progress=False)[0]
    assert out["followups"][0] == pytest.approx(expected, abs=1e-5)
    assert set(out["categories"]) == set(small_bank.categories)


def test_layouts(tiny, convs):
    conv = convs[1]
    ctx, role = flr_context(conv, "base")
    assert role == "user" and ctx == conv
    ctx, role = flr_context(conv, "feedback")
    assert role == "assistant"
    assert ctx == [{"role": "user", "content": FEEDBACK_REQUEST},
                   {"role": "assistant", "content": conv[-2]["content"]},
                   {"role": "user", "content": conv[-1]["content"]}]
    enc = encode(tiny.tokenizer, ctx, role, ["Good answer."])
    prefix_text = tiny.tokenizer.decode(enc.prefix)
    assert prefix_text.endswith("<|im_start|>assistant\n")
    assert conv[-1]["content"] in prefix_text and "Hello! How can I help?" not in prefix_text
    with pytest.raises(ValueError, match="last message"):
        flr_context(conv[:-1], "base")


def test_system_prompt_policy(tiny, convs):
    default = render(tiny.tokenizer, convs[0])
    assert "You are a helpful AI assistant named SmolLM" in default  # the template's own default
    custom = render(tiny.tokenizer, convs[0], system_prompt="Be kind.")
    assert "Be kind." in custom and "named SmolLM" not in custom


def test_left_truncation_keeps_the_response(tiny, small_bank):
    long_turns = []
    for i in range(6):
        long_turns += [{"role": "user", "content": f"Question {i}: " + "blah " * 40},
                       {"role": "assistant", "content": f"Answer {i}: " + "words " * 40}]
    conv = long_turns + [{"role": "user", "content": "Final question " + "why " * 60},
                         {"role": "assistant", "content": "THE RESPONSE stays whole."}]
    ctx, role = flr_context(conv, "base")
    full = encode(tiny.tokenizer, ctx, role, small_bank.texts())
    cut = encode(tiny.tokenizer, ctx, role, small_bank.texts(), max_tokens=150)
    assert len(cut.prefix) + max(map(len, cut.targets)) <= 150
    assert cut.truncated_tokens == len(full.prefix) - len(cut.prefix) > 0
    text = tiny.tokenizer.decode(cut.prefix)
    assert "THE RESPONSE stays whole." in text and "Question 0" not in text
    assert cut.targets == full.targets
    # a budget smaller than the protected response + follow-up: kept whole and flagged, never cut
    tiny_budget = encode(tiny.tokenizer, ctx, role, small_bank.texts(), max_tokens=10)
    assert tiny_budget.over_budget and "THE RESPONSE stays whole." in tiny.tokenizer.decode(tiny_budget.prefix)


def test_unstable_template_raises(tiny):
    tok = tiny.tokenizer
    saved = tok.chat_template
    try:
        # no separator between role and content: BPE merges across the boundary ("assistant" + "s" -> "...ants")
        tok.chat_template = "{% for m in messages %}{{ m['role'] }}{{ m['content'] }}{% endfor %}"
        with pytest.raises(TemplateError, match="prefix-stable"):
            encode(tok, user("Hi"), "assistant", ["s are great"])
    finally:
        tok.chat_template = saved


def test_cache_resume_and_corruption(tiny, small_bank, convs, tmp_path, monkeypatch):
    path = tmp_path / "scores.jsonl"
    calls = []
    import flrlib.scoring as scoring

    real = scoring.engine_logprobs
    monkeypatch.setitem(scoring.BACKEND_FUNCS, "engine",
                        lambda m, encs, *a, **k: calls.append(len(encs)) or real(m, encs, *a, **k))
    first = Scorer(tiny, small_bank, ScoreConfig(batch_size=1), cache=path).score(convs, progress=False)
    assert sum(calls) == 3 and len(path.read_text().splitlines()) == 3
    calls.clear()
    again = Scorer(tiny, small_bank, ScoreConfig(batch_size=1), cache=path).score(convs, progress=False)
    assert calls == [] and [a["reward"] for a in again] == [b["reward"] for b in first]
    # an interrupted run leaves a cut last line: it is dropped with a warning and only that row is recomputed
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        sc = Scorer(tiny, small_bank, ScoreConfig(batch_size=1), cache=path)
    assert any("corrupted" in str(x.message) for x in w)
    resumed = sc.score(convs, progress=False)
    assert sum(calls) == 1
    assert [a["reward"] for a in resumed] == pytest.approx([b["reward"] for b in first], abs=1e-6)
    assert all(json.loads(line) for line in path.read_text().splitlines())
    # a different scorer setting is a different key
    calls.clear()
    Scorer(tiny, small_bank, ScoreConfig(layout="feedback", batch_size=1), cache=path).score(convs[:1], progress=False)
    assert sum(calls) == 1


def test_bad_config_and_input(tiny, small_bank):
    with pytest.raises(ValueError, match="scorer"):
        ScoreConfig(scorer="nope")
    with pytest.raises(ValueError, match="backend"):
        ScoreConfig(backend="nope")
    sc = Scorer(tiny, small_bank, ScoreConfig(), cache=None)
    with pytest.raises(ValueError, match="role"):
        sc.score([[{"role": "bot", "content": "x"}]], progress=False)
    with pytest.raises(ValueError, match="assistant"):
        Scorer(tiny, None, ScoreConfig(scorer="direct"), cache=None).score(
            [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]], progress=False)


def test_provenance_records_hashes(tiny, paper_bank):
    prov = Scorer(tiny, paper_bank, ScoreConfig(), cache=None).provenance
    assert prov["bank"] == "paper" and len(prov["bank_hash"]) == 16 and prov["bank_size"] == 120
    assert prov["model"] == "random:tiny-llama" and prov["template_hash"] and prov["scorer"] == "flr"


@pytest.mark.slow
def test_engine_matches_oracle_on_smollm2(smol, small_bank, convs):
    sc, encs = _encs(smol, small_bank, convs[:1])
    assert _max_diff(engine_logprobs(smol.model, encs, sc.pad_id, 8), naive_logprobs(smol.model, encs)) <= 1e-4


def test_identity_is_computed_once_per_scorer(tiny, small_bank, convs, tmp_path, monkeypatch):
    """Hashing an adapter folder reads all its bytes: once per Scorer, not once per conversation."""
    import flrlib.models as models
    from flrlib.models import Loaded

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 1000)
    calls = []
    real = models.folder_hash
    monkeypatch.setattr(models, "folder_hash", lambda f: calls.append(f) or real(f))
    loaded = Loaded(tiny.model, tiny.tokenizer, tiny.spec, str(adapter))
    sc = Scorer(loaded, small_bank, ScoreConfig(), cache=None)
    sc.score(convs, progress=False)
    sc.score_pairs([{"messages": convs[0][:1], "chosen": "Paris.", "rejected": "Rome."}], progress=False)
    assert sc.provenance["adapter_hash"] == real(adapter) and len(calls) == 1
    assert sc._key(convs[0]) == Scorer(loaded, small_bank, ScoreConfig(), cache=None)._key(convs[0])


def test_sequences_longer_than_the_model_are_refused(tiny, small_bank, convs):
    """The tiny model reads 4096 positions; a response alone longer than that cannot be scored (it is never cut)."""
    assert tiny.model.config.max_position_embeddings == 4096
    long = [{"role": "user", "content": "Tell me."}, {"role": "assistant", "content": "word " * 5000}]
    sc = Scorer(tiny, small_bank, ScoreConfig(), cache=None)
    with pytest.raises(ValueError, match=r"conversation 1: \d+ tokens .* context length 4096 .*max_tokens \(2048\)"):
        sc.score([convs[0], long], progress=False)
    assert len(sc.cache) == 0  # refused before anything was scored
    with pytest.raises(ValueError, match=r"row 0 \(rejected\)"):
        sc.score_pairs([{"messages": long[:1], "chosen": "Short.", "rejected": long[1]["content"]}], progress=False)
    direct = Scorer(tiny, None, ScoreConfig(scorer="direct"), cache=None)
    with pytest.raises(ValueError, match="context length 4096"):
        direct.score([long], progress=False)
    # a context under the budget but a budget over the model's length: lower max_tokens, says the message
    chatty = [{"role": "user", "content": "blah " * 6000}, {"role": "assistant", "content": "Ok."}]
    with pytest.raises(ValueError, match=r"lower max_tokens \(8000\) to at most 4096"):
        Scorer(tiny, small_bank, ScoreConfig(max_tokens=8000), cache=None).score([chatty], progress=False)
    out = sc.score([chatty], progress=False)[0]  # cut to the default budget instead: scored and reported
    assert out["truncated_tokens"] > 3000 and not out["over_budget"]


@pytest.mark.parametrize("field", ["max_tokens", "batch_size", "chunk_size"])
@pytest.mark.parametrize("value", [0, -3, 2.5, "8"])
def test_sizes_must_be_positive_integers(field, value):
    with pytest.raises(ValueError, match=f"{field} must be a positive integer"):
        ScoreConfig(**{field: value})


def test_batch_shape_stream_window_and_logit_path_do_not_change_scores(tiny, small_bank, convs, monkeypatch):
    """Batches cut by the token budget, windows of one row, the logsumexp chunked to a few tokens and the full-logits
    path (models without a plain LM head) all give the oracle's numbers."""
    import flrlib.scoring as scoring

    ref = Scorer(tiny, small_bank, ScoreConfig(), cache=None)
    oracle = naive_logprobs(tiny.model, [ref.encode(c) for c in convs])
    want = [[float(x.mean()) for x in row] for row in oracle]
    small = Scorer(tiny, small_bank, ScoreConfig(token_budget=64, stream_rows=1, chunk_size=3), cache=None)
    shapes = {i: small._shape(small.encode(c)) for i, c in enumerate(convs)}
    assert [len(b) for b in small._batches([0, 1, 2], shapes)] == [1, 1, 1]
    assert [len(b) for b in ref._batches([0, 1, 2], shapes)] == [3]
    monkeypatch.setattr(scoring, "_LOGIT_ELEMS", 3 * tiny.model.config.vocab_size)  # 3 tokens per logsumexp chunk
    for sc in (ref, small):
        got = [r["followups"] for r in sc.score(convs, progress=False)]
        assert np.abs(np.array(got) - np.array(want)).max() <= 1e-4
    monkeypatch.setattr(scoring, "_PLAIN_HEAD", ())
    assert scoring._decoder_and_head(tiny.model) is None
    encs = [ref.encode(c) for c in convs]
    assert _max_diff(engine_logprobs(tiny.model, encs, ref.pad_id, 5), oracle) <= 1e-4


def test_per_rank_cache_files_are_read_back(tiny, small_bank, convs, tmp_path):
    """A single process reuses what the ranks of a data-parallel run wrote to <name>.rank<r>.jsonl."""
    path = tmp_path / "scores.jsonl"
    first = Scorer(tiny, small_bank, ScoreConfig(), cache=tmp_path / "scores.rank1.jsonl").score(convs, progress=False)
    sc = Scorer(tiny, small_bank, ScoreConfig(), cache=path)
    assert len(sc.cache) == 3 and not path.exists()
    assert [r["reward"] for r in sc.score(convs, progress=False)] == [r["reward"] for r in first]
    assert sc.cache.written == 0


def _rank_main(rank, port, folder, convs, bank, q):
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch

    from flrlib import models

    torch.set_num_threads(1)
    sc = Scorer(models.load_model(models.TINY, dtype="float32", device="cpu"), bank, ScoreConfig(batch_size=2),
                cache=folder / "s.jsonl")
    out = {"res": sc.score(convs, progress=False), "written": sc.cache.written}
    long = [{"role": "user", "content": "Tell me."}, {"role": "assistant", "content": "word " * 5000}]
    try:
        sc.score(convs[:3] + [long], progress=False)
    except ValueError as e:
        out["error"] = f"{type(e).__name__}: {e}"
    q.put((rank, out))


@pytest.mark.integration
def test_data_parallel_scorer_gives_every_rank_the_single_process_numbers(tiny, small_bank, convs, tmp_path):
    """2 CPU processes (gloo): the batches are dealt to the ranks, each writes its own cache file, both return the
    single process's results bit for bit, and a too-long row is raised on every rank (no rank waits forever)."""
    import multiprocessing as mp
    import socket

    rows = convs + [[{"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": "A." * i}]
                    for i in range(1, 5)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_rank_main, args=(r, port, tmp_path, rows, small_bank, q)) for r in (0, 1)]
    for p in procs:
        p.start()
    got = dict(q.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(60)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the ranks: CPU sums split across threads round differently
    try:
        single = Scorer(tiny, small_bank, ScoreConfig(batch_size=2), cache=None).score(rows, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert got[0]["res"] == got[1]["res"] == single
    assert sorted([got[0]["written"], got[1]["written"]]) == [3, 4]  # batches of 2: 2 + 2 and 2 + 1
    assert len((tmp_path / "s.rank0.jsonl").read_text().splitlines()) == got[0]["written"]
    assert got[0]["error"] == got[1]["error"] and got[0]["error"].startswith("TooLong: conversation 3:")


def _tiny_windowed(kind: str, vocab: int, window: int):
    """A 2-layer random model of a sliding-window family (Gemma-2, Gemma-3 and Qwen2 with use_sliding_window: sliding
    + full layers; Mistral-v0.1: every layer sliding), hidden 64, with a small window so that the test sequences
    exceed it."""
    from transformers import (Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig, MistralConfig,
                              MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM)

    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=4096, sliding_window=window)
    torch.manual_seed(0)
    if kind == "gemma2":
        return Gemma2ForCausalLM(Gemma2Config(head_dim=16, **common)).eval()
    if kind == "gemma3":
        return Gemma3ForCausalLM(Gemma3TextConfig(head_dim=16, layer_types=["sliding_attention", "full_attention"],
                                                  **common)).eval()
    if kind == "qwen2":  # layer 0 full, layer 1 sliding; a plain head: the engine's decoder + chunked-head path
        return Qwen2ForCausalLM(Qwen2Config(use_sliding_window=True, max_window_layers=1, **common)).eval()
    return MistralForCausalLM(MistralConfig(**common)).eval()


@pytest.mark.parametrize("kind", ["gemma2", "gemma3", "mistral", "qwen2"])
def test_sliding_window_models_match_a_plain_forward(tiny, small_bank, convs, kind):
    """Defect (#23): the engine rebuilt the cache with the model's config, so sliding-window layers kept only the
    last window - 1 prefix keys (shape error past the window) and the packed follow-ups got full attention. Each
    row's prefix here is longer than the window (8): engine, padded and the Scorer give the plain forward's numbers."""
    from flrlib import scoring
    from flrlib.models import Loaded

    model = _tiny_windowed(kind, len(tiny.tokenizer), window=8)
    sc, encs = _encs(tiny, small_bank, convs)
    assert min(len(e.prefix) for e in encs) > 3 * 8
    oracle = naive_logprobs(model, encs)  # the model's own masks, one full forward per follow-up
    for chunk in (3, 64):
        assert _max_diff(engine_logprobs(model, encs, sc.pad_id, chunk_size=chunk), oracle) <= 1e-4
    assert _max_diff(padded_logprobs(model, encs, sc.pad_id, 16), oracle) <= 1e-4
    loaded = Loaded(model, tiny.tokenizer, f"random:tiny-{kind}")
    got = Scorer(loaded, small_bank, ScoreConfig(batch_size=2), cache=None).score(convs, progress=False)
    want = Scorer(loaded, small_bank, ScoreConfig(backend="naive"), cache=None).score(convs, progress=False)
    assert np.allclose([r["reward"] for r in got], [r["reward"] for r in want], atol=1e-4)
    types, window = scoring.attention_layers(model)
    assert window == 8 and "sliding_attention" in types


def test_attention_the_engine_cannot_pack_is_refused_naming_the_model(tiny, small_bank, convs, monkeypatch):
    """Defect (#23), the other half: layers the packed engine cannot mask (linear/recurrent attention) and layers with
    different sliding windows are refused with the model's name and the backends that score them, not scored wrong."""
    import transformers.cache_utils as cache_utils

    from flrlib import scoring

    model = _tiny_windowed("mistral", len(tiny.tokenizer), window=8)
    model.config._name_or_path = "org/hybrid-model"
    sc, encs = _encs(tiny, small_bank, convs)
    model.config.layer_types = ["linear_attention", "full_attention"]
    with pytest.raises(ValueError, match=r"org/hybrid-model has \['full_attention', 'linear_attention'\] layers.*"
                                         r"backend='padded' or 'naive'"):
        engine_logprobs(model, encs, sc.pad_id)
    model.config.layer_types = None
    monkeypatch.setattr(cache_utils, "get_layer_types_and_kwargs", lambda cfg: (
        ["sliding_attention", "sliding_attention"], [{"sliding_window": 8}, {"sliding_window": 16}]))
    with pytest.raises(ValueError, match=r"org/hybrid-model: sliding-window layers with different windows \[8, 16\]"):
        scoring.attention_layers(model)

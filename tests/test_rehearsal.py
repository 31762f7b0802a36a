"""The rehearsal of the paper profile (``flr reproduce --profile paper --rehearse``): its profile swaps only sizes and
models, and the policy's adapters reach the llama.cpp server as GGUF LoRA adapters that llama.cpp really applies."""

import numpy as np
import pytest

from flrlib import rehearsal
from flrlib.profiles import load_profile, notebook_parameters


def test_the_rehearsal_profile_is_the_paper_profile_with_only_sizes_and_models_swapped():
    keys = rehearsal.check_overlay()
    assert "06_alignment.grpo.max_steps" in keys and "common.model" in keys
    paper, reh = load_profile("paper"), load_profile("rehearsal")
    assert reh["parallel"] == paper["parallel"] and set(reh["notebooks"]) == set(paper["notebooks"])
    allowed = rehearsal.SIZE_KEYS | rehearsal.MODEL_KEYS | {"profile"}
    for nb in paper["notebooks"]:
        p, r = notebook_parameters(paper, nb), notebook_parameters(reh, nb)
        for k in set(p) | set(r):
            if k in rehearsal.NESTED:
                for kk in set(p[k]) | set(r[k]):
                    assert kk in rehearsal.SIZE_KEYS or p[k].get(kk) == r[k].get(kk), (nb, k, kk)
            elif k not in allowed:
                assert p.get(k) == r.get(k), (nb, k)  # every switch: backends, judges, sources, benchmarks ...
    six = notebook_parameters(reh, "06_alignment")
    assert six["gen_backend"] == "openai" and six["judges"] == ["api", "flr"] and six["grpo"]["source"] == "auto"
    assert notebook_parameters(reh, "04_feedback_finetune")["rewriter"] == "openai"


def test_an_overlay_that_changes_a_switch_is_refused(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("base: paper\nnotebooks:\n  06_alignment:\n    gen_backend: hf\n    dpo: {beta: 0.5}\n")
    with pytest.raises(ValueError, match=r"only sizes and models; it also sets 06_alignment.gen_backend, "
                                         r"06_alignment.dpo.beta"):
        rehearsal.check_overlay(bad)


@pytest.mark.integration
def test_a_peft_adapter_converted_to_gguf_lora_is_applied_by_llama_cpp(tmp_path):
    """The served ``dpo``/``kto`` adapters: a PEFT LoRA on the bundled SmolLM2 (random B, all linear layers), converted,
    loaded by llama.cpp beside the GGUF base. Its effect on the next-token logits must follow the in-process model's
    (measured once: delta correlation 0.81; the rest is the quantised base's rounding, amplified by this large random
    adapter). Without the q/k permutation the served logits were further from the in-process ones (MSE 0.131 vs
    0.086)."""
    torch = pytest.importorskip("torch")
    llama_cpp = pytest.importorskip("llama_cpp")
    from peft import LoraConfig, get_peft_model

    from flrlib.models import BUNDLED, gguf_path, load_model

    lm = load_model(BUNDLED, dtype="float32", device="cpu")
    torch.manual_seed(0)
    peft_model = get_peft_model(lm.model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                     init_lora_weights=False))
    for n, p in peft_model.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.02)
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = lm.tokenizer("The capital of France is a city called", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hf_ad = peft_model(ids).logits[0, -1].numpy()
        with peft_model.disable_adapter():
            hf_base = peft_model(ids).logits[0, -1].numpy()
    out = rehearsal.peft_to_gguf_lora(tmp_path / "adapter", gguf_path(), tmp_path / "dpo.gguf")

    def last_logits(lora):
        llm = llama_cpp.Llama(str(gguf_path()), lora_path=lora, n_ctx=128, logits_all=True, verbose=False,
                              n_threads=1)
        llm.eval(ids[0].tolist())
        return np.array(llm.scores[llm.n_tokens - 1])

    cpp_base, cpp_ad = last_logits(None), last_logits(str(out))
    assert np.corrcoef(hf_base, cpp_base)[0, 1] > 0.999  # the same weights (GGUF vs its conversion)
    delta = np.corrcoef(hf_ad - hf_base, cpp_ad - cpp_base)[0, 1]
    assert delta > 0.7, delta
    assert np.corrcoef(hf_ad, cpp_ad)[0, 1] > np.corrcoef(hf_base, cpp_ad)[0, 1]


@pytest.mark.integration
@pytest.mark.notebook
def test_the_paper_profile_rehearses_end_to_end_under_two_ranks(tmp_path):
    """`flr reproduce --profile paper --rehearse --ranks 2`: every notebook runs under torchrun (2 CPU ranks, gloo)
    against the llama.cpp server, offline, on the Hub fixtures, and the report says what ran. Measured once on the
    contended 2-core machine: 451 s (03: 312 s)."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "flrlib.cli", "reproduce", "--profile", "paper", "--rehearse", "--ranks",
                        "2", "--work-dir", str(tmp_path / "work")], capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = p.stdout[p.stdout.index("rehearsal of the paper profile"):]
    for nb in ("00_setup", "03_reward_benchmarks", "04_feedback_finetune", "05_preference_mining", "06_alignment",
               "07_tables_figures"):
        assert any(line.startswith(nb) and " ran " in line for line in report.splitlines()), (nb, report)
    assert "ranks 2; gen openai" in report
    assert "adapters converted to GGUF LoRA for the server: dpo, kto" in report
    assert "verdicts alpaca_eval" in report and "(0 failed)" in report
    assert "prompts nectar (Hub)" in report and "via openai" in report

"""DPO / KTO training with LoRA: the KTO batch check, configs, adapters with provenance, curves, the entry point."""
import json

import pytest

from flrlib import align, mining
from flrlib.align import AlignConfig, ConfigError, check_config
from flrlib.models import load_model
from helpers import user


def _pairs(n=4):
    scored = [{"id": f"p{i}", "messages": user(f"Question number {i}?"),
               "responses": [f"A helpful answer {i}.", "no"], "rewards": [1.0, -1.0]} for i in range(n)]
    return mining.dpo_pairs(scored)


def test_kto_needs_a_per_device_batch_of_two_explained():
    with pytest.raises(ConfigError, match="KL term") as e:
        check_config(AlignConfig(method="kto", per_device_train_batch_size=1))
    assert "per_device_train_batch_size=2" in str(e.value)
    check_config(AlignConfig(method="kto", per_device_train_batch_size=2))
    check_config(AlignConfig(method="dpo", per_device_train_batch_size=1))  # DPO is fine with 1
    with pytest.raises(ConfigError, match="no kto training rows"):
        check_config(AlignConfig(method="kto", per_device_train_batch_size=2), n_rows=0)
    with pytest.raises(ConfigError, match="fewer than one per-device batch"):
        check_config(AlignConfig(method="kto", per_device_train_batch_size=4), n_rows=3)
    with pytest.raises(ConfigError, match="method"):
        check_config(AlignConfig(method="ppo"))


def test_kto_check_runs_before_any_model_is_loaded(tmp_path, monkeypatch):
    import flrlib.models

    monkeypatch.setattr(flrlib.models, "load_model", lambda *a, **k: pytest.fail("model loaded before the check"))
    with pytest.raises(ConfigError, match="KL term"):
        align.train("random:tiny-llama", mining.kto_rows(_pairs()), tmp_path,
                    AlignConfig(method="kto", per_device_train_batch_size=1))


def test_paper_profile_and_trl_configs():
    cfg = AlignConfig()
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules, cfg.beta) == (8, 16, 0.0, "all-linear", 0.1)
    t = align.trl_config(AlignConfig(method="dpo"), "/tmp/x", "cpu")
    assert t.use_cpu and not t.bf16 and t.beta == 0.1 and t.report_to == []
    k = align.trl_config(AlignConfig(method="kto", per_device_train_batch_size=2), "/tmp/x", "cpu")
    assert type(k).__name__ == "KTOConfig" and k.per_device_train_batch_size == 2
    from flrlib.lora import peft_config

    lc = peft_config(align.lora_settings(cfg))
    assert (lc.r, lc.lora_alpha, lc.target_modules) == (8, 16, "all-linear")
    with pytest.raises(ConfigError, match="unknown alignment settings \\['lora_rank'\\]"):
        AlignConfig.from_dict({"lora_rank": 8})
    for prof in ("smoke", "demo", "paper"):
        params, kto = align.profile_config(prof, "kto")
        assert kto.per_device_train_batch_size >= 2, prof
        _, dpo = align.profile_config(prof, "dpo")
        assert (dpo.lora_r, dpo.lora_alpha, dpo.beta) == (8, 16, 0.1)
    _, paper = align.profile_config("paper", "dpo")
    assert (paper.learning_rate, paper.num_train_epochs, paper.per_device_train_batch_size,
            paper.gradient_accumulation_steps) == (5e-6, 3.0, 1, 8)


@pytest.mark.integration
def test_dpo_and_kto_train_save_adapter_provenance_and_curves(tiny, tmp_path):
    pairs = _pairs(4)
    cfg = AlignConfig(method="dpo", max_steps=2, per_device_train_batch_size=1, gradient_accumulation_steps=1,
                      learning_rate=1e-3, max_length=64)
    rec = align.train("random:tiny-llama", pairs, tmp_path / "dpo", cfg, device="cpu", dtype="float32",
                      provenance={"data_file": "mem"})
    adapter = tmp_path / "dpo" / "adapter"
    assert (adapter / "adapter_config.json").exists()
    meta = json.loads((adapter / "adapter_config.json").read_text())
    assert meta["base_model_name_or_path"] == "random:tiny-llama" and meta["r"] == 8 and meta["lora_alpha"] == 16
    prov = json.loads((tmp_path / "dpo" / "provenance.json").read_text())
    assert prov == rec and prov["global_steps"] == 2 and prov["adapter_hash"] and prov["data_file"] == "mem"
    assert prov["reference_model"].startswith("policy with the LoRA adapter disabled")
    curve = align.curves(align.read_log_history(tmp_path / "dpo"))
    assert len(curve) == 2 and all(c["loss"] is not None and c["margin"] is not None for c in curve)
    # the adapter loads through the one model loader and changes the policy
    lm = load_model(str(adapter), dtype="float32", device="cpu")
    assert lm.adapter and lm.provenance["adapter_hash"] == prov["adapter_hash"]
    # evaluation samples from the merged adapter: the same greedy outputs as the unmerged policy
    from flrlib.generate import GenConfig, generate

    prompts = [{"id": "p0", "messages": user("Name a colour.")}]
    greedy = GenConfig(n=1, do_sample=False, max_new_tokens=8)
    outs = align.policy_outputs("random:tiny-llama", {"dpo": str(adapter)}, prompts, greedy, tmp_path / "eval",
                                device="cpu", dtype="float32", progress=False)
    assert outs["dpo"]["p0"] == generate(lm, prompts, greedy, cache=None, progress=False)[0]["responses"][0]
    # same model, config and data: not retrained
    again = align.train("random:tiny-llama", pairs, tmp_path / "dpo", cfg, device="cpu", dtype="float32",
                        provenance={"data_file": "mem"})
    assert again == prov

    kto = mining.kto_rows(pairs, batch_size=2)
    kcfg = AlignConfig(method="kto", max_steps=2, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                       learning_rate=1e-3, max_length=64)
    krec = align.train("random:tiny-llama", kto, tmp_path / "kto", kcfg, device="cpu", dtype="float32")
    assert krec["method"] == "kto" and (tmp_path / "kto" / "adapter" / "adapter_config.json").exists()
    kcurve = align.curves(align.read_log_history(tmp_path / "kto"))
    assert len(kcurve) == 2 and all(c["loss"] is not None for c in kcurve)


@pytest.mark.integration
def test_entry_point_reads_the_profile_and_reports_config_errors(tmp_path, capsys):
    from flrlib.results import write_jsonl

    data = write_jsonl(tmp_path / "kto.jsonl", mining.kto_rows(_pairs(2)))
    # smoke's KTO block is valid; forcing a bad one through the profile is what the message is for
    from flrlib.cli import main

    rc = main(["align", "--method", "kto", "--data", str(data), "--out", str(tmp_path / "out"), "--profile", "smoke",
                     "--max-steps", "1", "--device", "cpu"])
    assert rc == 0 and (tmp_path / "out" / "adapter" / "adapter_config.json").exists()
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["method"] == "kto"


def test_eval_summary_is_written_by_the_library(tmp_path, monkeypatch):
    monkeypatch.setenv("FLR_RESULTS_DIR", str(tmp_path))
    row = {"judge": "hf", "candidate": "dpo", "baseline": "base", "n": 2, "win_rate": 50.0, "ci_low": 0.0,
           "ci_high": 100.0}
    rec = align.write_eval_summary("unit", [row], [{"id": 1, "winner": "dpo"}, {"id": 2, "winner": "base"}],
                                   n_instructions=2, reference="gpt4_1106_preview", seed=0, policy_model="m")
    on_disk = json.loads((tmp_path / "unit" / "alignment" / "eval_summary.json").read_text())
    assert on_disk["rows"] == [row] and on_disk["provenance"]["policy_model"] == "m" == rec["provenance"]["policy_model"]
    assert "software" in on_disk["provenance"]
    lines = (tmp_path / "unit" / "alignment" / "eval_judgements.jsonl").read_text().splitlines()
    assert [json.loads(x)["winner"] for x in lines] == ["dpo", "base"]

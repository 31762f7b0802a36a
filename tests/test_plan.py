"""`flr reproduce --plan`: every step of a profile with its rows, tokens, steps, times, needs and API calls, from the
committed throughput table, without loading a model."""
import subprocess
import sys

from flrlib import plan


def test_paper_plan_lists_every_step_with_sources_and_loads_no_model():
    code = ("import sys; from flrlib.cli import main; rc = main(['reproduce', '--profile', 'paper', '--plan']); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'a model library was imported'; "
            "sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for step in ("03 score flr (2 models)", "03 score legacy_repo", "04 rewrite critiques (openai)", "04 LoRA SFT",
                 "05 generate 8 samples per prompt", "05 score samples flr", "06 DPO", "06 KTO", "06 judge api",
                 "total"):
        assert step in out, step
    assert "1x H100-SXM" in out and "8x H100-SXM" in out
    assert "meta-llama/Meta-Llama-3-8B-Instruct (gated" in out and "FLR_JUDGE_API_KEY" in out
    assert "score: 7.95 conversations/s on H100-SXM (measured, 2026-11-27" in out  # each rate with source and date
    assert "100,000" in out.split("04 rewrite critiques (openai)")[1].splitlines()[0]  # one API call per critique


def test_scoring_is_sharded_on_n_gpus_and_estimates_are_marked():
    pl = plan.Planner("paper").build()
    flr = next(s for s in pl.steps if s["what"].startswith("score flr") and s["notebook"] == "03_reward_benchmarks")
    gen = next(s for s in pl.steps if s["what"].startswith("generate"))
    par = {"03_reward_benchmarks", "05_preference_mining"}
    assert pl.time_on(flr, 8, par) * 8 == pl.time_on(flr, 1, par) > 0 and not flr["estimate"]
    assert pl.time_on(gen, 8, par) == pl.time_on(gen, 1, par) and gen["estimate"]  # generation is not sharded
    # the measured rate: 7.95 conversations/s of 235 + 921 tokens
    assert pl.score_seconds(7.95 * (235 + 921))[0] == 1.0


def test_another_gpu_kind_is_scaled_by_the_datasheet_and_says_so():
    text = plan.render("smoke", gpus=[1], kind="A100-80GB")
    assert "scaled from H100-SXM by datasheet bf16_dense_tflops" in text
    row, factor, _ = plan._rate(plan.load_table(), "score", "A100-80GB")
    assert row["gpu"] == "H100-SXM" and abs(factor - 312 / 989) < 1e-9


def test_paper_plan_counts_grpo_serves_eval_outputs_and_fits_a_day_on_8_h100():
    pl = plan.Planner("paper").build()
    par = set(pl.prof["parallel"])
    by = {s["what"].split(" (")[0]: s for s in pl.steps if s["notebook"] == "06_alignment"}
    grpo = by["GRPO vs flr"]  # the profile's grpo block: 500 steps x 8 completions x 4 accumulation per rank
    assert grpo["samples"] == 500 * 8 * 4 and grpo["steps"] == {1: 500, 8: 500} and grpo["seconds"] > 0
    assert pl.time_on(grpo, 8, par) == pl.time_on(grpo, 1, par)  # fixed max_steps: N ranks, N x the completions
    ev = by["evaluation outputs"]
    assert ev["server"] and "server" in ev["what"] and pl.time_on(ev, 8, par) == ev["seconds"]
    assert any("--lora-modules dpo=" in n and "kto=" in n for n in ev["needs"])
    # LoRA on a frozen base: 4N per trained token, + the reference (DPO) and the reference and KL forwards (KTO)
    peak = pl.table["gpus"]["H100-SXM"]["bf16_dense_tflops"] * 1e12
    mfu = next(r["value"] for r in pl.table["rates"] if r["task"] == "train")
    for name, passes in (("DPO", 6), ("KTO", 10)):
        s = by[name]
        assert abs(s["seconds"] - s["tokens"] * 8e9 * passes / (peak * mfu)) < 1e-6 * s["seconds"]
        assert pl.time_on(s, 8, par) * 8 == pl.time_on(s, 1, par)  # data-parallel on every rank
    sft = next(s for s in pl.steps if s["what"].startswith("LoRA SFT"))
    assert abs(sft["seconds"] - sft["tokens"] * 8e9 * 4 / (peak * mfu)) < 1e-6 * sft["seconds"]
    total8 = sum(pl.time_on(s, 8, par) for s in pl.steps)
    assert total8 <= 24 * 3600, total8 / 3600
    text = plan.render("paper")
    assert "within the 24 h target" in text and "06 GRPO vs flr" in text and "06 DPO" in text.split("divided over")[1]


def test_gpu_kind_is_case_insensitive_and_an_unknown_kind_lists_the_known_ones():
    assert "8x A100-80GB" in plan.render("smoke", gpus=[8], kind="a100-80gb")
    from flrlib.cli import main
    import pytest
    with pytest.raises(ValueError, match="knows: A100-80GB, H100-SXM"):
        plan.render("smoke", kind="v100")
    assert main(["reproduce", "--profile", "smoke", "--plan", "--gpu-kind", "v100"]) == 2


def test_malformed_profile_and_unknown_only_give_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("common:\n  model: x\nnotebooks:\n  03_reward_benchmarks: {max_examples: [1, }\n")
    for args in (["reproduce", "--profile", str(bad), "--plan"], ["reproduce", "--profile", str(bad)],
                 ["reproduce", "--profile", "smoke", "--only", "99"],
                 ["reproduce", "--profile", "smoke", "--plan", "--only", "99"]):
        p = subprocess.run([sys.executable, "-m", "flrlib.cli", *args], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and "Traceback" not in p.stderr, (args, p.stderr)
        err = p.stderr.strip()
        assert len(err.splitlines()) == 1, err
        if "99" in args:
            assert "--only 99" in err and "03_reward_benchmarks" in err
        else:
            assert f"{bad}:4:" in err, err


def test_rm_bench_is_counted_six_conversations_per_prompt_without_legacy():
    """RM-Bench prompts carry 3 chosen + 3 rejected styled responses: 6 conversations each, at the measured RM-Bench
    prefix lengths; notebook 03 scores them with flr and direct (not legacy_repo), notebook 04 with ft_flr."""
    pl = plan.Planner("paper").build()
    rm = {(s["notebook"][:2], s["what"].split(" (")[0]): s for s in pl.steps if "RM-Bench" in s["what"]}
    assert set(rm) == {("03", "score flr RM-Bench"), ("03", "score direct RM-Bench"), ("04", "score ft_flr RM-Bench")}
    reg, work = pl.reg, pl.work
    prompts = sum(reg[b]["size"] for b in pl.params("03_reward_benchmarks")["rm_bench_benchmarks"])
    ft = rm[("04", "score ft_flr RM-Bench")]
    assert ft["rows"] == prompts  # one model; every prompt (rm_bench_prompts: null, max_examples: null)
    convs = {b: 6 * reg[b]["size"] for b in pl.params("04_feedback_finetune")["rm_bench_benchmarks"]}
    per = {b: pl.tokens(b)["prefix_tokens"] + work["followup_tokens"] for b in convs}
    assert ft["tokens"] == sum(convs[b] * per[b] for b in convs)
    assert work["benchmarks"]["rm_bench_chat"]["prefix_tokens"] > 0  # measured, not the Hub assumption
    assert not any("RM-Bench" in u for u in pl.unknown)

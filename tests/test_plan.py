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

"""``flr reproduce --profile NAME --plan``: what a run will process, need and cost, before anything is loaded.

For every step of the profile's notebooks: rows, tokens through the model, generated samples, optimizer steps, the
estimated time on N GPUs of a stated kind, what the step needs (Hub access, a gated model, API keys, a generation
server) and its API calls. Inputs, all read without a model or the network:

* the parameters each notebook gets (its own defaults overridden by the profile, as the runner injects them);
* benchmark sizes from ``data/registry.yaml`` (``size``: rows in the public source, before filtering);
* ``configs/throughput.yaml``: rates with their source and date (``basis: measured`` from the project's
  benchmarks, or ``estimate`` with the arithmetic written out; estimated times are marked ``~``) and mean tokens per
  conversation measured on the offline sets.

Time model. Scoring time is tokens over the measured token rate (conversations/s x tokens per conversation of the
measurement); a rate of another GPU kind is scaled by the datasheet bf16 peak (generation: by memory bandwidth).
Training is LoRA on a frozen base: about 4N FLOPs per trained token (forward 2N, backward through the activations
2N; no weight gradients for the base), plus 2N per token for each extra forward without gradients: DPO's reference
forward (6N), KTO's reference forward and the policy's and the reference's KL forwards (10N); GRPO at TRL's default
beta 0 has none (4N). On N GPUs a step that runs data-parallel (scoring through the Scorer, training through
accelerate/TRL) in a notebook of the runner's ``parallel`` list takes 1/N; requests to a generation server are sent
once (rank 0) and timed on the server's GPU; a step of a notebook that runs on rank 0 alone is not divided. GRPO has
a fixed number of optimizer steps, each rank sampling its own completions: N GPUs take the same time and train on N
times the completions. Model loading, data downloads and tokenisation are not counted.
"""
from __future__ import annotations

import math
from pathlib import Path

import yaml

from .paths import ROOT
from .profiles import load_profile, notebook_parameters

TABLE = ROOT / "configs" / "throughput.yaml"
HUB_MODELS_GATED = ("meta-llama/",)
PARAMS_8B = 8.0e9
# FLOPs per trained token in units of N parameters, LoRA on a frozen base (see the module docstring)
PASSES = {"sft": 4, "dpo": 6, "kto": 10, "grpo": 4}
BUDGET_H = 24.0  # the target for the paper profile on one 8-GPU node (issue 23)


def resolve_kind(table: dict, kind: str) -> str:
    """The table's spelling of a GPU kind, matched case-insensitively; a ValueError lists the known kinds."""
    known = {k.lower(): k for k in table["gpus"]}
    if str(kind).lower() not in known:
        raise ValueError(f"unknown GPU kind {kind!r}; configs/throughput.yaml knows: {', '.join(sorted(known.values()))}")
    return known[str(kind).lower()]


def load_table(path: str | Path = TABLE) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def _rate(table: dict, task: str, kind: str) -> tuple[dict, float, str]:
    """``(row, factor, note)``: the newest row of ``task`` on ``kind``, else on another kind scaled by ``factor``."""
    rows = [r for r in table["rates"] if r["task"] == task]
    if not rows:
        raise KeyError(f"{TABLE}: no rate for task {task!r}")
    same = [r for r in rows if r["gpu"] == kind]
    if same:
        return max(same, key=lambda r: str(r["date"])), 1.0, ""
    row = max(rows, key=lambda r: str(r["date"]))
    gpus = table["gpus"]
    if kind not in gpus:
        raise KeyError(f"unknown GPU kind {kind!r}; {TABLE} knows {sorted(gpus)}")
    key = "hbm_tb_s" if task == "generate" else "bf16_dense_tflops"
    return row, gpus[kind][key] / gpus[row["gpu"]][key], f"scaled from {row['gpu']} by datasheet {key}"


class Planner:
    def __init__(self, profile: str, kind: str = "H100-SXM", table: dict | None = None):
        from .data.registry import registry

        self.prof = load_profile(profile)
        self.table = table or load_table()
        self.kind = resolve_kind(self.table, kind)
        self.reg = registry()
        self.work = self.table["workload"]
        self.fu = self.work["followup_tokens"]
        self.notes: list[str] = []
        self.unknown: list[str] = []  # benchmarks without a size in the registry (not counted)
        self.server_requests = 0  # requests to a generation server (not a paid API)
        self.steps: list[dict] = []
        self.per_rank: list[str] = []  # steps whose time does not shrink with N (each rank does the same work)

    # -- inputs ------------------------------------------------------------------------------------------------
    def params(self, notebook: str) -> dict:
        """The parameters the notebook runs with: its own defaults, then the profile's values for the parameters it
        declares (the runner injects only those)."""
        import ast

        import papermill as pm

        path = ROOT / "notebooks" / f"{notebook}.ipynb"
        out = {}
        if path.exists():
            for k, v in pm.inspect_notebook(str(path)).items():
                try:
                    out[k] = ast.literal_eval(v["default"])
                except (ValueError, SyntaxError):
                    out[k] = v["default"]
        given = notebook_parameters(self.prof, notebook)
        return {**out, **{k: v for k, v in given.items() if k in out or not out}}

    def tokens(self, benchmark: str) -> dict:
        t = self.work["benchmarks"].get(benchmark)
        return t or self.work["assumed"]["hub_benchmark"]

    def rows(self, benchmark: str, cap) -> int | None:
        size = self.reg.get(benchmark, {}).get("size")
        if size is None:
            return None
        return size if cap is None else min(size, cap)

    # -- time --------------------------------------------------------------------------------------------------
    def score_seconds(self, tokens: float) -> tuple[float, bool]:
        row, f, note = _rate(self.table, "score", self.kind)
        at = row["at"]
        per_s = row["value"] * (at["prefix_tokens"] + at["followup_tokens"]) * f
        self._note(row, note)
        return tokens / per_s, row["basis"] != "measured"

    def legacy_seconds(self, conversations: float, prefix: float) -> tuple[float, bool]:
        row, f, note = _rate(self.table, "legacy_loop", self.kind)
        at = row["at"]
        self._note(row, note)  # cost per conversation grows with its prefix: 120 forwards of (prefix + follow-up)
        return conversations * (prefix + self.fu / 120) / (at["prefix_tokens"] + at["followup_tokens"] / 120) / (
            row["value"] * f), row["basis"] != "measured"

    def gen_seconds(self, tokens: float, server: bool = False) -> tuple[float, bool]:
        row, f, note = _rate(self.table, "generate_server" if server else "generate", self.kind)
        self._note(row, note)
        return tokens / (row["value"] * f), row["basis"] != "measured"

    def train_seconds(self, tokens: float, method: str) -> tuple[float, bool]:
        """LoRA training time of ``tokens`` trained tokens: ``PASSES[method]`` x N FLOPs each at the table's MFU."""
        row, f, note = _rate(self.table, "train", self.kind)
        self._note(row, note)
        peak = self.table["gpus"][self.kind]["bf16_dense_tflops"] * 1e12
        flops = tokens * PARAMS_8B * PASSES[method]
        return flops / (peak * row["value"]), row["basis"] != "measured"

    def _note(self, row: dict, scaled: str) -> None:
        text = (f"{row['task']}: {row['value']} {row['unit']} on {row['gpu']} ({row['basis']}, {row['date']}; "
                f"{row['source']})" + (f"; {scaled}" if scaled else ""))
        if text not in self.notes:
            self.notes.append(text)

    def add(self, notebook, what, rows=None, tokens=None, samples=None, steps=None, seconds=(0.0, False),
            sharded=True, needs=(), api_calls=0, server=False):
        """``sharded``: divided over the ranks when the notebook runs on every rank; ``server``: time on the
        generation server's GPU (requests sent once), not on the node's."""
        self.steps.append({"notebook": notebook, "what": what, "rows": rows, "tokens": tokens, "samples": samples,
                           "steps": steps, "seconds": seconds[0], "estimate": seconds[1], "sharded": sharded,
                           "needs": list(needs), "api_calls": api_calls, "server": server})

    # -- the steps ---------------------------------------------------------------------------------------------
    def scoring(self, notebook: str, benchmarks: list[str], scorers: list[str], models: list[str], cap, rating_cap,
                legacy_cap: int = 0, label: str = "") -> None:
        for scorer in [s for s in scorers if s in ("flr", "direct", "ft_flr", "legacy_repo")]:
            rows = convs = toks = secs = 0
            unknown, est = [], False
            for b in benchmarks:
                kind = self.reg.get(b, {}).get("kind", "pairwise")
                n = self.rows(b, rating_cap if kind == "rating" and rating_cap is not None else cap)
                if scorer == "legacy_repo":
                    if not legacy_cap or kind == "system":
                        continue
                    n = None if n is None else min(n, legacy_cap)
                if n is None:
                    unknown.append(b)
                    continue
                c = n * {"pairwise": 2, "rm_bench": 6}.get(kind, 1)  # RM-Bench: 3 chosen + 3 rejected styles
                t = self.tokens(b)
                per = t["prefix_tokens"] + (self.fu if scorer != "direct" else 0)
                if scorer == "legacy_repo":  # one forward over the whole conversation per follow-up
                    per = 120 * t["prefix_tokens"] + self.fu
                s, e = (self.legacy_seconds(c, t["prefix_tokens"]) if scorer == "legacy_repo"
                        else self.score_seconds(c * per))
                rows, convs, toks, secs, est = rows + n, convs + c, toks + c * per, secs + s, est or e
            if not rows:
                continue
            k = len(models)
            if unknown:
                self.unknown.append(f"{notebook} {scorer}: {', '.join(unknown)} (no size in data/registry.yaml)")
            self.add(notebook, f"score {scorer}{label} ({k} model{'s' if k > 1 else ''})", rows * k, toks * k,
                     seconds=(secs * k, est),
                     needs=self.hub_needs(benchmarks, models))

    def hub_needs(self, benchmarks, models) -> list[str]:
        needs = [f"Hub dataset {self.reg[b]['hub']['id']}" for b in benchmarks
                 if b in self.reg and self.reg[b].get("hub")]
        needs += [f"URL {self.reg[b]['url'].split('/')[2]}" for b in benchmarks
                  if b in self.reg and self.reg[b].get("url")]
        return needs + self.model_needs(models)

    @staticmethod
    def model_needs(models) -> list[str]:
        out = []
        for m in models:
            if ":" in m or Path(m).exists():
                continue
            gated = " (gated: accept the licence, HF token)" if m.startswith(HUB_MODELS_GATED) else ""
            out.append(f"Hub model {m}{gated}")
        return out

    def build(self) -> "Planner":
        names = list(self.prof["notebooks"]) or [p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")]
        if "00_setup" in names:
            p = self.params("00_setup")
            self.add("00_setup", "model downloads", needs=self.model_needs(p.get("models") or [p.get("model", "")]),
                     sharded=False)
        if "03_reward_benchmarks" in names:
            p = self.params("03_reward_benchmarks")
            models = p.get("models") or [p["model"]]
            bench = list(p["benchmarks"])
            self.scoring("03_reward_benchmarks", bench, p["scorers"], models, p["max_examples"],
                         p.get("rating_examples"), p.get("legacy_max_examples") or 0)
            if p.get("rm_bench_benchmarks"):
                # notebook 03 leaves legacy_repo out of RM-Bench (rm_tags)
                self.rm_bench("03_reward_benchmarks", p, [s for s in p["scorers"] if s != "legacy_repo"], models)
        if "04_feedback_finetune" in names:
            self.feedback(self.params("04_feedback_finetune"))
        if "05_preference_mining" in names:
            self.mining(self.params("05_preference_mining"))
        if "06_alignment" in names:
            self.alignment(self.params("06_alignment"), self.params("05_preference_mining"))
        return self

    def feedback(self, p: dict) -> None:
        nb, n = "04_feedback_finetune", p["n_triples"]
        a = self.work["assumed"]
        hub = ["Hub dataset openbmb/UltraFeedback"] if p["triples_source"] == "ultrafeedback" else []
        if p["rewriter"] == "openai":
            self.add(nb, "rewrite critiques (openai)", n, sharded=False, api_calls=n,
                     needs=["API key FLR_REWRITE_API_KEY (and _BASE_URL, _MODEL)"] + hub)
        tokens = n * min(a["sft_example_tokens"], p["max_length"]) * p["epochs"]
        per_step = p["batch_size"] * p["grad_accum"]
        steps = {g: math.ceil(n * p["epochs"] / (per_step * g)) for g in (1, 8)}
        self.add(nb, "LoRA SFT (FT-FLR)", n, tokens, steps=steps, seconds=self.train_seconds(tokens, "sft"),
                 needs=self.model_needs([p["model"]]) + hub)
        self.scoring(nb, list(p["benchmarks"]), ["ft_flr"], [p["model"]], p["max_examples"], p.get("rating_examples"))
        if p.get("rm_bench_benchmarks"):
            self.rm_bench(nb, p, ["ft_flr"], [p["model"]])

    def rm_bench(self, notebook: str, p: dict, scorers: list[str], models: list[str]) -> None:
        """RM-Bench's domain files: ``rm_bench_prompts`` prompts each (None: ``max_examples``), 6 conversations per
        prompt (:meth:`scoring`)."""
        cap = p["max_examples"] if p.get("rm_bench_prompts") is None else p["rm_bench_prompts"]
        self.scoring(notebook, list(p["rm_bench_benchmarks"]), scorers, models, cap, None, label=" RM-Bench")

    def mining(self, p: dict) -> None:
        nb, a = "05_preference_mining", self.work["assumed"]
        n = p["max_examples"]
        samples = n * p["n_samples"]
        new = min(a["new_tokens"], p["max_new_tokens"])
        hub = ["Hub dataset berkeley-nest/Nectar"] if p["mining_source"] in ("nectar", "auto") else []
        if p.get("gen_backend") == "openai":  # requests to an OpenAI-compatible server, one per sample
            self.add(nb, f"generate {p['n_samples']} samples per prompt (server)", n, samples * new, samples=samples,
                     seconds=self.gen_seconds(samples * new, server=True), sharded=False, server=True,
                     needs=["generation server: FLR_GEN_BASE_URL, FLR_GEN_MODEL (vllm serve / SGLang) serving "
                            f"{p['policy_model']}"] + hub)
            self.server_requests += samples
        else:
            self.add(nb, f"generate {p['n_samples']} samples per prompt", n, samples * new, samples=samples,
                     seconds=self.gen_seconds(samples * new), sharded=False,
                     needs=self.model_needs([p["policy_model"]]) + hub)
        per = a["prompt_tokens"] + new + (self.fu if not p.get("categories") else self.fu * len(p["categories"]) / 6)
        self.add(nb, "score samples flr", samples, samples * per, seconds=self.score_seconds(samples * per),
                 needs=self.model_needs([p["model"]]))

    def alignment(self, p: dict, mining: dict) -> None:
        nb, a = "06_alignment", self.work["assumed"]
        prompts = mining["max_examples"]
        seq = a["prompt_tokens"] + min(a["new_tokens"], mining["max_new_tokens"])
        for method, rows, per_row in (("dpo", prompts, 2), ("kto", 2 * prompts, 1)):
            cfg = p[method]
            epochs = cfg.get("num_train_epochs", 1.0)
            per_step = cfg.get("per_device_train_batch_size", 1) * cfg.get("gradient_accumulation_steps", 1)
            tokens = rows * per_row * min(seq, cfg.get("max_length", seq)) * epochs
            steps = {g: math.ceil(rows * epochs / (per_step * g)) for g in (1, 8)}
            self.add(nb, f"{method.upper()} (LoRA, at most {rows:,} rows)", rows, tokens, steps=steps,
                     seconds=self.train_seconds(tokens, method), needs=self.model_needs([p["policy_model"]]))
        n_eval = p["max_examples"] or 805
        new = min(a["new_tokens"], p["eval_max_new_tokens"])
        if p.get("gen_backend") == "openai":  # base + adapters by name from one server, requested once
            self.add(nb, "evaluation outputs (base, dpo, kto; server)", n_eval, 3 * n_eval * new, samples=3 * n_eval,
                     seconds=self.gen_seconds(3 * n_eval * new, server=True), sharded=False, server=True,
                     needs=[f"generation server: FLR_GEN_BASE_URL serving {p['policy_model']} and the adapters 06 "
                            "trains (VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve --enable-lora --max-lora-rank 8: "
                            "06 loads each at runtime; or, started after DPO and KTO, --lora-modules "
                            "dpo=<06 out>/dpo/adapter kto=<06 out>/kto/adapter)"])
            self.server_requests += 3 * n_eval
        else:
            self.add(nb, "evaluation outputs (base, dpo, kto)", n_eval, 3 * n_eval * new, samples=3 * n_eval,
                     seconds=self.gen_seconds(3 * n_eval * new), sharded=False)
        comparisons = 5
        if "api" in p["judges"]:
            self.add(nb, "judge api (AlpacaEval 2)", n_eval * comparisons, sharded=False,
                     api_calls=n_eval * comparisons, needs=["API key FLR_JUDGE_API_KEY (and _BASE_URL, _MODEL)"])
        if "flr" in p["judges"]:
            c = 4 * n_eval
            per = a["prompt_tokens"] + new + self.fu
            self.add(nb, "judge flr (reference + 3 policies)", c, c * per, seconds=self.score_seconds(c * per))
        if p.get("grpo"):
            self.grpo(p, p["grpo"])

    def grpo(self, p: dict, g: dict) -> None:
        """Online GRPO against FLR: per optimizer step each rank samples, scores and trains on
        ``per_device_train_batch_size x gradient_accumulation_steps`` completions (in-process generation)."""
        nb, a = "06_alignment", self.work["assumed"]
        steps = g.get("max_steps", 0)
        if not steps or steps < 0:
            self.unknown.append(f"{nb} GRPO: no max_steps (an epoch-based GRPO run is not counted)")
            return
        per_rank = steps * g.get("per_device_train_batch_size", 8) * g.get("gradient_accumulation_steps", 1)
        new = min(a["new_tokens"], g.get("max_completion_length", 256))
        cats = g.get("categories") or []
        fu = self.fu * (len(cats) / 6 if cats else 1) if g.get("scorer", "flr") != "direct" else 0
        gen = self.gen_seconds(per_rank * new)
        score = self.score_seconds(per_rank * (a["prompt_tokens"] + new + fu))
        passes = "grpo" if not g.get("beta") else "dpo"  # beta > 0 adds the reference forward
        train = self.train_seconds(per_rank * (a["prompt_tokens"] + new), passes)
        self.add(nb, f"GRPO vs {g.get('scorer', 'flr')} ({per_rank:,} completions/rank)",
                 g.get("n_prompts"), per_rank * (2 * a["prompt_tokens"] + 2 * new + fu), samples=per_rank,
                 steps={1: steps, 8: steps}, seconds=(gen[0] + score[0] + train[0], gen[1] or score[1] or train[1]),
                 sharded=False, needs=self.model_needs([p["policy_model"], p["model"]]))
        self.per_rank.append("06 GRPO")

    # -- output ------------------------------------------------------------------------------------------------
    def time_on(self, step: dict, gpus: int, parallel: set) -> float:
        shard = step["sharded"] and not step["server"] and step["notebook"] in parallel
        return step["seconds"] / (gpus if shard else 1)


def _num(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not x.is_integer() or x >= 1e6:
        for unit, d in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
            if x >= d:
                return f"{x / d:.1f}{unit}"
    return f"{int(x):,}"


def _dur(s: float, est: bool) -> str:
    if not s:
        return "-"
    text = f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"
    return ("~" if est else "") + text


def render(profile: str, gpus=(1, 8), kind: str = "H100-SXM", only=None, table: dict | None = None) -> str:
    """The plan as text: one line per step, totals, what the run needs, and where each rate comes from."""
    from .reproduce import PARALLEL, check_only

    pl = Planner(profile, kind, table).build()
    check_only(only, pl.prof)
    kind = pl.kind
    parallel = set(pl.prof.get("parallel", PARALLEL) or ())
    steps = [s for s in pl.steps if not only or any(s["notebook"].startswith(o) for o in only)]
    gpus = list(gpus) or [1]
    head = (f"{'step':<48} {'rows':>8} {'tokens':>8} {'samples':>8} {'opt. steps':>13} "
            + " ".join(f"{f'{g}x {kind}':>13}" for g in gpus) + f" {'API calls':>9}")
    lines = [f"plan: profile {pl.prof['name']} on {', '.join(str(g) for g in gpus)} x {kind} "
             f"({pl.table['gpus'][kind]['name']}); rates are for an 8B model in bf16 whatever the profile's model; "
             "'~' = from an estimated rate, not a measured one", "", head,
             "-" * len(head)]
    for s in steps:
        st = "/".join(f"{s['steps'][g]:,}" for g in (1, 8)) if s["steps"] else "-"
        times = " ".join(f"{_dur(pl.time_on(s, g, parallel), s['estimate']):>13}" for g in gpus)
        lines.append(f"{s['notebook'][:2] + ' ' + s['what']:<48} {_num(s['rows']):>8} {_num(s['tokens']):>8} "
                     f"{_num(s['samples']):>8} {st:>13} {times} {_num(s['api_calls'] or None):>9}")
    totals = {g: sum(pl.time_on(s, g, parallel) for s in steps) for g in gpus}
    est = any(s["estimate"] for s in steps)
    tot = " ".join(f"{_dur(totals[g], est):>13}" for g in gpus)
    lines += ["-" * len(head), f"{'total':<48} {'':>8} {'':>8} {'':>8} {'':>13} {tot} "
              f"{_num(sum(s['api_calls'] for s in steps) or None):>9}", ""]
    lines.append("opt. steps: optimizer steps on 1 / 8 GPUs at the profile's per-device batch and gradient "
                 "accumulation (GRPO: max_steps on any number of GPUs)")
    shard = [f"{s['notebook'][:2]} {s['what'].split(' (')[0]}" for s in steps
             if s["sharded"] and not s["server"] and s["notebook"] in parallel and s["seconds"]]
    lines.append(f"divided over N GPUs (data-parallel on every rank; accelerate launch / torchrun): "
                 f"{', '.join(shard) or 'nothing'}. Not divided: server requests (sent once, timed on one server "
                 "GPU), API calls, rank-0 notebooks"
                 + (f", {', '.join(pl.per_rank)} (every rank does max_steps' work on its own completions)"
                    if pl.per_rank else ""))
    top = max(gpus)
    if steps and any(s["seconds"] for s in steps):
        worst = max(steps, key=lambda s: pl.time_on(s, top, parallel))
        verdict = "within" if totals[top] <= BUDGET_H * 3600 else "OVER"
        lines.append(f"budget: {_dur(totals[top], est)} on {top}x {pl.kind}, {verdict} the {BUDGET_H:.0f} h target; "
                     f"the longest step is {worst['notebook'][:2]} {worst['what']} "
                     f"({_dur(pl.time_on(worst, top, parallel), worst['estimate'])})")
    needs = sorted({n for s in steps for n in s["needs"]})
    lines += ["", "needs:"] + [f"  - {n}" for n in needs] + ["", "rates:"] + [f"  - {n}" for n in pl.notes]
    if pl.server_requests:
        lines += ["", f"generation server: {pl.server_requests:,} requests (one per sample), sent once by rank 0, on "
                  "the server's own GPU(s), timed here as one GPU (vllm serve --data-parallel-size K divides them)"]
    if pl.unknown:
        lines += ["", "not counted:"] + [f"  - {u}" for u in pl.unknown]
    return "\n".join(lines)

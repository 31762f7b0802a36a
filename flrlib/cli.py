"""The `flr` command: data, setup, score, reproduce. Thin: every subcommand calls one flrlib function."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


class InputError(ValueError):
    """A malformed input row; the message names the file, line and field."""


def read_score_rows(path: str | Path) -> list[dict]:
    """Read `flr score` input: ``{"id", "messages"}`` (last message = response) or ``{"id", "messages", "chosen",
    "rejected"}`` (messages = context, ending with the user turn answered). Errors name the file, line and field.

    ``id`` (optional, default ``row<line>``) must be a unique string. Each row gets ``_pair`` and ``_line``.
    """
    from .files import BadFile, numbered_jsonl
    from .messages import check_messages

    path = Path(path)
    rows, seen = [], {}
    try:
        numbered = numbered_jsonl(path)
    except BadFile as e:  # a bad byte or bad JSON, named by file and line
        raise InputError(str(e)) from None
    for n, row in numbered:
        if not isinstance(row, dict):
            raise InputError(f"{path}:{n}: expected a JSON object")
        if "messages" not in row:
            raise InputError(f"{path}:{n}: missing field 'messages'")
        try:
            check_messages(row["messages"], "messages")
        except ValueError as e:
            raise InputError(f"{path}:{n}: field {e}") from None
        pair = "chosen" in row or "rejected" in row
        if pair:
            for side in ("chosen", "rejected"):
                if not isinstance(row.get(side), str) or not row[side].strip():
                    raise InputError(f"{path}:{n}: field '{side}' must be a non-empty string")
            if row["messages"][-1]["role"] != "user":
                raise InputError(f"{path}:{n}: field 'messages': in a chosen/rejected row the messages are the context "
                                 f"and must end with the user turn being answered (the last one is "
                                 f"{row['messages'][-1]['role']!r})")
        elif row["messages"][-1]["role"] != "assistant" or not row["messages"][-1]["content"].strip():
            raise InputError(f"{path}:{n}: field 'messages': the last message must be the (non-empty) assistant "
                             "response to score, or give 'chosen' and 'rejected'")
        if "id" in row and (not isinstance(row["id"], str) or not row["id"].strip()):
            raise InputError(f"{path}:{n}: field 'id' must be a non-empty string (got {row['id']!r:.60})")
        row.setdefault("id", f"row{n}")
        if row["id"] in seen:
            raise InputError(f"{path}:{n}: field 'id': {row['id']!r:.60} is already the id of line {seen[row['id']]}")
        seen[row["id"]] = n
        row["_pair"], row["_line"] = pair, n
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no rows")
    return rows


def _score_records(scorer, rows: list[dict], where: str) -> list[dict]:
    """Output records in input order; a sequence too long for the model is reported with its file, line and id."""
    from .scoring import TooLong

    singles = [r for r in rows if not r["_pair"]]
    pairs = [r for r in rows if r["_pair"]]
    try:
        res_single = iter(scorer.score([r["messages"] for r in singles], desc="responses") if singles else [])
        res_pairs = iter(scorer.score_pairs(pairs) if pairs else [])
    except TooLong as e:
        r = (singles if e.side is None else pairs)[e.index]
        side = f" ({e.side})" if e.side else ""
        raise InputError(f"{where}:{r['_line']}: row {r['id']!r}{side}: {e.detail}") from None
    prov, out = scorer.provenance, []
    for r in rows:
        if r["_pair"]:
            s = next(res_pairs)
            rec = {"id": r["id"], "chosen_reward": s["chosen"], "rejected_reward": s["rejected"],
                   "prefers_chosen": s["chosen"] > s["rejected"]}
            for side in ("chosen", "rejected"):
                d = s[f"{side}_detail"]
                rec[f"{side}_truncated_tokens"] = d.get("truncated_tokens", 0)
                rec[f"{side}_over_budget"] = d.get("over_budget", False)
        else:
            s = next(res_single)
            rec = {"id": r["id"], "reward": s["reward"], **({"categories": s["categories"]} if "categories" in s else {}),
                   "truncated_tokens": s.get("truncated_tokens", 0), "over_budget": s.get("over_budget", False)}
        out.append({**rec, "provenance": prov})
    return out


def _truncation_warning(records: list[dict], max_tokens: int) -> str | None:
    """One line counting the sequences whose context was cut and those over the budget (None if there are none)."""
    cut = over = total = n = 0
    for rec in records:
        for pre in (("chosen_", "rejected_") if "chosen_reward" in rec else ("",)):
            n += 1
            t = rec.get(f"{pre}truncated_tokens", 0)
            cut, total, over = cut + (t > 0), total + t, over + bool(rec.get(f"{pre}over_budget"))
    if not cut and not over:
        return None
    return (f"warning: {cut} of {n} scored sequences had their context cut from the left ({total} tokens in all) and "
            f"{over} were over --max-tokens {max_tokens} (their response and follow-up alone exceed it; scored "
            "whole): see the truncated_tokens / over_budget fields of the output")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return v


def _check_target(path: Path, what: str) -> None:
    """A file path we will write: not a directory, and its nearest existing folder is writable."""
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory; give a file path")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(f"{what} {path}: cannot create files in {parent}")


def cmd_score(a) -> int:
    """Score a JSONL file. Under ``accelerate launch`` / ``torchrun`` every rank reads the same rows and the
    :class:`~flrlib.scoring.Scorer` deals the batches to the ranks (its data-parallel mode: each rank on its own GPU
    and cache file, every rank gets every score); rank 0 writes the output."""
    from .followups import load_bank
    from .models import load_model
    from .parallel import barrier, world
    from .results import write_jsonl
    from .scoring import NO_BANK, ScoreConfig, Scorer

    if a.benchmark:  # registered benchmarks (pairwise, rating, system, RM-Bench, RewardBench): notebook 03's loop
        return _score_benchmarks(a)
    if not a.input or not a.output:
        raise InputError("flr score needs --input and --output (a JSONL file), or --benchmark NAME[,NAME...]")
    # everything that can be checked without the model is checked first
    rows = read_score_rows(a.input)
    out = Path(a.output)
    _check_target(out, "--output")
    if a.cache:
        _check_target(Path(a.cache), "--cache")
    cats = [c.strip() for c in a.categories.split(",") if c.strip()] if a.categories else []
    cfg = ScoreConfig(scorer=a.scorer, layout=a.layout, norm=a.norm, max_tokens=a.max_tokens,
                      batch_size=a.batch_size, chunk_size=a.chunk_size, categories=cats)
    bank = None
    if a.scorer not in NO_BANK:
        bank = load_bank(a.bank)  # parse errors name the file (and line)
        bank.select(cats)  # unknown categories are named here (the Scorer selects them)
    loaded = load_model(a.model, dtype=a.dtype, device=a.device, adapter=a.adapter)  # auto: this rank's GPU
    scorer = Scorer(loaded, bank, cfg, cache=a.cache or "auto")  # per-rank cache files under several ranks
    rank, count = world()
    try:
        records = _score_records(scorer, rows, a.input)
    except KeyboardInterrupt:  # every finished row is already in the cache
        c = scorer.cache
        print(f"interrupted: {c.written} new scores were saved to the cache {c.path} ({len(c)} in it); re-run the "
              "same command to resume (only the missing rows are computed)", file=sys.stderr)
        return 130
    if rank == 0:
        write_jsonl(out, records)
        print(f"wrote {len(rows)} rows to {out}" + (f" (scored by {count} processes)" if count > 1 else ""))
    barrier()  # the other ranks end once the output exists
    if rank != 0:
        return 0
    warning = _truncation_warning(records, a.max_tokens)
    if warning:
        print(warning, file=sys.stderr)
    return 0


def _score_benchmarks(a) -> int:
    """``flr score --benchmark rm_bench_chat,hh_helpful_base``: :func:`flrlib.benchmarks.run_suite` for one scorer,
    result files under ``results/<--profile>/`` (flat JSON + per-sample JSONL; RM-Bench's 3 x 3 summary too)."""
    from .benchmarks import run_suite
    from .data import benchmark_names
    from .models import load_model

    if a.input or a.output:
        raise InputError("--benchmark writes result files under results/<--profile>/; leave out --input/--output")
    names = [b.strip() for b in a.benchmark.split(",") if b.strip()]
    known = set(benchmark_names())
    unknown = [b for b in names if b not in known]
    if unknown:
        raise InputError(f"--benchmark: unknown {', '.join(unknown)}; registered: {', '.join(sorted(known))}")
    cats = [c.strip() for c in a.categories.split(",") if c.strip()] if a.categories else []
    loaded = load_model(a.model, dtype=a.dtype, device=a.device, adapter=a.adapter)
    recs = run_suite(loaded, names, [a.scorer], a.profile, max_examples=a.max_examples,
                     bank=a.bank or "paper", categories=cats, batch_size=a.batch_size, seed=a.seed,
                     cache=a.cache or "auto")
    for r in recs:
        print(f"{r['benchmark']:28s} {r['scorer']:8s} n {r['n']:5d}  {r['metric']} {r['value']:.3f} "
              f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
    for sk in recs.skipped:
        print(f"skipped {sk['benchmark']}: {sk['reason']}", file=sys.stderr)
    return 0


def cmd_data(a) -> int:
    if a.prefetch:  # every Hub dataset and model of a profile into one folder, commits locked (flrlib.data.hub)
        from .data.hub import prefetch

        prefetch(a.profile, folder=a.hub_dir)
        return 0
    from .data.fetch import fetch

    fetch(dest=a.dest, mirror=a.mirror, online=not a.offline)
    return 0


def cmd_setup(a) -> int:
    from .models import BUNDLED, TINY, load_model

    for spec in (BUNDLED, TINY):
        lm = load_model(spec)
        print(f"ok: {spec} -> {lm.model.config._name_or_path} ({sum(p.numel() for p in lm.model.parameters())/1e6:.1f} M params)")
    return 0


def cmd_reproduce(a) -> int:
    if a.rehearse:  # the paper profile's code paths on CPU: tiny models, Hub fixtures, llama.cpp server, N ranks
        from .rehearsal import rehearse

        return rehearse(a.profile, ranks=a.ranks, work=a.work_dir, only=a.only, force=a.force)
    if a.plan:  # what the run will process, need and cost; loads no model
        from .plan import render

        print(render(a.profile, gpus=a.gpus, kind=a.gpu_kind, only=a.only))
        return 0
    from .reproduce import Interrupted, NotebookFailed, run

    try:
        run(a.profile, only=a.only, force=a.force, out_dir=a.out_dir, notebooks_dir=a.notebooks_dir)
    except NotebookFailed as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(e, file=sys.stderr)  # "interrupted in 03_reward_benchmarks; re-run the same command to resume"
        return 130
    return 0


def cmd_align(a) -> int:
    """DPO / KTO with LoRA on mined rows, settings from a profile's notebook-06 block (also under accelerate)."""
    from .align import ConfigError, profile_config, train
    from .files import read_jsonl

    params, cfg = profile_config(a.profile, a.method)
    if a.max_steps is not None:
        cfg.max_steps = a.max_steps
    rows = read_jsonl(a.data)
    try:
        rec = train(a.policy_model or params["policy_model"], rows, a.out, cfg, device=a.device or params.get("device", "auto"),
                    dtype=a.dtype or params.get("dtype", "auto"), force=a.force,
                    provenance={"data_file": str(a.data), "profile": a.profile})
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if rec:  # only the main process writes (and reports) under accelerate launch
        print(json.dumps({k: rec[k] for k in ("method", "adapter", "adapter_hash", "global_steps", "train_loss")}))
    return 0


def cmd_rerank(a) -> int:
    """Best-of-N reranking; the logic is :func:`flrlib.rerank.cli`."""
    from .rerank import cli

    return cli(a)


def cmd_serve(a) -> int:
    """The HTTP reward service (OpenRLHF, verl, TRL); the logic is :func:`flrlib.serve.cli`."""
    from .serve import cli

    return cli(a)


def _prompt_rows(path: str | Path) -> list[dict]:
    """`flr sample` input: ``{"id", "messages"}`` or ``{"id", "instruction"}`` per line; errors name file and line."""
    from .files import numbered_jsonl
    from .messages import check_messages

    rows, seen = [], set()
    for n, row in numbered_jsonl(path):
        if not isinstance(row, dict) or "id" not in row:
            raise InputError(f"{path}:{n}: expected a JSON object with an 'id'")
        if "messages" not in row and isinstance(row.get("instruction"), str):
            row = {**row, "messages": [{"role": "user", "content": row["instruction"]}]}
        try:
            check_messages(row.get("messages"), "messages")
        except ValueError as e:
            raise InputError(f"{path}:{n}: field {e}") from None
        if row["messages"][-1]["role"] != "user":
            raise InputError(f"{path}:{n}: field 'messages': the last message must be the user turn to answer")
        if row["id"] in seen:
            raise InputError(f"{path}:{n}: field 'id': {row['id']!r:.60} is repeated")
        seen.add(row["id"])
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no rows")
    return rows


PARTIAL = 3  # `flr sample / rewrite / judge`: the output was written, but some requests were refused (recorded)


def _endpoint(role: str, a):
    from .client import Endpoint, check_served

    endpoint = Endpoint.from_env(role, base_url=a.base_url, model=a.model, api_key=None, timeout=a.timeout,
                                 max_retries=a.max_retries)
    warning = check_served(endpoint)  # llama.cpp answers any model name with its own model
    if warning:
        print(warning, file=sys.stderr)
    return endpoint


def _interrupted(e) -> int:
    """Ctrl-C in an endpoint command: one line ("interrupted: saved N answers ..."), exit 130. A second Ctrl-C
    while exiting is ignored (the answers are saved; nothing is left to stop)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(e, file=sys.stderr)
    return 130


def _partial(n_failed: int, what: str, out, retry: bool = True) -> int:
    """The exit status of an endpoint command, after one line on stderr when requests were refused."""
    if not n_failed:
        return 0
    print(f"partial: {n_failed} {what} refused by the endpoint, recorded in {out} (status and the server's "
          f"message){'; a re-run re-sends them only with --retry-failed' if retry else ''} (exit {PARTIAL})",
          file=sys.stderr)
    return PARTIAL


def cmd_sample(a) -> int:
    """N responses per prompt (:func:`flrlib.generate.generate`), in-process (hf) or through an endpoint (openai)."""
    import warnings

    from .client import Interrupted
    from .generate import GenConfig, generate
    from .results import write_jsonl

    rows = _prompt_rows(a.input)
    out = Path(a.output)
    _check_target(out, "output")
    cfg = GenConfig(n=1 if a.greedy else a.n, do_sample=not a.greedy, temperature=a.temperature, top_p=a.top_p,
                    max_new_tokens=a.max_new_tokens, seed=a.seed, concurrency=a.concurrency, batch_size=a.batch_size)
    if a.backend == "openai":
        policy = _endpoint("GEN", a)
    else:
        from .models import load_model

        policy = load_model(a.model or "bundled:smollm2-135m-instruct", dtype=a.dtype, device=a.device)
    cache = a.cache or out.with_name(out.name + ".cache.jsonl")
    try:
        with warnings.catch_warnings():  # the refusals are counted below
            warnings.simplefilter("ignore", UserWarning)
            samples = generate(policy, rows, cfg, cache=cache, desc="sampling", retry_failed=a.retry_failed)
    except Interrupted as e:
        return _interrupted(e)
    write_jsonl(out, samples)
    n_failed = sum(len(s.get("failed", [])) for s in samples)
    print(f"{len(samples)} prompts x {cfg.n} responses -> {out} (cache {cache})"
          + (f": {cfg.n * len(samples) - n_failed} answered, {n_failed} refused" if n_failed else ""))
    return _partial(n_failed, "samples were", out)


def cmd_rewrite(a) -> int:
    """Critiques -> follow-ups (:func:`flrlib.rewrite.rewrite_all`), kept and rejected rows in one file."""
    from . import rewrite as rw
    from .files import read_jsonl
    from .results import write_jsonl

    triples = read_jsonl(a.input)
    out = Path(a.output)
    _check_target(out, "output")
    if a.rewriter == "openai":
        fn = rw.OpenAIRewriter(model=a.model, base_url=a.base_url, concurrency=a.concurrency, timeout=a.timeout,
                               max_retries=a.max_retries, retry_failed=a.retry_failed)
    elif a.rewriter == "hf":
        from .models import load_model

        fn = rw.HFRewriter(load_model(a.model or "bundled:smollm2-135m-instruct", dtype=a.dtype, device=a.device))
    else:
        fn = rw.RuleRewriter()
    from .client import Interrupted

    try:
        kept, rejects = rw.rewrite_all(triples, fn, cache=a.cache or "auto")
    except Interrupted as e:
        return _interrupted(e)
    refused = [r for r in rejects if r["reason"] == "refused"]
    write_jsonl(out, [{"status": "kept", **r} for r in kept] +
                [{"status": "failed" if r["reason"] == "refused" else "rejected", **r} for r in rejects])
    print(f"rewriter {fn.name}: {len(kept)} kept, {len(rejects) - len(refused)} rejected"
          + (f", {len(refused)} refused by the endpoint" if refused else "") + f" -> {out}")
    return _partial(len(refused), "triples were", out)


def cmd_judge(a) -> int:
    """AlpacaEval-style head-to-head of a model_outputs file (:func:`flrlib.judge.head_to_head`)."""
    from .files import read_json
    from .judge import head_to_head
    from .judges import make_judges
    from .results import write_json, write_jsonl

    candidate = read_json(a.candidate)
    baseline = read_json(a.baseline) if a.baseline else None
    for name, rows in (("--candidate", candidate), ("--baseline", baseline)):
        if rows is not None and not isinstance(rows, list):
            raise InputError(f"{name}: expected a JSON list of AlpacaEval model outputs ({{instruction, output}})")
    from .client import Interrupted

    endpoint = _endpoint("JUDGE", a) if a.judge == "api" else None
    judges = make_judges([a.judge], hf_model=a.hf_model, device=a.device, dtype=a.dtype, annotator=a.annotator,
                         endpoint=endpoint, concurrency=a.concurrency, retry_failed=a.retry_failed)
    try:
        summary, judged = head_to_head(candidate, judges, baseline, seed=a.seed, n_boot=a.n_boot,
                                       where=str(a.candidate))
    except Interrupted as e:
        return _interrupted(e)
    out = Path(a.output)
    write_json(out / "summary.json", {"rows": summary, "candidate": str(a.candidate),
                                      "baseline": str(a.baseline) if a.baseline else "gpt4_1106_preview"})
    write_jsonl(out / "judgements.jsonl", judged)
    for r in summary:
        print(f"{r['judge']}: {r['candidate']} vs {r['baseline']}: win rate {r['win_rate']:.1f} "
              f"[{r['ci_low']:.1f}, {r['ci_high']:.1f}] (n {r['n']}, {r['n_failed']} without verdict); "
              f"LC {r['lc_win_rate']:.1f} ({r['lc_glm']}) -> {out}")
    refused = sum("failure" in r for r in judged)
    if refused:
        print(f"{refused} of the pairs without verdict were refused by the endpoint (field 'failure' in "
              f"{out / 'judgements.jsonl'})")
    return _partial(refused, "pairs were", out / "judgements.jsonl")


def _model_args(p, role: str, model_help: str) -> None:
    """``--model``, ``--base-url``, ``--concurrency`` (an endpoint of ``role``) and ``--dtype``, ``--device`` (a
    local model) of `flr sample / rewrite / judge`."""
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("--base-url", default=None, help=f"OpenAI-compatible endpoint (default: FLR_{role}_BASE_URL, "
                   f"else OPENAI_BASE_URL); the key comes from FLR_{role}_API_KEY / OPENAI_API_KEY")
    p.add_argument("--concurrency", type=_positive_int, default=8, help="requests in flight")
    from .client import DEFAULT_RETRIES, DEFAULT_TIMEOUT

    p.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT,
                   help=f"seconds to wait for one answer (default {DEFAULT_TIMEOUT:g}: a long answer from a busy server)")
    p.add_argument("--max-retries", type=_count, default=DEFAULT_RETRIES, help="retries of a request on connection "
                   f"errors, timeouts, 429 and 5xx, with back-off (default {DEFAULT_RETRIES})")
    p.add_argument("--retry-failed", action="store_true", help="re-send the requests the server refused in an "
                   "earlier run (recorded in the cache; not re-sent by default). Refused requests never stop a run: "
                   "they are recorded in the output, and the exit status is 3 (output written, partial)")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default="auto")


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = 0.0
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return v


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="flr", description="Follow-up Likelihood as Reward: reproduction toolkit")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("data", help="populate the data folder from the mirror (or the public sources when online)")
    p.add_argument("--dest", help="data folder (default: $FLR_DATA_DIR or ./data)")
    p.add_argument("--mirror", help="mirror folder (default: $FLR_DATA_MIRROR or ../shared/data)")
    p.add_argument("--offline", action="store_true", help="never download")
    p.add_argument("--prefetch", action="store_true", help="download every Hub dataset and model of --profile into "
                   "--hub-dir and lock their commits (run where the Hub is reachable; FLR_OFFLINE=1 runs read only it)")
    p.add_argument("--profile", default="paper", help="--prefetch: the profile whose Hub repos to fetch")
    p.add_argument("--hub-dir", default=None, help="--prefetch: the folder (default $FLR_HUB_DIR or <data>/hub)")
    p.set_defaults(fn=cmd_data)

    p = sub.add_parser("setup", help="convert the bundled model once and build the tiny test model")
    p.set_defaults(fn=cmd_setup)

    p = sub.add_parser("score", help="score responses or pairs in a JSONL file")
    p.add_argument("--model", default="bundled:smollm2-135m-instruct")
    p.add_argument("--input", default=None, help="JSONL of responses or pairs (with --output)")
    p.add_argument("--output", default=None)
    p.add_argument("--benchmark", default=None,
                   help="instead of --input: registered benchmark(s), comma-separated (e.g. rm_bench_chat); result "
                        "files under results/<--profile>/")
    p.add_argument("--profile", default="cli", help="with --benchmark: the results folder's name")
    p.add_argument("--max-examples", type=_positive_int, default=None,
                   help="with --benchmark: a seeded subset of pairs / rows / RM-Bench prompts per benchmark")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scorer", default="flr", choices=["flr", "direct", "legacy_repo", "length"],
                   help="length: the response's length in M's tokens (the length-only baseline; no forward pass)")
    p.add_argument("--bank", default=None, help="bank JSON/YAML (default: the paper's bank in the data folder)")
    p.add_argument("--categories", default="", help="comma-separated subset of the bank's categories")
    p.add_argument("--layout", default="base", choices=["base", "feedback"])
    p.add_argument("--norm", default="mean", choices=["mean", "sum"])
    p.add_argument("--adapter", default=None)
    p.add_argument("--max-tokens", type=_positive_int, default=2048,
                   help="context budget in tokens; longer contexts are cut from the left (reported in the output)")
    p.add_argument("--batch-size", type=_positive_int, default=4)
    p.add_argument("--chunk-size", type=_positive_int, default=128, help="follow-ups packed per forward")
    p.add_argument("--dtype", default="auto",
                   choices=["auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"])
    p.add_argument("--device", default="auto")
    p.add_argument("--cache", default=None, help="score cache JSONL (default: under $FLR_CACHE_DIR)")
    p.set_defaults(fn=cmd_score)

    p = sub.add_parser("align", help="DPO / KTO (LoRA) on mined rows; runs under `accelerate launch -m flrlib.cli align`")
    p.add_argument("--method", choices=["dpo", "kto"], required=True)
    p.add_argument("--data", required=True, help="mined rows: dpo_pairs.jsonl (dpo) or kto_rows.jsonl (kto)")
    p.add_argument("--out", required=True, help="output folder (adapter/, provenance.json, log_history.json)")
    p.add_argument("--profile", default="paper", help="profile whose 06_alignment dpo/kto block gives the config")
    p.add_argument("--policy-model", help="default: the profile's policy_model")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--force", action="store_true")
    p.set_defaults(fn=cmd_align)

    p = sub.add_parser("rerank", help="best-of-N: rank N candidates per prompt (given or sampled) by a scorer")
    p.add_argument("--input", required=True, help="JSONL {id, messages, responses: [...]} (or {id, messages} with --policy-model)")
    p.add_argument("--output", required=True, help="JSONL: the rows with scores, order, best_index, best")
    p.add_argument("--model", default="bundled:smollm2-135m-instruct", help="the scoring model M")
    p.add_argument("--scorer", default="flr", choices=["flr", "direct", "length"])
    p.add_argument("--bank", default=None, help="bank JSON/YAML (default: the paper's bank in the data folder)")
    p.add_argument("--categories", default="", help="comma-separated subset of the bank's categories")
    p.add_argument("--layout", default="base", choices=["base", "feedback"])
    p.add_argument("--adapter", default=None, help="adapter of M (e.g. the FT-FLR feedback adapter)")
    p.add_argument("--max-tokens", type=_positive_int, default=2048)
    p.add_argument("--batch-size", type=_positive_int, default=4)
    p.add_argument("--policy-model", default=None, help="sample the candidates from this policy instead")
    p.add_argument("--n", type=_positive_int, default=8, help="candidates per prompt when sampling")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--max-new-tokens", type=_positive_int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gen-cache", default=None, help="resumable sampling cache JSONL (default: under $FLR_CACHE_DIR)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"])
    p.add_argument("--device", default="auto")
    p.add_argument("--cache", default=None, help="score cache JSONL (default: under $FLR_CACHE_DIR)")
    p.set_defaults(fn=cmd_rerank)

    p = sub.add_parser("sample", help="N responses per prompt, in-process (hf) or through an OpenAI-compatible server")
    p.add_argument("--input", required=True, help="JSONL {id, messages} (or {id, instruction})")
    p.add_argument("--output", required=True, help="JSONL {id, messages, responses, n_tokens, truncated}")
    p.add_argument("--backend", choices=["openai", "hf"], default="openai")
    _model_args(p, "GEN", "openai: the served model name (default FLR_GEN_MODEL); hf: a model spec")
    p.add_argument("--n", type=_positive_int, default=8)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--max-new-tokens", type=_positive_int, default=512)
    p.add_argument("--greedy", action="store_true", help="one greedy response per prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=_positive_int, default=4, help="hf: prompts per generate() call")
    p.add_argument("--cache", default=None, help="resumable cache JSONL (default: OUTPUT.cache.jsonl)")
    p.set_defaults(fn=cmd_sample)

    p = sub.add_parser("rewrite", help="rewrite critiques into user follow-ups (rule, a local model, or an endpoint)")
    p.add_argument("--input", required=True, help="JSONL feedback triples {id, prompt, response, critique[, score]}")
    p.add_argument("--output", required=True, help="JSONL: the triples with 'followup' and 'status' kept / rejected")
    p.add_argument("--rewriter", choices=["openai", "hf", "rule"], default="openai")
    _model_args(p, "REWRITE", "openai: model name (default FLR_REWRITE_MODEL); hf: a model spec")
    p.add_argument("--cache", default=None, help="rewrite cache JSONL (default: under $FLR_CACHE_DIR)")
    p.set_defaults(fn=cmd_rewrite)

    p = sub.add_parser("judge", help="AlpacaEval 2 head-to-head of a model_outputs file (alpaca_eval annotator)")
    p.add_argument("--candidate", required=True, help="AlpacaEval model_outputs JSON [{instruction, output, generator}]")
    p.add_argument("--baseline", default=None, help="the same format (default: gpt4_1106_preview from the data folder)")
    p.add_argument("--output", required=True, help="folder: summary.json, judgements.jsonl")
    p.add_argument("--judge", choices=["api", "hf", "direct"], default="api")
    p.add_argument("--annotator", default="alpaca_eval_gpt4_turbo_fn", help="alpaca_eval annotator config (api judge)")
    _model_args(p, "JUDGE", "api: the judge model at the endpoint (default FLR_JUDGE_MODEL)")
    p.add_argument("--hf-model", default="bundled:smollm2-135m-instruct", help="the hf / direct judge's model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=_positive_int, default=2000)
    p.set_defaults(fn=cmd_judge)

    p = sub.add_parser("serve", help="HTTP reward service for OpenRLHF, verl and TRL (127.0.0.1 unless told otherwise)")
    from .serve import add_arguments as serve_arguments  # argparse only: fastapi is imported when serving

    serve_arguments(p)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("reproduce", help="run the notebooks headless with papermill")
    p.add_argument("--profile", default="demo", help="smoke | demo | paper | path to a YAML")
    p.add_argument("--only", nargs="*", help="notebook prefixes, e.g. 02 03")
    p.add_argument("--force", action="store_true", help="re-run notebooks even if unchanged")
    p.add_argument("--plan", action="store_true", help="print rows, tokens, steps, time, needs and API calls per "
                   "step, and exit (no model is loaded)")
    p.add_argument("--gpus", type=_positive_int, nargs="*", default=[1, 8], help="--plan: GPU counts to estimate for")
    p.add_argument("--gpu-kind", default="H100-SXM", help="--plan: a GPU kind of configs/throughput.yaml (any case)")
    p.add_argument("--out-dir", default=None, help="executed notebooks (default: outputs/<profile>/)")
    p.add_argument("--notebooks-dir", default=None, help="notebooks to run (default: notebooks/)")
    p.add_argument("--rehearse", action="store_true", help="rehearse the paper profile on CPU (profiles/rehearsal.yaml: "
                   "only sizes and models swapped; Hub fixtures, a llama.cpp server for the endpoints) and print a report")
    p.add_argument("--ranks", type=_positive_int, default=2, help="--rehearse: processes (torchrun on CPU, gloo)")
    p.add_argument("--work-dir", default=None, help="--rehearse: its folder (default outputs/rehearsal_work)")
    p.set_defaults(fn=cmd_reproduce)

    try:
        a = ap.parse_args(argv)
    except SystemExit as e:  # usage errors (already printed) and --help
        return e.code if isinstance(e.code, int) else 2
    try:
        return a.fn(a)
    except (InputError, FileNotFoundError, IsADirectoryError, PermissionError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        if type(e).__name__ in ("ModelNotAvailable", "DataMissing", "TemplateError", "EndpointError",
                                "RewriterUnavailable"):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Natural-language-feedback fine-tuning of M (the paper's FT-FLR): triples -> follow-ups -> LoRA SFT -> adapter.

Read top to bottom:

1. **Triples** ``{id, prompt, messages, response, critique, score, score_scale, source}`` (the README's "feedback
   triple" schema plus the context and the critique's score). Offline: the Prometheus Vicuna set (GPT-4 feedback,
   :func:`prometheus_triples`). Online: UltraFeedback's GPT-4 critiques (Hub ``openbmb/UltraFeedback``,
   :func:`ultrafeedback_triples` parses rows of its documented schema, :func:`load_ultrafeedback_triples` fetches).
2. **No evaluation leak** (:func:`guard_eval_leak`): a triple whose prompt (any user turn) appears in an evaluation
   set - always the Prometheus MT-Bench set, plus every benchmark subset the caller evaluates on - is refused
   (``policy="error"``, naming the row) or dropped and counted (``policy="drop"``). :func:`build_sft_data` always
   runs it, and :func:`train_adapter` only accepts what :func:`build_sft_data` returns.
3. **Rewriting** critiques into follow-ups: :mod:`flrlib.rewrite`.
4. **Training examples** (:func:`sft_example`): the role-swapped ``feedback`` layout of the scorer, built by the
   same code (:func:`flrlib.chat.flr_context` + :func:`flrlib.chat.encode`): user = the fixed feedback request,
   assistant = p, user = r, assistant = the follow-up f. Token ids are exactly the scorer's prefix + target (plus the
   template's end-of-turn tokens); labels are ``-100`` everywhere except f and its end-of-turn tokens - the
   assistant turn p is masked too (:data:`LOSS_MASK`).
5. **LoRA SFT** with TRL's ``SFTTrainer`` (:func:`train_adapter`). The pre-tokenised ``input_ids``/``labels``
   columns are used as they are by TRL 1.16 (no re-tokenisation, no ``completion_only_loss`` re-masking), so the
   masks tested in ``tests/test_feedback.py`` are the masks trained with. The adapter folder holds
   ``provenance.json`` (base model, data hash, hyper-parameters, seed, versions) and ``log_history.json``.
6. **FT-FLR** (:func:`ft_flr_scorer`): a :class:`flrlib.scoring.Scorer` on ``load_model(spec, adapter=...)``
   with ``ScoreConfig(layout="feedback")``.
7. **FT-FLR vs FLR vs Direct** on the same rows: :func:`score_or_reuse` (FLR/Direct result files of notebook 03 are
   reused when they cover the rows) and :func:`compare` (paired bootstrap CIs, from result files only).

Paper profile (:data:`PAPER_LORA`, :data:`PAPER_TRAIN`, :data:`RECIPE`): the paper fine-tunes with LLaMA-Factory
v0.8.3; the LoRA settings are its defaults - rank 8, alpha 16 (= 2 x rank), dropout 0, all linear layers
(``lora_target: all``), ``cutoff_len`` 1024. The loss mask is *not* LLaMA-Factory's default: here the loss is on the
final assistant turn (the follow-up f, plus its end-of-turn tokens) only. LLaMA-Factory v0.8.3 masks only the user
turns (``train_on_prompt: false``, ``mask_history: false``), so in this role-swapped layout it would also train on
the assistant turn p. Both are defensible; this one trains M on exactly the tokens FT-FLR scores. Optimiser
settings are those of LLaMA-Factory's example LoRA SFT config (lr 1e-4, 3 epochs, cosine schedule, 10 % warm-up,
batch 1 x 8 accumulation); the paper does not list them.
"""
from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .cache import content_key
from .chat import encode, flr_context, render, template_hash
from .paths import cache_dir

LAYOUT = "feedback"  # the training layout is the scorer's feedback layout, always
LOSS_MASK = ("loss on the final assistant turn (the follow-up f) and its end-of-turn tokens only; the feedback "
             "request, the assistant turn p and the user turn r are masked (-100). LLaMA-Factory v0.8.3 with its "
             "default mask_history=False would also train on the assistant turn p of this role-swapped layout")
RECIPE = ("paper profile: LLaMA-Factory v0.8.3 LoRA defaults (rank 8, alpha 16, dropout 0, lora_target all = all "
          "linear layers, cutoff_len 1024) with TRL SFTTrainer; " + LOSS_MASK)


# ------------------------------------------------------------------------------------------------------------------
# 1. triples
# ------------------------------------------------------------------------------------------------------------------

def _last_user(messages: list[dict], where: str) -> str:
    for m in reversed(messages):
        if m.get("role") == "user" and isinstance(m.get("content"), str) and m["content"].strip():
            return m["content"]
    raise ValueError(f"{where}: field 'messages' has no user prompt")


def prometheus_triples(which: str = "vicuna", per_response: int = 1, max_examples: int | None = None,
                       seed: int = 0) -> list[dict]:
    """Triples from a Prometheus set (default: Vicuna, 320 responses x 3 GPT-4 critiques, scores 1-5).

    ``per_response``: how many of each response's critiques to use (1-3, in file order). ``max_examples``: a seeded
    sample of responses (``None``: all).
    """
    from .data import load_prometheus

    recs = load_prometheus(which)
    if max_examples is not None and max_examples < len(recs):
        recs = random.Random(seed).sample(recs, max_examples)
    out = []
    for rec in recs:
        where = f"prometheus/{which} row {rec.get('id')!r}"
        feedback = rec.get("feedback")
        if not isinstance(feedback, list) or not feedback:
            raise ValueError(f"{where}: field 'feedback' must be a non-empty list of critiques")
        scores = rec.get("scores") if isinstance(rec.get("scores"), list) else None
        for k, crit in enumerate(feedback[:per_response]):
            score = scores[k] if scores and k < len(scores) else rec.get("score")
            out.append({"id": f"{rec['id']}#c{k}", "prompt": _last_user(rec["messages"], where),
                        "messages": list(rec["messages"]), "response": rec["response"], "critique": crit,
                        "score": score, "score_scale": [1, 5], "source": f"prometheus_{which}",
                        "category": rec.get("category")})
    return out


def ultrafeedback_triples(rows, max_examples: int | None = None, seed: int = 0) -> list[dict]:
    """Triples from rows of ``openbmb/UltraFeedback`` (documented schema: ``source``, ``instruction``,
    ``completions`` = list of ``{model, response, critique, overall_score, fine-grained_score, ...}``).

    One triple per completion with a non-empty critique (overall_score 1-10). ``max_examples`` samples triples with
    ``seed`` (the paper samples 100K of the 255,548 critiques).
    """
    out = []
    for i, row in enumerate(rows):
        where = f"openbmb/UltraFeedback row {i}"
        prompt = row.get("instruction")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"{where}: field 'instruction' must be a non-empty string")
        comps = row.get("completions")
        if not isinstance(comps, list):
            raise ValueError(f"{where}: field 'completions' must be a list")
        for j, c in enumerate(comps):
            crit, resp = c.get("critique"), c.get("response")
            if not isinstance(crit, str) or not crit.strip() or not isinstance(resp, str) or not resp.strip():
                continue  # a completion without a critique or response gives no triple
            score = c.get("overall_score")
            out.append({"id": f"uf{i}:{j}", "prompt": prompt, "messages": [{"role": "user", "content": prompt}],
                        "response": resp, "critique": crit,
                        "score": float(score) if isinstance(score, (int, float)) else None, "score_scale": [1, 10],
                        "source": f"ultrafeedback/{row.get('source', '')}", "model": c.get("model")})
    if max_examples is not None and max_examples < len(out):
        out = random.Random(seed).sample(out, max_examples)
    return out


def load_ultrafeedback_triples(max_examples: int | None = 100_000, seed: int = 0, revision: str | None = None):
    """Online only: ``datasets.load_dataset("openbmb/UltraFeedback", split="train")`` ->
    :func:`ultrafeedback_triples`."""
    import datasets

    try:
        ds = datasets.load_dataset("openbmb/UltraFeedback", split="train", revision=revision)
    except Exception as e:  # noqa: BLE001 - offline, no cache: say what to do
        raise RuntimeError(f"openbmb/UltraFeedback could not be loaded ({type(e).__name__}: {e}). It needs the "
                           "Hugging Face Hub; offline, use prometheus_triples('vicuna').") from None
    return ultrafeedback_triples(ds, max_examples=max_examples, seed=seed)


# ------------------------------------------------------------------------------------------------------------------
# 2. no evaluation leak
# ------------------------------------------------------------------------------------------------------------------

class EvalLeak(ValueError):
    """A training row whose prompt appears in an evaluation set."""


def normalize_prompt(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _user_turns(rec: dict) -> list[str]:
    turns = [m["content"] for m in rec.get("messages") or []
             if m.get("role") == "user" and isinstance(m.get("content"), str)]
    if isinstance(rec.get("prompt"), str):
        turns.append(rec["prompt"])
    return [t for t in turns if t.strip()]


def eval_prompts(eval_records: dict[str, list[dict]], include_default: bool = True) -> dict[str, str]:
    """``{normalised user prompt: evaluation set name}`` for the given sets plus, always (unless a test turns it
    off), the Prometheus MT-Bench set."""
    sets = {}
    if include_default:  # the whole set, even when the caller passes a subset of it under the same name
        from .data import load_prometheus

        sets["prometheus_mt_bench (all rows)"] = load_prometheus("mt_bench")
    sets.update(eval_records or {})
    index = {}
    for name, recs in sets.items():
        for rec in recs:
            for t in _user_turns(rec):
                index.setdefault(normalize_prompt(t), name)
    return index


def guard_eval_leak(triples: list[dict], eval_records: dict[str, list[dict]], policy: str = "error",
                    include_default: bool = True) -> tuple[list[dict], dict]:
    """Refuse (``policy="error"``: :class:`EvalLeak` naming the row) or drop and count (``"drop"``) triples whose
    prompt - any user turn - appears in an evaluation set. Returns ``(kept, report)``."""
    if policy not in ("error", "drop"):
        raise ValueError(f"policy must be 'error' or 'drop', got {policy!r}")
    index = eval_prompts(eval_records, include_default)
    kept, dropped = [], []
    for t in triples:
        hit = next((index[n] for n in map(normalize_prompt, _user_turns(t)) if n in index), None)
        if hit is None:
            kept.append(t)
        elif policy == "error":
            raise EvalLeak(f"training row {t.get('id')!r} ({t.get('source', 'triples')}): field 'prompt' appears in "
                           f"the evaluation set {hit!r}; training on it would leak the evaluation. Drop it "
                           "(policy='drop') or evaluate on other rows.")
        else:
            dropped.append({"id": t.get("id"), "eval_set": hit})
    report = {"checked": len(triples), "kept": len(kept), "dropped": len(dropped), "policy": policy,
              "dropped_rows": dropped, "eval_sets": sorted({v for v in index.values()}),
              "eval_prompts": len(index)}
    return kept, report


# ------------------------------------------------------------------------------------------------------------------
# 4. training examples in the feedback layout
# ------------------------------------------------------------------------------------------------------------------

def training_conversation(row: dict) -> list[dict]:
    """The conversation whose feedback-layout context precedes the follow-up: context messages + the response."""
    msgs = row.get("messages") or [{"role": "user", "content": row["prompt"]}]
    return list(msgs) + [{"role": "assistant", "content": row["response"]}]


def _end_of_turn(tokenizer, context, role, followup, system_prompt) -> list[int]:
    """Token ids the template puts after the follow-up's content (e.g. ``<|im_end|>\\n``): trained on, like the
    end-of-turn token in LLaMA-Factory / TRL completions, so the model learns where a follow-up ends."""
    text = render(tokenizer, context + [{"role": role, "content": followup}], system_prompt)
    tail = text[text.rindex(followup) + len(followup):]
    return tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []


def sft_example(tokenizer, row: dict, max_length: int = 1024, system_prompt: str | None = None) -> dict:
    """One training example: ``{"input_ids", "labels", "prompt_tokens", "target_tokens", "truncated_tokens",
    "over_budget"}``. Long prompts are cut from the left exactly as the scorer cuts them (:func:`chat.encode`).

    ``labels`` are ``-100`` on the whole prefix (feedback request, p, r and the template tokens around them) and equal
    ``input_ids`` on the follow-up f and its end-of-turn tokens: :data:`LOSS_MASK`."""
    context, role = flr_context(training_conversation(row), LAYOUT)
    eot = _end_of_turn(tokenizer, context, role, row["followup"], system_prompt)
    enc = encode(tokenizer, context, role, [row["followup"]], system_prompt, max_tokens=max_length - len(eot))
    target = enc.targets[0] + eot
    return {"input_ids": enc.prefix + target, "labels": [-100] * len(enc.prefix) + target,
            "prompt_tokens": len(enc.prefix), "target_tokens": len(target),
            "truncated_tokens": enc.truncated_tokens, "over_budget": enc.over_budget}


@dataclass
class SFTData:
    """Training examples plus the report of how they were built (leak check included)."""
    examples: list[dict]
    rows: list[dict]
    report: dict

    @property
    def hash(self) -> str:
        return content_key([[e["input_ids"], e["labels"]] for e in self.examples])[:16]


def build_sft_data(rows: list[dict], tokenizer, eval_records: dict[str, list[dict]], leak_policy: str = "error",
                   max_length: int = 1024, system_prompt: str | None = None,
                   include_default_eval: bool = True) -> SFTData:
    """Rewritten triples (with ``followup``) -> examples. Runs :func:`guard_eval_leak` first (always); rows whose
    response alone does not fit ``max_length`` are dropped and counted."""
    for r in rows:
        if not isinstance(r.get("followup"), str) or not r["followup"].strip():
            raise ValueError(f"row {r.get('id')!r}: field 'followup' must be a non-empty string (run rewrite_all)")
    kept, leak = guard_eval_leak(rows, eval_records, leak_policy, include_default_eval)
    examples, used, too_long = [], [], []
    for r in kept:
        ex = sft_example(tokenizer, r, max_length, system_prompt)
        if ex["over_budget"]:
            too_long.append(r["id"])
            continue
        examples.append({**ex, "id": r["id"]})
        used.append(r)
    if not examples:
        raise ValueError(f"no training examples left: {len(rows)} rows, {leak['dropped']} dropped by the leak check, "
                         f"{len(too_long)} whose response alone exceeds max_length={max_length} tokens")
    report = {"leak_check": leak, "rows_in": len(rows), "examples": len(examples), "over_budget": len(too_long),
              "over_budget_ids": too_long, "truncated": sum(e["truncated_tokens"] > 0 for e in examples),
              "max_length": max_length, "layout": LAYOUT, "system_prompt": system_prompt,
              "template_hash": template_hash(tokenizer, system_prompt, LAYOUT),
              "tokens_mean": (sum(len(e["input_ids"]) for e in examples) / len(examples)) if examples else 0.0}
    return SFTData(examples, used, report)


# ------------------------------------------------------------------------------------------------------------------
# 5. LoRA SFT
# ------------------------------------------------------------------------------------------------------------------

@dataclass
class LoraSettings:
    r: int = 8                       # LLaMA-Factory v0.8.3 lora_rank default
    alpha: int = 16                  # lora_alpha default = 2 x rank
    dropout: float = 0.0             # lora_dropout default
    target_modules: str = "all-linear"  # lora_target: all (every linear layer except the output head)


@dataclass
class TrainSettings:
    learning_rate: float = 1e-4
    epochs: float = 3.0
    max_steps: int = -1              # > 0 overrides epochs (demo / smoke sizing)
    batch_size: int = 1
    grad_accum: int = 8
    scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    max_length: int = 1024           # LLaMA-Factory DataArguments.cutoff_len default
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False  # saves memory at 8B; no effect on the result, slower on a small model


PAPER_LORA = LoraSettings()
PAPER_TRAIN = TrainSettings()


@dataclass
class TrainResult:
    adapter: str                     # folder: adapter weights + provenance.json + log_history.json
    provenance: dict
    log_history: list = field(default_factory=list)
    reused: bool = False             # an identical earlier run's adapter was found and reused


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace("/", "__"))[-80:]


def loss_curve(log_history: list[dict]) -> list[dict]:
    """Training-loss rows ``{step, epoch, loss, learning_rate}`` from a Trainer log history."""
    return [{"step": h["step"], "epoch": h.get("epoch"), "loss": h["loss"], "learning_rate": h.get("learning_rate")}
            for h in log_history if "loss" in h and "step" in h]


def make_trainer(data: SFTData, loaded, lora: LoraSettings = PAPER_LORA, train: TrainSettings = PAPER_TRAIN,
                 seed: int = 0, output_dir: str | Path = "sft-trainer"):
    """The TRL ``SFTTrainer`` (with a fresh peft LoRA) that :func:`train_adapter` runs; exposed so that tests check
    the batches it actually trains on. ``loaded`` is a :class:`flrlib.models.Loaded`; its model gets the adapter."""
    import datasets
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    ds = datasets.Dataset.from_list([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in data.examples])
    args = SFTConfig(
        output_dir=str(output_dir), seed=seed, data_seed=seed,
        learning_rate=train.learning_rate, num_train_epochs=train.epochs, max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size, gradient_accumulation_steps=train.grad_accum,
        lr_scheduler_type=train.scheduler, warmup_steps=train.warmup_ratio, weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        max_length=None,  # examples are already cut to train.max_length, the scorer's way
        bf16=loaded.model.dtype == torch.bfloat16, use_cpu=loaded.model.device.type == "cpu",
        gradient_checkpointing=train.gradient_checkpointing, logging_steps=1, save_strategy="no", report_to="none",
    )
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=lora.target_modules, task_type="CAUSAL_LM")
    return SFTTrainer(model=loaded.model, args=args, train_dataset=ds, processing_class=loaded.tokenizer,
                      peft_config=peft_config)


def train_adapter(data: SFTData, model: str, lora: LoraSettings = PAPER_LORA, train: TrainSettings = PAPER_TRAIN,
                  seed: int = 0, dtype: str = "auto", device: str = "auto", out_root: str | Path | None = None,
                  extra_provenance: dict | None = None, force: bool = False) -> TrainResult:
    """LoRA SFT of ``model`` on ``data`` with TRL's SFTTrainer; returns the saved adapter.

    The adapter goes to ``<out_root>/<model>-<key>/`` (default ``out_root``: ``<cache_dir>/adapters``) where ``key``
    hashes the model, data, settings and seed: an identical finished run is reused (``reused=True``) unless
    ``force``. The folder is written atomically (nothing half-written on interrupt).
    """
    if not isinstance(data, SFTData) or "leak_check" not in data.report:
        raise TypeError("train_adapter needs the SFTData returned by build_sft_data (which runs the leak check)")
    if not data.examples:
        raise ValueError("no training examples (all rows were dropped; see data.report)")
    key = content_key(model, data.hash, asdict(lora), asdict(train), seed)[:12]
    root = Path(out_root) if out_root else cache_dir() / "adapters"
    target = root / f"{_slug(model)}-{key}"
    if (target / "provenance.json").exists() and not force:
        return TrainResult(str(target), json.loads((target / "provenance.json").read_text()),
                           json.loads((target / "log_history.json").read_text()), reused=True)

    import peft
    import torch
    import transformers
    import trl

    from .models import load_model

    loaded = load_model(model, dtype=dtype, device=device)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=root))
    try:
        trainer = make_trainer(data, loaded, lora, train, seed, work / "trainer")
        out = trainer.train()
        adapter_dir = work / "adapter"
        trainer.model.save_pretrained(adapter_dir)
        cfg_path = adapter_dir / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = model  # the spec, so load_model(adapter_dir) finds the base anywhere
        cfg_path.write_text(json.dumps(cfg, indent=2))
        n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        dev = loaded.model.device.type
        prov = {"base_model": model, "base_provenance": loaded.provenance, "layout": LAYOUT,
                "data_hash": data.hash, "n_examples": len(data.examples), "data_report": data.report,
                "lora": asdict(lora), "train": asdict(train), "seed": seed, "device": dev,
                "dtype": str(loaded.model.dtype).replace("torch.", ""), "trainable_params": n_trainable,
                "global_steps": out.global_step, "train_loss": out.training_loss,
                "train_runtime_s": out.metrics.get("train_runtime"),
                "recipe": RECIPE, "loss_mask": LOSS_MASK,
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                             "trl": trl.__version__, "peft": peft.__version__},
                **(extra_provenance or {})}
        (adapter_dir / "provenance.json").write_text(json.dumps(prov, indent=1, default=str))
        (adapter_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
        if target.exists():
            shutil.rmtree(target)
        adapter_dir.rename(target)
        return TrainResult(str(target), prov, trainer.state.log_history)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------------------
# 6. FT-FLR
# ------------------------------------------------------------------------------------------------------------------

def ft_flr_scorer(model: str, adapter: str, bank="paper", dtype: str = "auto", device: str = "auto",
                  cache="auto", merge: bool = True, **config):
    """FT-FLR: FLR with the fine-tuned M (base ``model`` + LoRA ``adapter``) in the role-swapped feedback layout.

    ``merge``: fold the LoRA weights into the base weights after loading (``merge_and_unload``) - the same function,
    about 1.7x faster on CPU than running the adapter unmerged; the provenance (adapter hash) is unchanged.
    """
    from .models import load_model
    from .scoring import ScoreConfig, Scorer

    if config.get("layout", LAYOUT) != LAYOUT:
        raise ValueError("FT-FLR scores in the layout it was trained in: layout='feedback'")
    config["layout"] = LAYOUT
    loaded = load_model(model, dtype=dtype, device=device, adapter=adapter)
    if merge:
        loaded.model = loaded.model.merge_and_unload().eval()
    return Scorer(loaded, bank, ScoreConfig(**config), cache=cache)


def score_or_reuse(scorer, records: list[dict], benchmark: str, profile: str, tag: str, overwrite: bool = False,
                   **kw) -> dict:
    """:func:`flrlib.benchmarks.run_benchmark`, unless its result file already covers these rows.

    Notebook 03 writes ``flr``/``direct`` results of the same seeded subsets; such a file (same model, bank,
    template, scorer ...) that holds all these rows is reused - :func:`compare` pairs rows by id. A missing file is
    written. An existing file that does not match (other bank or subset) is never overwritten silently: a clear
    error asks to align the parameters with notebook 03 (or pass ``overwrite=True``).
    """
    from .benchmarks import result_path, run_benchmark
    from .results import read_json, read_jsonl

    path = result_path(profile, benchmark, tag, scorer.provenance.get("model") or scorer.loaded.spec)
    if path.exists() and path.with_suffix(".jsonl").exists():
        flat = read_json(path)
        have = {r["id"] for r in read_jsonl(path.with_suffix(".jsonl"))}
        keys = ("model", "adapter_hash", "dtype", "template_hash", "scorer", "norm", "bank_hash", "max_tokens")
        diff = [k for k in keys if flat["provenance"].get(k) != scorer.provenance.get(k)]
        missing = len({r["id"] for r in records} - have)
        if not diff and not missing:
            return {**flat, "reused": True}
        if not overwrite:
            raise ValueError(f"{path} (written by notebook 03?) does not match this comparison "
                             f"({'different ' + ', '.join(diff) if diff else f'{missing} rows missing'}): use "
                             "notebook 03's seed, max_examples, rating_examples and categories, or overwrite=True")
    return {**run_benchmark(scorer, records, benchmark, profile, tag=tag, **kw), "reused": False}


# ------------------------------------------------------------------------------------------------------------------
# 7. FT-FLR vs FLR vs Direct on the same rows (reads result files only)
# ------------------------------------------------------------------------------------------------------------------

def eval_subsets(benchmarks: list[str], max_examples: int | None, rating_examples: int | None = None,
                 seed: int = 0) -> tuple[dict, dict]:
    """``({name: records}, {name: report})``: the seeded subsets notebook 03 scores - ``max_examples`` pairs per
    pairwise benchmark, ``rating_examples`` rows per rating benchmark (``None``: ``max_examples``)."""
    from .data import benchmark_info, load_benchmark

    sets, reports = {}, {}
    for b in benchmarks:
        kind = benchmark_info(b)["kind"]
        if kind not in ("pairwise", "rating"):
            raise ValueError(f"{b}: FT-FLR is compared on pairwise and rating benchmarks, not {kind!r}")
        n = rating_examples if kind == "rating" and rating_examples is not None else max_examples
        sets[b], reports[b] = load_benchmark(b, max_examples=n, seed=seed)
    return sets, reports


def _paired_rows(profile: str, benchmark: str, model: str, tags, ids) -> tuple[str, dict, list[str]]:
    """``(kind, {tag: {id: row}}, ids)`` from the per-sample files; every tag must hold every compared id."""
    from .benchmarks import result_path
    from .results import read_json, read_jsonl

    flat, rows = {}, {}
    for t in tags:
        p = result_path(profile, benchmark, t, model)
        flat[t] = read_json(p, producer="04" if t == "ft_flr" else "03 or 04")
        rows[t] = {r["id"]: r for r in read_jsonl(p.with_suffix(".jsonl"))}
    ids = list(ids) if ids is not None else list(rows[tags[0]])
    for t in tags:
        missing = [i for i in ids if i not in rows[t]]
        if missing:
            raise ValueError(f"{benchmark}: results {t!r} lack {len(missing)} of the {len(ids)} compared rows "
                             f"(e.g. {missing[0]!r}); score them with the same seed and max_examples")
    kinds = {flat[t]["kind"] for t in tags}
    if len(kinds) != 1 or not kinds <= {"pairwise", "rating"}:
        raise ValueError(f"{benchmark}: compare() handles pairwise and rating benchmarks, got {sorted(kinds)}")
    return kinds.pop(), {t: [rows[t][i] for i in ids] for t in tags}, ids


def _paired_stats(name: str, kind: str, per_tag: dict, n_boot: int, seed: int) -> dict:
    from itertools import combinations

    import numpy as np

    from . import metrics

    tags = list(per_tag)
    n = len(per_tag[tags[0]])
    if kind == "pairwise":
        x = {t: np.array([r["correct"] for r in per_tag[t]], dtype=float) for t in tags}
    else:
        x = {t: np.array([r["reward"] for r in per_tag[t]], dtype=float) for t in tags}
        y = np.array([r["score"] for r in per_tag[tags[0]]], dtype=float)
    scores = []
    for t in tags:
        if kind == "pairwise":
            lo, hi = metrics.bootstrap_ci(np.mean, x[t], n_boot=n_boot, seed=seed)
            val = {"metric": "accuracy", "value": float(x[t].mean()), "ci_low": lo, "ci_high": hi}
        else:
            c = metrics.correlation_ci(x[t], y, "pearson", n_boot=n_boot, seed=seed)
            val = {"metric": "pearson", "value": c["value"], "ci_low": c["ci_low"], "ci_high": c["ci_high"]}
        scores.append({"benchmark": name, "tag": t, "kind": kind, **val, "n": n})
    value = {sc["tag"]: sc["value"] for sc in scores}
    diffs = []
    for a, b in combinations(tags, 2):
        base = {"benchmark": name, "kind": kind, "a": a, "b": b, "metric": scores[0]["metric"],
                "value_a": value[a], "value_b": value[b], "n": n}
        if kind == "pairwise":
            pb, mc = metrics.paired_bootstrap(x[a], x[b], n_boot=n_boot, seed=seed), metrics.mcnemar(x[a], x[b])
            diffs.append({**base, "diff": pb["diff"], "ci_low": pb["ci_low"], "ci_high": pb["ci_high"],
                          "p_value": pb["p_value"], "mcnemar_p": mc["p_value"], "a_only": mc["a_only"],
                          "b_only": mc["b_only"]})
        else:
            def stat(x1, x2, target):
                return metrics.correlation(x1, target)[0] - metrics.correlation(x2, target)[0]

            lo, hi = metrics.bootstrap_ci(stat, x[a], x[b], y, n_boot=n_boot, seed=seed)
            diffs.append({**base, "diff": float(stat(x[a], x[b], y)), "ci_low": lo, "ci_high": hi, "p_value": None})
    return {"scores": scores, "differences": diffs}


def compare(profile: str, benchmark: str, model: str, tags=("ft_flr", "flr", "direct"), ids=None,
            n_boot: int = 2000, seed: int = 0) -> dict:
    """Paired comparison of scorers on one benchmark from the result files of :func:`flrlib.benchmarks.run_benchmark`.

    Returns ``{"scores": [{benchmark, tag, metric, value, ci_low, ci_high, n, adapter_hash}], "differences":
    [{benchmark, a, b, metric, value_a, value_b, diff, ci_low, ci_high, p_value, n}]}``. Pairwise: ``diff`` =
    accuracy(a) - accuracy(b), paired bootstrap CI of the per-pair correctness and a sign-flip permutation p-value
    (plus McNemar). Rating: ``diff`` = Pearson(a) - Pearson(b) with a bootstrap CI that resamples rows jointly.
    Rows are paired by id: ``ids`` (default: the rows of the first tag) must be in every tag's file - a file may
    hold more rows, e.g. notebook 03's larger subset - otherwise a clear error says which. Per-tag values are
    recomputed on these rows.
    """
    from .benchmarks import result_path
    from .results import read_json

    kind, per_tag, _ = _paired_rows(profile, benchmark, model, tags, ids)
    out = _paired_stats(benchmark, kind, per_tag, n_boot, seed)
    for sc in out["scores"]:
        sc["adapter_hash"] = read_json(result_path(profile, benchmark, sc["tag"], model))["provenance"].get("adapter_hash")
    return out


def compare_pooled(profile: str, benchmarks: list[str], model: str, tags=("ft_flr", "flr", "direct"),
                   ids: dict | None = None, n_boot: int = 2000, seed: int = 0) -> dict:
    """:func:`compare` on the pairs of several pairwise benchmarks pooled (benchmark name ``"pairwise pooled
    (k)"``): more pairs, tighter CIs than any single small subset. ``ids``: ``{benchmark: [ids]}``."""
    per_tag = {t: [] for t in tags}
    for b in benchmarks:
        kind, rows, _ = _paired_rows(profile, b, model, tags, (ids or {}).get(b))
        if kind != "pairwise":
            raise ValueError(f"{b}: compare_pooled() pools pairwise benchmarks only, not {kind!r}")
        for t in tags:
            per_tag[t] += rows[t]
    return _paired_stats(f"pairwise pooled ({len(benchmarks)})", "pairwise", per_tag, n_boot, seed)

"""Natural-language-feedback fine-tuning of M (the paper's FT-FLR): rewritten triples -> examples -> LoRA SFT.

Read top to bottom:

1. **Triples** and the **evaluation-leak guard** live in :mod:`flrlib.data` (:func:`~flrlib.data.prometheus_triples`,
   :func:`~flrlib.data.ultrafeedback_triples`, :func:`~flrlib.data.guard_eval_leak`); critiques are rewritten into
   follow-ups by :mod:`flrlib.rewrite`. :func:`build_sft_data` always runs the leak guard, and
   :func:`train_adapter` only accepts what :func:`build_sft_data` returns.
2. **Training examples** (:func:`sft_example`): the role-swapped ``feedback`` layout of the scorer, built by the
   same code (:func:`flrlib.chat.flr_context` + :func:`flrlib.chat.encode`): user = the fixed feedback request,
   assistant = p, user = r, assistant = the follow-up f. Token ids are exactly the scorer's prefix + target (plus the
   template's end-of-turn tokens); labels are ``-100`` everywhere except f and its end-of-turn tokens - the
   assistant turn p is masked too (:data:`LOSS_MASK`).
3. **LoRA SFT** with TRL's ``SFTTrainer`` through :func:`flrlib.lora.train_lora` (:func:`train_adapter`). The
   pre-tokenised ``input_ids``/``labels`` columns are used as they are by TRL 1.16 (no re-tokenisation, no
   ``completion_only_loss`` re-masking), so the masks tested in ``tests/test_feedback.py`` are the masks trained with.
4. **FT-FLR** (:func:`ft_flr_scorer`): a :class:`flrlib.scoring.Scorer` on ``load_model(spec, adapter=...,
   merge=True)`` with ``ScoreConfig(layout="feedback")``; :func:`score_or_reuse` reuses notebook 03's FLR/Direct
   files when they cover the rows. The comparison itself is :func:`flrlib.paired.write_comparison`.

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

from dataclasses import asdict, dataclass
from pathlib import Path

from .cache import content_key
from .chat import encode, flr_context, render, template_hash
from .data.overlap import guard_eval_leak
from .lora import LoraSettings, TrainResult, peft_config, precision, train_lora
from .paths import cache_dir, portable, slug
from .results import area, stamp, write_json, write_jsonl

LAYOUT = "feedback"  # the training layout is the scorer's feedback layout, always
LOSS_MASK = ("loss on the final assistant turn (the follow-up f) and its end-of-turn tokens only; the feedback "
             "request, the assistant turn p and the user turn r are masked (-100). LLaMA-Factory v0.8.3 with its "
             "default mask_history=False would also train on the assistant turn p of this role-swapped layout")
RECIPE = ("paper profile: LLaMA-Factory v0.8.3 LoRA defaults (rank 8, alpha 16, dropout 0, lora_target all = all "
          "linear layers, cutoff_len 1024) with TRL SFTTrainer; " + LOSS_MASK)


# ------------------------------------------------------------------------------------------------------------------
# 2. training examples in the feedback layout
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
# 3. LoRA SFT
# ------------------------------------------------------------------------------------------------------------------

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


def loss_curve(log_history: list[dict]) -> list[dict]:
    """Training-loss rows ``{step, epoch, loss, learning_rate}`` from a Trainer log history."""
    return [{"step": h["step"], "epoch": h.get("epoch"), "loss": h["loss"], "learning_rate": h.get("learning_rate")}
            for h in log_history if "loss" in h and "step" in h]


def write_rewrites(profile: str, rows: list[dict], rejects: list[dict], **provenance) -> Path:
    """``results/<profile>/feedback/rewrites.jsonl``: every rewritten triple (``status`` kept) and every rejected one
    (``status`` rejected, with its ``reason``), plus ``rewrites.json`` with the counts and provenance."""
    from collections import Counter

    out = area(profile, "feedback")
    write_jsonl(out / "rewrites.jsonl", [{"status": "kept", **r} for r in rows] +
                [{"status": "rejected", **r} for r in rejects])
    write_json(out / "rewrites.json", {"kept": len(rows), "rejected": len(rejects),
                                       "reasons": dict(Counter(r.get("reason") for r in rejects)),
                                       "provenance": stamp(profile=profile, **provenance)})
    return out / "rewrites.jsonl"


def write_training_data(profile: str, data: SFTData, **provenance) -> Path:
    """``results/<profile>/feedback/training_data.json``: the report of :func:`build_sft_data` (leak check, budget
    drops, truncation), the data hash, and provenance."""
    return write_json(area(profile, "feedback") / "training_data.json",
                      {**data.report, "data_hash": data.hash, **provenance,
                       "provenance": stamp(profile=profile, data_hash=data.hash, **provenance)})


def write_train_log(profile: str, result: TrainResult) -> dict:
    """``results/<profile>/feedback/train_log.json`` (read by notebook 07's training-curve figure): the loss
    curve, the log history and the adapter's provenance."""
    record = {"adapter": portable(result.adapter), "reused": result.reused,
              "loss_curve": loss_curve(result.log_history), "log_history": result.log_history,
              "provenance": result.provenance}
    write_json(area(profile, "feedback") / "train_log.json", record)
    return record


def make_trainer(data: SFTData, loaded, lora: LoraSettings = PAPER_LORA, train: TrainSettings = PAPER_TRAIN,
                 seed: int = 0, output_dir: str | Path = "sft-trainer", device: str | None = None):
    """The TRL ``SFTTrainer`` (with a fresh peft LoRA) that :func:`train_adapter` runs; exposed so that tests check
    the batches it actually trains on. ``loaded`` is a :class:`flrlib.models.Loaded`; its model gets the adapter."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    ds = datasets.Dataset.from_list([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in data.examples])
    args = SFTConfig(
        output_dir=str(output_dir), seed=seed, data_seed=seed,
        learning_rate=train.learning_rate, num_train_epochs=train.epochs, max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size, gradient_accumulation_steps=train.grad_accum,
        lr_scheduler_type=train.scheduler, warmup_steps=train.warmup_ratio, weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        max_length=None,  # examples are already cut to train.max_length, the scorer's way
        gradient_checkpointing=train.gradient_checkpointing, logging_steps=1, save_strategy="no", report_to="none",
        **precision(device or loaded.model.device.type),
    )
    return SFTTrainer(model=loaded.model, args=args, train_dataset=ds, processing_class=loaded.tokenizer,
                      peft_config=peft_config(lora))


def train_adapter(data: SFTData, model: str, lora: LoraSettings = PAPER_LORA, train: TrainSettings = PAPER_TRAIN,
                  seed: int = 0, dtype: str = "auto", device: str = "auto", out_root: str | Path | None = None,
                  extra_provenance: dict | None = None, force: bool = False) -> TrainResult:
    """LoRA SFT of ``model`` on ``data`` with TRL's SFTTrainer (:func:`flrlib.lora.train_lora`).

    The run goes to ``<out_root>/<model>-<key>/`` (default ``out_root``: ``<cache_dir>/adapters``; the layout of
    :mod:`flrlib.lora`) where ``key`` hashes the model, data, settings and seed: an identical finished run is reused
    (``reused=True``) unless ``force``.
    """
    if not isinstance(data, SFTData) or "leak_check" not in data.report:
        raise TypeError("train_adapter needs the SFTData returned by build_sft_data (which runs the leak check)")
    if not data.examples:
        raise ValueError("no training examples (all rows were dropped; see data.report)")
    key = content_key(model, data.hash, asdict(lora), asdict(train), seed)[:12]
    root = Path(out_root) if out_root else cache_dir() / "adapters"
    prov = {"method": "sft", "layout": LAYOUT, "data_hash": data.hash, "n_examples": len(data.examples),
            "data_report": data.report, "lora": asdict(lora), "train": asdict(train), "seed": seed,
            "recipe": RECIPE, "loss_mask": LOSS_MASK, **(extra_provenance or {})}
    return train_lora(model, lambda loaded, out, dev: make_trainer(data, loaded, lora, train, seed, out, dev),
                      root / f"{slug(model, 80)}-{key}", key, prov, dtype=dtype, device=device, force=force)


# ------------------------------------------------------------------------------------------------------------------
# 4. FT-FLR
# ------------------------------------------------------------------------------------------------------------------

def ft_flr_scorer(model: str, adapter: str, bank="paper", dtype: str = "auto", device: str = "auto",
                  cache="auto", merge: bool = True, **config):
    """FT-FLR: FLR with the fine-tuned M (base ``model`` + LoRA ``adapter``) in the role-swapped feedback layout.

    ``merge``: fold the LoRA weights into the base weights (``load_model(..., merge=True)``) - the same function,
    about 1.7x faster on CPU than running the adapter unmerged; the provenance (adapter hash) is unchanged.
    """
    from .models import load_model
    from .scoring import ScoreConfig, Scorer

    if config.get("layout", LAYOUT) != LAYOUT:
        raise ValueError("FT-FLR scores in the layout it was trained in: layout='feedback'")
    config["layout"] = LAYOUT
    loaded = load_model(model, dtype=dtype, device=device, adapter=adapter, merge=merge)
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

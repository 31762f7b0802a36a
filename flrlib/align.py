"""DPO / KTO alignment of a policy with LoRA (TRL ``DPOTrainer`` / ``KTOTrainer`` + peft), one entry point.

Paper profile = LLaMA-Factory v0.8.3 defaults and its LoRA DPO example: LoRA rank 8, alpha 16, dropout 0, all
linear layers (``"all-linear"``: every linear layer except the LM head), beta 0.1 (sigmoid DPO loss; KTO weights
1.0/1.0), learning rate 5e-6, 3 epochs, cosine schedule with 10 % warm-up, per-device batch 1 x 8 accumulation
steps, bf16, cut-off 1024 tokens. The reference model is the policy with the adapter disabled (TRL's default when a
peft config is given and no ``ref_model``).

KTO needs a per-device batch of at least 2: TRL estimates KTO's KL term from mismatched (prompt, completion) pairs
built inside each per-device batch, so a batch of 1 has none. :func:`check_config` raises a :class:`ConfigError`
that says so (the paper profile uses 2 x 4 for KTO, same effective batch of 8) instead of failing inside TRL.

CPU: ``bf16=False``, ``use_cpu=True`` (chosen from the device). Training, saving and reuse are
:func:`flrlib.lora.train_lora`'s (the layout FT-FLR uses too): ``out_dir/adapter/``, ``provenance.json`` and
``log_history.json`` (TRL's logged loss, rewards and margins per step). A finished run with the same fingerprint
(model, config, data) is not retrained.

Scale-out: the same code runs under ``accelerate launch`` (see ``configs/accelerate/``)::

    accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m flrlib.cli align \\
        --profile paper --method dpo --data results/paper/mining/dpo_pairs.jsonl --out results/paper/alignment/dpo
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .cache import content_key
from .lora import LoraSettings, peft_config, precision, train_lora
from .parallel import once
from .results import read_json, write_json

METHODS = ("dpo", "kto")


class ConfigError(ValueError):
    """A training configuration that cannot work; the message says why and what to use instead."""


@dataclass
class AlignConfig:
    method: str = "dpo"                 # dpo | kto
    beta: float = 0.1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: str | list = "all-linear"
    learning_rate: float = 5e-6
    num_train_epochs: float = 3.0
    max_steps: int = -1                 # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 8
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.1           # passed as warmup_steps (transformers 5 reads a float < 1 as a ratio)
    max_length: int = 1024
    gradient_checkpointing: bool = False
    logging_steps: int = 1
    desirable_weight: float = 1.0       # KTO only
    undesirable_weight: float = 1.0     # KTO only
    seed: int = 0
    extra: dict = field(default_factory=dict)  # any other DPOConfig / KTOConfig argument

    @classmethod
    def from_dict(cls, d: dict | None, **over) -> "AlignConfig":
        d = {**(d or {}), **over}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown alignment settings {unknown}; known: {sorted(known)} "
                              "(put other TRL arguments under 'extra')")
        return cls(**d)


def check_config(cfg: AlignConfig, n_rows: int | None = None) -> None:
    """Raise :class:`ConfigError` for settings that cannot train (explained), before any model is loaded."""
    if cfg.method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {cfg.method!r}")
    if cfg.per_device_train_batch_size < 1 or cfg.gradient_accumulation_steps < 1:
        raise ConfigError("per_device_train_batch_size and gradient_accumulation_steps must be >= 1")
    if cfg.method == "kto" and cfg.per_device_train_batch_size < 2:
        raise ConfigError(
            f"KTO needs per_device_train_batch_size >= 2 (got {cfg.per_device_train_batch_size}): TRL estimates the "
            "KL term of the KTO loss from mismatched (prompt, completion) pairs formed inside each per-device batch, "
            "so a batch of one has nothing to pair with and the KL term would equal the implied reward. Use e.g. "
            "per_device_train_batch_size=2 with gradient_accumulation_steps=4 (same effective batch as 1 x 8).")
    if n_rows is not None:
        if n_rows == 0:
            raise ConfigError(f"no {cfg.method} training rows (did mining produce any pairs? try a lower min_margin)")
        if cfg.method == "kto" and n_rows < cfg.per_device_train_batch_size:
            raise ConfigError(f"KTO has {n_rows} rows, fewer than one per-device batch "
                              f"({cfg.per_device_train_batch_size}); mine more prompts.")


def trl_config(cfg: AlignConfig, output_dir: str | Path, device: str):
    """The TRL ``DPOConfig`` / ``KTOConfig`` for an :class:`AlignConfig` (no files are written by TRL itself)."""
    from trl import DPOConfig, KTOConfig

    common = dict(
        output_dir=str(output_dir), learning_rate=cfg.learning_rate, num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio, max_length=cfg.max_length, beta=cfg.beta,
        gradient_checkpointing=cfg.gradient_checkpointing, logging_steps=cfg.logging_steps, seed=cfg.seed,
        data_seed=cfg.seed, report_to=[], save_strategy="no", disable_tqdm=False, dataloader_num_workers=0,
        **precision(device),
    )
    common.update(cfg.extra)
    if cfg.method == "dpo":
        return DPOConfig(**common)
    return KTOConfig(desirable_weight=cfg.desirable_weight, undesirable_weight=cfg.undesirable_weight, **common)


def lora_settings(cfg: AlignConfig) -> LoraSettings:
    return LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, target_modules=cfg.target_modules)


def fingerprint(policy_model: str, cfg: AlignConfig, rows: list[dict]) -> str:
    return content_key(policy_model, asdict(cfg), rows)[:16]


def train(policy_model: str, rows: list[dict], out_dir: str | Path, config: AlignConfig | None = None,
          device: str = "auto", dtype: str = "auto", force: bool = False, provenance: dict | None = None) -> dict:
    """Train a LoRA adapter with DPO or KTO on mined rows (TRL formats, see :mod:`flrlib.mining`).

    Returns the provenance record (also written to ``out_dir/provenance.json``); ``out_dir/adapter`` is the adapter.
    """
    from datasets import Dataset

    from .mining import trainer_columns

    cfg = config or AlignConfig()
    data = trainer_columns(rows, cfg.method)
    check_config(cfg, len(data))
    if cfg.method == "dpo":
        from trl import DPOTrainer as Trainer
    else:
        from trl import KTOTrainer as Trainer

    def build(loaded, output_dir, dev):
        return Trainer(model=loaded.model, args=trl_config(cfg, output_dir, dev), train_dataset=Dataset.from_list(data),
                       processing_class=loaded.tokenizer, peft_config=peft_config(lora_settings(cfg)))

    prov = {"method": cfg.method, "policy_model": policy_model, "config": asdict(cfg),
            "reference_model": "policy with the LoRA adapter disabled (TRL default)", **(provenance or {})}
    result = train_lora(policy_model, build, out_dir, fingerprint(policy_model, cfg, data), prov, dtype=dtype,
                        device=device, force=force)
    return result.provenance


def read_log_history(out_dir: str | Path) -> list[dict]:
    return read_json(Path(out_dir) / "log_history.json", producer="06")["log_history"]


def curves(log_history: list[dict]) -> list[dict]:
    """Per logged step: ``{step, epoch, loss, margin, chosen, rejected, kl}`` (missing values are None)."""
    rows = []
    for h in log_history:
        if "loss" not in h:
            continue  # the final summary line (train_loss, train_runtime, ...)
        rows.append({"step": h.get("step"), "epoch": h.get("epoch"), "loss": h.get("loss"),
                     "margin": h.get("rewards/margins"), "chosen": h.get("rewards/chosen"),
                     "rejected": h.get("rewards/rejected"), "kl": h.get("kl"), "learning_rate": h.get("learning_rate")})
    return rows


def policy_outputs(policy_model: str, adapters: dict, prompts: list[dict], gen_config, out_dir: str | Path,
                   device: str = "auto", dtype: str = "auto", progress: bool = True, backend: str = "hf") -> dict:
    """Evaluation outputs of the base policy and each adapter: ``{name: {prompt id: text}}``.

    ``adapters``: ``{name: adapter folder or None}`` (None = the base policy). Generation is resumable
    (``out_dir/outputs_<name>.cache.jsonl``); each policy's outputs are also written as AlpacaEval
    ``model_outputs`` (``out_dir/outputs_<name>.json``) for the official ``alpaca_eval`` CLI.

    ``backend="openai"``: generate through the ``GEN`` endpoint (:mod:`flrlib.client`) instead of in-process; the
    base policy is requested as ``policy_model`` and each adapter by the name :func:`flrlib.client.serve_adapter`
    gives it: loaded at runtime under ``<name>-<hash>`` (``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve MODEL
    --enable-lora``: the adapters are trained in this notebook, after the server started), else the server's own
    ``<name>`` (``--lora-modules dpo=.../dpo/adapter kto=.../kto/adapter``, with a warning). The cache is keyed on the
    adapter folder's hash too (the endpoint's ``revision``), as the ``hf`` backend keys on it: a retrained adapter is
    never answered from the old adapter's cached outputs. A prompt the server refused has no output: it is left out
    of ``{name: ...}`` and of ``outputs_<name>.json`` (so it is not judged) and a warning counts it.
    """
    if backend not in ("hf", "openai"):
        raise ValueError(f"backend must be 'hf' or 'openai', got {backend!r}")
    # requested or generated once under several ranks (rank 0 writes the files); every rank gets the outputs
    return once(_policy_outputs, policy_model, adapters, prompts, gen_config, out_dir, device, dtype, progress,
                backend)


def _policy_outputs(policy_model, adapters, prompts, gen_config, out_dir, device, dtype, progress, backend) -> dict:
    from .generate import generate
    from .judge import alpaca_eval_files
    from .models import folder_hash, load_model

    out = Path(out_dir)
    result = {}
    for name, adapter in adapters.items():
        if backend == "openai":
            from .client import Endpoint, serve_adapter

            lm = Endpoint.from_env("GEN", model=policy_model)
            if adapter is not None:
                if not Path(adapter).is_dir():
                    raise FileNotFoundError(f"adapter {name!r}: folder {adapter} not found here; the served adapter's "
                                            "outputs are cached under its folder hash, so the folder must be readable")
                revision = folder_hash(adapter)
                served, warning = serve_adapter(lm, name, adapter, revision)
                if warning:
                    print(warning)
                lm = replace(lm, model=served, revision=revision)
        else:  # with an adapter: the same policy with the LoRA matmuls folded into the base weights
            lm = load_model(policy_model, dtype=dtype, device=device, adapter=adapter, merge=True)
        rows = generate(lm, prompts, gen_config, cache=out / f"outputs_{name}.cache.jsonl", progress=progress,
                        desc=f"outputs {name}")
        result[name] = {r["id"]: r["responses"][0] for r in rows if not r.get("failed")}
        records = [{"instruction": p.get("instruction", p["messages"][-1]["content"]), "output": r["responses"][0],
                    "dataset": p.get("dataset", "")} for p, r in zip(prompts, rows) if not r.get("failed")]
        write_json(out / f"outputs_{name}.json", alpaca_eval_files(records, f"{policy_model}:{name}"))
        del lm
    return result


def profile_config(profile: str, method: str) -> tuple[dict, AlignConfig]:
    """Parameters of notebook 06 in a profile and the :class:`AlignConfig` for one method (its ``dpo``/``kto`` block)."""
    from .profiles import load_profile, notebook_parameters

    params = notebook_parameters(load_profile(profile), "06_alignment")
    return params, AlignConfig.from_dict(params.get(method), method=method, seed=params.get("seed", 0))


def write_eval_summary(profile: str, summary: list[dict], judged: list[dict], n_instructions: int, reference: str,
                       **provenance) -> dict:
    """Notebook 06's records (read by notebook 07's alignment table): ``alignment/eval_summary.json`` (one row per
    judge x comparison: win rate with CI, LC win rate and its variant, lengths) with provenance, and
    ``alignment/eval_judgements.jsonl`` (one line per judged item)."""
    from .results import area, stamp, write_jsonl

    out = area(profile, "alignment")
    record = {"rows": summary, "n_instructions": n_instructions, "reference": reference,
              "provenance": stamp(profile=profile, **provenance)}
    write_jsonl(out / "eval_judgements.jsonl", judged)
    write_json(out / "eval_summary.json", record)
    return record

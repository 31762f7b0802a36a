"""LoRA training, the one way: FT-FLR's SFT (:mod:`flrlib.feedback`), DPO and KTO (:mod:`flrlib.align`).

:func:`train_lora` loads the base model, runs the TRL trainer the caller builds (with :func:`peft_config`), and
saves one layout, atomically (written to a temporary folder beside ``out_dir``, then renamed):

    out_dir/adapter/            peft adapter; ``base_model_name_or_path`` = the flrlib model spec, so
                                :func:`flrlib.models.load_model` finds the base on any machine
    out_dir/provenance.json     what was trained: base model, fingerprint, adapter hash, steps, loss, software ...
    out_dir/log_history.json    ``{"log_history": [...]}``: the Trainer's logged loss (rewards, margins) per step

A finished run with the same ``fingerprint`` (model, data, settings, seed) is reused, not retrained
(``TrainResult.reused``). Under ``accelerate launch`` the model is placed by the Trainer and only the main
process writes. Load the result with ``load_model(spec, adapter=out_dir / "adapter", merge=True)``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .results import read_json, stamp, write_json


@dataclass
class LoraSettings:
    r: int = 8                       # LLaMA-Factory v0.8.3 lora_rank default
    alpha: int = 16                  # lora_alpha default = 2 x rank
    dropout: float = 0.0             # lora_dropout default
    target_modules: str | list = "all-linear"  # lora_target: all (every linear layer except the output head)


def peft_config(lora: LoraSettings):
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
                      task_type="CAUSAL_LM")


@dataclass
class TrainResult:
    adapter: str                     # out_dir/adapter
    provenance: dict                 # = out_dir/provenance.json
    log_history: list = field(default_factory=list)
    reused: bool = False             # an identical earlier run was found and reused


def precision(device: str) -> dict:
    """Trainer precision flags for a device: bf16 where the GPU has it, fp32 on CPU."""
    import torch

    if device == "cpu":
        return {"use_cpu": True, "bf16": False, "fp16": False}
    bf16 = device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return {"bf16": bf16, "fp16": False}


def finished(out_dir: str | Path, fingerprint: str) -> TrainResult | None:
    """The earlier run in ``out_dir`` when it finished with this fingerprint, else None."""
    out = Path(out_dir)
    if not ((out / "provenance.json").exists() and (out / "adapter" / "adapter_config.json").exists()):
        return None
    prov = read_json(out / "provenance.json")
    if prov.get("fingerprint") != fingerprint:
        return None
    return TrainResult(str(out / "adapter"), prov, read_json(out / "log_history.json")["log_history"], reused=True)


def train_lora(model: str, build_trainer, out_dir: str | Path, fingerprint: str, provenance: dict | None = None,
               dtype: str = "auto", device: str = "auto", force: bool = False) -> TrainResult:
    """Train a LoRA adapter on the flrlib model spec ``model``.

    ``build_trainer(loaded, output_dir, device)`` returns a TRL trainer (SFT / DPO / KTO) on ``loaded.model`` with
    ``peft_config=peft_config(...)``; ``output_dir`` is a scratch folder for TRL (nothing is saved there).
    ``provenance``: the caller's fields (method, settings, data report ...), written with the common ones.
    """
    from .models import folder_hash, load_model, pick_device, pick_dtype
    from .paths import portable

    out = Path(out_dir)
    if not force and (done := finished(out, fingerprint)):
        print(f"[skip] adapter in {done.adapter} matches this model, data and settings (fingerprint {fingerprint})")
        return done
    device = pick_device(device)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # under accelerate launch the Trainer places the model
    dtype = str(pick_dtype(dtype, device)).replace("torch.", "")
    loaded = load_model(model, dtype=dtype, device="cpu" if distributed else device)
    if loaded.adapter:
        raise ValueError(f"{model} is an adapter; train on a base model (or merge the adapter into a copy first)")
    loaded.model.train()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        t0 = time.time()
        trainer = build_trainer(loaded, work / "trainer", device)
        result = trainer.train()
        seconds = time.time() - t0
        if not trainer.is_world_process_zero():
            return TrainResult(str(out / "adapter"), {}, trainer.state.log_history)
        staged = work / "out"
        trainer.model.save_pretrained(staged / "adapter")
        cfg_path = staged / "adapter" / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = loaded.spec  # portable: an flrlib spec, resolved on each machine
        cfg_path.write_text(json.dumps(cfg, indent=2))
        history = trainer.state.log_history
        write_json(staged / "log_history.json", {"log_history": history})
        prov = stamp(**{
            "fingerprint": fingerprint, "base_model": loaded.spec, "base_provenance": loaded.provenance,
            "adapter": portable(out / "adapter"), "adapter_hash": folder_hash(staged / "adapter"),
            "n_rows": len(trainer.train_dataset), "device": device,
            "dtype": str(loaded.model.dtype).replace("torch.", ""),
            "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
            "global_steps": trainer.state.global_step, "train_loss": result.training_loss,
            "train_seconds": round(seconds, 1), **(provenance or {})})
        write_json(staged / "provenance.json", prov)
        if out.exists():
            shutil.rmtree(out)
        staged.rename(out)
        return TrainResult(str(out / "adapter"), prov, history)
    finally:
        shutil.rmtree(work, ignore_errors=True)

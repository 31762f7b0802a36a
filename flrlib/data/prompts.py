"""Prompt sets for preference mining and for alignment evaluation: plain records ``{id, messages}``.

* Mining (the paper samples 100K of Nectar's 183K prompts): :func:`nectar_prompts` (Hub ``berkeley-nest/Nectar``,
  online only) or, offline, :func:`ultrafeedback_prompts` (the 1,000 training prompts of the UltraFeedback subset in
  the data folder). :func:`mining_prompts` picks one and always removes prompts that are also evaluation prompts.
* Evaluation: :func:`alpaca_eval_prompts` (AlpacaEval's 805 instructions; the reference outputs of
  ``gpt4_1106_preview``, AlpacaEval 2's baseline, are kept as ``reference``).

Mining and evaluation prompts must be disjoint; :func:`check_disjoint` raises when they are not (the evaluation
code calls it on the prompts the pairs were mined from). Prompts are compared after :func:`normalise` (case and
whitespace folded). Seeded subsets (``max_examples``, ``seed``) are :mod:`flrlib.data.subsets`' (nested, the same on
every machine).
"""
from __future__ import annotations

import re
import warnings

from .. import net
from ..files import numbered_jsonl
from ..messages import check_messages
from .fetch import require
from .overlap import check_disjoint, normalise  # noqa: F401 - the one overlap check, re-exported
from .subsets import select_indices, select_subset

NECTAR = "berkeley-nest/Nectar"
AE_REFERENCE = "gpt4_1106_preview"  # AlpacaEval 2's reference model


def prompt_text(record: dict) -> str:
    """The last user message of a prompt record (what is compared for disjointness)."""
    users = [m["content"] for m in record["messages"] if m["role"] == "user"]
    if not users:
        raise ValueError(f"prompt {record.get('id')!r}: no user message")
    return users[-1]


def ultrafeedback_prompts(max_examples: int | None = None, seed: int = 0) -> list[dict]:
    """The 1,000 training prompts of the UltraFeedback subset (``ultrafeedback/train_clean.jsonl.gz``)."""
    path = require("ultrafeedback/train_clean.jsonl.gz")
    rows = []
    for n, row in numbered_jsonl(path):
        if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise ValueError(f"{path}:{n}: field 'prompt' must be a non-empty string")
        rows.append({"id": f"uf-train-{row.get('source_index', n - 1)}",
                     "messages": [{"role": "user", "content": row["prompt"]}]})
    return select_subset(rows, max_examples, seed)


def _nectar_messages(text: str, where: str) -> list[dict]:
    """Nectar's ``"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nAssistant:"`` prompt string -> chat messages."""
    parts = re.split(r"\n\n(Human|Assistant): ?", "\n\n" + text.strip("\n") + "\n\n")
    msgs = []
    for role, content in zip(parts[1::2], parts[2::2]):
        content = content.strip()
        if content:
            msgs.append({"role": "user" if role == "Human" else "assistant", "content": content})
    if not msgs or msgs[-1]["role"] != "user":
        raise ValueError(f"{where}: field 'prompt' does not end with a Human turn")

    check_messages(msgs, f"{where} field 'prompt' turns")
    return msgs


def nectar_prompts(max_examples: int | None = None, seed: int = 0, single_turn: bool = False) -> list[dict]:
    """Nectar prompts from the Hub (needs network): the paper's mining prompts (100K of 183K sampled)."""
    from .hub import load_hub_dataset  # the prefetched folder when Nectar is locked there, else the Hub

    ds = load_hub_dataset(NECTAR, None, "train", name="Nectar")
    idx = select_indices(len(ds), max_examples, seed, prefix="nectar-")
    out, bad = [], []
    for i in idx:
        try:
            msgs = _nectar_messages(ds[i]["prompt"], f"{NECTAR}[train][{i}]")
        except ValueError as e:  # a transcript whose turns do not alternate: skipped, and said so below
            bad.append(str(e))
            continue
        if single_turn and len(msgs) > 1:
            continue
        out.append({"id": f"nectar-{i}", "messages": msgs})
    if bad:
        warnings.warn(f"Nectar: skipped {len(bad)} of {len(idx)} prompts that are not a valid conversation, e.g. "
                      f"{bad[0]}", stacklevel=2)
    return out


def alpaca_eval_prompts(max_examples: int | None = None, seed: int = 0) -> list[dict]:
    """AlpacaEval's 805 instructions as prompt records, with the ``gpt4_1106_preview`` output as ``reference``.

    Records: ``{id, messages, instruction, reference, dataset}``; ``id`` is the instruction's AlpacaEval index (int).
    """
    from .alpaca_eval import load_alpaca_eval_outputs

    ref = load_alpaca_eval_outputs(AE_REFERENCE)
    rows = [{"id": r["id"], "messages": [{"role": "user", "content": r["instruction"]}], "instruction": r["instruction"],
             "reference": r["output"], "dataset": r.get("dataset")} for r in ref]
    return select_subset(rows, max_examples, seed)


def evaluation_instructions() -> set[str]:
    """Normalised texts of every evaluation prompt (AlpacaEval's 805 instructions)."""
    return {normalise(r["instruction"]) for r in alpaca_eval_prompts()}


def mining_prompts(source: str = "auto", max_examples: int | None = None, seed: int = 0) -> tuple[list[dict], dict]:
    """Mining prompts with every evaluation prompt removed; returns ``(records, info)``.

    ``source``: ``"nectar"`` (Hub), ``"ultrafeedback"`` (data folder) or ``"auto"`` (Nectar when the Hub is
    reachable and ``FLR_OFFLINE`` is not set, else UltraFeedback). The subset is drawn before the overlap filter
    would shrink it, so ``max_examples`` is an upper bound; ``info`` says how many prompts were removed.
    """
    if source == "auto":
        from .hub import read_lock  # a prefetched Nectar (flr data --prefetch) counts as available offline

        locked = read_lock()["datasets"].get(NECTAR) is not None
        source = "nectar" if locked or (not net.offline() and net.reachable("huggingface.co")) else "ultrafeedback"
    if source == "nectar":
        records = nectar_prompts(max_examples, seed)
    elif source == "ultrafeedback":
        records = ultrafeedback_prompts(max_examples, seed)
    else:
        raise ValueError(f"source must be 'auto', 'nectar' or 'ultrafeedback', got {source!r}")
    held = evaluation_instructions()
    kept = [r for r in records if normalise(prompt_text(r)) not in held]
    return kept, {"source": source, "drawn": len(records), "removed_overlap": len(records) - len(kept), "kept": len(kept)}

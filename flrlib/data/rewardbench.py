"""RewardBench v1 (Lambert et al. 2024; Hub dataset ``allenai/reward-bench``, split ``filtered``: 2,985 pairs in
23 subsets) -> pairwise records.

Row schema (the dataset card and allenai/reward-bench's loaders, ``rewardbench/utils.py`` ``load_eval_dataset``;
the Hub is not reachable from the development machine, so no real row was read here and the tests use a fixture
written from this schema, ``tests/fixtures/rewardbench/``): ``prompt`` (str: one user turn), ``chosen``,
``rejected`` (str), ``chosen_model``, ``rejected_model`` (str), ``subset`` (str: one of
:data:`flrlib.rewardbench.EXAMPLE_COUNTS`), ``id`` (int).

Records: the pairwise schema ``{id: "rewardbench-<id>", benchmark, messages: [user prompt], chosen, rejected}``
plus ``category`` = the subset (so every per-sample result line carries it and the section scores of
:mod:`flrlib.rewardbench` are computed from the result files) and ``chosen_model`` / ``rejected_model``.
A row without a documented field raises :class:`MalformedRow` (file, row, field); a pair whose chosen and rejected
texts are identical, or whose prompt or a response is empty, is dropped and counted.
"""
from __future__ import annotations

from collections import Counter

from .pairwise import MalformedRow, field

HUB_ID = "allenai/reward-bench"
SPLIT = "filtered"


def parse_rows(rows: list[dict], name: str = "rewardbench", where: str = HUB_ID) -> tuple[list[dict], dict]:
    """``(records, dropped)`` of RewardBench rows (see the module docstring)."""
    records, dropped, seen = [], Counter(), set()
    for n, row in enumerate(rows, 1):
        at = f"{where}: row {n}"
        rid = field(row, "id", at, types=(int, str))
        vals = {k: field(row, k, at) for k in ("prompt", "chosen", "rejected", "chosen_model", "rejected_model",
                                                "subset")}
        if not vals["subset"].strip():
            raise MalformedRow(f"{at}: field 'subset' is empty")
        key = f"{name}-{rid}"
        if key in seen:
            raise MalformedRow(f"{at}: field 'id': {rid!r} appears twice")
        seen.add(key)
        if not (vals["prompt"].strip() and vals["chosen"].strip() and vals["rejected"].strip()):
            dropped["empty prompt or response"] += 1
            continue
        if vals["chosen"] == vals["rejected"]:
            dropped["chosen == rejected"] += 1
            continue
        records.append({"id": key, "benchmark": name, "messages": [{"role": "user", "content": vals["prompt"]}],
                        "chosen": vals["chosen"], "rejected": vals["rejected"], "category": vals["subset"],
                        "chosen_model": vals["chosen_model"], "rejected_model": vals["rejected_model"]})
    return records, dict(dropped)

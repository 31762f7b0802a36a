"""The one seeded subset rule: records ranked by ``sha256(f"{seed}:{id}")``, the first ``max_examples`` kept
(in their original order). It depends only on the ids and the seed, so every machine, scorer and notebook asking
with the same seed gets the same rows, and a smaller subset is contained in a larger one (nested)."""
from __future__ import annotations

import hashlib


def _rank(seed: int, key) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def select_subset(records: list[dict], max_examples: int | None, seed: int = 0, key: str = "id") -> list[dict]:
    """The seeded subset of at most ``max_examples`` records (by hashed ``key``), kept in their original order."""
    if max_examples is None or max_examples >= len({r[key] for r in records}):
        return list(records)
    if max_examples < 0:
        raise ValueError(f"max_examples must be >= 0 or None, got {max_examples}")
    keys = sorted({r[key] for r in records}, key=lambda k: _rank(seed, k))[:max_examples]
    keep = set(keys)
    return [r for r in records if r[key] in keep]


def select_indices(n: int, max_examples: int | None, seed: int = 0, prefix: str = "") -> list[int]:
    """The rule on positions ``0..n-1`` named ``f"{prefix}{i}"`` (for sources read lazily, e.g. a Hub dataset)."""
    if max_examples is None or max_examples >= n:
        return list(range(n))
    return sorted(sorted(range(n), key=lambda i: _rank(seed, f"{prefix}{i}"))[:max_examples])

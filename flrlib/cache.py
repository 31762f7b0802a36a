"""The one result cache: an append-only JSONL file of ``{"key": ..., "value": ...}`` lines keyed by content hash.

Every computed row is appended (and flushed) as soon as it exists, so an interrupted run restarts and computes only
the missing rows. A corrupted line (typically the last one, cut by a kill) is dropped with a warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path


def content_key(*parts) -> str:
    """Stable hash of JSON-serialisable parts (model spec, adapter hash, template hash, bank hash, scorer, text...)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


class JsonlCache:
    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._data: dict[str, object] = {}
        self.hits = self.misses = 0
        if self.path and self.path.exists():
            self._load()

    def _load(self) -> None:
        bad = 0
        with open(self.path, "rb") as fh:
            raw = fh.read()
        lines = raw.split(b"\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                self._data[row["key"]] = row["value"]
            except (ValueError, KeyError, TypeError):
                bad += 1
                where = "trailing line" if i >= len(lines) - 2 else f"line {i + 1}"
                warnings.warn(f"{self.path}: dropped corrupted {where} of the cache", stacklevel=3)
        if bad and not raw.endswith(b"\n"):
            # rewrite without the cut line so that the next append starts on a fresh line
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                for k, v in self._data.items():
                    fh.write(json.dumps({"key": k, "value": v}, ensure_ascii=False) + "\n")
            os.replace(tmp, self.path)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str):
        value = self._data.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: str, value) -> None:
        self._data[key] = value
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n")
            fh.flush()

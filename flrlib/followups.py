"""Follow-up banks: categories x {positive, negative} utterances, loaded from JSON or YAML.

The paper's bank (6 categories x 10 positive + 10 negative) is data, provided by the data step as
``<data>/paper/followups.json`` (byte-exact copy of the authors' ``utils.py`` lists, in-list duplicates kept).

``Bank.hash`` identifies the bank *in order*: per-follow-up values are stored (and cached) in :meth:`Bank.items`
order, so two banks with the same lists in another category order are different banks.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .files import BadFile, read_json, read_text
from .paths import data_dir

PAPER_CATEGORIES = ("understanding", "relevance", "correctness", "engagingness", "informativeness", "following")


class UnknownCategory(KeyError, ValueError):
    """Categories asked for that the bank does not have (a ValueError for callers, a KeyError as before)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class Bank:
    name: str
    categories: dict  # {category: {"positive": [...], "negative": [...]}}
    source: str = ""

    @property
    def hash(self) -> str:
        """Hash of the ordered (category, polarity, text) items: values are stored in this order."""
        blob = json.dumps(self.items(), ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def items(self) -> list[tuple[str, str, str]]:
        """Flat list of (category, polarity, text) in bank order; the order results are reported in."""
        return [(c, pol, t) for c, d in self.categories.items() for pol in ("positive", "negative") for t in d[pol]]

    def texts(self) -> list[str]:
        return [t for _, _, t in self.items()]

    def select(self, categories) -> "Bank":
        if not categories:
            return self
        missing = [c for c in categories if c not in self.categories]
        if missing:
            raise UnknownCategory(f"Bank {self.name!r} has no categories {missing}; it has {list(self.categories)}")
        return Bank(f"{self.name}[{','.join(categories)}]", {c: self.categories[c] for c in categories}, self.source)

    def deduplicated(self) -> "Bank":
        """Drop repeated utterances inside each list (the paper's bank has three)."""
        cats = {c: {p: list(dict.fromkeys(d[p])) for p in ("positive", "negative")} for c, d in self.categories.items()}
        return Bank(self.name + "+dedup", cats, self.source)

    def provenance(self) -> dict:
        return {"bank": self.name, "bank_hash": self.hash, "bank_size": len(self.items())}


def _validate(cats, path) -> dict:
    if not isinstance(cats, dict) or not cats:
        raise ValueError(f"{path}: expected a mapping of categories, got {type(cats).__name__}")
    for c, d in cats.items():
        for pol in ("positive", "negative"):
            vals = d.get(pol) if isinstance(d, dict) else None
            if not isinstance(vals, list) or not vals or not all(isinstance(v, str) and v.strip() for v in vals):
                raise ValueError(f"{path}: category {c!r} field {pol!r} must be a non-empty list of non-empty strings")
    return cats


def _read_yaml(path: Path):
    """A YAML document; errors name the file and line (like :func:`flrlib.files.read_json`)."""
    import yaml

    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        what = getattr(e, "problem", None) or type(e).__name__
        raise BadFile(f"{where}: not valid YAML ({what})") from None


def load_bank(path: str | Path | None = None, categories=None, dedup: bool = False) -> Bank:
    """Load a bank. ``None`` or ``"paper"`` loads the paper's bank from the data folder.

    A bank file is ``{"categories": {cat: {"positive": [...], "negative": [...]}}}`` (JSON or YAML), or the
    mapping of categories itself.
    """
    if path in (None, "paper"):
        path = data_dir() / "paper" / "followups.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `flr data` first (it copies the paper's follow-up bank).")
        name = "paper"
    else:
        path = Path(path)
        name = path.stem
    raw = _read_yaml(path) if str(path).endswith((".yaml", ".yml")) else read_json(path)
    cats = raw.get("categories", raw) if isinstance(raw, dict) else raw
    bank = Bank(name, _validate(cats, path), source=raw.get("source", str(path)) if isinstance(raw, dict) else str(path))
    bank = bank.select(categories) if categories else bank
    return bank.deduplicated() if dedup else bank


def make_bank(categories: dict, name: str = "custom") -> Bank:
    """Build a bank from a Python mapping (e.g. typed in a notebook)."""
    return Bank(name, _validate(categories, name), source="inline")

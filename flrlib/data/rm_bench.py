"""RM-Bench (Liu et al., ICLR 2025; THU-KEG/RM-Bench): each prompt has 3 chosen and 3 rejected responses with the
same content in three styles, so a scorer's preference for style can be told apart from its preference for the
correct answer.

Source files (unmodified, pinned): ``THU-KEG/RM-Bench @ 73c52d7b27b361621361ec959ac6c0eb9bb7a689 : data/
<domain>_filtered.json`` for the domains ``chat`` (129 prompts), ``code`` (228), ``math`` (529; over the offline
mirror's size limit, downloaded when online), ``safety-refuse`` (284) and ``safety-response`` (157). The data step
(:mod:`flrlib.data.fetch`) copies them gzip-compressed into ``<data>/rm_bench/``.

Row schema (read from the real files, and the README's "dataset format"): ``id`` (int; unique within a file, NOT
across files: chat and code share ids), ``subset`` (str: ``alpacaeval``, ``bigcode/humanevalpack``,
``xstest-should-refuse``, ``refusals-dangerous``, ...), ``prompt`` (str: one user turn), ``chosen`` and
``rejected`` (lists of 3 str in the style order ``[concise, detailed plain text, detailed markdown]``); chat rows
add ``error_key``/``error`` (the injected factual error), code rows ``language``/``task_id``.

Record schema ("RM-Bench's 3 + 3 styled responses" of DESIGN.md)::

    {id, benchmark, domain, subset, messages: [{"role": "user", "content": prompt}],
     chosen: [concise, plain, markdown], rejected: [concise, plain, markdown]}

``id`` = ``"<domain>-<source id>"`` (unique over domains). ``domain`` is the file's domain; RM-Bench's own metric
pools ``safety-refuse`` and ``safety-response`` into one ``safety`` domain (:mod:`flrlib.rmbench`).
A row whose 6 responses are not 6 non-empty strings, or whose prompt is empty, raises :class:`MalformedRow`
naming the file, row and field (the public files have none; nothing is dropped silently).
"""
from __future__ import annotations

from collections import Counter

from .pairwise import MalformedRow, field

DOMAINS = ("chat", "code", "math", "safety-refuse", "safety-response")
STYLES = ("concise", "detailed_plain", "detailed_markdown")
ROWS = {"chat": 129, "code": 228, "math": 529, "safety-refuse": 284, "safety-response": 157}  # public files
COMMIT = "73c52d7b27b361621361ec959ac6c0eb9bb7a689"
URL = f"https://raw.githubusercontent.com/THU-KEG/RM-Bench/{COMMIT}/data"


def file_of(domain: str) -> str:
    """Path of a domain's file in the data folder (the mirror's name: ``rm_bench/<domain>_filtered.json.gz``)."""
    if domain not in DOMAINS:
        raise ValueError(f"RM-Bench domain must be one of {DOMAINS}, got {domain!r}")
    return f"rm_bench/{domain}_filtered.json.gz"


def parse_rows(rows: list[dict], name: str, domain: str, where: str) -> tuple[list[dict], dict]:
    """``(records, dropped)`` of one domain file (``dropped`` is always empty: bad rows raise)."""
    if domain not in DOMAINS:
        raise ValueError(f"RM-Bench domain must be one of {DOMAINS}, got {domain!r}")
    records, seen = [], Counter()
    for n, row in enumerate(rows, 1):
        at = f"{where}: row {n}"
        rid = field(row, "id", at, types=(int, str))
        prompt = field(row, "prompt", at)
        if not prompt.strip():
            raise MalformedRow(f"{at}: field 'prompt' is empty")
        sides = {}
        for side in ("chosen", "rejected"):
            v = field(row, side, at, types=list)
            if len(v) != len(STYLES) or not all(isinstance(t, str) and t.strip() for t in v):
                raise MalformedRow(f"{at}: field {side!r} must be a list of {len(STYLES)} non-empty strings "
                                   f"(styles {', '.join(STYLES)})")
            sides[side] = list(v)
        key = f"{domain}-{rid}"
        seen[key] += 1
        if seen[key] > 1:
            raise MalformedRow(f"{at}: field 'id': {rid!r} appears twice")
        records.append({"id": key, "benchmark": name, "domain": domain, "subset": str(row.get("subset", "")),
                        "messages": [{"role": "user", "content": prompt}], **sides})
    return records, {}

"""The benchmark registry (``data/registry.yaml``) and the one entry point :func:`load_benchmark`.

``load_benchmark(name, max_examples=None, seed=0)`` returns ``(records, report)``:

* ``records`` in the plain schemas of :mod:`flrlib.data` (pairwise / rating / system);
* ``report`` = ``{"benchmark", "kind", "rows_total", "rows_used", "dropped": {reason: n}, "source", "licence"}``
  plus ``"rows_valid"`` (rows left after dropping, before the subset), ``"max_examples"``, ``"seed"``;
  ``rows_total = rows_valid + sum(dropped)``.

``max_examples`` keeps a fixed seeded subset: records are ranked by ``sha256(f"{seed}:{id}")`` and the first
``max_examples`` are kept (in file order). The subset depends only on the ids and the seed, so every scorer and
every notebook asking with the same seed gets the same rows, and a smaller subset is contained in a larger one.
For the system-level benchmark ``max_examples`` counts prompts (each answered by all 17 models).

``name`` may also be the path of your own JSONL (``.jsonl`` / ``.jsonl.gz``) in the pairwise or rating schema.
"""
from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path

import yaml

from ..messages import check_messages
from ..paths import ROOT, data_dir
from . import alpaca_eval, hub, pairwise, rating
from .fetch import DataMissing, require
from .pairwise import MalformedRow, read_rows
from .subsets import select_subset  # noqa: F401 - the one seeded subset, re-exported

KINDS = ("pairwise", "rating", "system", "rm_bench")  # rm_bench: 3 + 3 styled responses (flrlib.data.rm_bench)


def registry_path() -> Path:
    """The committed registry (``data/registry.yaml`` in the checkout); a copy in the data folder wins."""
    local = data_dir() / "registry.yaml"
    return local if local.exists() else ROOT / "data" / "registry.yaml"


@lru_cache(maxsize=4)
def _registry(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))["benchmarks"]


def registry() -> dict:
    """``{name: entry}`` from the registry file."""
    return _registry(str(registry_path()))


def benchmark_names(kind: str | None = None, offline: bool | None = None) -> list[str]:
    """Registered benchmarks, optionally of one ``kind`` and/or only those in the offline mirror."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return [n for n, e in registry().items()
            if (kind is None or e["kind"] == kind) and (offline is None or bool(e.get("offline")) == offline)]


def benchmark_info(name: str) -> dict:
    reg = registry()
    if name not in reg:
        raise KeyError(f"unknown benchmark {name!r}; registered: {sorted(reg)} (or pass a path to your own JSONL)")
    return {"benchmark": name, **reg[name]}


# ----------------------------------------------------------------------------------------------------------
# subsets
# ----------------------------------------------------------------------------------------------------------

# ----------------------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------------------

def _merge(parts) -> tuple[list[dict], dict]:
    records, dropped = [], Counter()
    for recs, drop in parts:
        records += recs
        dropped.update(drop)
    return records, dict(dropped)


def _load_all(name: str, entry: dict) -> tuple[list[dict], dict, int]:
    """All records of a registered benchmark, the drop counts, and the number of source rows read."""
    loader = entry["loader"]
    if loader == "hh_rlhf":
        path = require(entry["files"][0])
        rows = read_rows(path)
        recs, drop = pairwise.parse_hh_rows(rows, name, where=str(path))
        return recs, drop, len(rows)
    if loader == "alpaca_eval_annotations":
        parts, n = [], 0
        for f in entry["files"]:
            path = require(f)
            rows = read_rows(path)
            n += len(rows)
            parts.append(pairwise.parse_alpaca_eval_annotations(rows, name, Path(f).name.split(".")[0], where=str(path)))
        recs, drop = _merge(parts)
        return recs, drop, n
    if loader == "prometheus":
        path = require(entry["files"][0])
        rows = read_rows(path)
        recs, drop = rating.parse_prometheus_rows(rows, name, where=str(path))
        return recs, drop, len(rows)
    if loader == "url_prometheus":
        rows = hub.url_rows(name, entry["url"], entry["files"][0])
        recs, drop = rating.parse_prometheus_rows(rows, name, where=entry["url"])
        return recs, drop, len(rows)
    if loader == "alpaca_eval_system":
        return alpaca_eval.system_records(benchmark=name)
    if loader == "rm_bench":  # the data folder (mirror copy), or the pinned public file on first use (math)
        from . import rm_bench

        if entry.get("url"):
            rows = hub.url_rows(name, entry["url"], entry["files"][0])
            where = entry["url"]
        else:
            path = require(entry["files"][0])
            rows, where = read_rows(path), str(path)
        recs, drop = rm_bench.parse_rows(rows, name, entry["domain"], where=where)
        return recs, drop, len(rows)
    if loader == "rewardbench":  # a JSONL export in the data folder first, else the Hub (flrlib/data/rewardbench.py)
        from . import rewardbench

        local, h = data_dir() / entry["files"][0], entry["hub"]
        rows = read_rows(local) if local.exists() else hub.hub_rows(name, h["id"], h.get("config"), h["split"],
                                                                     h.get("revision"))
        recs, drop = rewardbench.parse_rows(rows, name, where=str(local) if local.exists() else h["id"])
        return recs, drop, len(rows)
    if loader == "wildbench_system":  # data folder first, else the Hub (flrlib/data/wildbench.py)
        from . import wildbench

        return wildbench.load(name, entry)
    if loader.startswith("hub_"):
        h = entry["hub"]
        rows = (hub.hub_file_rows(name, h["id"], h["file"], h.get("revision")) if h.get("file") else
                hub.hub_rows(name, h["id"], h.get("config"), h["split"], h.get("revision")))
        parse = {"hub_shp": hub.parse_shp, "hub_beavertails": pairwise.parse_pku_saferlhf,
                 "hub_alpaca_farm": hub.parse_alpaca_farm, "hub_mt_bench_human": pairwise.parse_mt_bench_human,
                 "hub_helpsteer": hub.parse_helpsteer, "hub_feedback_bench": hub.parse_feedback_bench}[loader]
        recs, drop = parse(rows, name=name, where=h["id"])
        return recs, drop, len(rows)
    raise ValueError(f"registry entry {name!r}: unknown loader {loader!r}")


def load_benchmark(name: str, max_examples: int | None = None, seed: int = 0) -> tuple[list[dict], dict]:
    """Records and report of a registered benchmark (or of a user JSONL path); see the module docstring."""
    if _is_user_file(name):
        records, report = load_user_jsonl(name)
    else:
        entry = benchmark_info(name)
        records, dropped, total = _load_all(name, entry)
        report = {"benchmark": name, "kind": entry["kind"], "rows_total": total, "rows_used": len(records),
                  "dropped": dropped, "source": entry.get("source", ""), "licence": entry.get("licence", "")}
    key = "prompt_id" if report["kind"] == "system" else "id"
    valid = len(records)
    records = select_subset(records, max_examples, seed, key=key)
    report.update(rows_valid=valid, rows_used=len(records), max_examples=max_examples, seed=seed)
    return records, report


def _is_user_file(name: str) -> bool:
    return str(name).endswith((".jsonl", ".jsonl.gz")) or Path(str(name)).is_file()


def load_user_jsonl(path: str | Path) -> tuple[list[dict], dict]:
    """Your own benchmark: JSONL rows ``{id?, messages, chosen, rejected}`` (pairwise) or ``{id?, messages,
    response, score}`` (rating). Errors name the file, line and field; nothing is silently dropped."""

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such benchmark file (pairwise or rating JSONL)")
    rows = read_rows(path)
    if not rows:
        raise MalformedRow(f"{path}: no rows")
    name = path.name.split(".")[0]
    kind = "pairwise" if "chosen" in rows[0] else "rating"
    need = ("chosen", "rejected") if kind == "pairwise" else ("response",)
    records = []
    for n, row in enumerate(rows, 1):
        at = f"{path}: row {n}"
        msgs = pairwise.field(row, "messages", at, types=list)
        try:
            check_messages(msgs, "messages")
        except ValueError as e:
            raise MalformedRow(f"{at}: field {e}") from None
        if msgs[-1]["role"] != "user":
            raise MalformedRow(f"{at}: field 'messages' must end with the user turn being answered")
        rec = {"id": str(row.get("id", f"{name}-{n}")), "benchmark": name, "messages": msgs}
        for f in need:
            v = pairwise.field(row, f, at)
            if not v.strip():
                raise MalformedRow(f"{at}: field {f!r} is empty")
            rec[f] = v
        if kind == "rating":
            score = pairwise.field(row, "score", at, types=(int, float))
            if isinstance(score, bool):
                raise MalformedRow(f"{at}: field 'score' must be a number")
            rec["score"] = float(score)
        rec.update({k: v for k, v in row.items() if k in ("category",)})
        records.append(rec)
    ids = Counter(r["id"] for r in records)
    dup = [i for i, c in ids.items() if c > 1]
    if dup:
        raise MalformedRow(f"{path}: duplicate id {dup[0]!r}")
    report = {"benchmark": name, "kind": kind, "rows_total": len(rows), "rows_used": len(records), "dropped": {},
              "source": str(path), "licence": "user-provided"}
    return records, report


def load_prometheus(which: str) -> list[dict]:
    """Prometheus ``"vicuna"`` or ``"mt_bench"`` rating records with ``feedback`` (GPT-4 critiques) and ``category``."""
    names = {"vicuna": "prometheus_vicuna", "mt_bench": "prometheus_mt_bench"}
    if which not in names:
        raise ValueError(f"which must be one of {sorted(names)}, got {which!r}")
    return load_benchmark(names[which])[0]


def describe(records: list[dict], report: dict) -> dict:
    """One Table-2 row: counts from the report plus mean context turns and mean word lengths (of ``records``)."""
    def words(text: str) -> int:
        return len(text.split())

    row = {"benchmark": report["benchmark"], "kind": report["kind"], "rows_total": report["rows_total"],
           "rows_dropped": sum(report["dropped"].values()), "rows_valid": report.get("rows_valid", report["rows_used"]),
           "rows_used": report["rows_used"],
           "dropped": "; ".join(f"{k}: {v}" for k, v in sorted(report["dropped"].items())) or "-"}
    n = max(1, len(records))
    row["context_turns"] = sum(len(r["messages"]) for r in records) / n
    row["context_words"] = sum(words(m["content"]) for r in records for m in r["messages"]) / n
    if report["kind"] == "rm_bench":  # 3 styles per side: mean words over the styles
        row["chosen_words"] = sum(words(t) for r in records for t in r["chosen"]) / n / 3
        row["rejected_words"] = sum(words(t) for r in records for t in r["rejected"]) / n / 3
    elif report["kind"] == "pairwise":
        row["chosen_words"] = sum(words(r["chosen"]) for r in records) / n
        row["rejected_words"] = sum(words(r["rejected"]) for r in records) / n
    else:
        row["response_words"] = sum(words(r["response"]) for r in records) / n
    if report["kind"] == "rating":
        row["score_mean"] = sum(r["score"] for r in records) / n
    if report["kind"] == "system":
        row["systems"] = len({r["model"] for r in records})
        row["prompts"] = len({r["prompt_id"] for r in records})
    row["source"], row["licence"] = report["source"], report["licence"]
    return row


def eval_subsets(benchmarks: list[str], max_examples: int | None, rating_examples: int | None = None,
                 seed: int = 0) -> tuple[dict, dict]:
    """``({name: records}, {name: report})``: the seeded subsets notebook 03 scores - ``max_examples`` pairs per
    pairwise benchmark, ``rating_examples`` rows per rating benchmark (``None``: ``max_examples``)."""
    sets, reports = {}, {}
    for b in benchmarks:
        kind = benchmark_info(b)["kind"]
        if kind not in ("pairwise", "rating"):
            raise ValueError(f"{b}: FT-FLR is compared on pairwise and rating benchmarks, not {kind!r}")
        n = rating_examples if kind == "rating" and rating_examples is not None else max_examples
        sets[b], reports[b] = load_benchmark(b, max_examples=n, seed=seed)
    return sets, reports


def overview(names: list[str], max_examples: int | None = None, seed: int = 0) -> tuple[list[dict], dict, dict]:
    """Notebook 01's Table-2 rows: ``(rows, {benchmark: records}, {name: why unavailable})`` for registered
    benchmarks or paths of your own JSONL files; a benchmark whose files are missing is listed, not raised."""
    rows, loaded, unavailable = [], {}, {}
    for name in names:
        try:
            records, report = load_benchmark(name, max_examples=max_examples, seed=seed)
        except DataMissing as e:
            unavailable[str(name)] = str(e)
            continue
        loaded[report["benchmark"]] = records
        row = describe(records, report)
        row["paper"] = benchmark_info(name).get("paper", "") if name in registry() else "user file"
        rows.append(row)
    return rows, loaded, unavailable


def write_overview(profile: str, rows: list[dict], unavailable: dict, systems: list[dict], seed: int = 0,
                   max_examples: int | None = None) -> Path:
    """``results/<profile>/data/benchmarks.json`` (read by notebook 07's Table 2): the rows of :func:`overview`,
    the unavailable benchmarks and the system-level targets, with provenance."""
    from ..results import area, stamp, write_json

    return write_json(area(profile, "data") / "benchmarks.json",
                      {"profile": profile, "seed": seed, "max_examples": max_examples, "rows": rows,
                       "unavailable": unavailable, "systems": systems,
                       "provenance": stamp(profile=profile, seed=seed, max_examples=max_examples,
                                           registry=str(registry_path().name))})


def system_targets(benchmark: str) -> tuple[dict, dict]:
    """``(Arena ELO, AlpacaEval 2 LC win rate)`` per system of a system-level benchmark, keyed as its records'
    ``model``: AlpacaEval model names (17 systems, both targets), or WildBench's configs (30, no LC win rate)."""
    if str(benchmark).startswith("wildbench"):
        from .wildbench import arena_elo as wildbench_elo

        return wildbench_elo(), {}
    return alpaca_eval.arena_elo(), alpaca_eval.lc_win_rates(2)

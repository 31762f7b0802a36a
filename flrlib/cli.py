"""The `flr` command: data, setup, score, reproduce. Thin: every subcommand calls one flrlib function."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


class InputError(ValueError):
    """A malformed input row; the message names the file, line and field."""


def read_score_rows(path: str | Path) -> list[dict]:
    """Read `flr score` input: ``{"id", "messages"}`` (last message = response) or ``{"id", "messages", "chosen",
    "rejected"}`` (messages = context). Errors name the file, line and field."""
    from .chat import check_messages

    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{n}: expected a JSON object")
            if "messages" not in row:
                raise InputError(f"{path}:{n}: missing field 'messages'")
            try:
                check_messages(row["messages"], "messages")
            except ValueError as e:
                raise InputError(f"{path}:{n}: field {e}") from None
            pair = "chosen" in row or "rejected" in row
            if pair:
                for side in ("chosen", "rejected"):
                    if not isinstance(row.get(side), str) or not row[side].strip():
                        raise InputError(f"{path}:{n}: field '{side}' must be a non-empty string")
            elif row["messages"][-1]["role"] != "assistant" or not row["messages"][-1]["content"].strip():
                raise InputError(f"{path}:{n}: field 'messages': the last message must be the (non-empty) assistant "
                                 "response to score, or give 'chosen' and 'rejected'")
            row.setdefault("id", f"row{n}")
            row["_pair"] = pair
            rows.append(row)
    if not rows:
        raise InputError(f"{path}: no rows")
    return rows


def _shard() -> tuple[int, int, object, str | None]:
    """``(index, count, wait_for_everyone, device)`` of this process.

    Under ``accelerate launch`` (which sets ``WORLD_SIZE``) this is accelerate's ``PartialState``: each rank scores a
    strided slice of the rows on its own device and rank 0 merges the parts. A plain run is ``(0, 1, no-op, None)``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, (lambda: None), None
    import torch
    from accelerate import PartialState

    st = PartialState(cpu=not torch.cuda.is_available())  # CPU ranks (torchrun, mpirun) talk through gloo
    return st.process_index, st.num_processes, st.wait_for_everyone, str(st.device)


def _score_records(scorer, rows: list[dict]) -> list[dict]:
    singles = [r for r in rows if not r["_pair"]]
    pairs = [r for r in rows if r["_pair"]]
    res_single = iter(scorer.score([r["messages"] for r in singles], desc="responses") if singles else [])
    res_pairs = iter(scorer.score_pairs(pairs) if pairs else [])
    prov, out = scorer.provenance, []
    for r in rows:
        if r["_pair"]:
            s = next(res_pairs)
            rec = {"id": r["id"], "chosen_reward": s["chosen"], "rejected_reward": s["rejected"],
                   "prefers_chosen": s["chosen"] > s["rejected"]}
        else:
            s = next(res_single)
            rec = {"id": r["id"], "reward": s["reward"], **({"categories": s["categories"]} if "categories" in s else {})}
        out.append({**rec, "provenance": prov})
    return out


def cmd_score(a) -> int:
    from .models import load_model
    from .paths import cache_dir
    from .results import write_jsonl
    from .scoring import ScoreConfig, Scorer, _slug

    rows = read_score_rows(a.input)
    index, count, wait_for_everyone, device = _shard()
    out = Path(a.output)
    loaded = load_model(a.model, dtype=a.dtype, device=device if device and a.device == "auto" else a.device,
                        adapter=a.adapter)
    cfg = ScoreConfig(scorer=a.scorer, layout=a.layout, norm=a.norm, max_tokens=a.max_tokens,
                      batch_size=a.batch_size, chunk_size=a.chunk_size,
                      categories=a.categories.split(",") if a.categories else [])
    cache = a.cache or "auto"
    if count > 1:  # one cache file per rank: concurrent appends to one JSONL could interleave
        base = Path(a.cache) if a.cache else cache_dir() / "scores" / f"{_slug(loaded.spec)}.jsonl"
        cache = base.with_name(f"{base.stem}.rank{index}{base.suffix}")
    scorer = Scorer(loaded, a.bank, cfg, cache=cache)
    if count == 1:
        write_jsonl(out, _score_records(scorer, rows))
        print(f"wrote {len(rows)} rows to {out}")
        return 0
    parts = [out.with_name(f"{out.name}.rank{i}-of-{count}") for i in range(count)]
    write_jsonl(parts[index], _score_records(scorer, rows[index::count]))
    wait_for_everyone()
    if index == 0:  # merge: row i was scored by rank i % count, at position i // count of its part
        done = [[json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()] for p in parts]
        merged = []
        for i, r in enumerate(rows):
            rec = done[i % count][i // count]
            if rec["id"] != r["id"]:
                raise RuntimeError(f"{parts[i % count]}: expected id {r['id']!r} at row {i // count}, got {rec['id']!r}")
            merged.append(rec)
        write_jsonl(out, merged)
        for p in parts:
            p.unlink()
        print(f"wrote {len(rows)} rows to {out} (merged from {count} processes)")
    wait_for_everyone()
    return 0


def cmd_data(a) -> int:
    from .data.fetch import fetch

    fetch(dest=a.dest, mirror=a.mirror, online=not a.offline)
    return 0


def cmd_setup(a) -> int:
    from .models import BUNDLED, TINY, load_model

    for spec in (BUNDLED, TINY):
        lm = load_model(spec)
        print(f"ok: {spec} -> {lm.model.config._name_or_path} ({sum(p.numel() for p in lm.model.parameters())/1e6:.1f} M params)")
    return 0


def cmd_reproduce(a) -> int:
    from .reproduce import NotebookFailed, run

    try:
        run(a.profile, only=a.only, force=a.force)
    except NotebookFailed as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="flr", description="Follow-up Likelihood as Reward: reproduction toolkit")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("data", help="populate the data folder from the mirror (or the public sources when online)")
    p.add_argument("--dest", help="data folder (default: $FLR_DATA_DIR or ./data)")
    p.add_argument("--mirror", help="mirror folder (default: $FLR_DATA_MIRROR or ../shared/data)")
    p.add_argument("--offline", action="store_true", help="never download")
    p.set_defaults(fn=cmd_data)

    p = sub.add_parser("setup", help="convert the bundled model once and build the tiny test model")
    p.set_defaults(fn=cmd_setup)

    p = sub.add_parser("score", help="score responses or pairs in a JSONL file")
    p.add_argument("--model", default="bundled:smollm2-135m-instruct")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--scorer", default="flr", choices=["flr", "direct", "legacy_repo"])
    p.add_argument("--bank", default=None, help="bank JSON/YAML (default: the paper's bank in the data folder)")
    p.add_argument("--categories", default="", help="comma-separated subset of the bank's categories")
    p.add_argument("--layout", default="base", choices=["base", "feedback"])
    p.add_argument("--norm", default="mean", choices=["mean", "sum"])
    p.add_argument("--adapter", default=None)
    p.add_argument("--max-tokens", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--chunk-size", type=int, default=128, help="follow-ups packed per forward")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache", default=None, help="score cache JSONL (default: under $FLR_CACHE_DIR)")
    p.set_defaults(fn=cmd_score)

    p = sub.add_parser("reproduce", help="run the notebooks headless with papermill")
    p.add_argument("--profile", default="demo", help="smoke | demo | paper | path to a YAML")
    p.add_argument("--only", nargs="*", help="notebook prefixes, e.g. 02 03")
    p.add_argument("--force", action="store_true", help="re-run notebooks even if unchanged")
    p.set_defaults(fn=cmd_reproduce)

    a = ap.parse_args(argv)
    try:
        return a.fn(a)
    except (InputError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if type(e).__name__ in ("ModelNotAvailable", "DataMissing", "TemplateError"):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

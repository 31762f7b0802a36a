"""Interactive FLR explorer for JupyterLab: a conversation, responses A and B, and why FLR prefers one of them.

Read top to bottom:

1. transcripts - ``parse_transcript`` / ``split_transcript`` / ``format_transcript``: typed or pasted text
   (``User:``/``Assistant:`` lines, or HH-RLHF's ``Human:``/``Assistant:`` transcripts) <-> messages.
2. scoring - ``score_responses``: scores A and B with :class:`flrlib.scoring.Scorer` (the same engine and score
   cache as everything else) under the chosen scorer, Direct and ``length``, and stores the per-token log-probs
   of every follow-up, so that any token view can be drawn later without scoring again. Returns a plain dict.
3. views - pure functions of that dict, in the order a reader needs them: the verdict (``verdict_rows``,
   ``verdict_lines``, ``reading_note``, ``verdict_html``), the per-category A - B chart (``category_frame``,
   ``category_figure``), the follow-ups that moved most (``followup_moves``, ``moves_html``), the token view
   (``token_choices``, ``tokens_html``), and ``explain`` (the same story in plain sentences, for notebooks).
4. inputs and staleness - ``snapshot`` / ``changed_inputs`` (which inputs differ from the ones a result was
   scored with), ``box_rows`` (text boxes that grow), ``estimate_seconds`` (the progress line's estimate).
5. front ends - :class:`Explorer` (ipywidgets) and :func:`render_static` (the same views as plain notebook outputs,
   for papermill runs without a front end); :func:`show` picks one.

Usage in any notebook::

    from flrlib import explore
    ui = explore.Explorer(examples=pairs)        # pairwise records {id, benchmark, messages, chosen, rejected}
    ui                                           # type, pick, press Score
"""
from __future__ import annotations

import base64
import html
import io
import math
import re
import threading
import time
import traceback
from dataclasses import replace

import numpy as np
import pandas as pd

from .chat import TemplateError
from .files import BadFile
from .followups import Bank, load_bank
from .models import BUNDLED, ModelNotAvailable, load_model
from .scoring import NO_BANK, ScoreConfig, Scorer, engine_logprobs

SCORER_NAMES = {"flr": "FLR", "direct": "Direct", "legacy_repo": "legacy (repo arithmetic)", "length": "length"}
# the scorers offered in the dropdown; Direct and the length baseline are always shown beside the chosen one
SCORERS = ("flr", "direct", "legacy_repo")
EXPECTED_ERRORS = (ValueError, KeyError, FileNotFoundError, ModelNotAvailable, TemplateError, OSError)

LAYOUT_HELP = {
    "base": "base: M reads the whole conversation and the response, then each follow-up as the next user turn "
            "(the paper's setting).",
    "feedback": "feedback (for a feedback-tuned M, notebook 04): role-swapped as in the authors' code; M reads only "
                "the LAST user prompt and the response — earlier turns are dropped.",
}
SCORER_HELP = {
    "flr": "FLR: per category, mean log-prob of its positive follow-ups minus its negative ones; the reward is "
           "the mean over categories (the paper's definition).",
    "direct": "Direct: the mean log-prob of the response's own tokens; no follow-ups (the baseline FLR is "
              "compared with).",
    "legacy_repo": "legacy: the authors' released arithmetic (raw logits, not a likelihood), kept for comparison; "
                   "one full forward per follow-up, so it is slow: {cost}.",
}


# ----------------------------------------------------------------------------------------------------------
# 1. transcripts
# ----------------------------------------------------------------------------------------------------------

_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "system": "system"}
_ROLE_LINE = re.compile(r"^\s*(user|human|assistant|system)\s*:\s?(.*)$", re.IGNORECASE)


def split_transcript(text: str) -> tuple[list[dict], str | None]:
    """Typed or pasted text -> (context messages, trailing assistant reply or None).

    Lines starting with ``User:``/``Human:``, ``Assistant:`` or ``System:`` (any case) start a turn; other lines
    continue the previous turn (so HH-RLHF's blank-line-separated ``Human:``/``Assistant:`` transcripts paste as
    they are). Text without any role marker is one user turn. A trailing empty ``Assistant:`` (how HH prompts end)
    is dropped; a trailing non-empty assistant turn is returned separately as the reply.
    """
    text = (text or "").strip()
    if not text:
        raise ValueError("conversation is empty: type at least one 'User: ...' turn")
    lines = text.splitlines()
    if not any(_ROLE_LINE.match(line) for line in lines):
        return [{"role": "user", "content": text}], None
    msgs: list[dict] = []
    for n, line in enumerate(lines, 1):
        m = _ROLE_LINE.match(line)
        if m:
            msgs.append({"role": _ROLES[m.group(1).lower()], "content": m.group(2)})
        elif msgs:
            msgs[-1]["content"] += "\n" + line
        elif line.strip():
            raise ValueError(f"conversation line {n}: start the first turn with 'User:' (or 'Human:'), "
                             f"'Assistant:' or 'System:'")
    for m in msgs:
        m["content"] = m["content"].strip()
    if len(msgs) > 1 and msgs[-1]["role"] == "assistant" and not msgs[-1]["content"]:
        msgs.pop()  # HH prompts end with an empty "Assistant:" for the reply to come
    for i, m in enumerate(msgs):
        if not m["content"]:
            raise ValueError(f"conversation turn {i + 1} ({m['role']}) is empty")
    reply = msgs.pop()["content"] if msgs[-1]["role"] == "assistant" and len(msgs) > 1 else None
    return msgs, reply


def parse_transcript(text: str) -> list[dict]:
    """The context messages of a transcript (see :func:`split_transcript`); it must end with a user turn."""
    msgs, reply = split_transcript(text)
    if reply is not None:
        raise ValueError("conversation: the last turn is an Assistant reply; move it into response A (or B): the "
                         "conversation must end with the user turn that A and B answer")
    if msgs[-1]["role"] != "user":
        raise ValueError("conversation: the last turn must be 'User: ...' (responses A and B are the assistant's "
                         "reply)")
    return msgs


def format_transcript(messages: list[dict]) -> str:
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def conversation_html(context: list[dict], responses: dict) -> str:
    """A conversation and its candidate responses, for display."""
    turns = "".join(f"<p style='margin:2px 0'><b>{m['role'].capitalize()}:</b> {html.escape(m['content'])}</p>"
                    for m in context)
    cands = "".join(f"<p style='margin:2px 0;padding:3px;background:#f3f6fa'><b>response {html.escape(str(k))}:</b> "
                    f"{html.escape(v)}</p>" for k, v in responses.items())
    return f"<div class='flr-conversation' style='white-space:pre-wrap'>{turns}<hr style='margin:4px 0'>{cands}</div>"


# ----------------------------------------------------------------------------------------------------------
# 2. scoring (the same Scorer, engine and cache as every other caller)
# ----------------------------------------------------------------------------------------------------------

PHASES = ("main", "direct", "tokens")  # the order score_responses runs them in (length needs no forward pass)


def _token_view(tokenizer, ids, lps) -> dict:
    lps = [float(x) for x in lps]
    return {"tokens": [tokenizer.decode([t]) for t in ids], "logprobs": lps, "mean": float(np.mean(lps))}


def token_views(scorer: Scorer, conversations: list[list[dict]]) -> list[list[dict]]:
    """Per-token log-probs of every target of ``scorer`` (every follow-up of its bank; the response for Direct)
    after each conversation, in one engine pass: per conversation ``[{tokens, logprobs, mean}, ...]`` in bank
    order.

    These are true log-probs under the engine whatever the scorer (for ``legacy_repo`` too); their means are the
    per-follow-up values FLR averages."""
    encs = [scorer.encode(conv) for conv in conversations]
    lps = engine_logprobs(scorer.model, encs, scorer.pad_id, scorer.config.chunk_size)
    return [[_token_view(scorer.tokenizer, ids, lp) for ids, lp in zip(enc.targets, row)]
            for enc, row in zip(encs, lps)]


def score_responses(loaded, bank: Bank | str | None, context: list[dict], responses: dict, config: ScoreConfig,
                    followup: int | None = None, cache="auto", progress: bool = True, memo: dict | None = None,
                    human: dict | None = None, on_phase=None) -> dict:
    """Score each response (``{"A": text, "B": text}``) to ``context`` with ``config.scorer``, Direct and length.

    ``followup``: index (into the scorer's bank) of the follow-up the token view starts on (None: the one that
    moved A - B most). ``memo``: a dict that keeps :class:`Scorer` objects and token views between calls.
    ``human``: the human label of a benchmark example, e.g. ``{"A": "chosen", "B": "rejected", "source": ...}``.
    ``on_phase(phase)``: called before each of :data:`PHASES` starts (the explorer's progress line).
    Returns a plain dict: ``main``, ``direct`` and ``length`` hold the Scorer's outputs per label, ``items`` the
    bank's (category, polarity, text) rows in the order of ``followups``, ``views`` the stored per-token log-probs
    (``views["followups"][label][i]`` for follow-up i, ``views["response"][label]`` for the response itself).
    """
    labels = [k for k, v in responses.items() if v is not None]
    if not labels:
        raise ValueError("no response to score: type response A")
    for lab in labels:
        if not str(responses[lab]).strip():
            raise ValueError(f"response {lab} is empty: type the assistant reply to score")
    if not context or context[-1]["role"] != "user":
        raise ValueError("conversation: the last turn must be a user turn (responses answer it)")
    memo = {} if memo is None else memo
    phase = on_phase or (lambda name: None)

    def get(cfg: ScoreConfig, use_cache=cache) -> Scorer:
        bank_key = bank.hash if isinstance(bank, Bank) else str(bank)
        key = ("scorer", loaded.spec, loaded.adapter, id(loaded.model), bank_key, repr(cfg), str(use_cache))
        if key not in memo:
            memo[key] = Scorer(loaded, bank, cfg, cache=use_cache)
        return memo[key]

    def views(scorer: Scorer, convs: list[list[dict]]) -> list[list[dict]]:
        keys = [("views", id(scorer), repr(conv)) for conv in convs]
        todo = [i for i, k in enumerate(keys) if k not in memo]
        for i, v in zip(todo, token_views(scorer, [convs[i] for i in todo]) if todo else []):
            memo[keys[i]] = v
        return [memo[k] for k in keys]

    main = get(config)
    direct = get(replace(config, scorer="direct", categories=[]))
    length = get(replace(config, scorer="length", categories=[]), use_cache=None)
    convs = [list(context) + [{"role": "assistant", "content": responses[lab]}] for lab in labels]
    phase("main")
    out_main = main.score(convs, progress=progress, desc=SCORER_NAMES[config.scorer])
    phase("direct")
    out_direct = out_main if direct is main else direct.score(convs, progress=progress, desc="Direct")
    out_length = length.score(convs, progress=False)
    phase("tokens")
    has_bank = config.scorer not in NO_BANK
    items = [list(t) for t in main.bank.items()] if has_bank else []
    stored = {"response": {lab: v[0] for lab, v in zip(labels, views(direct, convs))},
              "followups": dict(zip(labels, views(main, convs))) if has_bank else {}}
    res = {
        "scorer": config.scorer, "layout": config.layout, "norm": config.norm,
        "labels": labels, "context": list(context), "responses": {lab: responses[lab] for lab in labels},
        "main": dict(zip(labels, out_main)), "direct": dict(zip(labels, out_direct)),
        "length": dict(zip(labels, out_length)), "items": items, "views": stored, "human": human,
        "provenance": main.provenance,
    }
    if followup is not None and items and not 0 <= int(followup) < len(items):
        raise ValueError(f"follow-up index {followup} is outside the bank (0..{len(items) - 1})")
    res["followup"] = int(followup) if followup is not None and items else default_choice(res)
    return res


# ----------------------------------------------------------------------------------------------------------
# 3. views: pure functions of a score_responses() result
# ----------------------------------------------------------------------------------------------------------

def fmt(x: float) -> str:
    """How every number is printed in the explorer (tests and the browser check read it back)."""
    return f"{x:.3f}"


def signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


def effect(x: float) -> str:
    """A follow-up's share of A - B (small: the reward averages over every follow-up), with 4 decimals."""
    return (f"{x:+.4f}" if abs(x) >= 1e-4 or x == 0 else f"{x:+.1e}").replace("-", "−")


def unit(res: dict) -> str:
    return ("raw logits (not log-probs)" if res["scorer"] == "legacy_repo"
            else "nats per token" if res["norm"] == "mean" else "nats (summed over tokens)")


def human_pick(res: dict) -> str | None:
    """The label the annotators chose (None for typed examples)."""
    h = res.get("human") or {}
    return next((lab for lab in res["labels"] if h.get(lab) == "chosen"), None)


def label_name(res: dict, lab: str) -> str:
    """'A (chosen by annotators)' / 'B (rejected)' for benchmark examples, plain 'A' / 'B' otherwise."""
    tag = (res.get("human") or {}).get(lab)
    return {"chosen": f"{lab} (chosen by annotators)", "rejected": f"{lab} (rejected)"}.get(tag, lab)


def _parts(res: dict) -> list[tuple[str, str]]:
    """(display name, result key) of the scorers shown side by side: the chosen one, Direct, length."""
    parts = [] if res["scorer"] in ("direct", "length") else [(SCORER_NAMES[res["scorer"]], "main")]
    return parts + [("Direct", "direct"), ("length", "length")]


def summary_frame(res: dict) -> pd.DataFrame:
    """One row per response: the chosen scorer's reward (with its positive/negative means), Direct, length."""
    rows = []
    for lab in res["labels"]:
        row = {"response": label_name(res, lab)}
        m = res["main"][lab]
        if res["scorer"] not in ("direct", "length"):
            row[SCORER_NAMES[res["scorer"]]] = m["reward"]
            row["mean positives"], row["mean negatives"] = m["pos"], m["neg"]
        row["Direct"] = res["direct"][lab]["reward"]
        row["length (tokens)"] = int(res["length"][lab]["reward"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("response")


def verdict_rows(res: dict) -> list[dict]:
    """One row per scorer shown (chosen scorer, Direct, length): rewards, A - B, the pick, agreement with humans.

    ``pick`` is None for a tie (or a single response); ``agrees`` is None without a human label or a pick."""
    if len(res["labels"]) != 2:
        return []
    a, b = res["labels"]
    truth = human_pick(res)
    rows = []
    for name, part in _parts(res):
        ra, rb = float(res[part][a]["reward"]), float(res[part][b]["reward"])
        pick = a if ra > rb else b if rb > ra else None
        rows.append({"scorer": name, "key": part, "A": ra, "B": rb, "diff": ra - rb, "pick": pick,
                     "agrees": None if truth is None or pick is None else pick == truth})
    return rows


def _margin(x: float) -> str:
    return fmt(x) if abs(x) >= 1e-3 else f"{abs(x):.1e}"


def verdict_lines(res: dict) -> list[str]:
    """The verdict in words: the human label (benchmark examples), then one line per scorer, then the length link."""
    rows = verdict_rows(res)
    if not rows:
        return []
    a, b = res["labels"]
    lines = []
    truth = human_pick(res)
    if truth is not None:
        src = (res.get("human") or {}).get("source")
        other = b if truth == a else a
        lines.append(f"Human label{f' ({src})' if src else ''}: the annotators chose {truth} and rejected {other}.")
    for r in rows:
        vs = "" if r["agrees"] is None else (" — agrees with the human label" if r["agrees"]
                                             else " — disagrees with the human label")
        if r["pick"] is None:
            lines.append(f"{r['scorer']}: tie ({fmt(r['A'])} each){vs}.")
        elif r["key"] == "length":
            lines.append(f"length (longer wins) prefers {r['pick']}, the longer response ({int(r['A'])} vs "
                         f"{int(r['B'])} tokens){vs}.")
        else:
            u = unit(res) if r["key"] == "main" else "nats per token"
            lines.append(f"{r['scorer']} prefers {r['pick']} by {_margin(abs(r['diff']))} {u}{vs}.")
    main, length = rows[0], rows[-1]
    if main["key"] != "length" and main["pick"] is not None and length["pick"] is not None:
        same = main["pick"] == length["pick"]
        lines.append(f"{main['scorer']} picks the {'longer' if same else 'shorter'} response"
                     + (" — the same choice as length alone." if same else ", against the length baseline."))
    return lines


def _likelier(nats: float) -> str:
    """A log-prob margin in words: 'x % more likely', or 'n× more likely' from 2× on."""
    p = 100 * math.expm1(nats)
    return (f"{p:.2g} % more likely" if p < 10 else f"{p:.0f} % more likely" if p < 100
            else f"{math.exp(nats):.3g}× more likely")


def reading_note(res: dict) -> str:
    """One line on how to read the numbers of the chosen scorer (sign, scale, what decides)."""
    rows = verdict_rows(res)
    main = rows[0] if rows else None
    if res["scorer"] == "legacy_repo":
        return ("How to read: legacy values are raw logits averaged over follow-up ids, not log-probabilities; only "
                "the sign of A − B means anything (higher wins).")
    if res["scorer"] in ("direct", "length"):
        s = ("How to read: Direct is the mean log-probability of the response's tokens — always negative; closer "
             "to 0 means M finds the response's tokens more predictable.")
        if main is not None:
            s += (f" A margin of {_margin(abs(main['diff']))} nats means {main['pick'] or 'either'}'s tokens are "
                  f"{_likelier(abs(main['diff']))}, per token.")
        return s
    s = ("How to read: a reward is the log-probability of positive follow-ups minus negative ones (nats per token); "
         "on its own it depends on the bank's wording — higher is better and only A − B decides.")
    if main is not None:
        m = abs(main["diff"])
        s += (f" A margin of {_margin(m)} nats means that after {main['pick'] or 'either'} the positive follow-ups "
              f"are {_likelier(m)} per token than after the other response, relative to the negative "
              f"ones.")
    return s


_CSS = ("<style>.flr-table table{border-collapse:collapse;margin:4px 0}.flr-table th,.flr-table td"
        "{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}.flr-table th,.flr-moves-table td:nth-child(2)"
        "{white-space:nowrap}.flr-table td.txt,.flr-table th.txt"
        "{text-align:left}.flr-stale{opacity:.4;filter:grayscale(1)}.flr-ok{color:#1b6e20}.flr-bad{color:#b00020}"
        ".flr-verdict li{margin:2px 0}.flr-note{color:#555;font-size:90%}</style>")


def _line_html(line: str) -> str:
    cls = "flr-bad" if "disagrees with the human" in line else "flr-ok" if "agrees with the human" in line else ""
    return f"<li class='{cls}'>{html.escape(line)}</li>"


def verdict_html(res: dict) -> str:
    """The verdict first: who wins under each scorer (vs the human label), then the numbers and how to read them."""
    rows = verdict_rows(res)
    if rows:
        first = rows[0]
        head = (f"{first['scorer']}: tie" if first["pick"] is None
                else f"{first['scorer']} prefers {label_name(res, first['pick'])}")
        if first["agrees"] is not None:
            head += " — agrees with the annotators" if first["agrees"] else " — disagrees with the annotators"
    else:
        head = f"{SCORER_NAMES[res['scorer']]} reward of response A (add response B to compare)"
    agrees = rows[0]["agrees"] if rows else None
    tone = "" if agrees is None else "flr-ok" if agrees else "flr-bad"
    table = summary_frame(res).to_html(float_format=fmt, na_rep="", classes="flr-summary", border=0,
                                       index_names=False)
    lines = "".join(_line_html(v) for v in verdict_lines(res))
    prov = res["provenance"]
    bank = (f" · bank {html.escape(str(prov.get('bank', '-')))} ({prov.get('bank_size', 0)} follow-ups)"
            if res["items"] else "")
    return (f"{_CSS}<div class='flr-explorer-summary flr-table flr-verdict'>"
            f"<h3 class='{tone}' style='margin:4px 0'>{html.escape(head)}</h3>"
            f"<ul style='margin:2px 0'>{lines}</ul>{table}"
            f"<p class='flr-note'>{html.escape(reading_note(res))}</p>"
            f"<small>model {html.escape(str(prov.get('model')))} · layout {res['layout']}{bank} · "
            f"unit: {unit(res)}</small></div>")


summary_html = verdict_html  # the name older notebooks used


def category_frame(res: dict) -> pd.DataFrame:
    """Per-category rewards R_k (rows: categories; columns: responses, and A - B with two responses)."""
    if not res["items"]:
        return pd.DataFrame()
    df = pd.DataFrame({lab: res["main"][lab]["categories"] for lab in res["labels"]})
    df.index.name = "category"
    if len(res["labels"]) == 2:
        a, b = res["labels"]
        df[f"{a} − {b}"] = df[a] - df[b]
    df.loc["reward (mean)"] = df.mean()
    return df


def category_html(res: dict) -> str:
    df = category_frame(res)
    if df.empty:
        return f"<i>{SCORER_NAMES[res['scorer']]} has no categories.</i>"
    return (f"{_CSS}<div class='flr-table'><b>Per-category reward R<sub>k</sub> = mean(positives) − "
            f"mean(negatives)</b>{df.to_html(float_format=fmt, classes='flr-categories', border=0)}</div>")


def category_figure(res: dict):
    """Horizontal bars of R_k(A) - R_k(B) per category and their mean (the reward difference); R_k(A) alone
    with one response. Bars right of 0 favour A."""
    from matplotlib.figure import Figure

    df = category_frame(res)
    fig = Figure(figsize=(7.5, 0.42 * max(len(df), 2) + 1.5), layout="constrained")
    ax = fig.subplots()
    if df.empty:
        ax.text(0.5, 0.5, f"{SCORER_NAMES[res['scorer']]} uses no follow-ups", ha="center", va="center")
        ax.set_axis_off()
        return fig
    two = len(res["labels"]) == 2
    col = df.columns[-1]
    vals = df[col].to_numpy()[::-1]
    names = list(df.index)[::-1]
    colors = ["#0072B2" if v >= 0 else "#D55E00" for v in vals]
    bars = ax.barh(names, vals, color=colors, height=0.62)
    bars[0].set_edgecolor("black")
    ax.axvline(0, color="0.3", lw=0.8)
    lim = float(np.max(np.abs(vals))) or 1.0
    ax.set_xlim(-1.35 * lim, 1.35 * lim)
    for y, v in enumerate(vals):
        ax.text(v + (0.03 if v >= 0 else -0.03) * lim, y, signed(v), va="center", ha="left" if v >= 0 else "right",
                fontsize=10)
    ax.get_yticklabels()[0].set_fontweight("bold")
    ax.tick_params(labelsize=10)
    ax.grid(axis="x", alpha=0.3)
    if two:
        a, b = res["labels"]
        ax.set_xlabel(f"R_k({a}) − R_k({b})  ({unit(res)})", fontsize=10)
        ax.set_title(f"← favours {label_name(res, b)}      favours {label_name(res, a)} →", fontsize=11)
    else:
        ax.set_xlabel(f"R_k({res['labels'][0]})  ({unit(res)})", fontsize=10)
        ax.set_title("per-category reward", fontsize=11)
    return fig


def followup_moves(res: dict) -> pd.DataFrame:
    """One row per follow-up: its value after A and after B, A - B, and its ``effect``: its share of
    reward(A) - reward(B). A positive follow-up that became likelier after A, or a negative one that became less
    likely, pushes towards A. The effects sum to reward(A) - reward(B) exactly (the reward is a mean of means)."""
    cols = ["index", "category", "polarity", "followup", "A", "B", "A − B", "effect", "favours"]
    if not res["items"] or len(res["labels"]) != 2:
        return pd.DataFrame(columns=cols)
    a, b = res["labels"]
    items = res["items"]
    n_cat = len({c for c, _, _ in items})
    size = pd.Series([(c, p) for c, p, _ in items]).value_counts().to_dict()
    rows = []
    for i, (cat, pol, text) in enumerate(items):
        va, vb = res["main"][a]["followups"][i], res["main"][b]["followups"][i]
        sign = 1.0 if pol == "positive" else -1.0
        effect = sign * (va - vb) / (n_cat * size[(cat, pol)])
        rows.append({"index": i, "category": cat, "polarity": pol, "followup": text, "A": va, "B": vb,
                     "A − B": va - vb, "effect": effect, "favours": a if effect > 0 else b if effect < 0 else "–"})
    return pd.DataFrame(rows, columns=cols)


MOVE_SORTS = {"largest effect": "size of effect", "most for A": "effect towards A", "most for B": "effect towards B",
              "bank order": "bank order"}


def sorted_moves(res: dict, sort: str = "largest effect", n: int | None = 10) -> pd.DataFrame:
    df = followup_moves(res)
    if df.empty:
        return df
    if sort == "largest effect":
        df = df.reindex(df["effect"].abs().sort_values(ascending=False, kind="stable").index)
    elif sort == "most for A":
        df = df.sort_values("effect", ascending=False, kind="stable")
    elif sort == "most for B":
        df = df.sort_values("effect", ascending=True, kind="stable")
    elif sort != "bank order":
        raise ValueError(f"sort must be one of {list(MOVE_SORTS)}, got {sort!r}")
    return df if n is None else df.head(int(n))


def moves_html(res: dict, sort: str = "largest effect", n: int | None = 10) -> str:
    """The follow-ups that moved A - B most, as a table (text, value after A and B, A - B, effect)."""
    if not res["items"]:
        return f"<i>{SCORER_NAMES[res['scorer']]} uses no follow-ups.</i>"
    if len(res["labels"]) != 2:
        return "<i>Add response B to see which follow-ups moved between A and B.</i>"
    df = sorted_moves(res, sort, n)
    a, b = res["labels"]
    total = float(res["main"][a]["reward"] - res["main"][b]["reward"])
    body = "".join(
        f"<tr><td>{r['index']}</td><td class='txt'>{html.escape(r['category'])} "
        f"{'+' if r['polarity'] == 'positive' else '−'}</td><td class='txt'>{html.escape(r['followup'])}</td>"
        f"<td>{fmt(r['A'])}</td><td>{fmt(r['B'])}</td><td>{signed(r['A − B'])}</td><td><b>{effect(r['effect'])}"
        f"</b></td><td>{r['favours']}</td></tr>" for _, r in df.iterrows())
    shown = "all" if n is None or n >= len(res["items"]) else f"{len(df)} of {len(res['items'])}"
    return (f"{_CSS}<div class='flr-table flr-moves'><b>Follow-ups that moved most</b> ({shown}, sorted by "
            f"{MOVE_SORTS.get(sort, sort)}). <span class='flr-note'>value = mean log-prob of the follow-up after "
            f"each response; effect = its share of reward({a}) − reward({b}) = {signed(total)} (all effects sum to "
            f"it; a positive follow-up likelier after {a}, or a negative one less likely, pushes towards {a}).</span>"
            f"<table class='flr-moves-table'><thead><tr><th>#</th><th class='txt'>category</th>"
            f"<th class='txt'>follow-up</th><th>after {a}</th><th>after {b}</th><th>{a} − {b}</th><th>effect</th>"
            f"<th>favours</th></tr></thead><tbody>{body}</tbody></table></div>")


def followup_figure(res: dict):
    """Every follow-up's value, grouped by category (positives left, negatives right of each group): A - B per
    follow-up with two responses (> 0: likelier after A), the value itself with one."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2), layout="constrained")
    ax = fig.subplots()
    if not res["items"]:
        ax.text(0.5, 0.5, f"scorer {res['scorer']!r} uses no follow-ups", ha="center", va="center")
        ax.set_axis_off()
        return fig
    two = len(res["labels"]) == 2
    lab = res["labels"][0]
    vals = (followup_moves(res)["A − B"].to_numpy() if two else np.asarray(res["main"][lab]["followups"]))
    pols = [p for _, p, _ in res["items"]]
    cats = [c for c, _, _ in res["items"]]
    ax.bar(np.arange(len(vals)), vals, width=0.85,
           color=["#0072B2" if p == "positive" else "#D55E00" for p in pols])
    bounds = [0] + [k for k in range(1, len(cats)) if cats[k] != cats[k - 1]] + [len(cats)]
    for x in bounds[1:-1]:
        ax.axvline(x - 0.5, color="0.5", lw=0.8)
    ax.set_xticks([(bounds[k] + bounds[k + 1] - 1) / 2 for k in range(len(bounds) - 1)],
                  [cats[bounds[k]] for k in range(len(bounds) - 1)], fontsize=11)
    ax.set_xlim(-0.6, len(vals) - 0.4)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.grid(axis="y", alpha=0.3)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#0072B2", label="positive follow-up"),
                       Patch(color="#D55E00", label="negative follow-up")], fontsize=10, loc="upper right")
    if two:
        a, b = res["labels"]
        ax.set_ylabel(f"lp(f | {a}) − lp(f | {b})", fontsize=11)
        ax.set_title(f"Each follow-up's log-prob after {label_name(res, a)} minus after {label_name(res, b)}: "
                     f"blue bars above 0 and orange bars below 0 favour {a}", fontsize=12, loc="left")
    else:
        ax.set_ylabel("mean log-prob (nats per token)", fontsize=11)
        ax.set_title(f"Each follow-up's mean log-prob after response {lab}", fontsize=12, loc="left")
    return fig


def category_heatmap(frame: pd.DataFrame, title: str = "Per-category reward R_k", ax=None):
    """Heatmap of a (rows x categories) table of rewards, centred at 0; returns the figure."""
    import seaborn as sns
    from matplotlib.figure import Figure

    fig = None
    if ax is None:
        fig = Figure(figsize=(1.3 * frame.shape[1] + 2.5, 0.45 * frame.shape[0] + 1.8), layout="constrained")
        ax = fig.subplots()
    lim = float(np.nanmax(np.abs(frame.to_numpy()))) or 1.0
    sns.heatmap(frame, ax=ax, cmap="vlag_r", center=0, vmin=-lim, vmax=lim, annot=True, fmt=".3f",
                cbar_kws={"label": "R_k (nats per token)"})
    ax.set_title(title)
    ax.set_ylabel("")
    ax.tick_params(axis="y", rotation=0)
    ax.tick_params(axis="x", rotation=30)
    return fig or ax.figure


def _token_color(v: float, lo: float, hi: float) -> str:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    t = 0.0 if hi == lo else (min(max(v, lo), hi) - lo) / (hi - lo)
    return to_hex(colormaps["RdYlGn"](0.1 + 0.8 * t))


def token_html(view: dict, title: str = "", lo: float | None = None, hi: float = 0.0) -> str:
    """Token strings coloured by log-prob (red = unlikely, green = likely), the value under each token."""
    lps = view["logprobs"]
    lo = min(-10.0, min(lps)) if lo is None else lo
    cells = []
    for tok, v in zip(view["tokens"], lps):
        shown = html.escape(tok.replace("\n", "↵").replace(" ", "·")) or "∅"
        cells.append(f"<span title='log p = {v:.4f}' style='display:inline-block;margin:1px;padding:1px 3px;"
                     f"border-radius:3px;background:{_token_color(v, lo, hi)};text-align:center;"
                     f"font-family:monospace'>{shown}<br><small>{v:.2f}</small></span>")
    head = f"<b>{html.escape(title)}</b> " if title else ""
    return (f"<div class='flr-tokens'>{head}<small>mean log p = {fmt(view['mean'])} over {len(lps)} tokens "
            f"(colour scale {lo:.0f} … {hi:.0f} nats)</small><br>{''.join(cells)}</div>")


def default_choice(res: dict):
    """The token view shown first: the follow-up with the largest effect on A - B (or the first one; the
    response itself for scorers without follow-ups)."""
    if not res["items"]:
        return "response"
    moves = sorted_moves(res, "largest effect", 1)
    return int(moves["index"].iloc[0]) if not moves.empty else 0


def token_choices(res: dict) -> list[tuple[str, object]]:
    """(label, value) options of the token-view picker: the response itself (Direct), then every follow-up of the
    result, labelled by category, polarity and its number within them (stable whatever categories are chosen)."""
    opts = [("the response itself (Direct: log-prob of each response token)", "response")]
    seen: dict = {}
    for i, (cat, pol, text) in enumerate(res["items"]):
        k = seen[(cat, pol)] = seen.get((cat, pol), 0) + 1
        opts.append((f"{cat} {'+' if pol == 'positive' else '−'}{k}: {text}", i))
    return opts


def tokens_html(res: dict, choice=None) -> str:
    """The per-token view of one follow-up (index) or of the response (``"response"``), for every response, from
    the stored values (nothing is scored here)."""
    choice = res["followup"] if choice is None else choice
    labels = res["labels"]
    if choice == "response":
        views = {lab: res["views"]["response"][lab] for lab in labels}
        parts = ["<p>Direct reads the response itself: the log-prob of each of its tokens (its mean is the Direct "
                 "reward).</p>"]
        titles = {lab: f"response {label_name(res, lab)}" for lab in labels}
    else:
        i = int(choice)
        cat, pol, text = res["items"][i]
        views = {lab: res["views"]["followups"][lab][i] for lab in labels}
        name = next(k for k, v in token_choices(res) if v == i).split(":")[0]
        diff = ""
        if len(labels) == 2:
            a, b = labels
            d = views[a]["mean"] - views[b]["mean"]
            towards = (a if (d > 0) == (pol == "positive") else b) if d else "neither"
            diff = (f" {a} − {b} = {signed(d)} ({pol} follow-up: this favours {towards}).")
        legacy = (" These are true log-probs (the engine's); the legacy scorer's own values are raw logits."
                  if res["scorer"] == "legacy_repo" else "")
        parts = [f"<p>Follow-up <b>{html.escape(name)}</b> (#{i}): <i>“{html.escape(text)}”</i> — the log-prob "
                 f"of each of its tokens as the next user turn after each response; lp(f) is their mean.{diff}"
                 f"{legacy}</p>"]
        titles = {lab: f"after response {label_name(res, lab)}" for lab in labels}
    lo = min(-10.0, *(min(v["logprobs"]) for v in views.values()))
    parts += [token_html(views[lab], titles[lab], lo=lo) for lab in labels]
    return f"<div class='flr-token-view'>{''.join(parts)}</div>"


def explain(res: dict, top: int = 3) -> str:
    """The verdict and its reasons in plain sentences (per category, per follow-up, length), from the numbers."""
    out = list(verdict_lines(res))
    if len(res["labels"]) != 2 or not res["items"]:
        return "\n".join(out)
    a, b = res["labels"]
    name = SCORER_NAMES[res["scorer"]]
    cats = category_frame(res).drop(index="reward (mean)")[f"{a} − {b}"]
    for_a = cats[cats > 0].sort_values(ascending=False)
    for_b = cats[cats < 0].sort_values()

    def listing(s):
        return ", ".join(f"{k} ({signed(v)})" for k, v in s.items()) or "none"

    out.append(f"Per category, R_k({a}) − R_k({b}): for {a}: {listing(for_a)}; for {b}: {listing(for_b)}.")
    moves = sorted_moves(res, "largest effect", None)
    n_a, n_b = int((moves["effect"] > 0).sum()), int((moves["effect"] < 0).sum())
    sum_a, sum_b = moves["effect"].clip(lower=0).sum(), moves["effect"].clip(upper=0).sum()
    out.append(f"Per follow-up: {n_a} of the {len(moves)} push towards {a} (their effects sum to {signed(sum_a)}), "
               f"{n_b} towards {b} ({signed(sum_b)}).")
    moves = moves.head(top)
    out.append(f"The follow-ups that moved {name}'s A − B most:")
    for _, r in moves.iterrows():
        out.append(f"  “{r['followup']}” ({r['category']}, {r['polarity']}): {fmt(r['A'])} after {a}, "
                   f"{fmt(r['B'])} after {b}, effect {effect(r['effect'])} → {r['favours']}")
    la, lb = (int(res["length"][x]["reward"]) for x in (a, b))
    out.append(f"Length: {a} has {la} tokens, {b} has {lb}.")
    return "\n".join(out)


def compare_pairs(pairs: list[dict], scorers: dict, limits: dict | None = None, progress: bool = True) -> pd.DataFrame:
    """One row per pairwise record: chosen and rejected reward and their margin under each named Scorer.

    ``limits[name] = n`` scores only the first n pairs with that scorer (the others get NaN): for ``legacy_repo``,
    which costs one full forward per follow-up.
    """
    rows = [{"id": p["id"]} for p in pairs]
    for name, scorer in scorers.items():
        n = len(pairs) if not limits or limits.get(name) is None else min(int(limits[name]), len(pairs))
        out = scorer.score_pairs(pairs[:n], progress=progress, desc=name) if n else []
        for i, row in enumerate(rows):
            c, r = (out[i]["chosen"], out[i]["rejected"]) if i < n else (np.nan, np.nan)
            row.update({f"{name} chosen": c, f"{name} rejected": r, f"{name} margin": c - r})
    return pd.DataFrame(rows).set_index("id")


def pair_category_frame(scorer: Scorer, pairs: list[dict], progress: bool = False) -> pd.DataFrame:
    """R_k(chosen) - R_k(rejected) per pair (rows: pair ids; columns: categories) from an FLR Scorer."""
    out = scorer.score_pairs(pairs, progress=progress)
    return pd.DataFrame([{k: o["chosen_detail"]["categories"][k] - o["rejected_detail"]["categories"][k]
                          for k in scorer.bank.categories} for o in out], index=[p["id"] for p in pairs])


def figure_png(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def figure_html(fig, css_class: str = "flr-chart", dpi: int = 100) -> str:
    """A figure as an inline <img> (nothing at all before there is a figure: no broken-image icon)."""
    data = base64.b64encode(figure_png(fig, dpi)).decode()
    return f"<img class='{css_class}' style='max-width:100%' src='data:image/png;base64,{data}'>"


def render_static(res: dict, sort: str = "largest effect", n: int = 10) -> None:
    """Display the explorer's views as ordinary notebook outputs (papermill / no widget front end)."""
    from IPython.display import HTML, Image, display

    display(HTML(verdict_html(res)))
    if res["items"]:
        display(Image(figure_png(category_figure(res))))
    display(HTML(moves_html(res, sort, n)))
    display(HTML(tokens_html(res)))


# ----------------------------------------------------------------------------------------------------------
# 4. inputs, staleness, box sizes, estimates (pure)
# ----------------------------------------------------------------------------------------------------------

INPUT_NAMES = ("conversation", "response A", "response B", "model", "adapter", "bank", "categories", "layout",
               "scorer")


def snapshot(ui: "Explorer") -> dict:
    """The inputs a result depends on (the token-view picker and the table's sort are views, not inputs)."""
    return {"conversation": ui.conversation.value, "response A": ui.response_a.value,
            "response B": ui.response_b.value.strip() and ui.response_b.value, "model": ui.model.value.strip(),
            "adapter": ui.adapter.value.strip(), "bank": ui.bank.value.strip() or "paper",
            "categories": tuple(ui.categories.value), "layout": ui.layout.value, "scorer": ui.scorer.value}


def changed_inputs(scored: dict | None, now: dict) -> list[str]:
    """Names of the inputs that differ between the snapshot a result was scored with and the current one."""
    if scored is None:
        return []
    return [k for k in INPUT_NAMES if scored.get(k) != now.get(k)]


def stale_message(changed: list[str]) -> str:
    return f"inputs changed ({', '.join(changed)}) — press Score; the results below are for the previous inputs"


def box_rows(text: str, chars_per_line: int = 75, lo: int = 3, hi: int = 30) -> int:
    """Rows a text box needs to show ``text`` whole (wrapped lines counted), plus one, within [lo, hi]."""
    lines = (text or "").split("\n")
    need = sum(max(1, math.ceil(len(line) / chars_per_line)) for line in lines) + 1
    return max(lo, min(hi, need))


# seconds per unit on the bundled SmolLM2-135M, 2 CPU cores (README benchmark: 75.3 s for 20 conversations x 120
# follow-ups; legacy_repo 40-120 s per response over 120 follow-ups). Units: main and tokens = responses x
# follow-ups; direct = responses. Scaled by parameter count; replaced by what this session measures.
DEFAULT_RATES = {"flr": 0.03, "legacy_repo": 0.7, "direct": 0.4, "tokens": 0.03, "length": 0.0}
REF_PARAMS = 135e6


def phase_units(scorer: str, n_responses: int, n_followups: int) -> dict:
    """Work of each phase in the units of :data:`DEFAULT_RATES`."""
    per = n_followups if scorer not in NO_BANK else 1
    return {"main": n_responses * per, "direct": 0 if scorer == "direct" else n_responses,
            "tokens": n_responses * (per + 1 if scorer not in NO_BANK else 1)}


def estimate_seconds(scorer: str, n_responses: int, n_followups: int, rates: dict, scale: float = 1.0) -> dict:
    """Estimated seconds per phase (``main``, ``direct``, ``tokens``) and ``total``; rates missing from ``rates``
    fall back to :data:`DEFAULT_RATES` times ``scale``."""
    units = phase_units(scorer, n_responses, n_followups)
    if "flr" in rates:  # what this machine measured for FLR scales the guesses for the others
        scale = rates["flr"] / DEFAULT_RATES["flr"]
    keys = {"main": scorer if scorer != "direct" else "direct", "direct": "direct", "tokens": "tokens"}
    est = {p: units[p] * rates.get(keys[p], DEFAULT_RATES.get(keys[p], 0.03) * scale) for p in units}
    est["total"] = sum(est.values())
    return est


def _duration(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


# ----------------------------------------------------------------------------------------------------------
# 5. front ends
# ----------------------------------------------------------------------------------------------------------

def _error_html(msg: str, detail: str = "") -> str:
    more = f"<details><summary>details</summary><pre>{html.escape(detail)}</pre></details>" if detail else ""
    return (f"<div class='flr-error' style='color:#8b0000;background:#fdecea;padding:6px;border-radius:4px'>"
            f"<b>Error:</b> {html.escape(msg)}{more}</div>")


def bank_error(value: str, exc: Exception) -> str:
    """A bank field that cannot be read, in plain words."""
    if isinstance(exc, IsADirectoryError) or (isinstance(exc, BadFile) and "is a directory" in str(exc)):
        return f"bank: {value!r} is a folder; give 'paper' or the path of a JSON/YAML bank file"
    if isinstance(exc, FileNotFoundError):
        if value in ("", "paper"):
            return f"bank: {exc}"
        return (f"bank: there is no file {value!r}; type 'paper' for the paper's bank, or the path of a JSON/YAML "
                f"bank file")
    return f"bank: {value!r} is not a valid bank: {exc}"


PHASE_NAMES = {"main": None, "direct": "Direct + length", "tokens": "tokens"}


class Explorer:
    """ipywidgets front end. Every input is a public widget attribute; ``score_button.click()`` scores.

    ``examples``: pairwise records ``{id, benchmark, messages, chosen, rejected}`` (or ``{messages, response}``)
    offered in the example picker; with ``chosen``/``rejected``, A is the annotators' chosen response and B the
    rejected one, and the verdict says whether each scorer agrees. ``loaded``: an already loaded model (its spec
    fills the model field) so the notebook's model is reused; ``memo``: the dict given to :func:`score_responses`
    elsewhere in the notebook, so that its Scorers and token views are reused. After a click, ``result`` holds the
    :func:`score_responses` dict, ``figures`` the matplotlib figures shown, ``last_error`` the message of a failed
    click (also shown in ``error``) and ``score_calls`` counts the scoring runs. Any change of an input greys the
    results out until Score is pressed again; the token view and the table's sort re-render from ``result``.
    """

    def __init__(self, examples: list[dict] | None = None, model: str = BUNDLED, adapter: str | None = None,
                 bank: Bank | str = "paper", categories: list | None = None, layout: str = "base",
                 scorer: str = "flr", loaded=None, dtype: str = "auto", device: str = "auto", cache="auto",
                 batch_size: int = 4, chunk_size: int = 128, memo: dict | None = None):
        import ipywidgets as w

        self.examples = list(examples or [])
        self.dtype, self.device, self.cache = dtype, device, cache
        self.batch_size, self.chunk_size = batch_size, chunk_size
        self._models = {}
        if loaded is not None:
            model, adapter = loaded.spec, loaded.adapter
            self._models[(loaded.spec, loaded.adapter or "")] = loaded
        self._bank_obj = bank if isinstance(bank, Bank) else None
        self._memo: dict = {} if memo is None else memo
        self._rates: dict = {}  # (model spec, rate key) -> measured seconds per unit
        self.result: dict | None = None
        self.figures: dict = {}
        self.last_error: str | None = None
        self.score_calls = 0
        self._scored_inputs: dict | None = None
        self._error_from: str | None = None  # "bank" while the shown error is the bank field's
        self._loading = False  # True while an example fills the fields
        self._busy = False
        self._done_text = ""
        self._moved_from = None  # the conversation as it was left after a pasted reply moved into A

        label = {"description_width": "100px"}
        ex_opts = [("(type your own)", -1)] + [(self._example_label(i, ex), i) for i, ex in enumerate(self.examples)]
        self.example = w.Dropdown(description="example", options=ex_opts, value=0 if self.examples else -1,
                                  layout=w.Layout(width="98%"), style=label)
        self.example_note = w.HTML("")
        # synced when the box is left (a pasted transcript is read whole, not keystroke by keystroke)
        self.conversation = w.Textarea(description="conversation", rows=5, layout=w.Layout(width="98%"),
                                       continuous_update=False,
                                       placeholder="User: ...\nAssistant: ...\nUser: ... (ends with a user turn; HH "
                                                   "'Human:/Assistant:' transcripts paste as they are)",
                                       style=label)
        self.conversation_note = w.HTML("")
        self.response_a = w.Textarea(description="response A", rows=3, layout=w.Layout(width="98%"), style=label)
        self.response_b = w.Textarea(description="response B", rows=3, layout=w.Layout(width="98%"),
                                     placeholder="optional", style=label)
        self.model = w.Text(description="model", value=model, continuous_update=False, style=label,
                            layout=w.Layout(width="98%"),
                            placeholder="bundled:smollm2-135m-instruct, an HF id or a folder")
        self.adapter = w.Text(description="adapter", value=adapter or "", placeholder="optional LoRA folder",
                              continuous_update=False, style=label, layout=w.Layout(width="98%"))
        self.bank = w.Text(description="bank", value=bank.name if isinstance(bank, Bank) else str(bank or "paper"),
                           continuous_update=False, placeholder="paper, or a JSON/YAML bank file", style=label,
                           layout=w.Layout(width="98%"))
        self.categories = w.SelectMultiple(description="categories", rows=6, style=label)
        self.layout = w.Dropdown(description="layout", options=["base", "feedback"], value=layout, style=label)
        self.scorer = w.Dropdown(description="scorer", options=[(SCORER_NAMES[s], s) for s in SCORERS],
                                 value=scorer, style=label)
        self.setup_help = w.HTML("")
        self.score_button = w.Button(description="Score", button_style="primary", icon="play",
                                     tooltip="score A and B with the chosen model, bank and scorer")
        self.status = w.HTML("<i>Pick or type a conversation and responses, then press Score.</i>")
        self.progress_bar = w.FloatProgress(value=0, min=0, max=1, layout=w.Layout(width="40%", display="none"))
        self.error = w.HTML("")
        self.stale_banner = w.HTML("")
        self.summary = w.HTML("")
        self.category_chart = w.HTML("")
        self.moves_sort = w.Dropdown(description="sort by", options=list(MOVE_SORTS), value="largest effect",
                                     style={"description_width": "60px"})
        self.moves_count = w.Dropdown(description="show", options=[("10", 10), ("25", 25), ("all", None)], value=10,
                                      style={"description_width": "40px"}, layout=w.Layout(width="130px"))
        self.moves = w.HTML("")
        self.followup = w.Dropdown(description="token view", layout=w.Layout(width="98%"), style=label,
                                   disabled=True)
        self.tokens = w.HTML("")
        self.category_table = w.HTML("")  # the per-category numbers under the chart

        self.example.observe(lambda ch: self.load_example(ch["new"]), names="value")
        for box in (self.conversation, self.response_a, self.response_b):
            box.observe(self._typed, names="value")
        self.bank.observe(lambda ch: self._refresh_bank(), names="value")
        for field in (self.model, self.adapter, self.categories, self.layout, self.scorer):
            field.observe(self._inputs_changed, names="value")
        for field in (self.layout, self.scorer, self.categories):
            field.observe(lambda ch: self._refresh_help(), names="value")
        self.followup.observe(lambda ch: self._render_tokens(), names="value")
        for field in (self.moves_sort, self.moves_count):
            field.observe(lambda ch: self._render_moves(), names="value")
        self.score_button.on_click(self.on_score)
        self._refresh_bank(categories)
        self.load_example(self.example.value)
        self._refresh_help()

        setup = w.VBox([self.model, self.adapter, self.bank, w.HBox([self.layout, self.scorer]), self.setup_help,
                        self.categories])
        inputs = w.Tab(children=[w.VBox([self.example, self.example_note, self.conversation, self.conversation_note,
                                         self.response_a, self.response_b]), setup])
        inputs.set_title(0, "conversation")
        inputs.set_title(1, "model · bank · scorer")
        self.results = w.VBox([self.summary, self.category_chart, self.category_table,
                               w.HBox([self.moves_sort, self.moves_count]), self.moves, self.followup, self.tokens],
                              layout=w.Layout(width="100%", display="none"))
        self.results.add_class("flr-results")
        self.widget = w.VBox([w.HTML(_CSS), inputs, w.HBox([self.score_button, self.status]), self.progress_bar,
                              self.error, self.stale_banner, self.results], layout=w.Layout(width="100%"))
        self.widget.add_class("flr-explorer")
        for widget, name in ((self.status, "flr-status"), (self.score_button, "flr-score"),
                             (self.followup, "flr-token-picker"), (self.tokens, "flr-token-panel"),
                             (self.moves_sort, "flr-moves-sort"), (self.conversation, "flr-conversation-box"),
                             (self.model, "flr-model-field"), (self.setup_help, "flr-setup-help")):
            widget.add_class(name)  # stable handles for the browser check

    def _repr_mimebundle_(self, **kw):
        return self.widget._repr_mimebundle_(**kw)

    # -- inputs ------------------------------------------------------------------------------------------
    @staticmethod
    def _example_label(i: int, ex: dict) -> str:
        first = next((m["content"] for m in ex.get("messages", []) if m["role"] == "user"), "")
        first = " ".join(first.split())
        return f"{ex.get('benchmark', 'example')}/{ex.get('id', i)}: {first[:70]}"

    def _example_fields(self, i: int) -> tuple:
        ex = self.examples[i]
        return format_transcript(ex["messages"]), ex.get("chosen", ex.get("response", "")), ex.get("rejected", "")

    def human_label(self) -> dict | None:
        """The annotators' label when the fields hold a benchmark example unchanged (None otherwise)."""
        i = self.example.value
        if i is None or i < 0 or "chosen" not in self.examples[i] or "rejected" not in self.examples[i]:
            return None
        if (self.conversation.value, self.response_a.value, self.response_b.value) != self._example_fields(i):
            return None
        ex = self.examples[i]
        return {"A": "chosen", "B": "rejected", "source": f"{ex.get('benchmark', 'example')}/{ex.get('id', i)}"}

    def load_example(self, i: int) -> None:
        """Fill the conversation and responses from example ``i`` (-1: leave the fields for typing)."""
        if i is None or i < 0:
            self.example_note.value = ""
            return
        self._loading = True
        try:
            self.conversation.value, self.response_a.value, self.response_b.value = self._example_fields(i)
        finally:
            self._loading = False
        ex = self.examples[i]
        self.example_note.value = (
            f"<span class='flr-note'>From {html.escape(str(ex.get('benchmark', 'the examples')))}: <b>A is the "
            f"response the annotators chose, B the one they rejected</b>. Editing a field turns this into your own "
            f"example (no human label).</span>" if "rejected" in ex else "")
        self._typed()

    def _typed(self, _change=None) -> None:
        """A text box changed: grow the boxes, check the transcript, leave the example if it no longer matches."""
        for box, lo, hi in ((self.conversation, 5, 45), (self.response_a, 3, 30), (self.response_b, 3, 30)):
            box.rows = box_rows(box.value, lo=lo, hi=hi)  # the longest of notebook 02's 40 HH examples needs 39
        self._check_conversation()
        i = self.example.value
        if not self._loading and i is not None and i >= 0 and \
                (self.conversation.value, self.response_a.value, self.response_b.value) != self._example_fields(i):
            self.example.value = -1
        if not self._loading:
            self._inputs_changed()

    def _check_conversation(self) -> None:
        """Notes under the conversation box: a pasted reply moved into A, the feedback layout's dropped turns."""
        try:
            ctx, reply = split_transcript(self.conversation.value)
        except ValueError:
            self.conversation_note.value = ""
            return
        if reply is not None and not self.response_a.value.strip():
            self._moved_from = format_transcript(ctx)
            self._loading = True
            try:  # a pasted transcript that ends with the assistant's reply: that reply is response A
                self.conversation.value = self._moved_from
                self.response_a.value = reply
            finally:
                self._loading = False
        note = ("The transcript ended with an Assistant reply: it was moved into response A. "
                if self.conversation.value == self._moved_from else "")
        users = sum(m["role"] == "user" for m in ctx)
        if self.layout.value == "feedback" and users > 1:
            note += (f"The feedback layout reads only the last user turn: {users - 1} earlier user turn(s) and "
                     f"the replies between them are not seen by M.")
        self.conversation_note.value = f"<span class='flr-note'>{html.escape(note)}</span>" if note else ""

    def _load_bank(self) -> Bank:
        text = self.bank.value.strip() or "paper"
        if self._bank_obj is not None and text == self._bank_obj.name:
            return self._bank_obj
        try:
            return load_bank(text)
        except EXPECTED_ERRORS as e:
            raise ValueError(bank_error(text, e)) from None

    def _refresh_bank(self, categories=None) -> None:
        """Re-read the bank field: category choices follow it; its error shows until the field is fixed."""
        try:
            bank = self._load_bank()
        except ValueError as e:
            self.error.value = _error_html(str(e))
            self._error_from = "bank"
            self.categories.options = []
            self._inputs_changed()
            return
        if self._error_from == "bank":
            self.error.value = ""
            self._error_from = None
        cats = list(bank.categories)
        self.categories.options = cats
        self.categories.value = tuple(c for c in (categories or cats) if c in cats)
        self._inputs_changed()

    def _n_followups(self) -> int:
        try:
            return len(self._load_bank().select(list(self.categories.value)).items())
        except (ValueError, KeyError):
            return 0

    def _rate_scale(self, loaded=None) -> float:
        loaded = loaded or self._models.get((self.model.value.strip(), self.adapter.value.strip()))
        if loaded is None:
            return 1.0
        try:
            params = sum(p.numel() for p in loaded.model.parameters())
        except Exception:  # noqa: BLE001 - an estimate only
            return 1.0
        scale = max(params / REF_PARAMS, 0.02)
        return scale / 10 if str(getattr(loaded.model, "device", "cpu")).startswith("cuda") else scale

    def _estimate(self, scorer: str, n_responses: int, loaded=None) -> dict:
        spec = self.model.value.strip()
        rates = {k: v for (s, k), v in self._rates.items() if s == spec}
        return estimate_seconds(scorer, n_responses, self._n_followups(), rates, self._rate_scale(loaded))

    def _refresh_help(self) -> None:
        n = 2 if self.response_b.value.strip() else 1
        cost = self._estimate("legacy_repo", n)["main"]
        flr = self._estimate("flr", n)["main"]
        measured = any(k == "legacy_repo" for _, k in self._rates)
        cost_text = (f"about {_duration(cost)} for {' and '.join('AB'[:n])} with {self._n_followups()} follow-ups "
                     f"({'measured here' if measured else 'rough estimate'}; FLR: about {_duration(flr)})")
        self.setup_help.value = (f"<div class='flr-note'>{html.escape(LAYOUT_HELP[self.layout.value])}<br>"
                                 f"{html.escape(SCORER_HELP[self.scorer.value].format(cost=cost_text))}<br>"
                                 f"Direct and the length baseline are always scored beside it.</div>")
        self._check_conversation()

    def config(self) -> ScoreConfig:
        cats = list(self.categories.value)
        if not self.categories.options:
            raise ValueError("the bank could not be read: fix the bank field")
        if not cats:
            raise ValueError("no category selected: pick at least one (ctrl/shift-click selects several)")
        if len(cats) == len(self.categories.options):
            cats = []  # all of them: the bank itself (same name and hash as everywhere else)
        return ScoreConfig(scorer=self.scorer.value, layout=self.layout.value, batch_size=self.batch_size,
                           chunk_size=self.chunk_size, categories=cats)

    def _loaded(self):
        spec, adapter = self.model.value.strip(), self.adapter.value.strip()
        if not spec:
            raise ValueError("model is empty: give bundled:smollm2-135m-instruct, an HF id or a folder")
        key = (spec, adapter)
        if key not in self._models:
            self.status.value = f"<i>⏳ loading model {html.escape(spec)} …</i>"
            self._models[key] = load_model(spec, dtype=self.dtype, device=self.device, adapter=adapter or None)
        return self._models[key]

    # -- staleness ------------------------------------------------------------------------------------------
    def stale_inputs(self) -> list[str]:
        """The inputs changed since the shown result was scored (empty: the result is current)."""
        return changed_inputs(self._scored_inputs, snapshot(self)) if self.result is not None else []

    def _inputs_changed(self, _change=None) -> None:
        if self._busy or self.result is None:
            return
        changed = self.stale_inputs()
        if changed:
            self.results.add_class("flr-stale")
            self.stale_banner.value = (f"<div class='flr-stale-banner' style='background:#fff4ce;padding:4px 8px;"
                                       f"border-radius:4px'>⚠ {html.escape(stale_message(changed))}</div>")
            self.status.value = "<i>inputs changed — press Score</i>"
        else:
            self.results.remove_class("flr-stale")
            self.stale_banner.value = ""
            self.status.value = self._done_text

    # -- the Score callback --------------------------------------------------------------------------------
    def on_score(self, _button=None) -> dict | None:
        """Read the inputs, score through the engine, fill the outputs; errors go to ``error``, not a traceback."""
        t0 = time.time()
        self._busy = True
        self.score_button.disabled = True
        self.error.value = ""
        self._error_from = None
        self.last_error = None
        if self.result is not None:
            self.results.add_class("flr-stale")
            self.stale_banner.value = ("<div class='flr-stale-banner' style='background:#e8f0fe;padding:4px 8px;"
                                       "border-radius:4px'>scoring the new inputs — the results below are the "
                                       "previous ones</div>")
        ticker = None
        try:
            inputs = snapshot(self)
            context = parse_transcript(self.conversation.value)
            responses = {"A": self.response_a.value}
            if self.response_b.value.strip():
                responses["B"] = self.response_b.value
            if not responses["A"].strip():
                raise ValueError("response A is empty: type the assistant reply to score")
            bank = self._load_bank()
            cfg = self.config()
            loaded = self._loaded()
            self.score_calls += 1
            ticker = _Ticker(self, cfg.scorer, self._estimate(cfg.scorer, len(responses), loaded), t0)
            res = score_responses(loaded, bank, context, responses, cfg, cache=self.cache, progress=False,
                                  memo=self._memo, human=self.human_label(), on_phase=ticker.phase)
            ticker.stop()
            self._learn_rates(res, ticker)
            self._scored_inputs = inputs
            self._render(res)
            self._done_text = (f"✓ scored in {time.time() - t0:.1f} s "
                               f"<span class='flr-note'>({ticker.summary()})</span>")
            self.status.value = self._done_text
            return res
        except Exception as e:  # noqa: BLE001 - every failure is shown in the widget
            expected = isinstance(e, EXPECTED_ERRORS)
            self.last_error = str(e) if expected else f"{type(e).__name__}: {e}"
            self.error.value = _error_html(self.last_error, "" if expected else traceback.format_exc())
            self.status.value = "<i>not scored</i>"
            self._clear()
            return None
        finally:
            if ticker is not None:
                ticker.stop()
            self.progress_bar.layout.display = "none"
            self.score_button.disabled = False
            self._busy = False

    def _learn_rates(self, res: dict, ticker: "_Ticker") -> None:
        """Keep the measured seconds per unit of each phase that really computed (a cached phase is fast)."""
        scorer = res["scorer"]
        units = phase_units(scorer, len(res["labels"]), len(res["items"]))
        keys = {"main": scorer if scorer != "direct" else "direct", "direct": "direct", "tokens": "tokens"}
        for p, secs in ticker.times.items():
            if units.get(p) and secs > 0.25 * ticker.estimate.get(p, 0) and secs > 0.2:
                self._rates[(self.model.value.strip(), keys[p])] = secs / units[p]

    def _clear(self) -> None:
        for out in (self.summary, self.category_chart, self.category_table, self.moves, self.tokens,
                    self.stale_banner):
            out.value = ""
        self.results.remove_class("flr-stale")
        self.results.layout.display = "none"
        self.followup.disabled = True
        self.result, self.figures, self._scored_inputs = None, {}, None

    def _render(self, res: dict) -> None:
        self.result = res
        self.figures = {"categories": category_figure(res)} if res["items"] else {}
        self.summary.value = verdict_html(res)
        self.category_chart.value = figure_html(self.figures["categories"]) if self.figures else ""
        self.category_table.value = (f"<details><summary>per-category numbers</summary>{category_html(res)}"
                                     f"</details>" if res["items"] else "")
        self._render_moves()
        self.followup.options = token_choices(res)  # the picker follows the result, not the category field
        self.followup.value = res["followup"]
        self.followup.disabled = False
        self._render_tokens()
        self.stale_banner.value = ""
        self.results.remove_class("flr-stale")
        self.results.layout.display = None

    def _render_tokens(self) -> None:
        if self.result is None or self.followup.value is None:
            return
        self.tokens.value = tokens_html(self.result, self.followup.value)

    def _render_moves(self) -> None:
        if self.result is not None:
            self.moves.value = moves_html(self.result, self.moves_sort.value, self.moves_count.value)
        has = self.result is not None and bool(self.result["items"]) and len(self.result["labels"]) == 2
        self.moves_sort.layout.display = self.moves_count.layout.display = None if has else "none"


class _Ticker:
    """The progress line while scoring: phase (k of n), seconds elapsed, the estimate; refreshed twice a second
    from a background thread (the kernel sends widget updates from threads too)."""

    def __init__(self, ui: Explorer, scorer: str, estimate: dict, t0: float, interval: float = 0.5):
        self.ui, self.scorer, self.estimate, self.t0 = ui, scorer, estimate, t0
        self.names = {"main": SCORER_NAMES[scorer], **{k: v for k, v in PHASE_NAMES.items() if v}}
        self.order = [p for p in PHASES if not (p == "direct" and scorer == "direct")]
        self.current, self.started, self.times = None, t0, {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        ui.progress_bar.value = 0
        ui.progress_bar.layout.display = None
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def phase(self, name: str) -> None:
        now = time.time()
        with self._lock:
            if self.current is not None:
                self.times[self.current] = now - self.started
            if name not in self.order:
                return
            self.current, self.started = name, now
        self._draw()

    def stop(self) -> None:
        if not self._stop.is_set():
            with self._lock:
                if self.current is not None:
                    self.times[self.current] = time.time() - self.started
                    self.current = None
            self._stop.set()
            self._thread.join(timeout=2)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._draw()

    def _draw(self) -> None:
        with self._lock:
            if self.current is None or self._stop.is_set():
                return
            elapsed = time.time() - self.t0
            k = self.order.index(self.current) + 1
            steps = " → ".join(f"<b>{self.names[p]}</b>" if p == self.current else self.names[p] for p in self.order)
            total = self.estimate["total"]
            self.ui.status.value = (f"⏳ {steps} (step {k} of {len(self.order)}) · {elapsed:.0f} s elapsed · about "
                                    f"{_duration(total)} in all <span class='flr-note'>(estimate from the follow-up "
                                    f"count; less if already cached)</span>")
            done = sum(self.estimate.get(p, 0) for p in self.order[: k - 1])
            part = min(time.time() - self.started, self.estimate.get(self.current, 0))
            self.ui.progress_bar.value = min(0.98, (done + part) / total) if total else 0

    def summary(self) -> str:
        return " · ".join(f"{self.names[p]} {self.times[p]:.1f} s" for p in self.order if p in self.times)


def show(ui: Explorer, interactive: bool = True) -> None:
    """Display the live widget, or (``interactive=False``: papermill, no front end) score the current inputs once
    through the same callback and display the same views statically."""
    from IPython.display import HTML, display

    if interactive:
        display(ui)
        return
    res = ui.on_score()
    if res is None:
        display(HTML(ui.error.value))
    else:
        render_static(res)

"""Pure views of one side-by-side scoring result (:func:`flrlib.compare.score_responses`'s dict): text, HTML,
tables and figures, no model and no widget. In the order a reader needs them:

1. the verdict: ``verdict_rows``, ``verdict_lines``, ``reading_note``, ``verdict_html`` (and ``summary_frame``);
2. the per-category A - B chart: ``category_frame``, ``category_html``, ``category_figure``, ``category_heatmap``;
3. the follow-ups that moved most: ``followup_moves``, ``sorted_moves``, ``moves_html``, ``followup_figure``;
4. the token view: ``token_choices``, ``default_choice``, ``token_html``, ``tokens_html``;
5. ``explain`` (the same story in plain sentences, for notebooks), ``conversation_html``, ``figure_png`` /
   ``figure_html`` and ``render_static`` (all of them as ordinary notebook outputs, for runs without a front end).
"""
from __future__ import annotations

import base64
import html
import io
import math

import numpy as np
import pandas as pd

SCORER_NAMES = {"flr": "FLR", "direct": "Direct", "legacy_repo": "legacy (repo arithmetic)", "length": "length"}


def conversation_html(context: list[dict], responses: dict) -> str:
    """A conversation and its candidate responses, for display."""
    turns = "".join(f"<p style='margin:2px 0'><b>{m['role'].capitalize()}:</b> {html.escape(m['content'])}</p>"
                    for m in context)
    cands = "".join(f"<p style='margin:2px 0;padding:3px;background:#f3f6fa'><b>response {html.escape(str(k))}:</b> "
                    f"{html.escape(v)}</p>" for k, v in responses.items())
    return f"<div class='flr-conversation' style='white-space:pre-wrap'>{turns}<hr style='margin:4px 0'>{cands}</div>"


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


TABLE_CSS = ("<style>.flr-table table{border-collapse:collapse;margin:4px 0}.flr-table th,.flr-table td"
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
    return (f"{TABLE_CSS}<div class='flr-explorer-summary flr-table flr-verdict'>"
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
    return (f"{TABLE_CSS}<div class='flr-table'><b>Per-category reward R<sub>k</sub> = mean(positives) − "
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
    return (f"{TABLE_CSS}<div class='flr-table flr-moves'><b>Follow-ups that moved most</b> ({shown}, sorted by "
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

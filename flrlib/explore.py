"""Interactive FLR explorer for JupyterLab: a conversation, responses A and B, and why FLR prefers one of them.

Read top to bottom:

1. transcripts - ``parse_transcript`` / ``format_transcript``: the typed conversation <-> messages.
2. scoring - ``score_responses``: the one call that scores A and B with :class:`flrlib.scoring.Scorer` (the same
   engine and score cache as everything else) and returns a plain result dict.
3. views - pure functions from that result dict to tables, HTML and matplotlib figures (``summary_frame``,
   ``followup_figure``, ``token_html``, ``category_frame``, ``category_heatmap``). Both front ends use them.
4. front ends - :class:`Explorer` (ipywidgets; "Score" runs ``score_responses`` and fills the widgets) and
   :func:`render_static` (the same views as plain notebook outputs, for papermill runs without a front end);
   :func:`show` picks one.

Usage in any notebook::

    from flrlib import explore
    ui = explore.Explorer(examples=pairs)        # pairwise records {id, benchmark, messages, chosen, rejected}
    ui                                           # type, pick, press Score
"""
from __future__ import annotations

import html
import io
import re
import time
import traceback
from dataclasses import replace

import numpy as np
import pandas as pd

from .chat import TemplateError
from .followups import Bank, load_bank
from .models import BUNDLED, ModelNotAvailable, load_model
from .scoring import ScoreConfig, Scorer

SCORER_NAMES = {"flr": "FLR", "direct": "Direct", "legacy_repo": "legacy (repo arithmetic)"}
# the scorers offered in the dropdown (the length baseline is not a likelihood: the table shows each length)
SCORERS = tuple(SCORER_NAMES)
EXPECTED_ERRORS = (ValueError, KeyError, FileNotFoundError, ModelNotAvailable, TemplateError, OSError)


# ----------------------------------------------------------------------------------------------------------
# 1. transcripts
# ----------------------------------------------------------------------------------------------------------

_ROLE_LINE = re.compile(r"^\s*(user|assistant|system)\s*:\s?(.*)$", re.IGNORECASE)


def parse_transcript(text: str) -> list[dict]:
    """``User: ...`` / ``Assistant: ...`` / ``System: ...`` lines -> messages; other lines continue the previous turn.

    Text without any role marker is one user turn. The context must end with a user turn (A and B answer it).
    """
    text = (text or "").strip()
    if not text:
        raise ValueError("conversation is empty: type at least one 'User: ...' turn")
    lines = text.splitlines()
    if not any(_ROLE_LINE.match(line) for line in lines):
        return [{"role": "user", "content": text}]
    msgs: list[dict] = []
    for n, line in enumerate(lines, 1):
        m = _ROLE_LINE.match(line)
        if m:
            msgs.append({"role": m.group(1).lower(), "content": m.group(2)})
        elif msgs:
            msgs[-1]["content"] += "\n" + line
        elif line.strip():
            raise ValueError(f"conversation line {n}: start the first turn with 'User:', 'Assistant:' or 'System:'")
    for i, m in enumerate(msgs):
        m["content"] = m["content"].strip()
        if not m["content"]:
            raise ValueError(f"conversation turn {i + 1} ({m['role']}) is empty")
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

def score_responses(loaded, bank: Bank | str | None, context: list[dict], responses: dict, config: ScoreConfig,
                    followup: int | None = 0, cache="auto", progress: bool = True, scorers: dict | None = None) -> dict:
    """Score each response (``{"A": text, "B": text}``) to ``context`` with ``config.scorer`` and with Direct.

    ``followup``: index (into the scorer's bank) of the follow-up whose per-token log-probs are returned.
    ``scorers``: an optional dict used to keep :class:`Scorer` objects between calls (keyed by their set-up).
    Returns a plain dict: ``main`` and ``direct`` hold the Scorer's outputs per label, ``tokens`` the per-token
    view per label, ``items`` the bank's (category, polarity, text) rows in the order of ``followups``.
    """
    labels = [k for k, v in responses.items() if v is not None]
    for lab in labels:
        if not str(responses[lab]).strip():
            raise ValueError(f"response {lab} is empty: type the assistant reply to score")
    if not labels:
        raise ValueError("no response to score: type response A")
    if not context or context[-1]["role"] != "user":
        raise ValueError("conversation: the last turn must be a user turn (responses answer it)")

    def get(cfg: ScoreConfig) -> Scorer:
        bank_key = bank.hash if isinstance(bank, Bank) else str(bank)
        key = (loaded.spec, loaded.adapter, id(loaded.model), bank_key, repr(cfg), str(cache))
        if scorers is not None and key in scorers:
            return scorers[key]
        s = Scorer(loaded, bank, cfg, cache=cache)
        if scorers is not None:
            scorers[key] = s
        return s

    main = get(config)
    direct = main if config.scorer == "direct" else get(replace(config, scorer="direct", categories=[]))
    convs = [list(context) + [{"role": "assistant", "content": responses[lab]}] for lab in labels]
    out_main = main.score(convs, progress=progress, desc=SCORER_NAMES[config.scorer])
    out_direct = out_main if direct is main else direct.score(convs, progress=progress, desc="Direct")

    items = main.bank.items() if main.bank is not None else []
    chosen = None
    if items:
        i = int(followup or 0)
        if not 0 <= i < len(items):
            raise ValueError(f"follow-up index {i} is outside the bank (0..{len(items) - 1})")
        cat, pol, text = items[i]
        chosen = {"index": i, "category": cat, "polarity": pol, "text": text}
    tokens = {lab: main.token_logprobs(conv, chosen["text"] if chosen else None) for lab, conv in zip(labels, convs)}
    return {
        "scorer": config.scorer, "layout": config.layout, "norm": config.norm,
        "labels": labels, "context": list(context), "responses": {lab: responses[lab] for lab in labels},
        "main": dict(zip(labels, out_main)), "direct": dict(zip(labels, out_direct)),
        "items": [list(t) for t in items], "followup": chosen, "tokens": tokens,
        "provenance": main.provenance,
    }


# ----------------------------------------------------------------------------------------------------------
# 3. views: pure functions of a score_responses() result
# ----------------------------------------------------------------------------------------------------------

def fmt(x: float) -> str:
    """How every number is printed in the explorer (tests and the browser check read it back)."""
    return f"{x:.3f}"


def summary_frame(res: dict) -> pd.DataFrame:
    """One row per response: the chosen scorer's reward, its positive/negative means, Direct."""
    name = SCORER_NAMES[res["scorer"]]
    rows = []
    for lab in res["labels"]:
        m, d = res["main"][lab], res["direct"][lab]
        row = {"response": lab, name: m["reward"]}
        if "pos" in m:
            row["mean positives"], row["mean negatives"] = m["pos"], m["neg"]
        row["Direct"] = d["reward"]
        row["response tokens"] = d.get("n_tokens")
        rows.append(row)
    return pd.DataFrame(rows).set_index("response")


def verdicts(res: dict) -> list[str]:
    """'FLR prefers A by 0.123' lines (only with two responses)."""
    if len(res["labels"]) != 2:
        return []
    a, b = res["labels"]
    out = []
    for name, part in ((SCORER_NAMES[res["scorer"]], "main"), ("Direct", "direct")):
        if part == "direct" and res["scorer"] == "direct":
            continue
        ra, rb = res[part][a]["reward"], res[part][b]["reward"]
        if ra == rb:
            out.append(f"{name}: tie ({fmt(ra)})")
        else:
            win, margin = (a, ra - rb) if ra > rb else (b, rb - ra)
            out.append(f"{name} prefers {win} by {fmt(margin) if margin >= 1e-3 else f'{margin:.1e}'}")
    return out


_TABLE_CSS = ("<style>.flr-table table{border-collapse:collapse;margin:4px 0}.flr-table th,.flr-table td"
              "{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}</style>")


def summary_html(res: dict) -> str:
    df = summary_frame(res)
    table = df.to_html(float_format=fmt, na_rep="", classes="flr-summary", border=0, index_names=False)
    unit = ("raw logits (not log-probs)" if res["scorer"] == "legacy_repo"
            else "nats per token" if res["norm"] == "mean" else "nats (summed over tokens)")
    lines = "".join(f"<li><b>{html.escape(v)}</b></li>" for v in verdicts(res))
    prov = res["provenance"]
    return (f"{_TABLE_CSS}<div class='flr-explorer-summary flr-table'>{table}<ul>{lines}</ul>"
            f"<small>model {html.escape(str(prov.get('model')))} · layout {res['layout']} · "
            f"bank {html.escape(str(prov.get('bank', '-')))} ({prov.get('bank_size', 0)} follow-ups) · "
            f"unit: {unit}</small></div>")


def followup_frame(res: dict) -> pd.DataFrame:
    """Long table: one row per (response, follow-up) with its mean log-prob (the bars of the chart)."""
    rows = []
    for lab in res["labels"]:
        vals = res["main"][lab].get("followups") or []
        for i, ((cat, pol, text), v) in enumerate(zip(res["items"], vals)):
            rows.append({"response": lab, "index": i, "category": cat, "polarity": pol, "followup": text, "value": v})
    return pd.DataFrame(rows, columns=["response", "index", "category", "polarity", "followup", "value"])


def _palette(n: int):
    import seaborn as sns

    return sns.color_palette("colorblind", max(n, 2))


def followup_figure(res: dict):
    """Bars of every follow-up's score, positives (top) and negatives (bottom), grouped by category, A beside B."""
    from matplotlib.figure import Figure

    df = followup_frame(res)
    fig = Figure(figsize=(13, 6.2), layout="constrained")
    if df.empty:
        ax = fig.subplots()
        ax.text(0.5, 0.5, f"scorer {res['scorer']!r} uses no follow-ups", ha="center", va="center")
        ax.set_axis_off()
        return fig
    axes = fig.subplots(2, 1, sharey=True)
    labels = res["labels"]
    width = 0.8 / len(labels)
    colors = _palette(len(labels))
    ylabel = ("legacy value (raw logit)" if res["scorer"] == "legacy_repo"
              else "mean log-prob per token (nats)" if res["norm"] == "mean" else "log-prob (nats)")
    for ax, pol in zip(axes, ("positive", "negative")):
        part = df[df.polarity == pol]
        order = part[part.response == labels[0]]
        x = np.arange(len(order))
        for j, lab in enumerate(labels):
            vals = part[part.response == lab]["value"].to_numpy()
            m = res["main"][lab]
            mean = m["pos"] if pol == "positive" else m["neg"]
            ax.bar(x + (j - (len(labels) - 1) / 2) * width, vals, width, color=colors[j],
                   label=f"{lab} (mean {fmt(mean)}, n={len(vals)})")
        cats = order["category"].to_list()
        bounds = [0] + [k for k in range(1, len(cats)) if cats[k] != cats[k - 1]] + [len(cats)]
        for b in bounds[1:-1]:
            ax.axvline(b - 0.5, color="0.6", lw=0.8)
        ax.set_xticks([(bounds[k] + bounds[k + 1] - 1) / 2 for k in range(len(bounds) - 1)],
                      [cats[bounds[k]] for k in range(len(bounds) - 1)])
        ax.set_xlim(-0.6, len(cats) - 0.4)
        ax.set_title(f"{pol} follow-ups", loc="left", fontsize=11)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(labels), frameon=False)
    fig.suptitle(f"Every follow-up's score under {SCORER_NAMES[res['scorer']]} "
                 f"(model {res['provenance'].get('model')}, layout {res['layout']})", fontsize=12)
    return fig


def category_frame(res: dict) -> pd.DataFrame:
    """Per-category rewards R_k (rows: categories; columns: responses, and A - B with two responses)."""
    if res["scorer"] == "direct":
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
        return "<i>Direct has no categories.</i>"
    return (f"{_TABLE_CSS}<div class='flr-table'><b>Per-category reward R<sub>k</sub> = mean(positives) − "
            f"mean(negatives)</b>{df.to_html(float_format=fmt, classes='flr-categories', border=0)}</div>")


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


def tokens_html(res: dict) -> str:
    """The per-token view of every response, for the chosen follow-up (or of the response itself for Direct)."""
    parts = []
    f = res["followup"]
    if f is None:
        parts.append("<p>Direct: log-prob of each token of the response.</p>")
    else:
        parts.append(f"<p>Follow-up #{f['index']} ({html.escape(f['category'])}, {f['polarity']}): "
                     f"<i>“{html.escape(f['text'])}”</i> — its log-probs after each response.</p>")
    for lab in res["labels"]:
        view = res["tokens"][lab]
        note = ""
        if f is not None and res["scorer"] == "flr":
            note = f" (the bar chart's value: {fmt(res['main'][lab]['followups'][f['index']])})"
        parts.append(token_html(view, f"after response {lab}{note}" if f else f"response {lab}"))
    return "".join(parts)


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


def figure_png(fig, dpi: int = 90) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def render_static(res: dict) -> None:
    """Display the explorer's views as ordinary notebook outputs (papermill / no widget front end)."""
    from IPython.display import HTML, Image, display

    display(HTML(summary_html(res)))
    display(Image(figure_png(followup_figure(res))))
    display(HTML(tokens_html(res)))
    display(HTML(category_html(res)))


# ----------------------------------------------------------------------------------------------------------
# 4. front ends
# ----------------------------------------------------------------------------------------------------------

def _error_html(msg: str, detail: str = "") -> str:
    more = f"<details><summary>details</summary><pre>{html.escape(detail)}</pre></details>" if detail else ""
    return (f"<div class='flr-error' style='color:#8b0000;background:#fdecea;padding:6px;border-radius:4px'>"
            f"<b>Error:</b> {html.escape(msg)}{more}</div>")


class Explorer:
    """ipywidgets front end. Every input is a public widget attribute; ``score_button.click()`` scores.

    ``examples``: pairwise records ``{id, benchmark, messages, chosen, rejected}`` (or ``{messages, response}``)
    offered in the example picker. ``loaded``: an already loaded model (its spec fills the model field) so the
    notebook's model is reused. After a click, ``result`` holds the :func:`score_responses` dict, ``figures``
    the matplotlib figures shown, and ``last_error`` the message of a failed click (also shown in ``error``).
    """

    def __init__(self, examples: list[dict] | None = None, model: str = BUNDLED, adapter: str | None = None,
                 bank: Bank | str = "paper", categories: list | None = None, layout: str = "base",
                 scorer: str = "flr", loaded=None, dtype: str = "auto", device: str = "auto", cache="auto",
                 batch_size: int = 4, chunk_size: int = 128):
        import ipywidgets as w

        self.examples = list(examples or [])
        self.dtype, self.device, self.cache = dtype, device, cache
        self.batch_size, self.chunk_size = batch_size, chunk_size
        self._models = {}
        if loaded is not None:
            model, adapter = loaded.spec, loaded.adapter
            self._models[(loaded.spec, loaded.adapter or "")] = loaded
        self._bank_obj = bank if isinstance(bank, Bank) else None
        self._scorers: dict = {}
        self.result: dict | None = None
        self.figures: dict = {}
        self.last_error: str | None = None
        self._loading = False  # True while an example fills the fields

        wide = w.Layout(width="98%")
        label = {"description_width": "100px"}
        ex_opts = [("(type your own)", -1)] + [(self._example_label(i, ex), i) for i, ex in enumerate(self.examples)]
        self.example = w.Dropdown(description="example", options=ex_opts, value=0 if self.examples else -1,
                                  layout=wide, style=label)
        self.conversation = w.Textarea(description="conversation", layout=w.Layout(width="98%", height="110px"),
                                       placeholder="User: ...\nAssistant: ...\nUser: ... (ends with a user turn)",
                                       style=label)
        self.response_a = w.Textarea(description="response A", layout=w.Layout(width="98%", height="80px"),
                                     style=label)
        self.response_b = w.Textarea(description="response B", layout=w.Layout(width="98%", height="80px"),
                                     placeholder="optional", style=label)
        self.model = w.Text(description="model", value=model, continuous_update=False, style=label,
                            placeholder="bundled:smollm2-135m-instruct, an HF id or a folder")
        self.adapter = w.Text(description="adapter", value=adapter or "", placeholder="optional LoRA folder",
                              style=label)
        self.bank = w.Text(description="bank", value=bank.name if isinstance(bank, Bank) else str(bank or "paper"),
                           continuous_update=False, placeholder="paper, or a JSON/YAML bank file", style=label)
        self.categories = w.SelectMultiple(description="categories", rows=6, style=label)
        self.layout = w.Dropdown(description="layout", options=["base", "feedback"], value=layout, style=label)
        self.scorer = w.Dropdown(description="scorer", options=[(SCORER_NAMES[s], s) for s in SCORERS],
                                 value=scorer, style=label)
        self.followup = w.Dropdown(description="token view", layout=wide, style=label)
        self.score_button = w.Button(description="Score", button_style="primary", icon="play",
                                     tooltip="score A and B with the chosen model, bank and scorer")
        self.status = w.HTML("<i>Pick or type a conversation and responses, then press Score.</i>")
        self.progress = w.Output()
        self.error = w.HTML("")
        self.summary = w.HTML("")
        self.followup_plot = w.Image(format="png", layout=w.Layout(width="98%"))
        self.tokens = w.HTML("")
        self.category_table = w.HTML("")

        self.example.observe(lambda ch: self.load_example(ch["new"]), names="value")
        for box in (self.conversation, self.response_a, self.response_b):
            box.observe(self._typed, names="value")
        self.bank.observe(lambda ch: self._refresh_bank(), names="value")
        self.categories.observe(lambda ch: self._refresh_followups(), names="value")
        self.score_button.on_click(self.on_score)
        self._refresh_bank(categories)
        self.load_example(self.example.value)

        setup = w.VBox([w.HBox([self.model, self.adapter]), w.HBox([self.bank, self.layout, self.scorer]),
                        self.categories])
        inputs = w.Tab(children=[w.VBox([self.example, self.conversation, self.response_a, self.response_b]), setup])
        inputs.set_title(0, "conversation")
        inputs.set_title(1, "model · bank · scorer")
        self.widget = w.VBox([inputs, self.followup, w.HBox([self.score_button, self.status]), self.progress,
                              self.error, self.summary, self.followup_plot, self.tokens, self.category_table],
                             layout=w.Layout(width="100%"))
        self.widget.add_class("flr-explorer")

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

    def load_example(self, i: int) -> None:
        """Fill the conversation and responses from example ``i`` (-1: leave the fields for typing)."""
        if i is None or i < 0:
            return
        self._loading = True
        try:
            self.conversation.value, self.response_a.value, self.response_b.value = self._example_fields(i)
        finally:
            self._loading = False

    def _typed(self, _change=None) -> None:
        """Editing a field turns the picker to '(type your own)', so it never names an example that is not shown."""
        i = self.example.value
        if self._loading or i is None or i < 0:
            return
        if (self.conversation.value, self.response_a.value, self.response_b.value) != self._example_fields(i):
            self.example.value = -1

    def _load_bank(self) -> Bank | None:
        text = self.bank.value.strip() or "paper"
        if self._bank_obj is not None and text == self._bank_obj.name:
            return self._bank_obj
        return load_bank(text)

    def _refresh_bank(self, categories=None) -> None:
        """Re-read the bank field: category choices and the follow-up picker follow it."""
        try:
            bank = self._load_bank()
        except EXPECTED_ERRORS as e:
            self.error.value = _error_html(f"bank: {e}")
            return
        cats = list(bank.categories)
        self.categories.options = cats
        self.categories.value = tuple(c for c in (categories or cats) if c in cats)
        self._refresh_followups()

    def _refresh_followups(self) -> None:
        try:
            bank = self._load_bank().select(list(self.categories.value))
        except EXPECTED_ERRORS:
            return
        old = self.followup.label
        opts = [(f"{c} · {'+' if p == 'positive' else '−'} · {t}", i) for i, (c, p, t) in enumerate(bank.items())]
        self.followup.options = opts
        self.followup.value = next((v for lab, v in opts if lab == old), 0) if opts else None

    def config(self) -> ScoreConfig:
        cats = list(self.categories.value)
        if len(cats) == len(self.categories.options):
            cats = []  # all of them: the bank itself (same name and hash as everywhere else)
        if not cats and not self.categories.options:
            raise ValueError("the bank could not be read: fix the bank field")
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

    # -- the Score callback --------------------------------------------------------------------------------
    def on_score(self, _button=None) -> dict | None:
        """Read the inputs, score through the engine, fill the outputs; errors go to ``error``, not a traceback."""
        t0 = time.time()
        self.score_button.disabled = True
        self.error.value = ""
        self.last_error = None
        try:
            context = parse_transcript(self.conversation.value)
            responses = {"A": self.response_a.value}
            if self.response_b.value.strip():
                responses["B"] = self.response_b.value
            if not responses["A"].strip():
                raise ValueError("response A is empty: type the assistant reply to score")
            bank = self._load_bank()
            cfg = self.config()
            loaded = self._loaded()
            self.status.value = (f"<i>⏳ scoring {' and '.join(responses)} with {html.escape(loaded.spec)} "
                                 f"({SCORER_NAMES[cfg.scorer]}) …</i>")
            with self.progress:
                res = score_responses(loaded, bank, context, responses, cfg, followup=self.followup.value,
                                      cache=self.cache, scorers=self._scorers)
            self._render(res)
            self.status.value = f"✓ scored in {time.time() - t0:.1f} s"
            return res
        except Exception as e:  # noqa: BLE001 - every failure is shown in the widget
            expected = isinstance(e, EXPECTED_ERRORS)
            self.last_error = str(e) if expected else f"{type(e).__name__}: {e}"
            self.error.value = _error_html(self.last_error, "" if expected else traceback.format_exc())
            self.status.value = "<i>not scored</i>"
            for out in (self.summary, self.tokens, self.category_table):
                out.value = ""
            self.followup_plot.value = b""
            self.result, self.figures = None, {}
            return None
        finally:
            self.progress.clear_output()
            self.score_button.disabled = False

    def _render(self, res: dict) -> None:
        fig = followup_figure(res)
        self.result, self.figures = res, {"followups": fig}
        self.summary.value = summary_html(res)
        self.followup_plot.value = figure_png(fig)
        self.tokens.value = tokens_html(res)
        self.category_table.value = category_html(res)


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

"""The explorer's ipywidgets front end, top to bottom: what the fields mean (help texts), the pure helpers behind
them (which inputs changed since a result was scored, how tall a text box should be, how long scoring will take),
then :class:`Explorer` (builds the fields, reacts to typing, scores on the Score button through
:func:`flrlib.compare.score_responses`, renders :mod:`flrlib.views`), the progress line (:class:`_Ticker`) and
:func:`show` (the live widget, or the same views as static outputs under papermill).
"""
from __future__ import annotations

import html
import math
import threading
import time
import traceback

from .chat import TemplateError
from .compare import PHASES, score_responses
from .files import BadFile
from .followups import Bank, load_bank
from .models import BUNDLED, ModelNotAvailable, load_model
from .scoring import NO_BANK, ScoreConfig
from .transcripts import format_transcript, parse_transcript, split_transcript
from .views import (TABLE_CSS, MOVE_SORTS, SCORER_NAMES, category_figure, category_html, figure_html, moves_html,
                    render_static, token_choices, tokens_html, verdict_html)

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


# -- inputs, staleness, box sizes, estimates (pure) ------------------------------------------------------

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


# -- the widget -------------------------------------------------------------------------------------------

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
        self.widget = w.VBox([w.HTML(TABLE_CSS), inputs, w.HBox([self.score_button, self.status]), self.progress_bar,
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

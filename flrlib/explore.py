"""Interactive FLR explorer for JupyterLab: a conversation, responses A and B, and why FLR prefers one of them.

One name space for the notebooks (``from flrlib import explore``) over four modules, one concept each, read in
this order:

1. :mod:`flrlib.transcripts` - ``parse_transcript`` / ``split_transcript`` / ``format_transcript``: typed or
   pasted text (``User:``/``Assistant:`` lines, or HH-RLHF's ``Human:``/``Assistant:`` transcripts) <-> messages.
2. :mod:`flrlib.compare` - ``score_responses``: scores A and B with :class:`flrlib.scoring.Scorer` (the same
   engine and score cache as everything else) under the chosen scorer, Direct and ``length``, and stores the
   per-token log-probs of every follow-up, so that any token view can be drawn later without scoring again.
   Returns a plain dict. ``compare_pairs`` / ``pair_category_frame``: the same over many pairwise records.
3. :mod:`flrlib.views` - pure functions of that dict, in the order a reader needs them: the verdict
   (``verdict_rows``, ``verdict_lines``, ``reading_note``, ``verdict_html``), the per-category A - B chart
   (``category_frame``, ``category_figure``), the follow-ups that moved most (``followup_moves``, ``moves_html``),
   the token view (``token_choices``, ``tokens_html``), ``explain`` (the same story in plain sentences) and
   ``render_static`` (the views as plain notebook outputs, for papermill runs without a front end).
4. :mod:`flrlib.widget` - :class:`Explorer` (ipywidgets), read top to bottom: the help texts, the pure helpers
   behind the fields (``snapshot`` / ``changed_inputs`` for staleness, ``box_rows``, ``estimate_seconds``), the
   widget, its progress line, and :func:`show`, which picks the widget or the static views.

Usage in any notebook::

    from flrlib import explore
    ui = explore.Explorer(examples=pairs)        # pairwise records {id, benchmark, messages, chosen, rejected}
    ui                                           # type, pick, press Score
"""
from __future__ import annotations

from .compare import PHASES, compare_pairs, pair_category_frame, score_responses, token_views  # noqa: F401
from .scoring import engine_logprobs  # noqa: F401 - the engine the explorer's scoring calls (flrlib.compare)
from .transcripts import format_transcript, parse_transcript, split_transcript  # noqa: F401
from .views import (MOVE_SORTS, SCORER_NAMES, category_figure, category_frame, category_heatmap,  # noqa: F401
                    category_html, conversation_html, default_choice, effect, explain, figure_html, figure_png, fmt,
                    followup_figure, followup_moves, human_pick, label_name, moves_html, reading_note,
                    render_static, signed, sorted_moves, summary_frame, token_choices, token_html, tokens_html, unit,
                    verdict_html, verdict_lines, verdict_rows)
from .widget import (DEFAULT_RATES, EXPECTED_ERRORS, INPUT_NAMES, LAYOUT_HELP, PHASE_NAMES, REF_PARAMS,  # noqa: F401
                     SCORER_HELP, SCORERS, Explorer, bank_error, box_rows, changed_inputs, estimate_seconds,
                     phase_units, show, snapshot, stale_message)

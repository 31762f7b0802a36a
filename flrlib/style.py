"""Style features of a response beyond its length: the markdown counts of Chatbot Arena's style control.

Chatbot Arena controls its ratings for style with four features per answer: its length in tokens and three
markdown counts (lmsys/FastChat @ 0e6d3e4beaab66f4d3f93db72541a4abab8af28d, ``fastchat/serve/monitor/
add_markdown_info.py`` ``count_markdown_elements`` and ``rating_systems.py`` ``STYLE_CONTROL_ELEMENTS_V1``
= ``sum_assistant_*_tokens, header_count_*, list_count_*, bold_count_*``). The counts are FastChat's regexes,
applied as FastChat applies them (``get_element_counts``: code blocks removed first with
``re.compile("```([^`]*)```")`` / ``remove_pattern``, then each dict of sub-counts summed as in
``preprocess_for_style.extract_style_feature``):

* headers: ``^#{k}\\s`` for k = 1..6, ``re.MULTILINE`` (as FastChat, ``^#{1}\\s`` matches only a single ``#``
  followed by white space, so each header is counted once, by its level);
* lists: ordered ``^\\s*\\d+\\.\\s`` + unordered ``^\\s*[-*+]\\s``, ``re.MULTILINE``;
* bold: ``\\*\\*[^*\\n]+\\*\\*`` + ``__[^_\\n]+__``.

Pure text -> ints (no model): used by :mod:`flrlib.benchmarks` for the per-sample JSONL of every pairwise result
and by :func:`flrlib.metrics.style_controlled_accuracy` through those files.
"""
from __future__ import annotations

import re

FEATURES = ("header", "list", "bold")
_CODE = re.compile("```([^`]*)```")
_HEADERS = [re.compile(rf"^#{{{k}}}\s", re.MULTILINE) for k in range(1, 7)]
_ORDERED = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
_UNORDERED = re.compile(r"^\s*[-*+]\s", re.MULTILINE)
_BOLD_STARS = re.compile(r"\*\*[^*\n]+\*\*")
_BOLD_UNDERSCORES = re.compile(r"__[^_\n]+__")


def _remove_code(text: str) -> str:
    """FastChat's ``remove_pattern(answer, re.compile("```([^`]*)```"))``: every captured block body is replaced
    by "" (the fences stay, as in FastChat)."""
    for block in _CODE.findall(text):
        text = text.replace(block, "")
    return text


def markdown_counts(text: str) -> dict:
    """``{"header": n, "list": n, "bold": n}`` of one response, as Chatbot Arena's style control counts them."""
    t = _remove_code(text)
    return {"header": sum(len(p.findall(t)) for p in _HEADERS),
            "list": len(_ORDERED.findall(t)) + len(_UNORDERED.findall(t)),
            "bold": len(_BOLD_STARS.findall(t)) + len(_BOLD_UNDERSCORES.findall(t))}

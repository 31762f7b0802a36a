"""Data: the fetch step (mirror or public sources) and loaders that normalise each source into plain records.

Record schemas (plain dicts; see README "Data schemas"):

* pairwise ``{id, benchmark, messages, chosen, rejected}`` - ``messages`` is the context, ending with a user turn
* rating ``{id, benchmark, messages, response, score}``
* system ``{model, id, messages, response}``
* prompt ``{id, messages}``
* feedback triple ``{id, prompt, response, critique}``
"""
from .fetch import DataMissing, fetch, require, sources

__all__ = ["DataMissing", "fetch", "require", "sources"]

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

# reward-model benchmarks (issue 4): registry, loaders, system-level targets
from .alpaca_eval import alpaca_eval_models, arena_elo, lc_win_rates, load_alpaca_eval_outputs  # noqa: E402
from .pairwise import MalformedRow  # noqa: E402
from .registry import (benchmark_info, benchmark_names, describe, eval_subsets, load_benchmark,  # noqa: E402
                       load_prometheus, overview, select_subset, system_targets,
                       write_overview)

__all__ += ["MalformedRow", "alpaca_eval_models", "arena_elo", "benchmark_info", "benchmark_names", "describe",
            "eval_subsets", "lc_win_rates", "load_alpaca_eval_outputs", "load_benchmark", "load_prometheus", "overview", "select_subset",
            "system_targets", "write_overview"]

# prompt sets for preference mining and alignment evaluation (issue 6)
from .prompts import alpaca_eval_prompts, check_disjoint, mining_prompts, nectar_prompts, ultrafeedback_prompts  # noqa: E402

__all__ += ["alpaca_eval_prompts", "check_disjoint", "mining_prompts", "nectar_prompts", "ultrafeedback_prompts"]

# FT-FLR's training triples and the evaluation-leak guard
from .overlap import EvalLeak, guard_eval_leak  # noqa: E402
from .triples import load_ultrafeedback_triples, prometheus_triples, ultrafeedback_triples  # noqa: E402

__all__ += ["EvalLeak", "guard_eval_leak", "load_ultrafeedback_triples", "prometheus_triples", "ultrafeedback_triples"]

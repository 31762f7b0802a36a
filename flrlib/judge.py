"""Pairwise judges and win rates for alignment evaluation (AlpacaEval 2 protocol).

A comparison item is ``{id, instruction, output_1, output_2, generator_1, generator_2}``: ``output_1`` is the
baseline (AlpacaEval 2's reference ``gpt4_1106_preview``, or the base policy), ``output_2`` the candidate. Each item
is shown to the judge in a seeded random order (a coin per item id and seed) to cancel position bias; the judge
returns the probability that the output shown *first* is better, which is mapped back to ``win`` = P(candidate is
better) in [0, 1] (``preference = 1 + win`` is AlpacaEval's 1-2 scale).

Judges (any object with ``name``, ``description`` and ``__call__(triples) -> [p_first]``):

* :class:`ApiJudge` - an OpenAI-compatible chat API with AlpacaEval 2's annotator ``weighted_alpaca_eval_gpt4_turbo``:
  the ``alpaca_eval_clf`` prompt (outputs labelled ``m`` and ``M``), ``max_tokens=1``, ``temperature=1``,
  ``top_logprobs=5``; p_first = p(m) / (p(m) + p(M)) (AlpacaEval's ``logprob_parser``). Configured by environment:
  ``FLR_JUDGE_BASE_URL`` (default ``https://api.openai.com/v1``), ``FLR_JUDGE_MODEL`` (default
  ``gpt-4-1106-preview``, AlpacaEval 2's annotator), ``FLR_JUDGE_API_KEY`` or ``OPENAI_API_KEY``. Answers are cached.
* :class:`HFJudge` - a local chat model given the same prompt; p_first from its next-token probabilities of ``m`` and
  ``M`` (no sampling).
* :class:`RewardJudge` - any flrlib :class:`~flrlib.scoring.Scorer` (FLR, FT-FLR, Direct): the response with the
  higher reward wins (1 / 0, a tie 0.5).

The prompt text is AlpacaEval's ``evaluators_configs/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt`` (alpaca_eval
0.6.6, Apache-2.0): read from the installed ``alpaca_eval`` package when it is importable, else the verbatim copy
below (a test checks they are identical when the package is there).

Metrics (:func:`win_rates`): win rate = mean ``win`` x 100 with a bootstrap CI, wins/losses/ties, the discrete win
rate, the LC win rate (AlpacaEval's ``length_controlled_minimal`` GLM, not the leaderboard's
``length_controlled_v1``; :mod:`flrlib.lc_winrate`; each row names it in ``lc_glm``), mean lengths in characters,
and the judge's first-position rate (mean p_first: 50 % for a judge without position bias).
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import time
import urllib.request

import numpy as np

from .cache import JsonlCache, content_key

ALPACA_EVAL_CLF = """<|im_start|>system
You are a highly efficient assistant, who evaluates and selects the best large language model (LLMs) based on the quality of their responses to a given instruction. This process will be used to create a leaderboard reflecting the most accurate and human-preferred answers.
<|im_end|>
<|im_start|>user
I require a leaderboard for various large language models. I'll provide you with prompts given to these models and their corresponding outputs. Your task is to assess these responses, and select the model that produces the best output from a human perspective.

## Instruction

{
    "instruction": \"\"\"{instruction}\"\"\",
}

## Model Outputs

Here are the unordered outputs from the models. Each output is associated with a specific model, identified by a unique model identifier.

{
    {
        "model_identifier": "m",
        "output": \"\"\"{output_1}\"\"\"
    },
    {
        "model_identifier": "M",
        "output": \"\"\"{output_2}\"\"\"
    }
}

## Task

Evaluate the models based on the quality and relevance of their outputs, and select the model that generated the best output. Answer by providing the model identifier of the best model. We will use your output as the name of the best model, so make sure your output only contains one of the following model identifiers and nothing else (no quotes, no spaces, no new lines, ...): m or M.

## Best Model Identifier
<|im_end|>"""
_PROMPT_FILE = "evaluators_configs/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt"


def packaged_template() -> str | None:
    """The prompt file of the installed ``alpaca_eval`` package, or None when it is not installed."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("alpaca_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / _PROMPT_FILE
        if p.exists():
            return p.read_text(encoding="utf-8")
    return None


def template() -> str:
    return packaged_template() or ALPACA_EVAL_CLF


def fill(tmpl: str, instruction: str, output_1: str, output_2: str) -> str:
    """Fill the placeholders literally (not ``str.format``: the prompt has literal braces), in one pass over the
    template, so a response that itself contains ``{output_2}`` is left as written (AlpacaEval replaces the first
    occurrence of each placeholder in turn, which would substitute into such a response)."""
    values = {"instruction": instruction, "output_1": output_1, "output_2": output_2}
    return re.sub(r"\{(instruction|output_1|output_2)\}", lambda m: str(values[m.group(1)]), tmpl)


def chatml_messages(text: str) -> list[dict]:
    """``<|im_start|>role\\ncontent<|im_end|>`` blocks -> chat messages (AlpacaEval's ``prompt_to_chatml``)."""
    text = text.strip()
    msgs = []
    for block in text.split("<|im_start|>")[1:]:
        role, rest = block.split("\n", 1)
        msgs.append({"role": role.strip(), "content": rest.split("<|im_end|>", 1)[0].strip()})
    return msgs


def judge_messages(instruction: str, first: str, second: str) -> list[dict]:
    return chatml_messages(fill(template(), instruction, first, second))


def p_first_from_logprobs(top: dict[str, float]) -> float:
    """p(m) / (p(m) + p(M)) from a token -> logprob mapping; NaN when neither token is present."""
    lm, lM = top.get("m", -math.inf), top.get("M", -math.inf)
    if lm == -math.inf and lM == -math.inf:
        return float("nan")
    mx = max(lm, lM)
    return float(math.exp(lm - mx) / (math.exp(lm - mx) + math.exp(lM - mx)))


# ----------------------------------------------------------------------------------------------------------
# judges
# ----------------------------------------------------------------------------------------------------------

def _http_post(url: str, payload: dict, headers: dict, timeout: float = 120.0) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - the configured judge endpoint
        return json.loads(r.read())


class ApiJudge:
    """OpenAI-compatible API judge with AlpacaEval 2's protocol (see the module doc). ``post`` is injectable."""

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key: str | None = None,
                 cache="auto", post=None, max_retries: int = 5):
        from .paths import cache_dir

        self.model = model or os.environ.get("FLR_JUDGE_MODEL", "gpt-4-1106-preview")
        self.base_url = (base_url or os.environ.get("FLR_JUDGE_BASE_URL", "https://api.openai.com/v1")).rstrip("/")
        self.api_key = api_key or os.environ.get("FLR_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        if post is None and not self.api_key:
            raise RuntimeError("ApiJudge needs an API key: set FLR_JUDGE_API_KEY (or OPENAI_API_KEY), and "
                               "FLR_JUDGE_BASE_URL / FLR_JUDGE_MODEL for a non-OpenAI endpoint.")
        self.post = post or _http_post
        self.max_retries = max_retries
        self.cache = JsonlCache(cache_dir() / "judge" / "api.jsonl" if cache == "auto" else cache)
        self.name = f"api:{self.model}"
        self.description = (f"{self.model} via {self.base_url}, AlpacaEval 2 protocol "
                            "(weighted_alpaca_eval_gpt4_turbo: alpaca_eval_clf prompt, logprob of m vs M)")

    def request(self, messages: list[dict]) -> dict:
        return {"model": self.model, "messages": messages, "max_tokens": 1, "temperature": 1, "logprobs": True,
                "top_logprobs": 5}

    def one(self, instruction: str, first: str, second: str) -> float:
        payload = self.request(judge_messages(instruction, first, second))
        key = content_key(self.base_url, payload)
        if key not in self.cache:
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"}
            for attempt in range(self.max_retries + 1):
                try:
                    answer = self.post(f"{self.base_url}/chat/completions", payload, headers)
                    break
                except Exception as e:  # noqa: BLE001 - network errors and rate limits: retry, then re-raise
                    if attempt == self.max_retries:
                        raise RuntimeError(f"judge API failed after {attempt + 1} tries: {type(e).__name__}: {e}") from e
                    time.sleep(min(60.0, 2.0 ** attempt))
            content = answer["choices"][0]["logprobs"]["content"]
            top = {t["token"]: t["logprob"] for t in content[0]["top_logprobs"]} if content else {}
            self.cache.put(key, {"top_logprobs": top, "text": answer["choices"][0]["message"].get("content")})
        return p_first_from_logprobs(self.cache.get(key)["top_logprobs"])

    def __call__(self, triples, progress: bool = True) -> list[float]:
        from tqdm.auto import tqdm

        return [self.one(*t) for t in tqdm(triples, desc=self.name, disable=not progress, unit="pair")]


class HFJudge:
    """A local chat model as an AlpacaEval-prompt judge: p(first) from its next-token logits of ``m`` vs ``M``.

    Each output is cut to ``max_output_tokens`` tokens first (small models have short contexts).
    """

    def __init__(self, loaded, max_output_tokens: int = 512):
        self.loaded = loaded
        self.max_output_tokens = max_output_tokens
        tok = loaded.tokenizer
        self.ids = {}
        for t in ("m", "M"):
            ids = tok(t, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise ValueError(f"judge tokenizer splits {t!r} into {len(ids)} tokens; HFJudge needs a single token")
            self.ids[t] = ids[0]
        self.name = f"hf:{loaded.spec}" + (f"+{loaded.adapter}" if loaded.adapter else "")
        self.description = (f"local model {loaded.spec} as pairwise judge with the AlpacaEval 2 prompt "
                            "(next-token probability of m vs M)")

    def _cut(self, text: str) -> str:
        tok = self.loaded.tokenizer
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= self.max_output_tokens else tok.decode(ids[: self.max_output_tokens]) + " ..."

    def one(self, instruction: str, first: str, second: str) -> float:
        import torch

        tok, model = self.loaded.tokenizer, self.loaded.model
        msgs = judge_messages(instruction, self._cut(first), self._cut(second))
        enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            logits = model(input_ids=enc["input_ids"].to(model.device),
                           attention_mask=enc["attention_mask"].to(model.device), logits_to_keep=1).logits[0, -1]
        lp = torch.log_softmax(logits.float(), -1)
        return p_first_from_logprobs({t: float(lp[i]) for t, i in self.ids.items()})

    def __call__(self, triples, progress: bool = True) -> list[float]:
        from tqdm.auto import tqdm

        return [self.one(*t) for t in tqdm(triples, desc=self.name, disable=not progress, unit="pair")]


class RewardJudge:
    """Any flrlib scorer as a judge: the output with the higher reward wins (1 / 0; 0.5 on a tie)."""

    def __init__(self, scorer, name: str | None = None, description: str | None = None):
        self.scorer = scorer
        p = scorer.provenance
        self.name = name or f"reward:{p['scorer']}:{p['model']}"
        self.description = description or (f"{p['scorer']} reward of {p['model']} (layout {p['layout']}, "
                                           f"bank {p.get('bank')}, {p.get('bank_size', '-')} follow-ups)")

    def rewards(self, triples, progress: bool = True) -> list[tuple[float, float]]:
        """Rewards of (first, second) per triple; an empty output gets -inf (it loses to any non-empty one)."""
        convs, where = [], []
        for i, (ins, a, b) in enumerate(triples):
            for j, out in enumerate((a, b)):
                if out.strip():
                    convs.append([{"role": "user", "content": ins}, {"role": "assistant", "content": out}])
                    where.append((i, j))
        res = self.scorer.score(convs, progress=progress, desc=self.name) if convs else []
        vals = [[-math.inf, -math.inf] for _ in triples]
        for (i, j), r in zip(where, res):
            vals[i][j] = r["reward"]
        return [tuple(v) for v in vals]

    def __call__(self, triples, progress: bool = True) -> list[float]:
        return [1.0 if a > b else 0.0 if a < b else 0.5 for a, b in self.rewards(triples, progress)]


# ----------------------------------------------------------------------------------------------------------
# judging and win rates
# ----------------------------------------------------------------------------------------------------------

def swapped(item_id, seed: int = 0) -> bool:
    """The seeded coin: True when the candidate (``output_2``) is shown first."""
    return random.Random(f"{seed}\x00{item_id}").random() < 0.5


def make_items(instructions: dict, baseline: dict, candidate: dict, baseline_name: str, candidate_name: str) -> list[dict]:
    """Comparison items for the ids present in all three ``{id: text}`` mappings (instruction order)."""
    items = []
    for i, ins in instructions.items():
        if i in baseline and i in candidate:
            items.append({"id": i, "instruction": ins, "output_1": baseline[i], "output_2": candidate[i],
                          "generator_1": baseline_name, "generator_2": candidate_name})
    return items


def judge_pairs(judge, items: list[dict], seed: int = 0, progress: bool = True) -> list[dict]:
    """Judge each item in a seeded random order; returns items with ``swapped``, ``p_first``, ``win``, ``preference``."""
    for k, it in enumerate(items):
        for f in ("id", "instruction", "output_1", "output_2"):
            if f not in it:
                raise ValueError(f"items[{k}]: missing field {f!r}")
    flips = [swapped(it["id"], seed) for it in items]
    triples = [(it["instruction"], it["output_2"], it["output_1"]) if s else
               (it["instruction"], it["output_1"], it["output_2"]) for it, s in zip(items, flips)]
    p_first = judge(triples, progress=progress) if triples else []
    out = []
    for it, s, p in zip(items, flips, p_first):
        win = p if s else 1.0 - p
        out.append({**it, "judge": judge.name, "swapped": s, "p_first": float(p), "win": float(win),
                    "preference": float(1.0 + win)})
    return out


def win_rates(judged: list[dict], n_boot: int = 2000, seed: int = 0, lc_n_boot: int = 200) -> dict:
    """Win rate (x100) with a bootstrap CI, LC win rate (AlpacaEval's length_controlled_minimal GLM, not the
    leaderboard's length_controlled_v1: ``lc_glm``), lengths and position bias."""
    from .lc_winrate import GLM_MINIMAL, lc_winrate
    from .metrics import bootstrap_ci

    win = np.array([r["win"] for r in judged], dtype=float)
    ok = ~np.isnan(win)
    w = win[ok]
    len1 = np.array([len(r["output_1"]) for r in judged], dtype=float)
    len2 = np.array([len(r["output_2"]) for r in judged], dtype=float)
    lo, hi = bootstrap_ci(np.mean, w, n_boot=n_boot, seed=seed) if len(w) > 1 else (float("nan"), float("nan"))
    lc = lc_winrate(w, len1[ok], len2[ok], n_boot=lc_n_boot, seed=seed) if len(w) > 1 else {}
    p_first = np.array([r["p_first"] for r in judged], dtype=float)[ok]
    first = judged[0] if judged else {}
    return {
        "judge": first.get("judge"), "baseline": first.get("generator_1"), "candidate": first.get("generator_2"),
        "n": int(ok.sum()), "n_failed": int((~ok).sum()),
        "win_rate": float(w.mean() * 100) if len(w) else float("nan"),
        "ci_low": lo * 100, "ci_high": hi * 100,
        "n_wins": int((w > 0.5).sum()), "n_losses": int((w < 0.5).sum()), "n_ties": int((w == 0.5).sum()),
        "discrete_win_rate": float(((w > 0.5) + 0.5 * (w == 0.5)).mean() * 100) if len(w) else float("nan"),
        "lc_win_rate": lc.get("lc_win_rate", float("nan")), "lc_standard_error": lc.get("lc_standard_error", float("nan")),
        "lc_ci_low": lc.get("lc_ci_low", float("nan")), "lc_ci_high": lc.get("lc_ci_high", float("nan")),
        "lc_weights": lc.get("weights", {}), "lc_glm": lc.get("glm", GLM_MINIMAL),
        "avg_length": float(len2[ok].mean()) if ok.any() else float("nan"),
        "avg_length_baseline": float(len1[ok].mean()) if ok.any() else float("nan"),
        "first_position_rate": float(p_first.mean() * 100) if len(p_first) else float("nan"),
    }


def alpaca_eval_files(outputs: list[dict], generator: str) -> list[dict]:
    """Outputs ``{id, instruction, output}`` as AlpacaEval ``model_outputs.json`` rows (for the official CLI:
    ``alpaca_eval evaluate --model_outputs FILE --annotators_config weighted_alpaca_eval_gpt4_turbo``)."""
    return [{"instruction": o["instruction"], "output": o["output"], "generator": generator,
             "dataset": o.get("dataset", "")} for o in outputs]


def evaluate(instructions: dict, outputs: dict, comparisons: list[tuple[str, str]], judges: list[tuple[object, str]],
             seed: int = 0, n_boot: int = 2000, lc_n_boot: int = 200, progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Every judge on every ``(baseline, candidate)`` comparison; returns ``(summary rows, judged items)``.

    ``instructions``: ``{id: text}``; ``outputs``: ``{generator: {id: text}}``; ``judges``: ``(judge, label)`` where
    the label says how the judge relates to the pipeline (e.g. ``"in-loop: the FLR that mined the pairs"`` or
    ``"independent"``) and is copied to every row.
    """
    summary, items_out = [], []
    for judge, label in judges:
        for base, cand in comparisons:
            missing = [g for g in (base, cand) if g not in outputs]
            if missing:
                raise KeyError(f"no outputs for {missing}; have {sorted(outputs)}")
            items = make_items(instructions, outputs[base], outputs[cand], base, cand)
            judged = judge_pairs(judge, items, seed=seed, progress=progress)
            row = win_rates(judged, n_boot=n_boot, seed=seed, lc_n_boot=lc_n_boot)
            summary.append({**row, "judge_label": label, "judge_description": judge.description})
            items_out += [{**r, "judge_label": label} for r in judged]
    return summary, items_out


def make_judges(names: list[str], scorer_args: dict | None = None, hf_model: str | None = None, device: str = "auto",
                dtype: str = "auto", hf_max_output_tokens: int = 512) -> list[tuple[object, str]]:
    """``(judge, label)`` for each name: ``flr`` (the in-loop FLR: ``scorer_args`` from the mining summary, so it is
    the very scorer that mined the pairs), ``hf`` (``hf_model`` with the AlpacaEval prompt), ``direct`` (Direct
    likelihood of ``hf_model``), ``api`` (:class:`ApiJudge`, from the environment)."""
    from .models import load_model

    out, loaded = [], {}

    def lm(spec):
        if spec not in loaded:
            loaded[spec] = load_model(spec, dtype=dtype, device=device)
        return loaded[spec]

    for name in names:
        if name == "flr":
            from .mining import build_scorer

            if not scorer_args:
                raise ValueError("the in-loop FLR judge needs the mining summary's scorer_args (run notebook 05)")
            sc = build_scorer(**scorer_args, device=device, dtype=dtype)
            out.append((RewardJudge(sc, name="flr (in-loop)"),
                        "in-loop: the same FLR scorer that mined the training pairs (not an independent judge)"))
        elif name == "hf":
            out.append((HFJudge(lm(hf_model), max_output_tokens=hf_max_output_tokens),
                        f"independent: {hf_model} prompted as an AlpacaEval 2 pairwise judge"))
        elif name == "direct":
            from .scoring import ScoreConfig, Scorer

            sc = Scorer(lm(hf_model), None, ScoreConfig(scorer="direct"))
            out.append((RewardJudge(sc, name=f"direct:{hf_model}"),
                        f"independent of the mining signal: mean token log-prob of the output under {hf_model}"))
        elif name == "api":
            j = ApiJudge()
            out.append((j, f"independent: {j.model}, AlpacaEval 2 protocol (weighted_alpaca_eval_gpt4_turbo)"))
        else:
            raise ValueError(f"unknown judge {name!r}; use flr, hf, direct or api")
    return out

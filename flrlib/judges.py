"""Pairwise judges for alignment evaluation, and :func:`make_judges`, which builds them by name.

A judge is any object with ``name``, ``description`` and ``__call__(triples) -> [p_first]``: for each
``(instruction, first, second)`` the probability that the output shown *first* is better (NaN: no verdict).
:func:`flrlib.judge.judge_pairs` decides the order (a seeded coin per item) and maps the answers back.

* :class:`AlpacaEvalJudge` (``api``) - AlpacaEval 2 through the ``alpaca_eval`` package itself: its
  ``PairwiseAnnotator`` with an annotator config by name (default ``alpaca_eval_gpt4_turbo_fn``, the paper's;
  :func:`available_annotators` lists the configs of the installed alpaca_eval) builds the prompts, sends the
  config's decoding arguments (tools / logprobs / temperature ...) and parses the answers with the config's
  parser; only the HTTP calls are ours, always chat completions, through :class:`flrlib.client.Client` (the
  ``JUDGE`` endpoint:
  ``FLR_JUDGE_BASE_URL`` / ``FLR_JUDGE_MODEL`` / ``FLR_JUDGE_API_KEY``; bounded concurrency, retries, every answer
  cached, resumable). The config's own model (``gpt-4-1106-preview``) has been shut down by its provider; the
  default model is :data:`flrlib.client.DEFAULT_JUDGE_MODEL` and the judge's name carries the model used.
  alpaca_eval's own output-order randomisation is switched off: ``judge_pairs`` already shows each pair in a
  seeded random order, recorded per item as ``swapped``, so that the first-position rate can be reported.
  What every config gets, whatever its ``fn_completions`` (OpenAI, Anthropic, Bedrock, Cohere, vLLM, HF): the
  request fields of :data:`REQUEST_FIELDS` from its ``completions_kwargs``, ``max_tokens_to_sample`` /
  ``max_new_tokens`` as ``max_tokens``, and nothing else (``model_kwargs``, ``is_chatml_prompt``,
  ``requires_chatml``, ``client_kwargs``, ``price_per_token`` ... configure a client or a local model, not a
  request); a prompt in ChatML is sent as its messages, any other prompt as one user message, whatever the model's
  name (alpaca_eval's own heuristic sends names containing "instruct" to the text-completion API, which an
  OpenAI-compatible chat endpoint does not need). Configs whose ``tokens_to_avoid`` / ``tokens_to_favor`` need
  tiktoken logit biases (several ``alpaca_farm`` ones) are refused with that reason. A pair whose request the
  endpoint refuses (HTTP 400: a content-policy refusal, a prompt over the context ...) gets no verdict (NaN, as
  alpaca_eval's decoder maps a refusal to an empty completion), is recorded in the judged item's ``failure`` and
  counted; it never stops the run.
* :class:`HFJudge` (``hf``) - a local chat model given AlpacaEval's ``alpaca_eval_clf`` prompt (read from the
  installed package); p_first from its next-token probabilities of ``m`` and ``M`` (no sampling).
* :class:`RewardJudge` (``flr``, ``direct``) - any flrlib :class:`~flrlib.scoring.Scorer`: the output with the
  higher reward wins (1 / 0; 0.5 on a tie).
"""
from __future__ import annotations

import math
import re

DEFAULT_ANNOTATOR = "alpaca_eval_gpt4_turbo_fn"   # the paper's AlpacaEval 2 annotator config
CLF_PROMPT = "evaluators_configs/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt"
# what a config's completions_kwargs may put in a chat-completions request; everything else configures a client or a
# local model (num_procs, batch_size, price_per_token, client_kwargs, model_kwargs, is_chatml_prompt ...) and is dropped
REQUEST_FIELDS = {"temperature", "top_p", "max_tokens", "stop", "seed", "logprobs", "top_logprobs", "tools",
                  "tool_choice", "presence_penalty", "frequency_penalty", "response_format", "logit_bias"}
RENAMED = {"max_tokens_to_sample": "max_tokens", "max_new_tokens": "max_tokens"}  # Anthropic / HF / vLLM names


def available_annotators() -> list[str]:
    """The annotator configs of the installed alpaca_eval (folders of ``evaluators_configs`` with a configs.yaml)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("alpaca_eval")
    names = set()
    for loc in (spec.submodule_search_locations if spec else None) or []:
        names |= {p.parent.name for p in (Path(loc) / "evaluators_configs").glob("*/configs.yaml")}
    return sorted(names)


def _alpaca_eval():
    """Import alpaca_eval's annotators without letting it raise the root logger to INFO (it does at import)."""
    import logging

    root = logging.getLogger()
    level = root.level
    try:
        from alpaca_eval import annotators, utils
    finally:
        root.setLevel(level)
    return annotators, utils


# ----------------------------------------------------------------------------------------------------------
# AlpacaEval 2 through alpaca_eval, over an OpenAI-compatible endpoint
# ----------------------------------------------------------------------------------------------------------

class AlpacaEvalJudge:
    """An alpaca_eval annotator config (see the module doc) whose completions go through :class:`flrlib.client.Client`.

    ``endpoint``: a :class:`flrlib.client.Endpoint` (default: the ``JUDGE`` role's environment). ``cache``:
    ``"auto"`` (``<cache_dir>/judge/<model>.jsonl``), a path, or ``None``.
    """

    def __init__(self, annotator: str = DEFAULT_ANNOTATOR, endpoint=None, cache="auto", concurrency: int = 8,
                 timeout: float | None = None, max_retries: int | None = None, seed: int = 0,
                 retry_failed: bool = False):
        from pathlib import Path

        from .client import Client, Endpoint
        from .paths import cache_dir, slug

        if not Path(annotator).exists() and annotator not in available_annotators():
            raise ValueError(f"unknown alpaca_eval annotator config {annotator!r}; the installed alpaca_eval has: "
                             f"{', '.join(available_annotators())} (or give a path to a configs.yaml)")
        annotators, self._ae_utils = _alpaca_eval()
        self.endpoint = endpoint or Endpoint.from_env("JUDGE")
        path = cache_dir() / "judge" / f"{slug(self.endpoint.model)}.jsonl" if cache == "auto" else cache
        self.client = Client(self.endpoint, cache=path, concurrency=concurrency, timeout=timeout,
                             max_retries=max_retries, retry_failed=retry_failed)
        self.annotator_config = annotator
        self.annotator = _annotator_class(annotators.PairwiseAnnotator, self._completions, self.endpoint.model)(
            annotators_config=annotator, caching_path=None, seed=seed, is_avoid_reannotations=False)
        self.refused: dict[str, dict] = {}   # prompt -> failure, of the requests the endpoint refused
        self.last_failures: dict[int, dict] = {}  # triple index -> failure, of the latest call
        self.progress = True
        self.name = f"alpaca_eval:{annotator}:{self.endpoint.model}"
        self.description = (f"alpaca_eval annotator {annotator} (its prompt, decoding arguments and parser) with "
                            f"{self.endpoint.label}")

    def request_fields(self, decoding: dict) -> dict:
        """The request fields of a config's ``completions_kwargs`` (see the module doc)."""
        unsupported = sorted(k for k in ("tokens_to_avoid", "tokens_to_favor") if decoding.get(k))
        if unsupported:
            raise ValueError(f"annotator {self.annotator_config}: {unsupported} need tiktoken logit biases, which "
                             "an arbitrary OpenAI-compatible endpoint does not share; pick another config")
        request = {"top_p": 1.0, "temperature": 0.7, "max_tokens": 2048}  # openai_completions' defaults
        for k, v in decoding.items():
            k = RENAMED.get(k, k)
            if k in REQUEST_FIELDS and v is not None:
                request[k] = v
        return request

    def messages(self, prompt: str) -> list[dict]:
        p = prompt.strip()
        if p.startswith("<|im_start|>") and p.endswith("<|im_end|>"):
            return self._ae_utils.prompt_to_chatml(p)
        return [{"role": "user", "content": p}]

    def _completions(self, prompts, model_name: str, **decoding) -> dict:
        """alpaca_eval's ``fn_completions`` contract (as ``openai_completions``), through our client."""
        import time

        from .client import failed, text

        request = self.request_fields(decoding)
        requests = [{"messages": self.messages(p), **request} for p in prompts]
        start = time.time()
        replies = self.client.chat(requests, progress=self.progress, desc=self.name)
        per = (time.time() - start) / max(1, len(prompts))
        for p, r in zip(prompts, replies):
            if failed(r):
                self.refused[p] = failed(r)
        choices = [{"content": "", "logprobs": None, "finish_reason": "refused"} if failed(r) else r["choices"][0]
                   for r in replies]
        texts = [text(c) or " " for c in choices]  # alpaca_eval turns an empty answer into " "
        return {"completions": texts, "price_per_example": [float("nan")] * len(texts),
                "time_per_example": [per] * len(texts),
                "completions_all": [{"text": t, "logprobs": c["logprobs"], "finish_reason": c["finish_reason"],
                                     "message": {"role": "assistant", "content": c["content"]}}
                                    for t, c in zip(texts, choices)]}

    def __call__(self, triples, progress: bool = True) -> list[float]:
        """p_first per triple; ``last_failures`` maps the index of each triple whose request the endpoint refused
        to that failure (its p_first is NaN)."""
        self.progress, self.refused, self.last_failures = progress, {}, {}
        rows = [{"instruction": i, "output_1": a, "output_2": b} for i, a, b in triples]
        if not rows:
            return []
        out = self.annotator.annotate_pairs(rows)
        prefs = [r.get("preference") for r in out]
        # preference 1 = output_1 (the one shown first) is better, 2 = output_2; None / NaN = no parsable verdict
        p_first = [float("nan") if p is None or p != p else 2.0 - float(p) for p in prefs]
        for prompt, failure in self.refused.items():  # the prompt that carried each refused triple (one per pair)
            for k, (ins, a, b) in enumerate(triples):
                if k not in self.last_failures and all(x.strip() in prompt for x in (ins, a, b)):
                    self.last_failures[k] = failure
                    p_first[k] = float("nan")
                    break
        return p_first


def _annotator_class(pairwise, completions, model_name: str):
    """alpaca_eval's ``PairwiseAnnotator`` whose single annotators get our ``fn_completions``, the endpoint's model
    and no output-order randomisation *in place of* their config's (``lmsys_gpt4`` / ``aviary_gpt4`` set
    ``is_randomize_output_order`` themselves: given once more as a keyword it is a TypeError), before they are built
    (so a config naming another provider's decoder does not import that provider's package)."""

    class Annotator(pairwise):
        @property
        def SingleAnnotator(self):  # noqa: N802 - alpaca_eval's name
            single = super().SingleAnnotator

            def make(**config):
                config.update(fn_completions=completions, is_randomize_output_order=False,
                              completions_kwargs={**(config.get("completions_kwargs") or {}), "model_name": model_name})
                return single(**config)

            return make

    return Annotator


# ----------------------------------------------------------------------------------------------------------
# a local chat model with AlpacaEval's classification prompt
# ----------------------------------------------------------------------------------------------------------

def clf_template() -> str:
    """AlpacaEval's ``alpaca_eval_clf`` prompt, read from the installed package (not imported)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("alpaca_eval")
    for loc in (spec.submodule_search_locations if spec else None) or []:
        p = Path(loc) / CLF_PROMPT
        if p.exists():
            return p.read_text(encoding="utf-8")
    raise RuntimeError(f"alpaca_eval is not installed ({CLF_PROMPT} not found): pip install alpaca_eval==0.6.6")


def fill(tmpl: str, instruction: str, output_1: str, output_2: str) -> str:
    """Fill the placeholders literally (not ``str.format``: the prompt has literal braces), in one pass over the
    template, so a response that itself contains ``{output_2}`` is left as written."""
    values = {"instruction": instruction, "output_1": output_1, "output_2": output_2}
    return re.sub(r"\{(instruction|output_1|output_2)\}", lambda m: str(values[m.group(1)]), tmpl)


def judge_messages(instruction: str, first: str, second: str) -> list[dict]:
    """The chat messages of the clf prompt for one pair (``<|im_start|>role ... <|im_end|>`` blocks)."""
    msgs = []
    for block in fill(clf_template(), instruction, first, second).strip().split("<|im_start|>")[1:]:
        role, rest = block.split("\n", 1)
        msgs.append({"role": role.strip(), "content": rest.split("<|im_end|>", 1)[0].strip()})
    return msgs


def p_first_from_logprobs(top: dict[str, float]) -> float:
    """p(m) / (p(m) + p(M)) from a token -> logprob mapping; NaN when neither token is present."""
    lm, lM = top.get("m", -math.inf), top.get("M", -math.inf)
    if lm == -math.inf and lM == -math.inf:
        return float("nan")
    mx = max(lm, lM)
    return float(math.exp(lm - mx) / (math.exp(lm - mx) + math.exp(lM - mx)))


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


# ----------------------------------------------------------------------------------------------------------
# reward models as judges
# ----------------------------------------------------------------------------------------------------------

class RewardJudge:
    """Any flrlib scorer as a judge: the output with the higher reward wins (1 / 0; 0.5 on a tie).

    ``collective``: its scorer is data-parallel under several ranks, so every rank must judge (the other judges
    send requests or generate, which :func:`flrlib.judge.evaluate` does once, on rank 0)."""

    collective = True

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
# by name
# ----------------------------------------------------------------------------------------------------------

def make_judges(names: list[str], flr_scorer=None, hf_model: str | None = None, device: str = "auto",
                dtype: str = "auto", hf_max_output_tokens: int = 512, annotator: str = DEFAULT_ANNOTATOR,
                endpoint=None, concurrency: int = 8, retry_failed: bool = False) -> list[tuple[object, str]]:
    """``(judge, label)`` for each name: ``flr`` (the in-loop FLR: ``flr_scorer``, the very scorer that mined the
    pairs, e.g. ``mining.build_scorer(**summary["provenance"]["scorer_args"])``), ``hf`` (``hf_model`` with the
    AlpacaEval prompt), ``direct`` (Direct likelihood of ``hf_model``), ``api`` (:class:`AlpacaEvalJudge` with
    ``annotator`` at ``endpoint``, default the ``JUDGE`` environment, ``concurrency`` requests in flight). The label says how the judge relates to the
    pipeline and is copied to every result row."""
    from .models import load_model

    out, loaded = [], {}

    def lm(spec):
        if spec not in loaded:
            loaded[spec] = load_model(spec, dtype=dtype, device=device)
        return loaded[spec]

    for name in names:
        if name == "flr":
            if flr_scorer is None:
                raise ValueError("the in-loop FLR judge needs flr_scorer: the scorer that mined the pairs "
                                 "(mining.build_scorer(**summary['provenance']['scorer_args']); run notebook 05)")
            out.append((RewardJudge(flr_scorer, name="flr (in-loop)"),
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
            j = AlpacaEvalJudge(annotator=annotator, endpoint=endpoint, concurrency=concurrency,
                                retry_failed=retry_failed)
            out.append((j, f"independent: {j.endpoint.model}, AlpacaEval 2 annotator {annotator} (alpaca_eval)"))
        else:
            raise ValueError(f"unknown judge {name!r}; use flr, hf, direct or api")
    return out

"""The import direction of ../shared/DESIGN.md, checked on the source (every import, lazy ones included)."""
import ast
from pathlib import Path

import flrlib

PKG = Path(flrlib.__file__).parent
BASE = {"paths", "files", "net", "messages", "results", "profiles", "parallel", "models", "cache", "data"}
CORE = {"chat", "followups", "scoring", "metrics"}
MODEL_CODE = {"models", "scoring", "torch", "transformers", "peft", "trl"}


def _imports(path: Path) -> set[str]:
    """First component of every flrlib module (``data`` for ``flrlib.data.x``) and of every outside package."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] if not a.name.startswith("flrlib.") else a.name.split(".")[1]
                    for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 0:
                out.add(mod.split(".")[1] if mod.startswith("flrlib.") else mod.split(".")[0])
                continue
            inside_data = path.parent.name == "data"
            if node.level == 1 and inside_data:
                out.add("data")  # a sibling in flrlib/data
            elif mod:
                out.add(mod.split(".")[0])
            else:  # from . import x / from .. import x
                out |= {a.name for a in node.names}
    return out


def _module(name: str) -> Path:
    return PKG / f"{name}.py"


def test_data_imports_nothing_above_the_base():
    for f in sorted((PKG / "data").glob("*.py")):
        above = {m for m in _imports(f) if (PKG / f"{m}.py").exists() or (PKG / m).is_dir()} - BASE
        assert not above, f"flrlib/data/{f.name} imports {sorted(above)}"


def test_base_and_core_import_no_workflow():
    for name in sorted(BASE - {"data"} | CORE):
        mods = {m for m in _imports(_module(name)) if (PKG / f"{m}.py").exists() or (PKG / m).is_dir()}
        assert mods <= BASE | CORE, f"flrlib/{name}.py imports {sorted(mods - BASE - CORE)}"


def test_reporting_and_metrics_load_no_model():
    for name in ("reporting", "paired", "metrics"):
        bad = _imports(_module(name)) & MODEL_CODE
        assert not bad, f"flrlib/{name}.py imports {sorted(bad)}"
    outside = {m for m in _imports(_module("metrics")) if not (PKG / f"{m}.py").exists()}
    assert outside <= {"__future__", "warnings", "math", "numpy", "scipy", "itertools", "functools", "collections"}, outside


# the workflows, the engine and the face of DESIGN.md: what an analysis module must never import
ABOVE_ANALYSIS = {"benchmarks", "feedback", "lora", "mining", "align", "generate", "rewrite", "judge", "judges",
                  "reward", "rerank", "explore", "transcripts", "compare", "views", "widget", "scoring", "chat",
                  "followups", "cache", "models", "client", "cli", "reproduce", "plan", "serve"}
ANALYSIS = ("metrics", "paired", "winrate", "reporting")


def _graph() -> dict:
    mods = {p.stem: p for p in PKG.glob("*.py") if p.stem != "__init__"}
    return {m: {x for x in _imports(p) if x in mods and x != m} for m, p in mods.items()}


def test_analysis_reads_result_files_and_imports_no_workflow():
    """Issue #26: paired imported benchmarks.result_path (analysis reaching into a workflow); the naming rules of
    result files live in flrlib.results."""
    for name in ANALYSIS:
        bad = _imports(_module(name)) & ABOVE_ANALYSIS
        assert not bad, f"flrlib/{name}.py imports {sorted(bad)}"
    import flrlib.benchmarks as b
    import flrlib.results as r

    assert b.result_path is r.result_path and b.result_stem is r.result_stem  # one rule, re-exported


def test_no_import_cycles():
    """Issue #26: paired and reporting imported each other. No module imports (even lazily) one that imports it
    back, directly or through others."""
    graph = _graph()
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)

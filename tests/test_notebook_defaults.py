"""Run by hand in JupyterLab, a notebook must write what the demo profile writes: its parameter defaults equal the
demo profile's values (so `profile = "demo"` in a parameters cell is true)."""
import ast

import papermill as pm
import pytest

from flrlib.profiles import load_profile, notebook_parameters
from flrlib.reproduce import notebooks

# Parameters the headless runner sets on purpose to something a person at the notebook would not want.
RUNNER_ONLY = {("02_flr_scoring", "interactive"), ("07_tables_figures", "update_readme")}


@pytest.mark.parametrize("nb", notebooks(), ids=lambda p: p.stem)
def test_notebook_defaults_equal_the_demo_profile(nb):
    declared = pm.inspect_notebook(str(nb))
    params = notebook_parameters(load_profile("demo"), nb.stem)
    assert "profile" in declared and ast.literal_eval(declared["profile"]["default"]) == "demo"
    differ = {}
    for k, v in params.items():
        if k in declared and (nb.stem, k) not in RUNNER_ONLY:
            default = ast.literal_eval(declared[k]["default"])
            if default != v:
                differ[k] = (default, v)
    assert not differ, f"{nb.name}: notebook default != demo profile value: {differ}"

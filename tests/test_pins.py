"""environment.yml and pyproject.toml pin the same stack."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_pins_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pyproject = project["dependencies"] + project["optional-dependencies"]["test"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    norm = lambda xs: {re.sub(r"\s+", "", x).lower() for x in xs}  # noqa: E731
    assert norm(pyproject) == norm(pip_section)
    assert all("==" in x for x in pyproject), "every dependency is pinned exactly"
    assert "torch==2.13.0" in norm(pyproject)


def test_test_tools_are_not_runtime_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {re.split("[=<>]", d)[0] for d in project["dependencies"]}
    assert not runtime & {"pytest", "playwright"}
    assert {re.split("[=<>]", d)[0] for d in project["optional-dependencies"]["test"]} == {"pytest", "playwright"}

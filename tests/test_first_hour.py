"""What a newcomer runs first: the README's two commands, and CI running exactly the test one."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_COMMAND = 'pip install -e ".[test]" && python3 -m pytest'


def test_readme_gives_one_command_for_the_main_job_and_one_for_the_tests():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert commands[1] == TEST_COMMAND
    assert commands[0].startswith("pip install -e ") and "&& attnbench serve-bench" in commands[0]


def test_ci_runs_exactly_the_readme_test_command():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert TEST_COMMAND in lines
    assert not any(re.search(r"pytest\b", line) for line in lines if line != TEST_COMMAND and not line.startswith("#"))


def test_the_test_extra_brings_pytest_and_pytest_prints_its_summary():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(dep.startswith("pytest") for dep in project["project"]["optional-dependencies"]["test"])
    # -q here plus a user's -q would hide the "N passed" line
    assert "-q" not in project["tool"]["pytest"]["ini_options"].get("addopts", "")

"""examples/github-actions-gpu.yml: valid YAML whose steps call attnbench commands that exist."""

import re
from pathlib import Path

import pytest

from attnbench import cli

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "github-actions-gpu.yml"


def test_workflow_runs_scenario_compare_report_and_uploads():
    yaml = pytest.importorskip("yaml")
    flow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = flow["jobs"].values()
    assert "self-hosted" in job["runs-on"] and "gpu" in job["runs-on"]
    script = "\n".join(s.get("run", "") for s in job["steps"])
    assert "attnbench run scenarios/seed-serve.toml --result-dir out" in script
    assert "attnbench compare results/h100 out --markdown summary.md" in script
    assert "GITHUB_STEP_SUMMARY" in script and "exit $rc" in script  # compare's exit code decides the job
    assert "attnbench report $dirs --out report.html" in script
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and "report.html" in upload["with"]["path"]
    for command in re.findall(r"\battnbench ([a-z-]+)", script):
        assert command in cli.COMMANDS, f"the workflow calls unknown command attnbench {command}"
    assert (WORKFLOW.parents[1] / "scenarios" / "seed-serve.toml").is_file()

"""The command line recorded in every result's provenance."""

import sys

from attnbench import provenance


def test_python_dash_m_is_recorded_as_the_attnbench_command():
    argv = ["/src/attnbench/__main__.py", "serve-bench", "--input", "16,32", "--result-dir", "my results"]
    assert provenance.command_line(argv) == "attnbench serve-bench --input 16,32 --result-dir 'my results'"


def test_console_script_and_other_programs_keep_their_name():
    assert provenance.command_line(["/usr/local/bin/attnbench", "report", "x"]) == "attnbench report x"
    assert provenance.command_line(["/opt/run_bench.py", "a b"]) == "run_bench.py 'a b'"
    assert provenance.command_line([]) == ""


def test_collect_records_the_current_command(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/x/attnbench/__main__.py", "microbench", "--dry-run"])
    assert provenance.collect()["command"] == "attnbench microbench --dry-run"

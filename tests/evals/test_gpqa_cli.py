"""`attnbench gpqa` as a user runs it: the real command line against the scripted server."""

import subprocess
import sys

from attnbench.evals import gpqa
from attnbench.records.record import load
from mcq_server import MCQServer, fixture_script

QS = gpqa.load("mini")


def attnbench(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "attnbench", *args], capture_output=True, text=True, timeout=timeout)


def test_gpqa_end_to_end_with_endpoint(tmp_path):
    with MCQServer(fixture_script(QS, {0: "wrong", 1: "malformed"})) as srv:
        # the base URL without /v1, a model name, the responses API (default), a subset
        p = attnbench("gpqa", "--endpoint", srv.root_url, "--model", "scripted-mcq", "--dataset", "mini",
                      "--repeats", "3", "--limit", "10", "--effort", "medium", "--result-dir", str(tmp_path))
    assert p.returncode == 0, p.stderr
    (rec,) = load(tmp_path / "endpoint" / "gpqa.json")
    assert rec.metrics["n_expected"] == 30 and rec.scenario["limit"] == 10
    assert srv.paths == ["responses"] * 30 and srv.requests[0]["reasoning"] == {"effort": "medium"}
    assert p.stdout.startswith(f"endpoint: {rec.metrics['score_pct']:.1f}% ± ")
    assert "30/30 answered, 0 HTTP 400, 0 failed" in p.stdout and "answered-only 90.0%" in p.stdout
    assert f"results in {tmp_path}" in p.stderr
    for name in ("summary.md", "comparison.json", "cache.jsonl", "gpqa_scores.png", "endpoint/report.html"):
        assert (tmp_path / name).exists(), name


def test_effort_none_sends_no_effort(tmp_path, monkeypatch, capsys):
    with MCQServer(fixture_script(QS)) as srv:
        code, _, err = in_process(monkeypatch, capsys, "gpqa", "--endpoint", srv.base_url, "--dataset", "mini",
                                  "--repeats", "1", "--limit", "2", "--effort", "none", "--api", "chat",
                                  "--result-dir", str(tmp_path))
    assert code == 0, err
    assert len(srv.requests) == 2 and all("reasoning_effort" not in b for b in srv.requests)


def in_process(monkeypatch, capsys, *args):
    """The real entry point (attnbench.cli.main) without a new interpreter: (exit code, stdout, stderr)."""
    import pytest

    from attnbench import cli

    monkeypatch.setattr(sys, "argv", ["attnbench", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return e.value.code or 0, out.out, out.err


def test_user_errors_are_one_line(tmp_path, monkeypatch, capsys):
    cases = [
        (("--endpoint", "http://127.0.0.1:9", "--dataset", "mini"), "cannot reach http://127.0.0.1:9/v1"),
        (("--endpoint", "http://127.0.0.1:9", "--dataset", str(tmp_path / "none.csv")), "no such file"),
        (("--endpoint", "x:1", "--backends", "fa3"), "drop --backends"),
        (("--dataset", "mini"), "--endpoint URL"),
        (("--endpoint", "x:1", "--effort", "max"), "--effort must be one of low, medium, high, none (got 'max')"),
        (("--endpoint", "x:1", "--api", "completions"), "--api must be one of responses, chat (got 'completions')"),
        (("--endpoint", "x:1", "--grader", "strict"), "--grader must be one of reference, lenient (got 'strict')"),
        (("--backends", "fa9"), "unknown backend 'fa9'"),
        (("--endpoint", "x:1", "--repeats", "0"), "--repeats must be >= 1 (got 0)"),
        (("--endpoint", "x:1", "--retry-time", "-1"), "--retry-time must be >= 0 (got -1.0)"),
    ]
    with MCQServer(fixture_script(QS)) as srv:
        cases.append((("--endpoint", srv.base_url, "--model", "gpt-oss", "--dataset", "mini"), "does not serve 'gpt-oss'"))
        for args, text in cases:
            code, _, err = in_process(monkeypatch, capsys, "gpqa", *args, "--result-dir", str(tmp_path / "r"))
            assert code == 2 and err.startswith("attnbench: error: ") and text in err, (args, err)
            assert len(err.strip().splitlines()) == 1, err


def test_all_requests_failing_exits_nonzero(tmp_path):
    with MCQServer(fixture_script(QS, {i: "always500" for i in range(20)})) as srv:
        p = attnbench("gpqa", "--endpoint", srv.base_url, "--dataset", "mini", "--repeats", "1", "--limit", "2",
                      "--retry-time", "0", "--result-dir", str(tmp_path))
    assert p.returncode == 1
    assert ("endpoint: failed: no sample was answered (0 rejected with HTTP 400, 2 failed; first: gave up after "
            "1 attempts in 0 s (retry time 0 s, --retry-time): HTTP 500") in p.stdout


def test_two_named_endpoints_print_the_verdict(tmp_path, monkeypatch, capsys):
    with MCQServer(fixture_script(QS)) as a, MCQServer(fixture_script(QS)) as b:
        for srv, name in ((a, "fa3"), (b, "fa4")):
            code, out, err = in_process(monkeypatch, capsys, "gpqa", "--endpoint", srv.base_url, "--name", name,
                                        "--dataset", "mini", "--repeats", "1", "--api", "chat",
                                        "--result-dir", str(tmp_path))
            assert code == 0, err
    assert out.splitlines()[-1] == "fa4 vs fa3: +0.0 pts, 95% CI [+0.0, +0.0]: no evidence of a difference"

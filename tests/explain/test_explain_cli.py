"""`attnbench explain` end to end on tiny constructed run directories."""

import json
import os
import subprocess
import sys

import pytest
from explain_runs import serve, two_backends, write_run
from typer.testing import CliRunner

from attnbench import cli as root
from attnbench.explain import cli
from attnbench.records import record


def attnbench(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "attnbench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


@pytest.fixture
def fixed_timer(monkeypatch):
    """Kernel time = 1us per KV token for every kernel; remembers (kernel, device, repeats)."""
    seen = []

    def make(device, repeats):
        def timer(kernel, shape):
            seen.append((kernel, device, repeats))
            return float(sum(shape.context_lens))

        return timer

    monkeypatch.setattr(cli, "microbench_timer", make)
    return seen


def test_explain_writes_table_records_summary_and_plot(tmp_path, fixed_timer):
    run_dir = write_run(tmp_path / "run", two_backends())
    res = CliRunner().invoke(root.app, ["explain", str(run_dir), "--repeats", "3", "--same-load",
                                        "--kernel-backend", "attnbench-fa4=fa4"])
    assert res.exit_code == 0, res.output
    assert ("fa4 vs fa3: TPOT +1.00 ms; attention +0.00 ms (0% of the gap); rest +1.00 ms | "
            "attention = kernel +0.00 ms (same batches) + load +0.00 ms") in res.output
    assert {k for k, _, _ in fixed_timer} == {"fa3", "fa4"} and fixed_timer[0][1:] == ("cuda", 3)
    out = run_dir / "explain"
    assert {p.name for p in out.iterdir()} == {"fa3", "fa4", "summary.md", "explain-32x32-n4.png"}
    recs = [r for r in record.load(run_dir) if r.kind == "explain"]
    assert sorted(r.backend for r in recs) == ["fa3", "fa4"]
    assert json.loads((out / "fa4" / "explain-32x32-n4.json").read_text())["scenario"]["kernel"] == "fa4"


def test_result_dir_and_a_second_run_ignore_earlier_explain_records(tmp_path, fixed_timer):
    run_dir = write_run(tmp_path / "run", two_backends())
    for _ in range(2):  # the second run finds explain/ records inside RUN_DIR and must skip them
        res = CliRunner().invoke(root.app, ["explain", str(run_dir), "--backends", "fa3"])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(root.app, ["explain", str(run_dir), "--result-dir", str(tmp_path / "elsewhere"),
                                        "--shape", "32x32"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "elsewhere" / "summary.md").exists()
    one = run_dir / "fa4" / "serve-32x32.json"
    res = CliRunner().invoke(root.app, ["explain", str(one)])  # a single record: results beside it
    assert res.exit_code == 0, res.output
    assert (run_dir / "fa4" / "explain" / "fa4" / "explain-32x32-n4.json").exists()


def test_an_interrupt_keeps_what_was_measured(tmp_path, monkeypatch):
    def make(device, repeats):
        def timer(kernel, shape):
            if kernel == "fa4":
                raise KeyboardInterrupt
            return 100.0

        return timer

    monkeypatch.setattr(cli, "microbench_timer", make)
    run_dir = write_run(tmp_path / "run", two_backends())
    res = CliRunner().invoke(root.app, ["explain", str(run_dir)])
    assert res.exit_code != 0
    assert [r.backend for r in record.load(run_dir / "explain")] == ["fa3"]
    md = (run_dir / "explain" / "summary.md").read_text()
    assert "| fa3 | fa3 | 2.00 |" in md and "| fa4 |" not in md


def test_without_inflight_samples_the_error_is_one_line(tmp_path):
    run_dir = write_run(tmp_path / "run", [serve("fa3", 2.0, [[32]], inflight=False)])
    p = attnbench("explain", run_dir, "--device", "cpu", "--kernel-backend", "fa3=reference")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0
    assert "re-run serve-bench with this attnbench version" in p.stderr
    assert not (run_dir / "explain").exists()


def test_a_directory_without_serve_records_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    p = attnbench("explain", tmp_path / "empty")
    assert p.returncode == 2 and "no serve records" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("args,message", [(["--device", "tpu"], "--device 'tpu'"),
                                          (["--coverage", "0"], "--coverage 0.0"),
                                          (["--repeats", "0"], "--repeats 0"),
                                          (["--kernel-backend", "fa3"], "SERVE_BACKEND=MICROBENCH_BACKEND")])
def test_bad_flags_are_user_errors(tmp_path, args, message):
    run_dir = write_run(tmp_path / "run", two_backends())
    p = attnbench("explain", run_dir, *args)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def test_reference_kernels_timed_on_cpu(tmp_path):
    """The real microbench path: the reference backend on CPU with a tiny model layout."""
    pytest.importorskip("torch")
    pytest.importorskip("attnbench.microbench.api")
    run_dir = write_run(tmp_path / "run", two_backends())
    res = CliRunner().invoke(root.app, ["explain", str(run_dir), "--device", "cpu", "--repeats", "2",
                                        "--kernel-backend", "fa3=reference", "--kernel-backend", "fa4=reference"])
    assert res.exit_code == 0, res.output
    recs = {r.backend: r for r in record.load(run_dir / "explain")}
    for r in recs.values():
        assert r.status == "ok" and r.metrics["attn_est_ms"] > 0 and r.samples["compositions"][0]["layer_us"] > 0
    # one kernel, one shape, timed once: no attention gap, the whole TPOT gap is "rest"
    assert recs["fa3"].samples["pairs"][0]["attn_gap_ms"] == 0 and recs["fa3"].samples["pairs"][0]["rest_ms"] == 1.0


@pytest.mark.gpu
def test_real_kernels_on_the_gpu(tmp_path):
    """fa3 and fa4 timed by microbench on the served model's layout (Qwen3-0.6B: 16/8 heads of 128, bf16)."""
    qwen = {"num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
            "dtype": "bfloat16", "block_size": 16}
    steady = [[1000 + i for i in range(64)]] * 4
    run_dir = write_run(tmp_path / "run", [serve("fa3", 20.0, steady, model_shape=qwen),
                                           serve("fa4", 25.0, steady, model_shape=qwen)])
    p = attnbench("explain", run_dir, "--device", "cuda", "--repeats", "5", "--same-load", timeout=600)
    assert p.returncode == 0, p.stderr
    recs = {r.backend: r for r in record.load(run_dir / "explain")}
    assert {b: r.status for b, r in recs.items()} == {"fa3": "ok", "fa4": "ok"}, p.stdout
    for r in recs.values():  # B64 x ~1000 tokens, 28 layers: tens of us per layer, well under the TPOT
        assert 0 < r.metrics["attn_est_ms"] < 10, p.stdout
    print(p.stdout)

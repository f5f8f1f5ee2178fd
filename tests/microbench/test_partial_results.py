"""A microbench run cut short (SIGKILL, or SIGINT/SIGTERM from `timeout` while a kernel is stuck
in native code, e.g. a JIT build) keeps every finished shape on disk, and the compile pass is
reported apart from the timing. CPU only: the reference backend, one shape of which hangs."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from attnbench.cli import app  # noqa: E402
from attnbench.microbench import output  # noqa: E402
from attnbench.records.record import Record, load  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--device", "cpu", "--backends", "reference", "--heads", "4/2", "--head-dim", "16", "--repeats", "2",
        "--page-size", "8", "--batch", "1"]

# The reference backend, except that its first call on context HANG blocks: in native code
# (a pthread mutex locked twice: no signal gets it out, as with nvcc or a CuTe compile) or in
# Python (time.sleep: the main thread sees the signal at once).
HANGING_RUN = textwrap.dedent("""
    import ctypes, pathlib, sys, time
    from attnbench.microbench import run
    from attnbench.microbench.adapters.reference import Reference

    hang_ctx, mark, mode = int(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]

    class Hangs(Reference):
        def decode(self, shape, inp):
            fn = super().decode(shape, inp)
            if shape.context != hang_ctx:
                return fn
            def stuck():
                mark.write_text("stuck")
                if mode == "native":
                    libc, m = ctypes.CDLL(None), ctypes.create_string_buffer(64)
                    libc.pthread_mutex_lock(m)
                    libc.pthread_mutex_lock(m)  # deadlocks; signals do not interrupt it
                time.sleep(600)
            return stuck

    run.load_kernel = lambda name, opts: Hangs()
    from attnbench.cli import main
    sys.argv = ["attnbench", *sys.argv[4:]]
    main()
""")


def _start(tmp_path, mode, hang_ctx=32):
    out, mark = tmp_path / "res", tmp_path / "stuck"
    cmd = [sys.executable, "-c", HANGING_RUN, str(hang_ctx), str(mark), mode,
           "microbench", "decode", *TINY, "--context", "16,24,32,40", "--result-dir", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not mark.exists():  # the first two shapes are done, the third is stuck in its first call
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"run did not reach the hanging shape (rc {proc.returncode}):\n{proc.communicate()[0]}")
        time.sleep(0.1)
    time.sleep(0.5)
    return proc, out


def _by_context(out):
    return {r.scenario["context"]: r for r in load(out)}


def test_sigkill_keeps_the_finished_shapes_records_and_summary(tmp_path):
    proc, out = _start(tmp_path, "native")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    recs = _by_context(out)
    assert sorted(recs) == [16, 24]  # every shape finished before the kill, nothing of the one in flight
    assert all(r.status == "ok" and r.metrics["us"] > 0 and r.metrics["first_call_s"] >= 0 for r in recs.values())
    assert len(json.loads((out / "decode-reference.json").read_text())) == 2
    summary = (out / "summary.md").read_text()  # rewritten after every record, not only at the end
    assert "B1 ctx16 H4/2/16 bf16" in summary and "B1 ctx24 H4/2/16 bf16" in summary
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no half-written files


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_stuck_in_native_code_saves_within_seconds(tmp_path, sig):
    """`timeout -k 5 -s INT` gives 5 s before SIGKILL: the watchdog saves and exits in time even
    though the main thread never returns to Python."""
    proc, out = _start(tmp_path, "native")
    t0 = time.monotonic()
    proc.send_signal(sig)
    text, _ = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 5, text
    assert proc.returncode == 130, text
    assert "busy in native code" in text  # the watchdog saved, not the (stuck) main thread
    recs = _by_context(out)
    assert sorted(recs) == [16, 24, 32]
    cut = recs[32]
    assert cut.samples["verdict"] == "interrupted" and cut.status == "failed"
    assert "compiling reference on B1 ctx32" in cut.error, cut.error
    assert "B1 ctx32 H4/2/16 bf16" in text and "cut" in text  # the terminal table names it
    summary = (out / "summary.md").read_text()
    assert "| B1 ctx32 H4/2/16 bf16 | reference |" in summary and "interrupted" in summary
    assert list((out / "plots").glob("decode-*.png"))


def test_sigterm_with_responsive_main_thread_still_writes_everything(tmp_path):
    proc, out = _start(tmp_path, "python")
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0, text
    assert "busy in native code" not in text  # the main thread's own cleanup did it
    recs = _by_context(out)
    assert sorted(recs) == [16, 24, 32] and recs[32].samples["verdict"] == "interrupted"
    assert "results:" in text and (out / "summary.md").exists()


def test_an_interrupted_record_never_replaces_a_measurement(tmp_path):
    def rec(verdict, us):
        return Record(kind="microbench", backend="fa3", scenario={"label": "B1 ctx8", "op": "decode", "cold_l2": False},
                      metrics={"us": us}, samples={"verdict": verdict})
    w = output.ResultWriter(tmp_path)
    w.add(rec("interrupted", None))
    assert w.all()[0].samples["verdict"] == "interrupted" and not w.measured("fa3", "B1 ctx8")
    w.add(rec("ok", 5.0))
    w.add(rec("interrupted", None))  # a later step cut short on the same shape
    (kept,) = load(tmp_path)
    assert kept.samples["verdict"] == "ok" and kept.metrics["us"] == 5.0 and w.measured("fa3", "B1 ctx8")
    assert output.cell(rec("interrupted", None), "decode") == "cut"


def test_precompile_compile_only_skip_measured_and_summarize(tmp_path):
    runner = CliRunner()
    common = ["microbench", "decode", *TINY, "--result-dir", str(tmp_path)]
    r = runner.invoke(app, [*common, "--context", "16,24", "--compile-only"])
    assert r.exit_code == 0, r.output
    assert "compiling reference on B1 ctx16 H4/2/16 bf16 ..." in r.output and "compile-only:" in r.output
    assert not list(tmp_path.glob("*.json"))  # a warm-up writes no results

    r = runner.invoke(app, [*common, "--context", "16", "--precompile"])
    assert r.exit_code == 0, r.output
    assert r.output.index("compiled reference on B1 ctx16") < r.output.index("decode: µs per call")
    (rec,) = load(tmp_path)
    assert rec.metrics["compile_s"] >= 0 and rec.metrics["first_call_s"] >= 0 and rec.metrics["us"] > 0

    r = runner.invoke(app, [*common, "--context", "16,24", "--skip-measured"])
    assert r.exit_code == 0, r.output
    recs = load(tmp_path)
    assert sorted(x.scenario["context"] for x in recs) == [16, 24]
    assert [x.metrics["us"] for x in recs if x.scenario["context"] == 16] == [rec.metrics["us"]]  # not re-run

    (tmp_path / "summary.md").unlink()
    r = runner.invoke(app, ["microbench", "summarize", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "B1 ctx24 H4/2/16 bf16" in (tmp_path / "summary.md").read_text() and list((tmp_path / "plots").glob("*.png"))


def test_shapes_pairs_instead_of_the_product_and_summarize_notes_empty_dirs(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["microbench", "decode", *TINY[:-2], "--shapes", "2x16,1x40", "--result-dir", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    assert sorted((x.scenario["batch"], x.scenario["context"]) for x in load(tmp_path / "d")) == [(1, 40), (2, 16)]
    r = runner.invoke(app, ["microbench", "prefill", *TINY[:-2], "--shapes", "2x8", "--context", "0", "--result-dir", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    assert [(x.scenario["batch"], x.scenario["seqlen"]) for x in load(tmp_path / "p")] == [(2, 8)]
    r = runner.invoke(app, ["microbench", "summarize", str(tmp_path / "d"), str(tmp_path / "missing")])
    assert r.exit_code == 0, r.output
    assert "missing: no microbench records" in r.output and "B2 ctx16 H4/2/16 bf16" in r.output
    r = runner.invoke(app, ["microbench", "decode", *TINY[:-2], "--shapes", "2by16", "--result-dir", str(tmp_path)])
    assert "--shapes" in str(r.exception)

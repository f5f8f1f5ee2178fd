"""The `attnbench` entry point: Ctrl-C says that partial results were saved, and exits 130."""

import signal
import subprocess
import sys
import time

from attnbench.console import Progress
from attnbench.serving.scripted_server import Script, ScriptedServer


def test_ctrl_c_prints_that_partial_results_were_saved(tmp_path):
    with ScriptedServer(Script(ttft_s=0.001, itl_s=0.001, hang=set(range(100)))) as s:
        cmd = [sys.executable, "-m", "attnbench", "serve-bench", "--endpoint", s.base_url, "--input", "4",
               "--output", "2", "--num-prompts", "3", "--warmup", "0", "--vocab-size", "100",
               "--client-workers", "1", "--result-dir", str(tmp_path)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(s.requests) < 3 and time.monotonic() < deadline:  # every request in flight (held)
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "attnbench: interrupted; partial results (if any) were saved" in err


def test_progress_never_counts_past_its_total():
    class Sink:
        text = ""

        def isatty(self):
            return False

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    sink = Sink()
    bar = Progress(4, "x", stream=sink)
    bar.line.every_s = 0
    bar.set(3)
    bar.set(9)
    assert bar.n == 4 and "4/4" in sink.text


def test_every_command_is_registered_and_none_is_silently_dropped():
    from typer.testing import CliRunner

    from attnbench import cli

    out = CliRunner().invoke(cli.app, ["--help"]).output
    assert all(name in out for name in cli.COMMANDS)

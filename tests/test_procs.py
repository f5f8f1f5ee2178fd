"""The process toolbox on real child processes: SIGTERM then SIGKILL, for one child and for a whole
process group, and SIGTERM unwinding as KeyboardInterrupt."""

import os
import signal
import subprocess
import sys
import time

from attnbench import procs

IGNORES_TERM = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(600)")


def _ready(p):
    assert p.stdout.readline().strip() == b"ready"


def test_stop_kills_a_child_that_ignores_sigterm_after_the_grace():
    p = subprocess.Popen([sys.executable, "-c", IGNORES_TERM], stdout=subprocess.PIPE)
    _ready(p)
    assert procs.stop(p, grace_s=0.5) == -signal.SIGKILL
    assert procs.stop(p, grace_s=0.5) == -signal.SIGKILL  # again: nothing left to do


def test_stop_group_takes_the_grandchildren_too():
    """A leader that ignores SIGTERM and a grandchild that obeys it, as vLLM's API server and engine."""
    code = ("import subprocess, sys, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
            "print(c.pid, flush=True); time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    child = int(p.stdout.readline())
    assert procs.group_alive(p.pid)
    procs.stop_group(p, grace_s=0.5)
    assert p.returncode == -signal.SIGKILL and not procs.group_alive(p.pid)
    try:
        os.kill(child, 0)
        state = open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        state = None
    assert state in (None, "Z")


def test_sigterm_unwinds_as_a_keyboard_interrupt_and_once_ignores_the_next_signals():
    code = ("import os, signal, sys, time; sys.path.insert(0, sys.argv[1]); from attnbench import procs\n"
            "procs.sigterm_raises_interrupt(once=True)\n"
            "try:\n    os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
            "except procs.Terminated:\n"
            "    os.kill(os.getpid(), signal.SIGTERM); os.kill(os.getpid(), signal.SIGINT); time.sleep(0.2)\n"
            "    print('cleaned up', isinstance(sys.exc_info()[1], KeyboardInterrupt))\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "cleaned up True", r.stderr


def test_without_once_sigterm_raises_every_time():
    old = procs.sigterm_raises_interrupt()
    try:
        for _ in range(2):
            t0 = time.monotonic()
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                while time.monotonic() - t0 < 30:
                    time.sleep(0.01)
                raise AssertionError("no interrupt")
            except procs.Terminated:
                pass
    finally:
        signal.signal(signal.SIGTERM, old)

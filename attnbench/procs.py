"""Process control shared by every command: stop a child or a whole process group (SIGTERM, then
SIGKILL after a grace period), and SIGTERM as KeyboardInterrupt so `finally` blocks stop servers
when `timeout` or a scheduler ends us."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwind like Ctrl-C (every `finally` runs); the type says which signal."""


def raise_terminated(signum, frame):
    raise Terminated


def _raise_once(signum, frame):
    """The first SIGTERM or SIGINT unwinds; later ones are ignored so they cannot cut the cleanup
    short."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def sigterm_raises_interrupt(once: bool = False):
    """From now on SIGTERM raises Terminated (a KeyboardInterrupt) in the main thread; with `once`,
    SIGINT too goes through here and the first of either signal makes both ignored from then on.
    Returns the SIGTERM handler it replaces."""
    if once:
        signal.signal(signal.SIGINT, _raise_once)
    return signal.signal(signal.SIGTERM, _raise_once if once else raise_terminated)


def stop(proc: subprocess.Popen, grace_s: float) -> int | None:
    """SIGTERM one child (it may save partial results), SIGKILL after `grace_s`; reaps it and
    returns its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    return proc.returncode


def stop_group(proc: subprocess.Popen, grace_s: float, reap_s: float = 10.0) -> None:
    """SIGTERM the process group `proc` leads (started with start_new_session: vLLM's engine
    processes are in it), SIGKILL what is left after `grace_s`, reap the leader and wait up to
    `reap_s` for the rest to be gone."""
    pgid = proc.pid
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and group_alive(pgid):
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
        if proc.poll() is not None and not group_alive(pgid):
            break
    if group_alive(pgid):
        signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=reap_s)
    end = time.monotonic() + reap_s
    while group_alive(pgid) and time.monotonic() < end:
        time.sleep(0.1)


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Any process of the group still running (zombies count as gone: only their parent can reap
    them)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(state != "Z" for _, state in group_members(pgid).values())


def group_members(pgid: int, proc: str = "/proc") -> dict[int, tuple[str, str]]:
    """pid -> (name, state) of every process in one process group, from /proc/PID/stat (whose
    name field may hold spaces and parentheses: the fields after the last ')' are state, ppid, pgrp)."""
    out: dict[int, tuple[str, str]] = {}
    try:
        entries = [e for e in os.listdir(proc) if e.isdigit()]
    except OSError:
        return out
    for e in entries:
        try:
            with open(f"{proc}/{e}/stat") as f:
                data = f.read()
            state, _, pgrp = data[data.rindex(")") + 2:].split()[:3]
            if int(pgrp) == pgid:
                out[int(e)] = (data[data.index("(") + 1: data.rindex(")")], state)
        except (OSError, ValueError, IndexError):
            continue
    return out

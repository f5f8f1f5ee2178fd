"""A time limit's signal must cost at most the result in flight, even while the main thread is
stuck in native code (an nvcc JIT build, a CuTe DSL compile, a CUDA sync) and cannot run Python's
signal handler before `timeout -k` follows up with SIGKILL.

`SignalGuard` makes SIGTERM act like SIGINT (KeyboardInterrupt in the main thread, so `finally`
writes the summary) and watches both from a helper thread through `signal.set_wakeup_fd`, which
the C-level handler writes to at once, whatever the main thread is doing. If the main thread has
not started its own cleanup (`standing_down()`) within `grace_s`, the watchdog runs `on_abort`
(record what was cut short, write summary.md and plots) and ends the process with exit 130.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from typing import Callable

from attnbench import procs

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalGuard:
    def __init__(self, on_abort: Callable[[str], None], grace_s: float = 1.5, exit_code: int = 130):
        self.on_abort, self.grace_s, self.exit_code = on_abort, grace_s, exit_code
        self._standing_down = threading.Event()
        self._active = False

    def standing_down(self) -> None:
        """The main thread got the interrupt (or finished) and writes its results itself."""
        self._standing_down.set()

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only; nothing to guard here
        self._r, self._w = socket.socketpair()
        self._w.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        # (also when started with SIGINT ignored, as a shell does for `cmd &`: `timeout -s INT`
        # must still reach us)
        self._old_handlers = {s: signal.getsignal(s) for s in SIGNALS}
        for s in self._old_handlers:
            signal.signal(s, signal.default_int_handler if s == signal.SIGINT else procs.raise_terminated)
        self._thread = threading.Thread(target=self._watch, name="microbench-signal-guard", daemon=True)
        self._thread.start()
        self._active = True
        return self

    def __exit__(self, *exc) -> None:
        self.standing_down()
        if not self._active:
            return
        self._active = False
        signal.set_wakeup_fd(self._old_fd)
        for s, h in self._old_handlers.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self._w.close()  # the watchdog's recv sees end of file and returns
        self._thread.join(timeout=1)
        self._r.close()

    def _watch(self) -> None:
        while True:
            try:
                data = self._r.recv(64)
            except OSError:
                return
            if not data or self._standing_down.is_set():
                return
            got = [s for s in data if s in {int(x) for x in SIGNALS}]
            if not got:
                continue  # some other signal with a Python handler
            if self._standing_down.wait(self.grace_s):
                return  # the main thread handles it
            name = signal.Signals(got[0]).name
            print(f"microbench: {name} while the main thread is busy in native code; saving what is "
                  f"measured and exiting", file=sys.stderr, flush=True)
            try:
                self.on_abort(name)
            except BaseException as e:  # noqa: BLE001 - exiting anyway; say why the save failed
                print(f"microbench: saving on {name} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(self.exit_code)

"""Execute a scenario's runs and keep manifest.json current after every run, so a study cut short
still says what ran. Runs are subprocesses: one after another on the local GPU, or Ray tasks that
each ask for the GPUs they need (Ray sets CUDA_VISIBLE_DEVICES for the task, the subprocess
inherits it) and ship their result files back to the driver's tree.

The command prefix is the hook tests use to stand in for attnbench: by default
`python -m attnbench`, or the words of $ATTNBENCH_RUN_PREFIX (e.g. "python fake_attnbench.py");
the run's arguments, ending in `--result-dir DIR`, follow it. A [[step]] command of another
program runs as it is written.

A scenario with [servers] runs locally: its servers start before the first run, stay up while the
runs execute (each `{endpoint:LABEL}` is filled as its run starts; the manifest keeps the
placeholder, so --resume compares commands, not ports) and are stopped when the runs end, the
budget is spent, or we are interrupted.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from attnbench import atomic, procs, provenance
from attnbench.errors import UserError
from attnbench.scenarios import servers
from attnbench.scenarios.spec import SHARED, Run, Scenario

PREFIX_ENV = "ATTNBENCH_RUN_PREFIX"
LOG_NAME = "run.log"
STOP_GRACE_S = 60.0  # a stopped run gets this long to shut its vLLM server down
STATUSES = ("ok", "failed", "partial", "skipped", "pending")  # of a run, as Outcome.status says


def default_prefix() -> list[str]:
    env = os.environ.get(PREFIX_ENV)
    return shlex.split(env) if env else [sys.executable, "-m", "attnbench"]


@dataclass
class Outcome:
    id: str
    repeat: int
    command: str
    gpus: int
    result_dir: str  # relative to the result tree
    # pending; ok or failed: it ran to its end; partial: a time limit (its timeout_s, the study's
    # budget) stopped it, and what it had saved is kept; skipped: the budget was spent before it started
    status: str = "pending"
    exit_code: int | None = None
    duration_s: float | None = None
    started: str | None = None
    host: str | None = None
    gpu_ids: list = field(default_factory=list)
    error: str | None = None
    reused: bool = False  # --resume kept it: an earlier invocation ran this command ok


STOPPED = 124  # the exit code a run stopped by its time limit is given (as `timeout` reports one)


def _execute(cmd: list[str], run_dir: Path, timeout_s: float | None, cwd: str | None = None,
             grace_s: float = STOP_GRACE_S, cpus: tuple[int, ...] | None = None) -> tuple[int, str | None, bool]:
    """Run one command with its output in run_dir/run.log; (exit code, error or None, whether the
    time limit stopped it). The command leads its own process group, so stopping it (`stop`: a
    timeout, or Ctrl-C of attnbench run) reaches whatever it started there. `cpus`: the cores it
    and its children run on (a client of the scenario's servers stays off theirs)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOG_NAME, "wb") as log:
        log.write(f"$ {shlex.join(cmd)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                    start_new_session=True, preexec_fn=functools.partial(_in_the_child, cpus))
        except OSError as e:
            return 127, f"cannot start {cmd[0]!r}: {e.strerror}", False
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop(proc, grace_s)
            return STOPPED, f"timed out after {timeout_s:g} s", True
        except BaseException:  # interrupted: let the command stop its servers before we go
            stop(proc, grace_s)
            raise
    if code != 0:
        cause = root_cause((run_dir / LOG_NAME).read_text(errors="replace"), run_dir)
        return code, f"exit code {code}" + (f": {cause[:300]}" if cause else ""), False
    return 0, None, False


def _in_the_child(cpus: tuple[int, ...] | None) -> None:
    """In the command, before it starts: SIGINT and SIGTERM do what they do by default, even where
    attnbench run was started with them ignored (a background job of a shell script ignores SIGINT,
    and a command inherits that); and its cores, when it is given some."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    if cpus:
        os.sched_setaffinity(0, cpus)


def stop(proc: subprocess.Popen, grace_s: float, after_s: float = 5.0) -> None:
    """Stop a command as Ctrl-C in a terminal would: SIGINT to its whole process group. attnbench
    then saves what it has and stops its vLLM servers; its client workers leave the stop to it
    (SIGTERM to the group would kill them first, and the pass in flight with them). What is left
    after `grace_s` gets SIGTERM, and SIGKILL `after_s` later."""
    procs.signal_group(proc.pid, signal.SIGINT)
    end = time.monotonic() + grace_s
    while time.monotonic() < end and procs.group_alive(proc.pid):
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
    procs.stop_group(proc, after_s)


def command_changes(old: str, new: str) -> str:
    """How two command lines differ, word by word: "256 -> 512; (nothing) -> --seed 3"."""
    def words(line: str) -> list[str]:
        try:
            return shlex.split(line)
        except ValueError:
            return line.split()

    a, b = words(old), words(new)
    return "; ".join(f"{shlex.join(a[i1:i2]) or '(nothing)'} -> {shlex.join(b[j1:j2]) or '(nothing)'}"
                     for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
                     if tag != "equal")


def root_cause(log: str, run_dir: Path | None = None) -> str | None:
    """Why a command failed, from its log: its own one-line error, else the exception a traceback
    ends with, else the first failed record's error, else its last line that is not the closing
    "results in DIR" note."""
    lines = [line.strip() for line in log.strip().splitlines()[1:] if line.strip()]  # [0] is "$ command"
    errors = [line for line in lines if line.startswith("attnbench: error:")]
    if errors:
        return errors[-1]
    raw = log.splitlines()
    for i in range(len(raw) - 1, -1, -1):
        if raw[i].startswith("Traceback (most recent call last):"):
            tail = [line for line in raw[i + 1:] if line and not line.startswith((" ", "\t"))]
            if tail:
                return tail[0].strip()
    if run_dir is not None:
        failed = _failed_records(run_dir)
        if failed and not failed.startswith("unreadable"):
            return failed
    rest = [line for line in lines if not line.startswith("attnbench: results in")]
    return (rest or lines or [None])[-1]


def _failed_records(run_dir: Path) -> str | None:
    """A command can exit 0 and still record a failure (a backend that would not start)."""
    from attnbench.records import record

    try:
        failed = [r for r in record.load(run_dir) if r.status != "ok"]
    except UserError as e:
        return f"unreadable record: {e}"
    if not failed:
        return None
    return f"{len(failed)} failed record(s): {failed[0].backend}: {(failed[0].error or '')[:300]}"


class Runner:
    """Runs `runs` into `result_dir`; `on_start` / `on_done(outcome)` are called as each run starts
    (local mode) and finishes or is skipped. With `resume`, runs that manifest.json already lists as
    ok with the same command are kept, not run again (`done`); `changed` says, per run index, how the
    command of an earlier ok run differs from its command now (those run again).

    Time limits: a run is stopped after its own `timeout_s` (`timeout_s` here replaces every run's);
    the study stops at `budget_s` (default the scenario's): the run in flight is stopped then, and
    the runs not yet started are skipped. A final run ([[step]] final = true) runs even then, under
    its own time limit, which the budget keeps for it (the other runs stop that much sooner). A
    stopped run is `partial`: attnbench saves what it has when it is stopped, and its directory keeps it."""

    def __init__(self, scenario: Scenario, runs: list[Run], result_dir: Path, prefix: list[str] | None = None,
                 timeout_s: float | None = None, on_done: Callable[[Outcome], None] | None = None,
                 on_start: Callable[[Outcome], None] | None = None, resume: bool = False,
                 budget_s: float | None = None, grace_s: float = STOP_GRACE_S,
                 say: Callable[[str], None] | None = None):
        self.scenario, self.runs, self.result_dir = scenario, runs, Path(result_dir)
        self.explicit_prefix = prefix or (shlex.split(os.environ[PREFIX_ENV]) if os.environ.get(PREFIX_ENV) else None)
        self.prefix = self.explicit_prefix or default_prefix()
        self.timeout_s = timeout_s
        self.budget_s = scenario.budget_s if budget_s is None else budget_s
        self.grace_s = grace_s
        self.deadline: float | None = None  # time.monotonic() when the budget is spent, set as running starts
        self.kept_s = 0.0  # the budget's last seconds, kept for the final steps (their time limits)
        self.on_done = on_done or (lambda o: None)
        self.on_start = on_start or (lambda o: None)
        self.say = say or (lambda line: None)  # what the servers are doing, a line at a time
        self.servers: list[dict] = []  # [servers] as started: label, backend, url, status, log
        self.outcomes = [Outcome(r.id, r.repeat, shlex.join(self.command(r)), r.gpus, r.result_subdir) for r in runs]
        self.started = provenance.utc_now()
        self.provenance = provenance.collect()
        self.mode = "local"
        self.done: set[int] = set()  # indices of runs already ok in an earlier manifest (resume)
        self.changed: dict[int, str] = {}
        if resume:
            self._resume()

    def _resume(self) -> None:
        """Keep the runs an earlier invocation finished ok with the same command line, where their
        directory is still there; nothing to keep when there is no manifest yet."""
        path = self.result_dir / "manifest.json"
        if not path.exists():
            return
        try:
            ok = {r["result_dir"]: r for r in json.loads(path.read_text())["runs"] if r.get("status") == "ok"}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"{path} is unreadable ({type(e).__name__}: {e}); --resume needs the manifest an "
                            "earlier `attnbench run` wrote there (remove it to run everything again)") from None
        for i, o in enumerate(self.outcomes):
            prev = ok.get(o.result_dir)
            if prev is None or not (self.result_dir / o.result_dir).is_dir():
                continue
            if prev.get("command") != o.command:
                self.changed[i] = command_changes(str(prev.get("command")), o.command)
                continue
            self.outcomes[i] = Outcome(**{**{k: prev[k] for k in asdict(o) if k in prev}, "reused": True})
            self.done.add(i)

    def _set_aside(self, run: Run) -> None:
        """A run about to run again starts in an empty directory, so its records are not mixed with
        an earlier attempt's; the earlier attempt's log stays beside it as rep<k>.earlier.log."""
        run_dir = self.result_dir / run.result_subdir
        if not run_dir.exists():
            return
        if (run_dir / LOG_NAME).is_file():
            os.replace(run_dir / LOG_NAME, run_dir.with_name(run_dir.name + ".earlier.log"))
        shutil.rmtree(run_dir)

    def command(self, run: Run, result_dir: Path | None = None) -> list[str]:
        argv = run.argv(result_dir or self.result_dir / run.result_subdir)
        return argv if run.external else [*self.prefix, *argv]

    # ---- time limits --------------------------------------------------------------------------
    def run_timeout(self, run: Run) -> float | None:
        return self.timeout_s if self.timeout_s is not None else run.timeout_s

    def _start_clock(self) -> None:
        """The other runs' deadline: the budget less the time kept for the final steps still to run."""
        self.kept_s = sum(self.run_timeout(r) or 0 for i, r in enumerate(self.runs) if r.final and i not in self.done)
        self.deadline = None if self.budget_s is None else time.monotonic() + self.budget_s - self.kept_s

    def _budget_words(self) -> str:
        kept = f", {self.kept_s:g} s of it kept for the final steps" if self.kept_s else ""
        return f"{self.budget_s:g} s{kept}"

    def _budget_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _skip(self, i: int, more: str = "") -> None:
        o = self.outcomes[i]
        o.status, o.error = "skipped", f"budget spent ({self._budget_words()}){more}"
        self.write_manifest()
        self.on_done(o)

    @property
    def complete(self) -> bool:
        """Every run ran to its end (ok or not); false when a time limit cut the study short."""
        return all(o.status in ("ok", "failed") for o in self.outcomes)

    # ---- manifest -----------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        counts = {s: sum(o.status == s for o in self.outcomes) for s in STATUSES}
        return {"scenario": self.scenario.name, "scenario_file": str(self.scenario.path),
                "description": self.scenario.description, "mode": self.mode, "started": self.started,
                "updated": provenance.utc_now(), "budget_s": self.budget_s, "counts": counts,
                "provenance": self.provenance, "servers": self.servers, "runs": [asdict(o) for o in self.outcomes]}

    def write_manifest(self) -> Path:
        return atomic.write_json(self.result_dir / "manifest.json", self.manifest())

    def _finish(self, i: int, code: int | None, error: str | None, t0: float, started: str, host: str, gpu_ids: list,
                stopped: bool = False) -> None:
        o = self.outcomes[i]
        if code == 0:
            error = _failed_records(self.result_dir / o.result_dir)
        o.exit_code, o.error, o.duration_s = code, error, round(time.time() - t0, 3)
        o.status = "partial" if stopped else "ok" if error is None else "failed"
        o.started, o.host, o.gpu_ids = started, host, gpu_ids
        self.write_manifest()
        self.on_done(o)

    # ---- local: one after another -------------------------------------------------------------
    def run_local(self) -> list[Outcome]:
        self.mode = "local"
        self._start_clock()
        self.write_manifest()
        plan = self.scenario.servers
        if plan is None or len(self.done) == len(self.runs):
            return self._run_each(None)
        with servers.up(plan, self.result_dir / "servers", self._budget_left(), self.say) as fleet:
            self.servers = fleet.state
            self.write_manifest()
            return self._run_each(fleet)

    def _run_each(self, fleet: servers.Up | None) -> list[Outcome]:
        """Every run not done yet, one after another, with `fleet`'s servers filled in."""
        for i, run in enumerate(self.runs):
            if i in self.done:
                continue
            left, timeout = (None if run.final else self._budget_left()), self.run_timeout(run)  # final: its time was kept
            if left is not None and left <= 0:
                self._skip(i)
                continue
            by_budget = left is not None and (timeout is None or left < timeout)
            self._set_aside(run)
            self.on_start(self.outcomes[i])
            started, t0 = provenance.utc_now(), time.time()
            run_dir = self.result_dir / run.result_subdir
            cmd, why = fleet.fill(self.command(run, run_dir)) if fleet else (self.command(run, run_dir), None)
            if cmd is None:  # a server it names did not come up
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / LOG_NAME).write_text(f"$ {self.outcomes[i].command}\nnot run: {why}\n")
                self._finish(i, None, why, t0, started, socket.gethostname(), [])
                continue
            code, error, stopped = _execute(cmd, run_dir, left if by_budget else timeout, grace_s=self.grace_s,
                                            cpus=fleet.client_cpus if fleet else None)
            if stopped and by_budget:
                error = f"stopped after {time.time() - t0:.0f} s: the study's budget ({self._budget_words()}) was spent"
            self._finish(i, code, error, t0, started, socket.gethostname(), [], stopped)
        return self.outcomes

    # ---- Ray: in parallel, each task asking for its GPUs ------------------------------------------
    def run_ray(self, address: str | None = None, init_kwargs: dict | None = None) -> list[Outcome]:
        if self.scenario.servers is not None:
            raise UserError(f"{self.scenario.path}: a scenario with [servers] runs here, one run after another "
                            "(its servers listen on this machine's loopback); drop --ray")
        together = [r.id for r in self.runs if r.final or any(SHARED.search(a) for a in r.args)]
        if together:
            raise UserError(f"{self.scenario.path}: {together[0]} is a final step or writes a {{shared:NAME}} folder, "
                            "which holds only when runs go one after another on one machine; drop --ray")
        import ray

        self.mode = "ray"
        if not ray.is_initialized():
            ray.init(address=address or None, **(init_kwargs or {}))
        remote = ray.remote(_ray_task)
        pending = {}
        have = ray.cluster_resources().get("GPU", 0)
        self._start_clock()
        for i, run in enumerate(self.runs):
            if i in self.done:
                continue
            if run.gpus > have:  # Ray would wait for it forever
                self._finish(i, 1, f"needs {run.gpus} GPUs; the Ray cluster has {have:g}", time.time(), provenance.utc_now(), "", [])
                continue
            self._set_aside(run)
            ref = remote.options(num_gpus=run.gpus, num_cpus=1, max_retries=0).remote(
                self.explicit_prefix, run, self.run_timeout(run), os.getcwd(), self.grace_s)
            pending[ref] = (i, time.time())
        self.write_manifest()
        try:
            while pending:
                left = self._budget_left()
                if left is not None and left <= 0:
                    self._cancel(ray, pending)
                    break
                self._gather(ray, pending, left)
        except KeyboardInterrupt:  # the tasks stop their commands (SIGTERM, then SIGKILL)
            for ref in pending:
                ray.cancel(ref)
            raise
        return self.outcomes

    def _cancel(self, ray, pending: dict) -> None:
        """The budget is spent: cancel the tasks still queued or running (a running one stops its
        command as a timeout would) and give them the time to do so before the driver goes."""
        for ref in pending:
            ray.cancel(ref)
        ray.wait(list(pending), num_returns=len(pending), timeout=self.grace_s + 30)
        for i, _ in pending.values():
            self._skip(i, ": cancelled on Ray, its files not kept")
        pending.clear()

    def _gather(self, ray, pending: dict, timeout_s: float | None = None) -> None:
        """Wait for one task (at most `timeout_s`), write its files into the tree and record how it ended."""
        done, _ = ray.wait(list(pending), num_returns=1, timeout=timeout_s)
        if not done:
            return
        i, t0 = pending.pop(done[0])
        try:
            res = ray.get(done[0])
        except Exception as e:  # the task itself died (node lost, worker killed): isolate it
            res = {"code": 1, "error": f"ray task failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}",
                   "files": {}, "started": None, "host": None, "gpu_ids": [], "duration_s": time.time() - t0}
        for rel, data in res["files"].items():  # gather into one tree, whichever node ran it
            atomic.write_bytes(self.result_dir / self.runs[i].result_subdir / rel, data)
        self._finish(i, res["code"], res["error"], time.time() - res["duration_s"], res["started"] or "",
                     res["host"] or "", res["gpu_ids"], res.get("stopped", False))


def _ray_task(prefix: list[str] | None, run: Run, timeout_s: float | None, cwd: str,
              grace_s: float = STOP_GRACE_S) -> dict:
    """Runs on a Ray worker: the command (the worker's own `python -m attnbench` unless a prefix
    was given) writes into a local temporary directory whose files come back to the driver
    (nodes need not share a filesystem)."""
    import ray

    prefix = prefix or [sys.executable, "-m", "attnbench"]
    started, t0 = provenance.utc_now(), time.time()
    with tempfile.TemporaryDirectory(prefix="attnbench-run-") as tmp:
        run_dir = Path(tmp) / run.result_subdir
        argv = run.argv(run_dir)
        code, error, stopped = _execute(argv if run.external else [*prefix, *argv], run_dir, timeout_s,
                                        cwd if os.path.isdir(cwd) else None, grace_s)  # the driver's cwd, for relative paths in args
        files = {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    return {"code": code, "error": error, "stopped": stopped, "files": files, "started": started,
            "host": socket.gethostname(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "duration_s": time.time() - t0}

"""A scenario's [servers]: vLLM servers that `attnbench run` starts before the runs, keeps up while
they execute and stops at the end, also on Ctrl-C, SIGTERM or a spent budget. Runs reach a server
through `{endpoint:LABEL}` in their arguments (its OpenAI base URL, .../v1), and the folder or id
the servers load through `{model_path}` (a tokenizer for clients that need one).

The servers are serve-bench's (bench.server_spec), started and stopped by fleet.running: each one
once the one before has taken its GPU memory, all stopped at once. Two labels may name one backend
with different `serve_args`, e.g. one API-server process against four.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from attnbench import procs

ENDPOINT = re.compile(r"\{endpoint:([^}]*)\}")
MODEL_PATH = "{model_path}"
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # also a log file's name
SERVING_COMMANDS = ("serve-bench", "gpqa", "parity")  # attnbench commands that start vLLM unless given --endpoint
INTERRUPT_GRACE_S = 10.0  # the servers' SIGTERM grace once we are interrupted (a scheduler's SIGKILL may follow)


@dataclass(frozen=True)
class Server:
    label: str
    backend: str
    serve_args: tuple[str, ...] = ()  # after the arguments every server gets


@dataclass
class Servers:
    """The [servers] table: what to start, side by side on the one GPU."""
    servers: list[Server]
    model: str = "qwen3-0.6b"  # as serve-bench's default
    memory_share: float | None = None  # --gpu-memory-utilization of each; None: fleet's share for this many
    serve_args: tuple[str, ...] = ()  # every server's
    ready_timeout_s: float = 900.0

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.servers]

    def share(self) -> float | None:
        """Each server's share of the GPU's memory: the one given, else vLLM's default for one server
        and fleet.plan's split of the usable memory for several."""
        from attnbench.serving import fleet

        if self.memory_share is not None:
            return self.memory_share
        return None if len(self.servers) < 2 else round(fleet.USABLE / len(self.servers), 3)

    def args(self, server: Server) -> list[str]:
        return [*self.serve_args, *server.serve_args]

    def describe(self, server: Server) -> str:
        """One line for --dry-run: "fa3-api4: fa3, qwen3-0.6b, 0.45 of the GPU, --api-server-count=4"."""
        share = self.share()
        words = [server.backend, self.model, f"{share:g} of the GPU" if share else "vLLM's memory default",
                 *self.args(server)]
        return f"{server.label}: {', '.join(words)}"


def named(words: list[str] | tuple[str, ...]) -> list[str]:
    """The labels `{endpoint:LABEL}` placeholders in these words name, in order, once each."""
    return list(dict.fromkeys(n for w in words for n in ENDPOINT.findall(w)))


def reads_a_server(words: list[str] | tuple[str, ...]) -> bool:
    return any(ENDPOINT.search(w) or w == "--endpoint" or w.startswith("--endpoint=") for w in words)


def starts_own_servers(args: tuple[str, ...], external: bool) -> bool:
    """An attnbench serving command without --endpoint starts vLLM itself."""
    return not external and bool(args) and args[0] in SERVING_COMMANDS and not any(
        w == "--endpoint" or w.startswith("--endpoint=") for w in args)


@dataclass
class Up:
    """The servers while they run: each label's base URL, or why it did not come up."""
    urls: dict[str, str]
    failed: dict[str, str]  # label -> one line
    model_path: str
    state: list[dict] = field(default_factory=list)  # for manifest.json
    client_cpus: tuple[int, ...] | None = None  # the steps' cores, off the servers' (None: not split)

    def fill(self, words: list[str]) -> tuple[list[str] | None, str | None]:
        """(the words with the placeholders filled, None), or (None, why the command cannot run)."""
        down = [n for n in named(words) if n not in self.urls]
        if down:
            return None, "; ".join(self.failed.get(n, f"server {n} is not running") for n in down)
        return [ENDPOINT.sub(lambda m: self.urls[m.group(1)], w).replace(MODEL_PATH, self.model_path)
                for w in words], None


@contextlib.contextmanager
def up(plan: Servers, log_dir: Path, time_left_s: float | None = None,
       say: Callable[[str], None] = lambda line: None) -> Iterator[Up]:
    """Start every server, yield them once all are ready (or failed), stop them all on the way out.
    `time_left_s` (the study's budget) caps how long a start may take."""
    from attnbench.backends import registry
    from attnbench.serving import fleet
    from attnbench.serving.run import server_spec
    from attnbench.serving.server import ServerFailed

    ready = plan.ready_timeout_s if time_left_s is None else max(1.0, min(plan.ready_timeout_s, time_left_s))
    server_cpus, client_cpus = fleet.cpu_split()  # as serve-bench places its servers and its client
    specs = [server_spec(plan.model, registry.get(s.backend), plan.args(s), log_dir / f"{s.label}.log",
                         plan.share(), ready, server_cpus, label=s.label) for s in plan.servers]

    def stopping(e: BaseException) -> None:
        say(f"{'SIGTERM' if isinstance(e, procs.Terminated) else 'interrupted'}: stopping the servers")

    say(f"starting {len(specs)} server{'s' * (len(specs) != 1)}: {', '.join(plan.labels)} (logs in {log_dir})")
    with fleet.running(specs, stagger_timeout_s=ready, interrupt_grace_s=INTERRUPT_GRACE_S,
                       on_interrupt=stopping) as started:
        fleet_up = Up({}, {}, specs[0].model if specs else plan.model, client_cpus=client_cpus)
        for s, spec, got in zip(plan.servers, specs, started):
            entry = {"label": s.label, "backend": s.backend, "log": str(spec.log_path)}
            if isinstance(got, ServerFailed):
                fleet_up.failed[s.label] = f"server {s.label} did not come up: {got.reason}"
                entry.update(status="failed", error=got.reason, url=None)
                say(f"{got.reason}; log: {spec.log_path}")
            else:
                fleet_up.urls[s.label] = got.base_url
                entry.update(status="up", error=None, url=got.base_url, command=" ".join(got.command()))
            fleet_up.state.append(entry)
        say("up: " + (", ".join(f"{k}={v}" for k, v in fleet_up.urls.items()) or "none"))
        yield fleet_up
        say("stopping the servers")

"""Start one vLLM server per backend side by side on the one GPU (small models, a slice of the
memory each), run commands against all of them, stop them all. (A scenario's [servers] and
[[step]]s do the same inside `attnbench run`, with a manifest, budget and --resume: see
scenarios/h200-frontend.toml. This script stays for the jobs that use `{endpoints}`.)

    python3 scripts/device/with_servers.py --model /tmp/models/smollm2 --backends fa3,fa4,flashinfer \
        --mem 0.12 --serve-arg=--enforce-eager --log-dir /tmp/res/logs -- \
        attnbench parity {endpoints} --result-dir /tmp/res/parity

A --backends entry `LABEL=BACKEND` starts that backend under its own name, so one backend can run
twice with different settings (`--backends fa3,fa3-api4=fa3 --serve-arg-for fa3-api4=--api-server-count=4`).
`{endpoints}` becomes `--endpoint fa3=http://127.0.0.1:PORT/v1 --endpoint fa4=...` (the servers
that came up), `{endpoint:NAME}` one server's URL, `{model}` the served model name. A command
that names a server that did not come up (`{endpoint:NAME}`, or `{endpoints}` with none up) is
skipped with a line saying so, and the exit status is then non-zero.

Starting and stopping are attnbench's (serving/fleet.py): each server starts once the one before has
taken its GPU memory; every server's process group gets SIGTERM at once, SIGKILL after
--stop-grace seconds. That also happens when this script is terminated: SIGTERM (what `timeout`
sends) and SIGINT unwind as KeyboardInterrupt, so the cleanup runs, later signals are ignored, and
the grace is cut to TERM_GRACE_S so it finishes before `timeout -k 10` sends SIGKILL.
(Dying without that cleanup left vLLM engine processes holding ~10 GiB of GPU memory on the
H100, and the next job's servers could not start.)"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from attnbench import procs
from attnbench.backends import registry
from attnbench.models import embedded
from attnbench.scenarios.servers import ENDPOINT as PLACEHOLDER
from attnbench.serving import fleet
from attnbench.serving.server import ServerFailed, ServerSpec, VllmServer

TERM_GRACE_S = 5.0  # grace for the servers when we were signalled (timeout -k gives us ~10 s in all)


def say(*lines: str) -> None:
    print("with_servers:", *lines, sep="\n    " if len(lines) > 1 else " ", flush=True)


# --- commands --------------------------------------------------------------------------------

def split_commands(argv: list[str]) -> list[list[str]]:
    """The words after --, cut at each ';;' word; a command given as one quoted string is split
    like a shell would. Words are kept as given (no re-joining and re-splitting: quoting holds)."""
    cmds, cur = [], []
    for word in argv:
        if word.strip() == ";;":
            cmds.append(cur)
            cur = []
        else:
            cur.append(word)
    cmds.append(cur)
    return [shlex.split(c[0]) if len(c) == 1 and " " in c[0] else c for c in cmds if c]


def expand(words: list[str], up: list[VllmServer], wanted: list[str], name: str) -> tuple[list[str] | None, str | None]:
    """(the command with placeholders filled, None) or (None, why it is skipped)."""
    urls = {s.label: s.base_url for s in up}
    missing = [n for w in words for n in PLACEHOLDER.findall(w) if n not in urls]
    if missing:
        why = [f"{n} {'did not come up' if n in wanted else 'is not in --backends'}" for n in dict.fromkeys(missing)]
        return None, "server " + ", ".join(why)
    if any("{endpoints}" in w for w in words) and not up:
        return None, "{endpoints} but no server came up"
    out = []
    for w in words:
        if w == "{endpoints}":
            out += [x for s in up for x in ("--endpoint", f"{s.label}={s.base_url}")]
            continue
        w = w.replace("{endpoints}", " ".join(f"--endpoint {s.label}={s.base_url}" for s in up)).replace("{model}", name)
        out.append(PLACEHOLDER.sub(lambda m: urls[m.group(1)], w))
    return out, None


def run_command(cmd: list[str], term_grace_s: float = 3.0) -> int:
    """Run one command to its end; if we are interrupted meanwhile, it gets SIGTERM (it may save
    partial results), SIGKILL after `term_grace_s`."""
    p = subprocess.Popen(cmd)
    try:
        return p.wait()
    finally:
        procs.stop(p, term_grace_s)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen3-0.6b")
    ap.add_argument("--name", default=None, help="served model name")
    ap.add_argument("--backends", required=True)
    ap.add_argument("--mem", type=float, default=0.12, help="--gpu-memory-utilization per server")
    ap.add_argument("--serve-arg", action="append", default=[], help="vLLM argument for every server")
    ap.add_argument("--serve-arg-for", action="append", default=[], help="LABEL=ARG: vLLM argument for one server")
    ap.add_argument("--log-dir", type=Path, default=Path("/tmp/res/logs"))
    ap.add_argument("--ready-timeout", type=float, default=600)
    ap.add_argument("--stop-grace", type=float, default=20, help="seconds between SIGTERM and SIGKILL for the servers")
    ap.add_argument("commands", nargs="+", help="after --: commands separated by ';;'")
    a = ap.parse_args()
    procs.sigterm_raises_interrupt(once=True)
    path, _ = embedded.resolve(a.model)
    extra = [*fleet.server_args(a.model, embedded.EMBEDDED), "--gpu-memory-utilization", str(a.mem), *a.serve_arg]
    name = a.name or (a.model if a.model in embedded.EMBEDDED else Path(a.model).name)
    entries = [b.strip().partition("=") for b in a.backends.split(",") if b.strip()]
    servers = {label: (backend or label) for label, _, backend in entries}  # label -> backend name
    wanted = list(servers)
    own: dict[str, list[str]] = {}
    for item in a.serve_arg_for:
        label, sep, arg = item.partition("=")
        if not sep or label not in servers:
            ap.error(f"--serve-arg-for {item!r}: want LABEL=ARG with LABEL one of {', '.join(wanted)}")
        own.setdefault(label, []).append(arg)
    specs = [ServerSpec(model=path, backend=registry.get(b), served_model_name=name, label=label,
                        log_path=a.log_dir / f"{name}-{label}.log", extra_args=extra + own.get(label, []),
                        ready_timeout_s=a.ready_timeout, stop_grace_s=a.stop_grace)
             for label, b in servers.items()]

    def stopping(e: BaseException) -> None:
        say(f"{'SIGTERM' if isinstance(e, procs.Terminated) else type(e).__name__}: stopping the servers")

    with fleet.running(specs, interrupt_grace_s=min(a.stop_grace, TERM_GRACE_S), on_interrupt=stopping) as servers:
        return run_all(a.commands, servers, wanted, name)


def run_all(commands: list[str], servers: list[VllmServer | ServerFailed], wanted: list[str], name: str) -> int:
    """Every command in turn against the servers that came up; non-zero when one was skipped or failed."""
    for s in servers:
        if isinstance(s, ServerFailed):
            say(s.reason, *s.log_tail[-6:])
    up = [s for s in servers if isinstance(s, VllmServer)]
    say("up: " + (", ".join(f"{s.label}={s.base_url}" for s in up) or "none"))
    down = [b for b, s in zip(wanted, servers) if isinstance(s, ServerFailed)]
    if down:
        say("did not come up: " + ", ".join(down))
    rc = 0
    for words in split_commands(commands):
        cmd, why = expand(words, up, wanted, name)
        if cmd is None:
            say(f"skipped ({why}): {shlex.join(words)}")
            rc |= 1
            continue
        say(f"$ {shlex.join(cmd)}")
        rc |= run_command(cmd)
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except procs.Terminated:
        sys.exit(143)  # 128 + SIGTERM, as a shell reports a command `timeout` ended

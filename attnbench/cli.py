"""The `attnbench` command: a thin layer over functions a test can call. Each command lives in
its area's cli module; heavy imports (torch, vllm, flashinfer) happen only inside commands."""

from __future__ import annotations

import importlib
import sys

import typer

from attnbench import procs
from attnbench.errors import UserError

app = typer.Typer(
    help="Benchmark and accuracy-evaluation harness for LLM attention backends.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# command name -> "module:attribute" (a function becomes a command, a typer.Typer a group)
COMMANDS = {
    "serve-bench": "attnbench.serving.cli:serve_bench",
    "backends": "attnbench.backends.cli:backends",
    "microbench": "attnbench.microbench.cli:app",
    "gpqa": "attnbench.evals.cli:gpqa",
    "parity": "attnbench.parity.cli:parity",
    "run": "attnbench.scenarios.cli:run",
    "compare": "attnbench.compare.cli:compare",
    "report": "attnbench.report.cli:report",
    "explain": "attnbench.explain.cli:explain",
}


def _register() -> None:
    for name, target in COMMANDS.items():
        module_name, attr = target.split(":")
        obj = getattr(importlib.import_module(module_name), attr)  # a broken command must fail loudly
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=name)
        else:
            app.command(name)(obj)


@app.callback()
def _root() -> None:
    """Benchmark and accuracy-evaluation harness for LLM attention backends."""


_register()


def _from_ctrl_c(e: BaseException) -> bool:
    """Typer turns a KeyboardInterrupt into its own exit 130; find it in the exception's chain."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


INTERRUPTED = "attnbench: interrupted; partial results (if any) were saved"


def main() -> None:
    procs.sigterm_raises_interrupt()  # so `finally` blocks stop servers when we are terminated
    try:
        app()
    except UserError as e:
        print(f"attnbench: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except SystemExit as e:
        if e.code == 130 and _from_ctrl_c(e):
            print(INTERRUPTED, file=sys.stderr)
        raise

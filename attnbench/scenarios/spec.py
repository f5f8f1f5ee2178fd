"""A scenario: a named study in one TOML file, validated on load and expanded into independent
runs. Each run is one attnbench command line with its own result directory and GPU count, so the
runner can execute runs one after another or spread them over GPUs (Ray) without knowing what
they measure.

A study section ([serve], [microbench], [gpqa], [parity]) is one `Section` declaration below:
its allowed keys with their types, and how one (backend, setting) becomes a command line. The
keys that are flags of the section's command (with their types, bounds and choices) are read from
the command's config dataclass (`options`): serve-bench's ServeBench, gpqa's GPQARun, parity's
Parity and microbench's Options, so a new flag is one metadata entry there.

Beside the sections: [servers], vLLM servers the runner keeps up for the whole study (servers.py),
which runs name with `{endpoint:LABEL}`; and [[step]], one command each, in file order after the
sections' runs: `args` for attnbench, `command` for any other program (`final` ones run even once
the budget is spent; `{shared:NAME}` is a folder several of them write into).
"""

from __future__ import annotations

import functools
import itertools
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from attnbench.backends import registry
from attnbench.errors import UserError
from attnbench.evals.run import GPQARun
from attnbench.flags import Option, joined, options  # the options a config declares: each section's keys
from attnbench.microbench.grid import Grid
from attnbench.microbench.grid import load as load_grid
from attnbench.microbench.run import Options as MicrobenchOptions
from attnbench.parity.run import Parity
from attnbench.scenarios import servers
from attnbench.serving.run import ServeBench

INT, FLOAT, STR, BOOL = int, float, str, bool
TOP_KEYS = {"name": STR, "description": STR, "backends": [STR], "repeats": INT, "budget_s": FLOAT,
            "timeout_s": FLOAT}


@dataclass(frozen=True)
class Run:
    """One command of a study; `args` lack --result-dir, which the runner appends."""
    id: str  # unique within the scenario, also the result subdirectory: serve-fa3, gpqa-fa4-low
    args: tuple[str, ...]  # attnbench arguments: ("serve-bench", "--backends", "fa3", ...)
    gpus: int = 1  # 0: a client only (serve-bench against a running endpoint)
    repeat: int = 0
    timeout_s: float | None = None  # stopped after this long (its section's timeout_s); not part of the command
    external: bool = False  # args are another program's whole command line ([[step]] command): no --result-dir
    final: bool = False  # a [[step]] that runs even once the budget is spent, the budget keeping its timeout_s

    @property
    def result_subdir(self) -> str:
        return f"{self.id}/rep{self.repeat}"

    def argv(self, result_dir: Path | str) -> list[str]:
        """The arguments with `{result_dir}`, `{run_dir:ID}` and `{shared:NAME}` filled; attnbench's
        end in --result-dir unless they give one (e.g. a folder several steps share)."""
        root = Path(result_dir).parent.parent  # result_dir is ROOT/ID/repK (result_subdir)

        def fill(a: str) -> str:
            a = RUN_DIR.sub(lambda m: str(root / m.group(1) / f"rep{self.repeat}"), a.replace(RESULT_DIR, str(result_dir)))
            return SHARED.sub(lambda m: str(root / m.group(1) / f"rep{self.repeat}"), a)

        words = [fill(a) for a in self.args]
        own = any(w == "--result-dir" or w.startswith("--result-dir=") for w in words)
        return words if self.external or own else [*words, "--result-dir", str(result_dir)]


RESULT_DIR = "{result_dir}"  # a run's own directory, e.g. for another program's --out
RUN_DIR = re.compile(r"\{run_dir:([^}]*)\}")  # an earlier run's directory, same repeat: what a step reads
SHARED = re.compile(r"\{shared:([^}]*)\}")  # ROOT/NAME/repK, a folder no run owns: what steps write together


@dataclass
class Scenario:
    name: str
    path: Path
    description: str = ""
    repeats: int = 1
    runs: list[Run] = field(default_factory=list)  # one repeat; expand() multiplies
    budget_s: float | None = None  # the whole study's wall clock: later runs are skipped once it is spent
    servers: servers.Servers | None = None  # [servers]: up while the runs execute

    def expand(self, repeats: int | None = None) -> list[Run]:
        """Every run x every repeat, repeat-major so a cut-short study has whole repeats."""
        n = self.repeats if repeats is None else repeats
        if n < 1:
            raise UserError(f"--repeats must be >= 1 (got {n})")
        return [replace(r, repeat=k) for k in range(n) for r in self.runs]


# ---- type checking with one-line errors -------------------------------------------------------

def _type_name(t: Any) -> str:
    if isinstance(t, list):
        return "a list of " + {int: "integers", float: "numbers", str: "strings", bool: "booleans"}[t[0]]
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false", dict: "a table"}[t]


def _is(value: Any, t: Any) -> bool:
    if isinstance(t, tuple):
        return any(_is(value, x) for x in t)
    if isinstance(t, list):
        return isinstance(value, list) and all(_is(v, t[0]) for v in value)
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


def _check(table: dict, allowed: dict[str, Any], where: str, source: Path) -> None:
    """`where` is the table ("[serve]"), or "" for the top level."""
    for key, value in table.items():
        if key not in allowed:
            raise UserError(f"{source}: unknown key {key!r} in {where}; allowed: {', '.join(sorted(allowed))}")
        if not _is(value, allowed[key]):
            name = f"{where}.{key}" if where else key
            raise UserError(f"{source}: {name} must be {_type_name(allowed[key])} (got {value!r})")


def _check_bounds(table: dict, bounds: dict[str, tuple[str, Any]], where: str, source: Path) -> None:
    """Values in range at load, not inside a subprocess later: num_prompts = 0, input = [-5],
    effort = "hgih" (op "in": one of the bound's values)."""
    for key, (op, bound) in bounds.items():
        if key not in table:
            continue
        for v in _listed(table[key]):
            if op == "in" and v not in bound:
                allowed = ", ".join(map(str, bound))
                raise UserError(f"{source}: {where}.{key} must be one of {allowed} (got {table[key]!r})")
            if op != "in" and not (v > bound if op == ">" else v >= bound):
                raise UserError(f"{source}: {where}.{key} must be {op} {bound:g} (got {table[key]!r})")


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _gpus(table: dict) -> int:
    """GPUs one run needs: `gpus = N`, else the tensor-parallel size found in serve_args."""
    if "gpus" in table:
        return table["gpus"]
    args = table.get("serve_args", [])
    for i, a in enumerate(args):
        for flag in ("--tensor-parallel-size", "-tp"):
            if a == flag and i + 1 < len(args) and args[i + 1].isdigit():
                return int(args[i + 1])
            if a.startswith(flag + "="):
                return int(a.split("=", 1)[1])
    return 1


# ---- the sections ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    """One study kind: the keys its TOML table accepts and how it becomes runs."""
    name: str
    keys: dict[str, Any]
    runs: Callable[[dict, list[str], Path], list[Run]]  # (table, backends, scenario file) -> runs
    bounds: dict[str, tuple[str, Any]] = field(default_factory=dict)  # key -> (">" or ">=", n) or ("in", values)


COMMON = {"backends": [STR], "gpus": INT, "args": [STR], "timeout_s": FLOAT}  # args: extra flags passed verbatim
COMMON_BOUNDS = {"gpus": (">=", 1), "timeout_s": (">", 0)}


def _argv(flags: list[Option], values: dict) -> list[str]:
    """The flags of the keys `values` sets, in declaration order."""
    return [a for o in flags if o.key in values for a in o.argv(values[o.key])]


def command_section(name: str, config: type, runs: Callable[..., list[Run]], only: dict[str, Any]) -> Section:
    """A section whose keys are the flags `config` declares (`options`), plus `only`, the keys a
    scenario alone has; `runs(flags, table, backends, source)` makes its command lines."""
    flags = options(config)
    keys = [o.key for o in flags]
    twice = {k for k in keys if keys.count(k) > 1} | (set(keys) & {*COMMON, *only})
    if twice:
        raise TypeError(f"{config.__name__} declares {', '.join(sorted(twice))}, which [{name}] already uses")
    bounds = {o.key: o.bound for o in flags if o.bound}
    bounds |= {o.key: ("in", o.choices) for o in flags if o.choices}
    return Section(name, {**COMMON, **only, **{o.key: o.type for o in flags}}, functools.partial(runs, flags), bounds)


def _serve_runs(flags: list[Option], t: dict, backends: list[str], source: Path) -> list[Run]:
    """One run per backend (one server each), so Ray can put backends on different GPUs; with
    `together = true` one run over every backend (serve-bench then puts their servers side by side
    and interleaves their passes where the GPU has room); or, with
    `endpoints = {name = "http://host:port"}`, one run per already running server."""
    inputs, outputs = _listed(t.get("input", 1000)), _listed(t.get("output", 1000))
    if len(inputs) != len(outputs):
        raise UserError(f"{source}: [serve] input and output must have the same length "
                        f"(pairs (input, output)); got {len(inputs)} and {len(outputs)}")
    common = _argv(flags, {**t, "input": inputs, "output": outputs}) + t.get("args", [])
    endpoints = t.get("endpoints", {})
    for name, url in endpoints.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise UserError(f"{source}: [serve].endpoints name {name!r} must be letters, digits, '.', '_' or '-' (it names a directory)")
        if not isinstance(url, str) or not (url.startswith(("http://", "https://")) or servers.ENDPOINT.fullmatch(url)):
            raise UserError(f"{source}: [serve].endpoints.{name} must be an http(s) URL string or "
                            f"\"{{endpoint:LABEL}}\" of [servers] (got {url!r})")
    if endpoints:
        for key in ("serve_args", "together"):
            if key in t:
                raise UserError(f"{source}: [serve] {key} applies to servers attnbench starts; drop it with endpoints")
        return [Run(f"serve-{name}", ("serve-bench", "--endpoint", url, "--name", name, *common), 0)
                for name, url in endpoints.items()]
    if t.get("together"):
        return [Run("serve", ("serve-bench", "--backends", joined(backends), *common), _gpus(t))]
    return [Run(f"serve-{b}", ("serve-bench", "--backends", b, *common), _gpus(t)) for b in backends]


SERVE_ONLY = {"endpoints": dict, "together": BOOL}  # [serve] keys that are no serve-bench flag of their own


def serve_section(config: type = ServeBench) -> Section:
    """[serve]: the flags serve-bench's config declares, plus the keys only a scenario has."""
    return command_section("serve", config, _serve_runs, SERVE_ONLY)


SERVE = serve_section()

GRID_KEYS = {"op": STR, "backends": [STR], "dtype": STR, "page_size": INT, "heads": [STR], "batch": [INT],
             "context": [INT], "seqlen": [INT], "max_kv_gib": FLOAT, "q_len": INT, "causal": BOOL, "ragged": STR}


def _grid_file(t: dict, source: Path) -> Grid:
    """The grid the microbench runs read, loaded (and so validated) as `microbench --grid` will:
    `grid = "decode-grid.toml"` (beside the scenario) or the scenario file itself when its
    [microbench] table is a grid."""
    if "grid" not in t:
        extra = sorted(set(t) - set(GRID_KEYS))
        if extra:  # the file itself is handed to `microbench --grid`, which reads only grid keys
            hint = " (timeout_s may also go at the top level)" if "timeout_s" in extra else ""
            raise UserError(f"{source}: [microbench] {', '.join(extra)} need the grid in its own file: "
                            f"move the grid keys there and write grid = \"FILE\"{hint}")
        return load_grid(source.resolve())
    stray = sorted(set(t) & set(GRID_KEYS) - {"backends"})
    if stray:
        raise UserError(f"{source}: [microbench] has grid = {t['grid']!r} and also {', '.join(stray)}; "
                        "set those in the grid file (only backends, gpus and args go beside grid)")
    path = (source.parent / t["grid"]).resolve()
    if not path.is_file():
        raise UserError(f"{source}: [microbench] grid {t['grid']!r} not found at {path}; give a path relative to the scenario file")
    return load_grid(path)


def _microbench_runs(flags: list[Option], t: dict, backends: list[str], source: Path) -> list[Run]:
    """One run per backend over the whole grid: `microbench <op> --grid FILE --backends b`, with
    the measurement flags (repeats, ...) beside `grid = FILE`."""
    grid = _grid_file(t, source)
    path = Path(grid.source)
    if not backends:
        backends = list(grid.backends)
        for b in backends:
            _known(b, path, "[microbench] grid backends")
    name = path.stem if path != source.resolve() else grid.op
    common = _argv(flags, t) + t.get("args", [])
    return [Run(f"microbench-{name}-{b}", ("microbench", grid.op, "--grid", str(path), "--backends", b, *common),
                _gpus(t)) for b in backends]


def microbench_section(config: type = MicrobenchOptions) -> Section:
    """[microbench]: the grid keys (what `microbench --grid` reads), `grid`, and the flags of how
    each shape is measured, which microbench's Options declares."""
    return command_section("microbench", config, _microbench_runs, {**GRID_KEYS, "grid": STR})


MICROBENCH = microbench_section()


def _gpqa_runs(flags: list[Option], t: dict, backends: list[str], source: Path) -> list[Run]:
    """One run per (backend, effort)."""
    [effort] = [o for o in flags if o.key == "effort"]
    common = _argv([o for o in flags if o is not effort], t) + t.get("args", [])
    return [Run(f"gpqa-{b}-{e}", ("gpqa", "--backends", b, *effort.argv(e), *common), _gpus(t))
            for b, e in itertools.product(backends, _listed(t.get("effort", "low")))]


def gpqa_section(config: type = GPQARun) -> Section:
    """[gpqa]: the flags gpqa's config declares (`effort` may be a list: one run per effort)."""
    return command_section("gpqa", config, _gpqa_runs, {})


GPQA = gpqa_section()


def _parity_runs(flags: list[Option], t: dict, backends: list[str], source: Path) -> list[Run]:
    """One run: parity compares every backend with the reference, so they belong together; the
    reference (fa3 unless set) comes first and is always passed."""
    reference = t.get("reference", "fa3")
    _known(reference, source, "[parity].reference")
    names = [reference] + [b for b in backends if b != reference]
    args = ["parity", "--backends", joined(names), "--reference", reference]
    args += _argv([o for o in flags if o.key != "reference"], t) + t.get("args", [])
    return [Run("parity", tuple(args), _gpus(t))]


def parity_section(config: type = Parity) -> Section:
    """[parity]: the flags parity's config declares (its settings, prompts and thresholds too)."""
    return command_section("parity", config, _parity_runs, {})


PARITY = parity_section()

SECTIONS: dict[str, Section] = {s.name: s for s in (SERVE, MICROBENCH, GPQA, PARITY)}


def _known(backend: str, source: Path, where: str) -> None:
    if backend == "reference" and "microbench" in where:  # microbench's float32 oracle, not a serving backend
        return
    try:
        registry.get(backend)
    except UserError as e:
        raise UserError(f"{source}: {where}: {e}") from None


# ---- [servers] and [[step]] ----------------------------------------------------------------------

SERVERS_KEYS = {"model": STR, "memory_share": FLOAT, "serve_args": [STR], "ready_timeout_s": FLOAT}  # the rest: labels
SERVER_KEYS = {"backend": STR, "serve_args": [STR]}  # one server's table: fa3-api4 = { backend = "fa3", ... }


def _servers(t: dict, source: Path) -> servers.Servers:
    """[servers]: its own keys, and every other key a label whose table says what that server runs."""
    _check({k: v for k, v in t.items() if k in SERVERS_KEYS}, SERVERS_KEYS, "[servers]", source)
    _check_bounds(t, {"ready_timeout_s": (">", 0), "memory_share": (">", 0)}, "[servers]", source)
    found = []
    for label, table in t.items():
        if label in SERVERS_KEYS:
            continue
        if not isinstance(table, dict):
            raise UserError(f"{source}: [servers].{label} must be a table, e.g. {label} = {{ backend = \"fa3\" }} "
                            f"(the keys of [servers] itself: {', '.join(sorted(SERVERS_KEYS))})")
        if not servers.LABEL.fullmatch(label):
            raise UserError(f"{source}: [servers] label {label!r} must be letters, digits, '.', '_' or '-' (it names a log file)")
        _check(table, SERVER_KEYS, f"[servers].{label}", source)
        backend = table.get("backend", label)
        _known(backend, source, f"[servers].{label}.backend")
        found.append(servers.Server(label, backend, tuple(table.get("serve_args", []))))
    if not found:
        raise UserError(f"{source}: [servers] declares no server; add one, e.g. fa3 = {{ backend = \"fa3\" }}")
    plan = servers.Servers(found, t.get("model", servers.Servers.model), t.get("memory_share"),
                           tuple(t.get("serve_args", [])), t.get("ready_timeout_s", servers.Servers.ready_timeout_s))
    share = plan.share()
    if share is not None and share * len(found) > 1:
        raise UserError(f"{source}: [servers] memory_share = {share:g} for {len(found)} servers side by side is "
                        f"{share * len(found):.2f} of the GPU's memory; give each at most {1 / len(found):.3f}")
    return plan


STEP_KEYS = {"id": STR, "args": [STR], "command": [STR], "timeout_s": FLOAT, "gpus": INT, "final": BOOL}


def _step_runs(steps: list, timeout_s: float | None, source: Path) -> list[Run]:
    """[[step]] tables, one run each: `args` of attnbench (its --result-dir appended) or a `command`
    of any program (`{result_dir}` is the run's directory). GPUs: `gpus`, else none for a step that
    reads a server, else one."""
    runs = []
    for n, t in enumerate(steps, 1):
        where = f"[[step]] {n}"
        if not isinstance(t, dict):
            raise UserError(f"{source}: step must be an array of tables ([[step]] with args = [...] or command = [...])")
        _check(t, STEP_KEYS, where, source)
        _check_bounds(t, {"gpus": (">=", 0), "timeout_s": (">", 0)}, where, source)
        if ("args" in t) == ("command" in t) or not (t.get("args") or t.get("command")):
            raise UserError(f"{source}: {where} needs args = [...] (an attnbench command) or command = [...] "
                            "(another program), one of them, not empty")
        run_id = t.get("id", f"step-{n}")
        if not servers.LABEL.fullmatch(run_id):
            raise UserError(f"{source}: {where} id {run_id!r} must be letters, digits, '.', '_' or '-' (it names a directory)")
        words = tuple(t.get("args") or t["command"])
        gpus = t.get("gpus", 0 if servers.reads_a_server(words) else 1)
        final, limit = t.get("final", False), t.get("timeout_s", timeout_s)
        if final and limit is None:
            raise UserError(f"{source}: {where} is final (it runs even once the budget is spent): give it a timeout_s")
        if runs and runs[-1].final and not final:
            raise UserError(f"{source}: {where} comes after a final step; final steps run last: move it before them "
                            "or make it final too")
        runs.append(Run(run_id, words, gpus, timeout_s=limit, external="command" in t, final=final))
    return runs


def _check_server_use(runs: list[Run], plan: servers.Servers | None, source: Path) -> None:
    """Placeholders name declared servers; nothing starts a vLLM server beside them."""
    labels = plan.labels if plan else []
    for r in runs:
        for label in servers.named(r.args):
            if label not in labels:
                have = f"[servers] declares {', '.join(labels)}" if labels else "the scenario has no [servers]"
                raise UserError(f"{source}: {r.id} names {{endpoint:{label}}}, but {have}")
        if plan is None and any(servers.MODEL_PATH in a for a in r.args):
            raise UserError(f"{source}: {r.id} uses {servers.MODEL_PATH}, the model of [servers], but the scenario has none")
        if plan is not None and servers.starts_own_servers(r.args, r.external):
            raise UserError(f"{source}: {r.id} ({r.args[0]}) would start its own vLLM server beside the {len(labels)} "
                            "of [servers], which hold the GPU's memory; give it --endpoint {endpoint:LABEL} "
                            "(in [serve]: endpoints = { NAME = \"{endpoint:LABEL}\" }) or move it to a scenario "
                            "without [servers]")


# ---- loading -----------------------------------------------------------------------------------

def load(path: str | Path, backends: list[str] | None = None) -> Scenario:
    """Read and validate a scenario; `backends` (from --backends) replaces every section's list."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such scenario file (see scenarios/*.toml)")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None
    allowed = {**TOP_KEYS, **{name: dict for name in SECTIONS}, "servers": dict, "step": list}
    for key, value in data.items():
        if key not in allowed:
            raise UserError(f"{path}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")
        if (key in SECTIONS or key == "servers") and not isinstance(value, dict):
            raise UserError(f"{path}: {key} must be a table ([{key}])")
        if key == "step" and not isinstance(value, list):
            raise UserError(f"{path}: step must be an array of tables ([[step]], one per command)")
    _check({k: v for k, v in data.items() if k in TOP_KEYS}, TOP_KEYS, "", path)
    if not any(name in data for name in SECTIONS) and not data.get("step"):
        raise UserError(f"{path}: a scenario needs at least one of [{'], ['.join(SECTIONS)}] or a [[step]]")
    repeats = data.get("repeats", 1)
    if repeats < 1:
        raise UserError(f"{path}: repeats must be >= 1 (got {repeats})")
    for key in ("budget_s", "timeout_s"):
        if data.get(key, 1) <= 0:
            raise UserError(f"{path}: {key} must be > 0 seconds (got {data[key]})")
    for b in data.get("backends", []):
        _known(b, path, "backends")
    for b in backends or []:
        _known(b, path, "--backends")

    runs: list[Run] = []
    for name, section in SECTIONS.items():
        if name not in data:
            continue
        table = data[name]
        _check(table, section.keys, f"[{name}]", path)
        _check_bounds(table, {**COMMON_BOUNDS, **section.bounds}, f"[{name}]", path)
        for b in table.get("backends", []):
            _known(b, path, f"[{name}].backends")
        chosen = backends or table.get("backends") or data.get("backends") or []
        if not chosen and name != "microbench" and not table.get("endpoints"):
            raise UserError(f"{path}: no backends for [{name}]; set backends = [...] at the top or in [{name}], or pass --backends")
        timeout = table.get("timeout_s", data.get("timeout_s"))
        runs += [replace(r, timeout_s=timeout) for r in section.runs(table, list(chosen), path)]
    runs += _step_runs(data.get("step", []), data.get("timeout_s"), path)
    plan = _servers(data["servers"], path) if "servers" in data else None
    _check_server_use(runs, plan, path)
    ids = [r.id for r in runs]
    for i, r in enumerate(runs):
        for ref in (m.group(1) for a in r.args for m in RUN_DIR.finditer(a)):
            if ref not in ids[:i]:
                raise UserError(f"{path}: {r.id} reads {{run_dir:{ref}}}, but no run before it has that id "
                                f"(earlier: {', '.join(ids[:i]) or 'none'})")
    for r in runs:
        for name in (m.group(1) for a in r.args for m in SHARED.finditer(a)):
            if not servers.LABEL.fullmatch(name) or name in ids:
                why = "is a run's id (its directory is emptied when it runs again)" if name in ids else \
                    "must be letters, digits, '.', '_' or '-'"
                raise UserError(f"{path}: {r.id} writes {{shared:{name}}}, but {name!r} {why}; choose another name")
    if len(set(ids)) != len(ids):
        raise UserError(f"{path}: two runs share an id ({', '.join(sorted({i for i in ids if ids.count(i) > 1}))}); "
                        "a backend is listed twice, or a [[step]] id is taken")
    return Scenario(name=data.get("name", path.stem), path=path, description=data.get("description", ""),
                    repeats=repeats, runs=runs, budget_s=data.get("budget_s"), servers=plan)

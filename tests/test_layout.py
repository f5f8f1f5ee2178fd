"""pytest imports the test folders without __init__.py by basename (prepend import mode, each
folder put on sys.path): two modules of one name there collide, in the test run as in the
helpers that tests import by name (`from serve_records import ...`). Packages (tests/parity) are
imported by their dotted name and may reuse names."""

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).parent


def _in_package(path: Path) -> bool:
    return any((d / "__init__.py").exists() for d in path.parents if d != TESTS and TESTS in d.parents)


def test_modules_imported_by_basename_have_unique_names():
    where = defaultdict(list)
    for path in TESTS.rglob("*.py"):
        if path.name != "conftest.py" and "__pycache__" not in path.parts and not _in_package(path):
            where[path.name].append(str(path.relative_to(TESTS)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}


# --- the package's import graph -------------------------------------------------------------------

import ast  # noqa: E402

PACKAGE = TESTS.parent / "attnbench"
# What attnbench/kernels/ may import from the rest of attnbench: itself and the base utilities.
KERNELS_MAY_IMPORT = {"kernels", "errors", "atomic"}
KNOWN_CYCLES: set[frozenset[str]] = set()  # none left; a new one must be untangled, not listed


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str) -> str:
    """attnbench.a.b.c -> the module it names (c may be a name inside attnbench.a.b)."""
    while name.count(".") and not ((PACKAGE.parent / name.replace(".", "/")).with_suffix(".py").exists()
                                    or (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()):
        name = name.rsplit(".", 1)[0]
    return name


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """attnbench modules a file imports (every import, or only those run when it is imported)."""
    return _imports_of(path.read_text(), _module_name(path), path.name == "__init__.py", top_level_only)


def _imports_of(source: str, here: str, is_package: bool, top_level_only: bool) -> set[str]:
    tree = ast.parse(source)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    pkg = here if is_package else here.rsplit(".", 1)[0]
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out |= {_resolve(n) for n in names if n == "attnbench" or n.startswith("attnbench.")}
    return out - {here}


def _modules():
    return [p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts]


def test_kernels_import_no_harness_code():
    """attnbench/kernels/ (the kernels and their vLLM plugin) sits below the harness: anything
    above it (microbench, serving, records, ...) may import it, never the reverse."""
    bad = {}
    for path in (PACKAGE / "kernels").rglob("*.py"):
        above = {m for m in _imports(path, top_level_only=False)
                 if m != "attnbench" and m.split(".")[1] not in KERNELS_MAY_IMPORT}
        if above:
            bad[str(path.relative_to(PACKAGE))] = sorted(above)
    assert bad == {}


# The package's layers, lowest first. A package imports only packages of lower layers (imports
# inside functions count): the base utilities (errors, atomic writes and text formats under the rest), then records and what is served or timed, then the
# two measuring harnesses, then the commands built on them, then scenarios, then the CLI.
LAYERS = [
    {"errors", "atomic", "textfmt"},
    {"console", "procs", "provenance", "stats", "figures", "flags"},
    {"records", "models", "backends", "kernels"},
    {"serving", "microbench"},
    {"evals", "parity", "explain", "compare", "report"},
    {"scenarios"},
    {"cli"},
    {"__main__"},
]


def _layer_violations(graph: dict[str, set[str]]) -> list[str]:
    layer = {pkg: i for i, pkgs in enumerate(LAYERS) for pkg in pkgs}
    return sorted(f"{a} (layer {layer[a]}) imports {b} (layer {layer[b]})"
                  for a, deps in graph.items() for b in deps if b != a and layer[b] >= layer[a])


def _package_graph() -> dict[str, set[str]]:
    def top(module: str) -> str:
        return module.split(".")[1] if "." in module else "attnbench"

    graph: dict[str, set[str]] = {}
    for p in _modules():
        here = top(_module_name(p))
        graph.setdefault(here, set()).update(top(m) for m in _imports(p, top_level_only=False) if m != "attnbench")
    return graph


def test_each_package_imports_only_lower_layers():
    graph = _package_graph()
    assert set(graph) - {"attnbench"} <= set().union(*LAYERS), "a new package needs its place in LAYERS"
    assert _layer_violations({k: v - {"attnbench"} for k, v in graph.items() if k != "attnbench"}) == []
    # the check sees what it looks for
    assert _layer_violations({"serving": {"scenarios"}, "scenarios": {"serving"}}) == [
        "serving (layer 3) imports scenarios (layer 5)"]
    assert _layer_violations({"evals": {"parity"}}) == ["evals (layer 4) imports parity (layer 4)"]


def test_the_import_reader_sees_lazy_and_relative_imports():
    """What the two checks rest on: an import inside a function (the kind that used to make the
    kernels depend on microbench) and a relative one both count."""
    src = "import os\nfrom . import planner\ndef f():\n    from attnbench.microbench.base import DecodeShape\n"
    here = "attnbench.kernels.fa4_decode.launcher"
    assert _imports_of(src, here, False, top_level_only=False) == {"attnbench.kernels.fa4_decode.planner",
                                                                  "attnbench.microbench.base"}
    assert _imports_of(src, here, False, top_level_only=True) == {"attnbench.kernels.fa4_decode.planner"}


def test_module_level_imports_form_no_cycle():
    graph = {_module_name(p): _imports(p, top_level_only=True) for p in _modules()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                if frozenset(cycle) not in KNOWN_CYCLES:
                    cycles.append(" -> ".join(cycle))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_tracker_words_in_package_code_or_docs():
    """Package code and docs say what and why, not which ticket asked for it; reference figures
    live in results/ with their provenance."""
    import re

    pattern = re.compile(r"\b[Ii]ssues?\s*#?\d+\b|\b[Tt]he issue'?s?\b|\b[Ii]ssue #|\btracker\b")
    hits = [f"{p.relative_to(PACKAGE)}:{i}: {line.strip()}"
            for p in list(PACKAGE.rglob("*.py")) + list(PACKAGE.rglob("*.md")) if "__pycache__" not in p.parts
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []


# --- one place per decision ------------------------------------------------------------------------

ROOT = TESTS.parent
CODE = [p for p in [*PACKAGE.rglob("*.py"), *(ROOT / "scripts").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
        if "__pycache__" not in p.parts]


def _dummy_load_format(source: str) -> list[int]:
    """Lines that hand vLLM `--load-format dummy` (a list or tuple with the two words side by side,
    or "--load-format=dummy"); a comparison that checks what the user passed does not count."""
    tree = ast.parse(source)
    checked = {id(n) for c in ast.walk(tree) if isinstance(c, ast.Compare) for op in [c.left, *c.comparators]
               for n in ast.walk(op)}
    lines = []
    for node in ast.walk(tree):
        if id(node) in checked:
            continue
        if isinstance(node, ast.Constant) and node.value == "--load-format=dummy":
            lines.append(node.lineno)
        if isinstance(node, (ast.List, ast.Tuple)):
            words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            if any(a == "--load-format" and b == "dummy" for a, b in zip(words, words[1:])):
                lines.append(node.lineno)
    return lines


def _calls(source: str, dotted: str) -> list[int]:
    """Lines that use os.killpg (also imported by its own name)."""
    name = dotted.rsplit(".", 1)[-1]
    return [n.lineno for n in ast.walk(ast.parse(source))
            if (isinstance(n, ast.Attribute) and n.attr == name) or (isinstance(n, ast.Name) and n.id == name)]


def test_only_the_fleet_decides_on_dummy_weights():
    """An embedded model is served with `--load-format dummy`: serving/fleet.py's server_args says
    so for every command that starts vLLM."""
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in CODE if p != PACKAGE / "serving" / "fleet.py"
            for n in _dummy_load_format(p.read_text())]
    assert hits == []
    assert _dummy_load_format((PACKAGE / "serving" / "fleet.py").read_text())  # the check sees the one that is there


def test_process_groups_are_signalled_only_by_the_process_toolbox():
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in CODE if p != PACKAGE / "procs.py"
            for n in _calls(p.read_text(), "os.killpg")]
    assert hits == []
    assert _calls((PACKAGE / "procs.py").read_text(), "os.killpg")


def test_figures_are_drawn_and_written_only_through_figures():
    """matplotlib's backend and PNG writing in one place (attnbench/figures.py): every plot is
    written atomically, at a declared dpi, and its figure freed."""
    def uses(source: str) -> list[int]:
        return [n for n, line in enumerate(source.splitlines(), 1) if "matplotlib.use(" in line or ".savefig(" in line]

    hits = [f"{p.relative_to(ROOT)}:{n}" for p in CODE if p != PACKAGE / "figures.py" for n in uses(p.read_text())]
    assert hits == []
    assert len(uses((PACKAGE / "figures.py").read_text())) == 2  # the check sees the two that are there


def test_the_decision_checks_see_what_they_look_for():
    assert _dummy_load_format('x = ["--model", m, "--load-format", "dummy"]\n') == [1]
    assert _dummy_load_format('args += ("--load-format=dummy",)\n') == [1]
    assert _dummy_load_format('if ("--load-format", "dummy") in pairs or "--load-format=dummy" in a: pass\n') == []
    assert _calls("import os\nos.killpg(pid, 9)\n", "os.killpg") == [2]
    assert _calls("from os import killpg\nkillpg(pid, 9)\n", "os.killpg") == [2]

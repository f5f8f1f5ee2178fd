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

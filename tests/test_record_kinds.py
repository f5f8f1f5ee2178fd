"""The registry of record kinds is the one place compare, report and the serve summary read."""

import ast
from pathlib import Path

from attnbench.compare import direction, judge, render
from attnbench.report import sections
from attnbench.records import kinds
from attnbench.records.record import KINDS, Record
from attnbench.serving import summary


def test_every_metric_a_kind_names_is_declared_by_it():
    for k in kinds.KINDS.values():
        named = set(k.headline or ()) | set(k.columns) | set(k.history) | set(k.intervals)
        assert named <= {m.name for m in k.metrics}, k.name
        assert all(m.direction in (kinds.HIGHER, kinds.LOWER, kinds.UNKNOWN) for m in k.metrics)


def test_the_record_reader_accepts_exactly_the_declared_kinds():
    assert KINDS == kinds.NAMES and "serve-aggregate" in KINDS


def test_a_declaration_overrides_the_name_patterns_only_where_one_exists(monkeypatch):
    assert direction.of("widgets") == direction.UNKNOWN  # declared nowhere: the patterns decide
    assert direction.of("extraction_failures", "gpqa") == direction.LOWER
    gpqa = kinds.KINDS["gpqa"]
    flipped = kinds.Kind("gpqa", gpqa.title, (kinds.Metric("widgets", kinds.HIGHER),), headline=("widgets",))
    monkeypatch.setitem(kinds.KINDS, "gpqa", flipped)
    assert direction.of("widgets", "gpqa") == direction.HIGHER
    assert direction.of("widgets") == direction.HIGHER  # a name one kind declares means the same elsewhere


def test_every_metric_in_the_committed_results_is_declared_by_its_kind():
    """compare judges our own records by declaration, never by guessing from a metric's name."""
    from attnbench.records import record

    root = Path(__file__).resolve().parents[1]
    found, _ = record.scan([root / "results", root / "tests"], on_bad="skip")
    seen, undeclared = set(), set()
    for f in found:
        r = f.record
        for name, v in (r.metrics or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and r.kind in kinds.KINDS:
                seen.add(r.kind)
                if kinds.KINDS[r.kind].metric(name) is None:
                    undeclared.add((r.kind, name))
    assert undeclared == set()
    assert seen >= {"serve", "serve-aggregate", "microbench", "gpqa", "parity", "explain"}  # the scan saw them
    assert kinds.metric("parity", "hf_max_kl") == kinds.metric("parity", "max_kl")  # against the fp32 reference


def test_the_fallback_table_holds_only_names_no_kind_declares():
    declared = {m.name for k in kinds.KINDS.values() for m in k.metrics}
    assert declared & set(direction.EXACT) == set()


def test_consumers_read_the_declarations():
    serve = kinds.KINDS["serve"]
    assert [c.key for c in summary.COLUMNS] == list(kinds.SERVE_COLUMNS)
    assert summary.COLUMNS[0].label == "out tok/s" and summary.COLUMNS[0].higher_is_better
    assert not next(c for c in summary.COLUMNS if c.key == "mean_ttft_ms").higher_is_better
    assert sections.VIEWS["serve"].history[0] == ("output_throughput", "output tok/s")
    assert sections.VIEWS["gpqa"].columns == kinds.KINDS["gpqa"].columns
    row = judge.Row("serve", "fa3", "x", "mean_ttft_ms", 1.0, 1.0, 0.0, judge.OK, "", 1, 1)
    hidden = judge.Comparison([row], 1, [])
    assert render.shown(hidden) == [] and "mean_ttft_ms" not in serve.headline


def test_identity_ignores_run_specific_settings_and_compare_skips_derived_kinds():
    a = Record("serve", "fa3", {"input_len": 1000, "seed": 1, "endpoint": "http://x:1"}, {"output_throughput": 1.0})
    b = Record("serve", "fa3", {"input_len": 1000, "seed": 2, "endpoint": "http://x:2"}, {"output_throughput": 1.0})
    assert kinds.key(a) == kinds.key(b) and kinds.settings(a) == {"input_len": 1000}
    agg = Record("serve-aggregate", "fa3", {"input_len": 1000}, {"output_throughput": 9.0})
    assert not kinds.KINDS["serve-aggregate"].compared
    assert judge.compare([agg], [agg]).rows == []


def test_serve_plots_do_not_import_the_summary():
    """summary lists plots' figures, so plots (and the Shape both group by) must sit below it."""
    folder = Path(summary.__file__).parent
    for name in ("plots.py", "shape.py"):
        tree = ast.parse((folder / name).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "attnbench.serving.summary" not in imported, name

"""serve-bench's comparison: which numbers the table shows, and their ratios, checked by hand."""

import os
import re
import sys
from pathlib import Path

import pytest

from attnbench.records import record
from attnbench.serving import aggregate, summary

sys.path.insert(0, str(Path(__file__).parent))  # helpers beside this file, whatever pytest's import mode
from serve_records import GPU, failed, serve  # noqa: E402


def three_backends():
    return [serve("fa3", 1000.0, 100.0, 20.0), serve("fa4", 800.0, 150.0, 25.0),
            failed("flashinfer", "server exited with code 1 while starting\nTraceback: ...")]


def pair(cell) -> tuple:
    return cell.value, cell.ratio


def row_of(text: str, backend: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(backend + " "))


def test_terminal_table_ratios_are_to_the_best_backend_per_metric():
    text = summary.table(three_backends())
    fa3, fa4 = row_of(text, "fa3"), row_of(text, "fa4")
    # throughput: fa3 is best (1.00x), fa4 800/1000 = 0.80x; latency: fa3 is best, fa4 150/100 = 1.50x
    assert "1000 1.00x" in fa3 and "100 1.00x" in fa3
    assert "800 0.80x" in fa4 and "150 1.50x" in fa4
    assert "25.0 1.25x" in fa4  # TPOT 25 / 20
    assert fa4.rstrip().endswith("4/0")  # completed/failed
    assert "1000:1000 x 4" in text and "ratio to the best backend" in text


def test_failed_backend_is_one_row_with_its_first_reason_line():
    text = summary.table(three_backends())
    fi = row_of(text, "flashinfer")
    assert "FAILED: server exited with code 1 while starting" in fi
    assert "Traceback" not in text
    # a failed backend never becomes "best": fa3 keeps ratio 1.00x
    assert "1000 1.00x" in row_of(text, "fa3")


def test_baseline_divides_by_the_named_backend():
    text = summary.table(three_backends(), baseline="fa4")
    assert "ratio to fa4" in text
    assert "1000 1.25x" in row_of(text, "fa3")  # 1000 / 800
    assert "100 0.67x" in row_of(text, "fa3")  # TTFT 100 / 150
    assert "800 1.00x" in row_of(text, "fa4")


def test_baseline_without_a_run_of_the_shape_falls_back_to_best_with_a_note():
    text = summary.table(three_backends(), baseline="flashinfer")
    assert "baseline 'flashinfer' has no successful run" in text
    assert "800 0.80x" in row_of(text, "fa4")


def test_shapes_are_compared_only_within_themselves():
    recs = [serve("fa3", 1000.0, 100.0), serve("fa4", 800.0, 150.0),
            serve("fa3", 2.0, 900.0, None, input_len=8000, output_len=1),
            serve("fa4", 4.0, 800.0, None, input_len=8000, output_len=1)]
    tables = summary.comparison(recs)
    assert [t.shape.label for t in tables] == ["1000:1000 x 4 · qwen3-0.6b", "8000:1 x 4 · qwen3-0.6b"]
    long = {r.backend: r for r in tables[1].rows}
    out = summary.COLUMNS.index(next(c for c in summary.COLUMNS if c.key == "output_throughput"))
    tpot = summary.COLUMNS.index(next(c for c in summary.COLUMNS if c.key == "mean_tpot_ms"))
    assert pair(long["fa3"].cells[out]) == (2.0, 0.5)  # 2 / best 4
    assert pair(long["fa4"].cells[tpot]) == (None, None)  # one output token: no TPOT
    assert "8000:1 x 4" in summary.table(recs)


def test_different_models_are_different_shapes():
    other = serve("fa4", 500.0, 100.0)
    other.scenario["model"] = other.scenario["served_model"] = "Qwen/Qwen3-8B"
    tables = summary.comparison([serve("fa3", 1000.0, 100.0), other])
    assert [t.shape.label for t in tables] == ["1000:1000 x 4 · qwen3-0.6b", "1000:1000 x 4 · Qwen/Qwen3-8B"]
    # alone in its own model's table: no ratio at all, and not 0.5x of the small model's
    assert pair(tables[1].rows[0].cells[0]) == (500.0, None)


def test_newest_record_per_backend_and_shape_wins():
    old = serve("fa3", 500.0, 100.0, utc_time="2026-11-01T00:00:00Z")
    new = serve("fa3", 900.0, 100.0, utc_time="2026-11-20T00:00:00Z")
    tables = summary.comparison([new, old])
    assert len(tables[0].rows) == 1 and tables[0].rows[0].record is new


def test_summary_md_has_tables_command_and_provenance(tmp_path):
    recs = three_backends()
    path = summary.write_summary(tmp_path, recs, command="attnbench serve-bench --backends fa3,fa4,flashinfer")
    assert path == tmp_path / "summary.md"
    text = path.read_text()
    assert "attnbench serve-bench --backends fa3,fa4,flashinfer" in text
    assert GPU in text and "vLLM 0.26.0" in text and "git abc1234" in text
    assert re.search(r"\| fa4 \| 800 \(0\.80x\) \|", text)
    assert "| flashinfer | **FAILED**: server exited with code 1 while starting |" in text
    header = next(line for line in text.splitlines() if line.startswith("| backend"))
    assert all(line.count("|") == header.count("|") for line in text.splitlines() if line.startswith("| "))
    assert "## Failed runs" in text
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # written atomically, nothing left over


def test_summary_md_defaults_to_the_recorded_command(tmp_path):
    text = summary.write_summary(tmp_path, [serve("fa3", 1.0, 1.0)]).read_text()
    assert "attnbench serve-bench --input 1000" in text


def test_summary_md_is_replaced_atomically(tmp_path, monkeypatch):
    (tmp_path / "summary.md").write_text("old complete file\n")

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        summary.write_summary(tmp_path, three_backends())
    assert (tmp_path / "summary.md").read_text() == "old complete file\n"
    assert os.listdir(tmp_path) == ["summary.md"]


def test_records_round_trip_through_disk_before_comparing(tmp_path):
    for rec in three_backends():
        rec.save(tmp_path / rec.backend / "serve-1000x1000.json")
    text = summary.table(record.load(tmp_path))
    assert "800 0.80x" in row_of(text, "fa4") and "FAILED" in row_of(text, "flashinfer")


def test_no_serve_records():
    assert "no serve results" in summary.table([])


def test_summary_md_links_the_plots_serve_bench_draws_beside_it(tmp_path):
    from attnbench.serving import plots

    recs = three_backends()
    text = summary.write_summary(tmp_path, recs).read_text()
    drawn = plots.write_plots(tmp_path, recs)
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert linked == [p.name for p in drawn] and all((tmp_path / name).is_file() for name in linked)


def repeated(backend: str, throughputs: list[float], interleaved: bool = True, flag_run: int | None = None,
             wave: int = 0):
    """One pass record per value, as serve-bench writes them (repeat index, interleaving, wave, flags)."""
    out = []
    for i, tps in enumerate(throughputs):
        r = serve(backend, tps, 100.0)
        r.scenario.update(repeat=i, repeats=len(throughputs), interleaved=interleaved, seed=1000 + i, wave=wave)
        r.provenance["run_id"] = "run-1"
        r.samples["observation"] = {"flags": [{"kind": "jit", "evidence": "CuTeDSL JIT compilation during inference",
                                               "contaminates": True}] if i == flag_run else []}
        out.append(r)
    return out


def test_repeats_show_plus_minus_and_approx_where_the_ratio_ci_holds_one():
    # a: 1000, 1100, 900 -> mean 1000; b tracks a within 1-2% -> the paired ratio CI holds 1: "≈"
    # c is 20% slower in every round -> its ratio CI excludes 1: no "≈"
    recs = (repeated("a", [1000.0, 1100.0, 900.0]) + repeated("b", [990.0, 1085.0, 905.0])
            + repeated("c", [800.0, 880.0, 720.0]))
    text = summary.table(recs)
    a, b, c = row_of(text, "a"), row_of(text, "b"), row_of(text, "c")
    # a: sd 100, half-width 4.303 * 100 / sqrt(3) = 248.4 = 24.8% of 1000
    assert "1000 ±24.8% 1.00x" in a
    assert "≈0.99x" in b and "≈" not in c.split()[3] and " 0.80x" in c
    assert "4/0 x3" in a
    md = summary.markdown(recs)
    assert "(≈0.99x)" in md and "95% CI" in md


def test_ratios_pair_passes_only_where_every_pass_ran_next_to_its_partner():
    # b tracks a's drift exactly, 5% slower: paired, the interval is tight and excludes 1
    a = repeated("a", [1000.0, 1100.0, 900.0])
    b = repeated("b", [950.0, 1045.0, 855.0])
    ga, gb = aggregate.groups(a)[0], aggregate.groups(b)[0]
    r = aggregate.ratio(gb, ga, "output_throughput")
    assert r.method.startswith("paired") and abs(r.ratio - 0.95) < 1e-9 and r.ci_high < 1
    # the same passes in different waves of servers (minutes apart): not pairs; the unpaired
    # interval carries a's drift and holds 1
    far = aggregate.groups(repeated("b", [950.0, 1045.0, 855.0], wave=1))[0]
    r = aggregate.ratio(far, ga, "output_throughput")
    assert r.method.startswith("Welch") and r.ci_low < 1 < r.ci_high
    # b's extra passes (run alone after a met its target) count: unpaired over all of them, not
    # three pairs with the other passes thrown away
    more = aggregate.groups(repeated("b", [950.0, 1045.0, 855.0, 940.0, 960.0, 950.0]))[0]
    r = aggregate.ratio(more, ga, "output_throughput")
    assert r.method == "Welch t on log means (6 vs 3)"


def test_a_flagged_pass_stays_out_of_the_statistics_and_is_listed_with_its_evidence():
    recs = repeated("a", [1000.0, 1000.0, 100.0], flag_run=2) + repeated("b", [900.0, 900.0, 900.0])
    t = summary.comparison(recs)[0]
    row = next(r for r in t.rows if r.backend == "a")
    assert row.cells[0].value == 1000.0 and row.cells[0].spread.n == 2  # the stalled 100 tok/s pass left out
    assert "(1 flagged)" in row.counts
    text = summary.table(recs)
    assert "flagged: a run 3: jit: CuTeDSL JIT compilation during inference" in text
    kept = summary.comparison(recs, keep_flagged=True)[0]
    assert next(r for r in kept.rows if r.backend == "a").cells[0].spread.n == 3
    assert "left out of means" in summary.markdown(recs)


def test_groups_that_differ_in_serve_args_are_separate_rows():
    one, two = serve("fa3", 1000.0, 100.0), serve("fa3", 900.0, 100.0)
    two.scenario["serve_args"] = ["--max-num-seqs", "128"]
    rows = summary.comparison([one, two])[0].rows
    assert len(rows) == 2 and rows[0].backend != rows[1].backend and "serve_args" in rows[1].backend


def test_an_endpoint_run_describes_the_server_not_this_machine():
    r = serve("prod", 1000.0, 100.0)
    r.provenance["server_description"] = {"endpoint": "http://10.0.0.5:8000/v1", "server": "llama.cpp",
                                          "version": "unknown", "model": "smollm2", "max_model_len": 8192,
                                          "metrics": False, "gpu": "unknown"}
    line = summary.provenance_line([r])
    assert line.startswith("Endpoint: http://10.0.0.5:8000/v1 · server llama.cpp") and "GPU unknown" in line
    assert GPU not in line  # the client machine's GPU is not the server's
    assert "1.00x" not in summary.table([r])  # one backend: no ratios to itself


def test_a_newer_single_run_beside_an_older_repeated_run_is_the_one_shown():
    old = repeated("a", [1000.0, 1100.0])  # run_id "run-1", utc_time 2026-11-24
    for r in old:
        r.provenance["run_id"] = "2026-11-24T12:00:00Z-1"
    new = serve("a", 500.0, 100.0, utc_time="2026-11-25T12:00:00Z")  # no run_id: an older attnbench's record
    [t] = summary.comparison(old + [new])
    assert [r.cells[0].value for r in t.rows] == [500.0]


def test_layout_is_one_line_or_one_line_per_wave_where_the_waves_differ():
    same = repeated("a", [1000.0, 1000.0]) + repeated("b", [900.0, 900.0], wave=1)
    for r in same:
        r.scenario["layout"] = "2 servers side by side"
    assert summary.layout_lines(same) == ["Layout: 2 servers side by side", ""]
    for r in same:
        if r.backend == "a":
            r.scenario["layout"] = "2 servers side by side; the first starts alone"
    assert summary.layout_lines(same) == ["Layout, wave 1 (a): 2 servers side by side; the first starts alone",
                                          "Layout, wave 2 (b): 2 servers side by side", ""]


def test_a_target_ci_with_one_pass_counted_says_no_ci_rather_than_nan():
    recs = repeated("a", [1000.0, 1010.0, 990.0]) + repeated("b", [900.0])
    for r in recs:
        r.scenario.update(target_ci=0.03, max_repeats=10)
    lines = summary.precision_lines(recs)
    b = next(line for line in lines if line.startswith("- b "))
    assert "no CI (1 pass counted; a CI needs 2)" in b and "nan" not in b
    assert "stopped after 1 of at most 10 passes" in b
    a = next(line for line in lines if line.startswith("- a "))
    assert "(95% CI over 3)" in a and a.endswith("met")


def test_engine_gc_is_shown_only_where_the_servers_logged_it():
    recs = repeated("a", [1000.0, 1000.0]) + repeated("b", [900.0, 900.0])
    assert "garbage collections" not in summary.markdown(recs)
    for r, (n, ms, top) in zip(recs[:2], [(3, 30.0, 20.0), (5, 50.0, 45.0)]):
        r.samples["observation"].update(server_gc_count=n, server_gc_ms=ms, server_gc_max_ms=top)
        r.samples["duration"] = 10.0
    md = summary.markdown(recs)
    assert "garbage collections per pass" in md
    rows = [line.split("|")[1:-1] for line in md.splitlines() if line.startswith("| a | ")]
    gc_rows = [[c.strip() for c in r] for r in rows if len(r) == 7]
    # one row per pass: its tok/s, count, total ms, longest pause, and the share of its 10 s
    assert gc_rows == [["a", "0", "1000", "3", "30.0", "20.0", "0.30"], ["a", "1", "1000", "5", "50.0", "45.0", "0.50"]]
    assert not any(line.startswith("| b | ") and "45.0" in line for line in md.splitlines())

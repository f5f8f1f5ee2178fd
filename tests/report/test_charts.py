"""The report's figures and its tolerance of sparse records: whatever a record lacks, the page still builds."""

import re
import sys
from pathlib import Path

from attnbench.report import charts, sections
from attnbench.report.build import write_report
from attnbench.records.record import Record

sys.path.insert(0, str(Path(__file__).parent))  # helpers beside this file, whatever pytest's import mode


def test_roof_prefers_the_runs_own_measurement_then_the_datasheet():
    from report_records import microbench

    rec = microbench("fa3", "decode", 1024, 50.0, 2000.0, 8.0)
    assert sections.roof([rec], "NVIDIA H100 80GB HBM3") == (3000.0, 700.0, "measured")
    rec.provenance.pop("roofline")
    assert sections.roof([rec], "NVIDIA H100 80GB HBM3") == (3350, 989, "datasheet")
    bw, peak, _ = sections.roof([rec], "Tesla T4")  # unknown GPU: the bandwidth its percentage implies
    assert round(bw) == 3000 and peak is None


def test_roofline_needs_both_rates(tmp_path):
    plt = charts.pyplot()
    assert charts.roofline(plt, "t", [charts.RoofPoint("fa3", "", 0, 5.0)], 3000, 989, "x", tmp_path / "r.png") is None
    path = charts.roofline(plt, "t", [charts.RoofPoint("fa3", "decode", 2000.0, 8.0)], None, None, "", tmp_path / "r.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_wilson_interval_matches_a_hand_computed_case():
    low, high = sections.wilson(0.5, 100)  # centre 0.5, half 1.96 * sqrt(0.0025 + 0.000096) / 1.0384
    assert round(low, 4) == 0.4038 and round(high, 4) == 0.5962
    low, high = sections.wilson(1.0, 400)
    assert high == 1.0 and 0.99 < low < 1.0  # never past 1, unlike p +- z*se


def test_sparse_and_failed_records_of_every_kind_still_make_a_page(tmp_path):
    bare = {"provenance": {}, "scenario": {}}
    Record("serve", "fa3", status="failed", error="no GPU", **bare).save(tmp_path / "a.json")
    Record("microbench", "fa3", metrics={"us": 12.0}, **bare).save(tmp_path / "b.json")  # no GB/s: no roofline point
    Record("gpqa", "fa3", metrics={"accuracy": None}, **bare).save(tmp_path / "c.json")
    Record("parity", "fa4", status="failed", error="diverged\nat token 3", metrics={"passed": 0}, **bare).save(
        tmp_path / "d.json")
    Record("explain", "fa4", scenario={"shape": "1000:1000"}, provenance={}, metrics={"predicted_tpot_ms": 17.0}).save(
        tmp_path / "e.json")
    html = write_report([tmp_path], tmp_path / "site" / "index.html").read_text()
    assert re.findall(r'<section id="([^"]+)"', html) == [
        "overview", "serve", "microbench", "gpqa", "parity", "explain", "files"]
    assert "FAILED: no GPU" in html and "FAILED: diverged" in html and "at token 3" not in html
    assert "no run with both GB/s and TFLOP/s" in html
    assert "predicted_tpot_ms" in html

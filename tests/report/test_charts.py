"""The report's figures and its tolerance of sparse records: whatever a record lacks, the page still builds."""

import re

from attnbench.report import charts
from attnbench.report.build import write_report
from attnbench.results.record import Record


def test_compute_roof_by_gpu_name_prefers_the_longest_match():
    assert charts.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert charts.peak_tflops("NVIDIA H20") == 148.0
    assert charts.peak_tflops("NVIDIA H200") == 989.4  # not the H20's
    assert charts.peak_tflops("Tesla T4") is None and charts.peak_tflops(None) is None


def test_roofline_needs_both_rates(tmp_path):
    plt = charts.pyplot()
    assert charts.roofline(plt, "t", [charts.RoofPoint("fa3", "", 0, 5.0, None)], 989.4, tmp_path / "r.png") is None
    path = charts.roofline(plt, "t", [charts.RoofPoint("fa3", "decode", 2000.0, 8.0, 3000.0)], None, tmp_path / "r.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_sparse_and_failed_records_of_every_kind_still_make_a_page(tmp_path):
    bare = {"provenance": {}, "scenario": {}}
    Record("serve", "fa3", status="failed", error="no GPU", **bare).save(tmp_path / "a.json")
    Record("microbench", "fa3", metrics={"us": 12.0}, **bare).save(tmp_path / "b.json")  # no GB/s: no roofline point
    Record("gpqa", "fa3", metrics={"accuracy": None}, **bare).save(tmp_path / "c.json")
    Record("parity", "fa4", status="failed", error="diverged\nat token 3", samples={"pass": False}, **bare).save(
        tmp_path / "d.json")
    Record("explain", "fa4", scenario={"shape": "1000:1000"}, provenance={}, metrics={"predicted_tpot_ms": 17.0}).save(
        tmp_path / "e.json")
    html = write_report([tmp_path], tmp_path / "site" / "index.html").read_text()
    assert re.findall(r'<section id="([^"]+)"', html) == [
        "overview", "serve", "microbench", "gpqa", "parity", "explain", "files"]
    assert "FAILED: no GPU" in html and "FAILED: diverged" in html and "at token 3" not in html
    assert "no run with both GB/s and TFLOP/s" in html
    assert "predicted_tpot_ms" in html

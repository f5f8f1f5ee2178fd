"""`attnbench report`: one self-contained HTML page over every record kind, checked as text and in a
real headless browser (Debian's chromium; skipped with a reason when it is not installed)."""

import base64
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from attnbench.errors import UserError
from attnbench.report.build import write_report

sys.path.insert(0, str(Path(__file__).parent))  # helpers beside this file, whatever pytest's import mode
import headless  # noqa: E402
from report_records import write_tree  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    tree = write_tree(root)
    out = write_report([tree["baseline"], tree["current"]], root / "site" / "report.html")
    return out, out.read_text()


def section(html: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', html, re.S)
    assert m, f"no section {sid!r}"
    return m.group(1)


def test_every_kind_has_its_section_and_unknown_kinds_are_listed_raw(built):
    _, html = built
    ids = re.findall(r'<section id="([^"]+)"', html)
    assert ids == ["overview", "serve", "microbench", "gpqa", "parity", "raw", "files"]
    raw = section(html, "raw")
    assert "unknown kind &#x27;energy&#x27;" in raw and "joules_per_token" in raw
    assert "manifest.json" not in html  # JSON that is not a record is no entry


def test_latest_serve_comparison_uses_the_newest_run_with_ratios(built):
    _, html = built
    serve = section(html, "serve")
    assert "14200 (1.00x)" in serve and "11000 (0.77x)" in serve  # 11000 / 14200
    assert "14000 (" not in serve.split("<h3>History</h3>")[0]  # the older run is history, not the latest table
    assert re.search(r'<tr class="failed"><td>flashinfer</td><td colspan="11">FAILED: server exited', serve)
    assert "history-serve" in serve  # two runs of 1000:1000 -> a history plot and its change table
    assert re.search(r'<td>fa4</td><td>output tok/s</td><td class="n">2</td><td>10500 \(aaaaaaa\)</td>'
                     r'<td>11000 \(bbbbbbb\)</td><td class="n">\+4\.8%</td>', serve)  # 11000 / 10500 - 1
    assert "No history yet" in section(html, "microbench")


def test_microbench_table_and_roofline(built):
    _, html = built
    mb = section(html, "microbench")
    for text in ("<th>context</th>", "<th>tflops</th>", "<th>pct_measured_bw</th>", "Roofline of the attention kernels",
                 "decode b32 ctx8192 h16/8 d128"):
        assert text in mb
    assert mb.count("<tr>") + mb.count('<tr class="failed">') == 1 + 6  # header + 2 backends x 3 shapes


def test_gpqa_and_parity_show_their_intervals_and_verdicts(built):
    _, html = built
    gpqa = section(html, "gpqa")
    assert "0.55" in gpqa and "0.69" in gpqa and "accuracy with confidence interval" in gpqa
    parity = section(html, "parity")
    assert re.search(r'<tr class="failed"><td>attnbench-fa4</td>.*?<td>FAIL: top1_agreement 0.90 &lt; 0.99</td>', parity)
    assert "top1_agreement with confidence interval" in parity  # Wilson, from 400 prefill positions


def test_page_is_self_contained_and_its_plots_lie_beside_it(built):
    out, html = built
    assert "<script" not in html and 'src="http' not in html and "stylesheet" not in html
    inlined = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    pngs = sorted((out.parent / "report_plots").rglob("*.png"))
    assert len(inlined) == len(pngs) >= 7
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in inlined)
    assert {p.read_bytes() for p in pngs} == {base64.b64decode(b) for b in inlined}


def test_links_to_raw_json_are_relative_and_resolve(built):
    out, html = built
    hrefs = re.findall(r'href="([^"]+\.json)"', section(html, "files"))
    assert len(hrefs) == 16  # 15 records + 1 raw
    for href in hrefs:
        assert not href.startswith("/") and "://" not in href
        assert (out.parent / unquote(href)).is_file(), href


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        write_report([tmp_path / "missing"], tmp_path / "r.html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no attnbench records"):
        write_report([tmp_path / "empty"], tmp_path / "r.html")
    with pytest.raises(UserError, match="HTML file"):
        write_report([tmp_path / "empty"], tmp_path / "r.png")


def test_cli_writes_the_report_and_reports_bad_input_without_traceback(tmp_path):
    tree = write_tree(tmp_path)
    cmd = [sys.executable, "-m", "attnbench", "report"]
    ok = subprocess.run([*cmd, str(tree["current"] / "gpqa"), "--out", str(tmp_path / "r.html")],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert '<section id="gpqa">' in (tmp_path / "r.html").read_text() and "report written to" in ok.stderr
    bad = subprocess.run([*cmd, str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


needs_browser = pytest.mark.skipif(headless.browser() is None,
                                   reason="chromium not installed (apt-get install -y chromium) - browser check skipped")


@needs_browser
def test_page_loads_in_a_real_browser_without_errors_and_shows_tables_and_plots(built):
    out, _ = built
    page = headless.open_page(out.resolve().as_uri())
    assert page.errors == []
    assert page.title == "attnbench report"
    assert page.sections == ["overview", "serve", "microbench", "gpqa", "parity", "raw", "files"]
    assert page.tables >= 5
    assert page.images >= 7 and page.decoded == page.images  # every plot decoded, none broken


@needs_browser
def test_browser_check_catches_a_broken_page(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                   '<img src="missing.png"><script>console.error("boom")</script></body></html>')
    page = headless.open_page(bad.as_uri())
    assert any("boom" in e for e in page.errors) and any("Failed to load" in e for e in page.errors)
    assert page.images == 1 and page.decoded == 0


def test_single_record_files_are_inputs_too(tmp_path):
    tree = write_tree(tmp_path)
    out = write_report([tree["current"] / "gpqa" / "fa3.json"], tmp_path / "one.html")
    html = out.read_text()
    assert re.findall(r'<section id="([^"]+)"', html) == ["overview", "gpqa", "files"]
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UserError, match="not readable as JSON"):
        write_report([tmp_path / "broken.json"], tmp_path / "two.html")


def test_each_gpu_gets_its_own_comparison_and_nested_scenarios_are_columns(tmp_path):
    from report_records import microbench, serve

    h100 = serve("fa3", 14000.0, 900.0, "2026-11-20T10:00:00Z", "aaaaaaa")
    h200 = serve("fa3", 16000.0, 800.0, "2026-11-24T10:00:00Z", "bbbbbbb")
    h200.provenance["gpu_name"] = "NVIDIA H200"
    h100.save(tmp_path / "h100" / "fa3.json")
    h200.save(tmp_path / "h200" / "fa3.json")
    mb = microbench("fa3", "decode", 4096, 40.0, 2000.0, 8.0)
    mb.scenario = {"op": "decode", "shape": {"batch": 8, "seqlen": 4096}}
    mb.save(tmp_path / "mb.json")
    html = write_report([tmp_path], tmp_path / "r.html").read_text()
    serve_html = section(html, "serve")
    assert "Latest comparison · NVIDIA H100 80GB HBM3" in serve_html and "Latest comparison · NVIDIA H200" in serve_html
    # one backend per GPU: each value stands alone (no ratio to itself), never 0.88x of the other GPU
    assert re.search(r">14000</td>", serve_html) and re.search(r">16000</td>", serve_html)
    assert "0.88x" not in serve_html and "1.14x" not in serve_html
    assert "<th>shape.batch</th>" in section(html, "microbench")


def test_runs_that_differ_in_serve_args_are_separate_rows(tmp_path):
    """Two fa3 runs of one load, one with --max-num-seqs 128: different servers, so two rows with their
    own figures, never one mean."""
    from report_records import serve

    plain = serve("fa3", 1000.0, 50.0, "2026-11-24T12:00:00Z", "aaa")
    capped = serve("fa3", 2000.0, 50.0, "2026-11-24T12:05:00Z", "aaa")
    capped.scenario["serve_args"] = ["--max-num-seqs", "128"]
    plain.save(tmp_path / "plain.json")
    capped.save(tmp_path / "capped.json")
    html = write_report([str(tmp_path)], tmp_path / "report.html").read_text()
    rows = [re.sub(r"<[^>]+>", " ", r) for r in re.findall(r"<tr>(.*?)</tr>", section(html, "serve"), re.S)]
    fa3 = [" ".join(r.split()) for r in rows if r.split() and r.split()[0] == "fa3"]
    assert len(fa3) == 2, fa3
    assert any("max-num-seqs" in r and " 2000 " in f" {r} " for r in fa3)
    assert any("max-num-seqs" not in r and " 1000 " in f" {r} " for r in fa3)

"""serve-bench's plots: one throughput figure, per shape a latency-CDF and a timeline figure, all real PNGs."""

import struct
import sys
from pathlib import Path

from attnbench.serving import plots

sys.path.insert(0, str(Path(__file__).parent))  # helpers beside this file, whatever pytest's import mode
from serve_records import failed, serve  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG, f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_every_figure_is_written_as_a_nonempty_png(tmp_path):
    recs = [serve("fa3", 1000.0, 100.0), serve("fa4", 800.0, 150.0), failed("flashinfer", "crashed"),
            serve("fa3", 2.0, 900.0, None, input_len=8000, output_len=1),
            serve("fa4", 4.0, 800.0, None, input_len=8000, output_len=1)]
    paths = plots.write_plots(tmp_path, recs)
    names = sorted(p.name for p in paths)
    assert names == ["latency-1000x1000-n4.png", "latency-8000x1-n4.png", "throughput.png",
                     "timeline-1000x1000-n4.png", "timeline-8000x1-n4.png"]
    for p in paths:
        assert p.parent == tmp_path
        w, h = png_size(p)
        assert w > 300 and h > 200
        assert p.stat().st_size > 5000  # axes, text and lines, not a blank canvas
    assert not list(tmp_path.glob(".*.tmp"))


def test_only_failed_records_still_draw(tmp_path):
    paths = plots.write_plots(tmp_path, [failed("fa3", "crashed"), failed("fa4", "crashed")])
    assert {p.name for p in paths} == {"throughput.png", "latency-1000x1000-n4.png", "timeline-1000x1000-n4.png"}
    assert all(png_size(p)[0] > 0 for p in paths)


def test_no_serve_records_no_plots(tmp_path):
    assert plots.write_plots(tmp_path, []) == []
    assert list(tmp_path.iterdir()) == []

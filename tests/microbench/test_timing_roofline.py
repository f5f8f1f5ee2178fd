"""Timing arithmetic, datasheet lookup and the explain-facing API, on the CPU."""

import pytest

from attnbench.errors import UserError
from attnbench.microbench import roofline, timing


def test_cold_l2_copies_cover_three_times_the_l2_within_memory():
    mib = 1 << 20
    assert timing.cold_copies(10 * mib, 50 * mib, 80 << 30) == 15
    assert timing.cold_copies(400 * mib, 50 * mib, 80 << 30) == 1  # already far bigger than L2
    assert timing.cold_copies(10 * mib, 50 * mib, 30 * mib) == 2  # limited by free memory
    assert timing.cold_copies(1, 50 * mib, 80 << 30) == 32  # capped


def test_cpu_timing_is_the_median_of_repeats():
    calls = []
    t = timing.time_calls([lambda: calls.append(1)], "cpu", repeats=7, warmup=2)
    assert len(calls) == 9 and len(t.samples_us) == 7 and not t.graph
    assert t.us == sorted(t.samples_us)[3]
    with pytest.raises(ValueError):
        timing.time_calls([lambda: None], "cpu", repeats=0)


@pytest.mark.parametrize("name,gbps,tflops", [
    ("NVIDIA H100 80GB HBM3", 3350, 989), ("NVIDIA H100 PCIe", 2000, 756), ("NVIDIA H100 NVL", 3900, 835),
    ("NVIDIA H200", 4800, 989), ("NVIDIA A100-SXM4-80GB", 2039, 312), ("NVIDIA A100-PCIE-40GB", 1555, 312),
    ("NVIDIA B200", 8000, 2250),
])
def test_datasheet_by_gpu_name(name, gbps, tflops):
    d = roofline.datasheet(name)
    assert (d["datasheet_gbps"], d["datasheet_tflops"]) == (gbps, tflops)


def test_percentages_of_measured_and_datasheet_ceilings():
    roof = {"measured_gbps": 3000.0, "datasheet_gbps": 3350, "measured_tflops": 700.0, "datasheet_tflops": 989}
    p = roofline.percentages({"gbps": 1500.0, "tflops": 70.0}, roof)
    assert p["pct_measured_bw"] == 50.0 and abs(p["pct_peak_bw"] - 44.776) < 1e-3 and p["pct_measured_flops"] == 10.0
    assert roofline.datasheet("Some Laptop GPU") is None
    assert roofline.percentages({"gbps": 1.0, "tflops": 1.0}, None)["pct_peak_bw"] is None


def test_decode_time_us_on_cpu_for_explain():
    pytest.importorskip("torch")
    from attnbench.microbench import api
    from attnbench.microbench.base import DecodeShape

    shape = DecodeShape.uniform(2, 64, q_heads=4, kv_heads=2, head_dim=16)
    assert api.decode_time_us("reference", shape, device="cpu", repeats=3) > 0
    with pytest.raises(UserError, match="needs a GPU"):
        api.decode_time_us("fa3", shape, device="cpu")

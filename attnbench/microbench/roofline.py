"""The device's ceilings, measured at the start of a GPU run and from the datasheet.

Measured bandwidth: a large device-to-device copy moves 2x its size (read + write) per call.
Measured compute: a large bf16 matmul does 2*N^3 FLOPs (N^3 multiply-adds).
"""

from __future__ import annotations

# GPU name substring (checked in order, so specific names come first) ->
# (HBM GB/s, dense bf16 tensor-core TFLOP/s), from NVIDIA's datasheets.
DATASHEET: tuple[tuple[str, float, float], ...] = (
    ("H100 PCIe", 2000, 756),
    ("H100 NVL", 3900, 835),
    ("H100", 3350, 989),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200 NVL", 4800, 835),
    ("H200", 4800, 989),  # SXM
    ("A100-SXM4-40GB", 1555, 312),
    ("A100-SXM4-80GB", 2039, 312),
    ("A100-PCIE-40GB", 1555, 312),
    ("A100 80GB PCIe", 1935, 312),
    ("A100", 2039, 312),
    ("B200", 8000, 2250),
)


def datasheet(gpu_name: str | None) -> dict[str, float] | None:
    for key, gbps, tflops in DATASHEET:
        if gpu_name and key.lower() in gpu_name.lower():
            return {"datasheet_gbps": gbps, "datasheet_tflops": tflops, "datasheet_match": key}
    return None


def measure(device: str = "cuda", copy_bytes: int = 1 << 30, matmul_n: int = 8192, repeats: int = 10) -> dict:
    """Best-of-`repeats` copy GB/s and bf16 matmul TFLOP/s on `device`, plus the datasheet numbers."""
    import torch

    name = torch.cuda.get_device_name(device)
    copy_s = _copy_seconds(device, copy_bytes, repeats)
    mm_s = _matmul_seconds(device, matmul_n, repeats)
    torch.cuda.empty_cache()
    out = {"gpu_name": name, "measured_gbps": 2 * copy_bytes / copy_s / 1e9,
           "measured_tflops": 2 * matmul_n ** 3 / mm_s / 1e12}
    out.update(datasheet(name) or {"datasheet_gbps": None, "datasheet_tflops": None, "datasheet_match": None})
    return out


def _copy_seconds(device, nbytes: int, repeats: int) -> float:
    import torch

    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).normal_()
    dst = torch.empty_like(src)
    return _best_seconds(lambda: dst.copy_(src), repeats)


def _matmul_seconds(device, n: int, repeats: int) -> float:
    import torch

    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    return _best_seconds(lambda: torch.matmul(a, b), repeats)


def _best_seconds(fn, repeats: int) -> float:
    import torch

    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    return min(times)


def percentages(rates: dict[str, float], roof: dict | None) -> dict[str, float | None]:
    """% of the measured and the datasheet ceilings for a result's GB/s and TFLOP/s."""
    roof = roof or {}

    def pct(x, ceiling):
        return 100.0 * x / ceiling if ceiling else None

    return {"pct_measured_bw": pct(rates["gbps"], roof.get("measured_gbps")),
            "pct_peak_bw": pct(rates["gbps"], roof.get("datasheet_gbps")),
            "pct_measured_flops": pct(rates["tflops"], roof.get("measured_tflops")),
            "pct_peak_flops": pct(rates["tflops"], roof.get("datasheet_tflops"))}

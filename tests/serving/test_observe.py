"""What the observer adds to a pass from the run as a whole: clock dips against passes of the same
backend and shape, and the server-side TPOT as a metric of the pass."""

import sys
from pathlib import Path

from attnbench.serving import aggregate, observe

sys.path.insert(0, str(Path(__file__).parent))
from serve_records import serve  # noqa: E402


def passes(backend, shape, clocks):
    out = []
    for i, mhz in enumerate(clocks):
        r = serve(backend, 1000.0, 100.0, input_len=shape[0], output_len=shape[1])
        r.scenario["repeat"] = i
        r.samples["observation"] = {"gpu_sm_clock_median_mhz": mhz, "flags": [], "server_metrics": "ok",
                                    "server_mean_tpot_ms": 12.5, "contaminated": False}
        out.append(r)
    return out


def test_a_clock_dip_is_judged_within_one_backend_and_shape():
    # decode runs near the top clock, prefill lower (more power): neither is a dip of the other
    decode = passes("fi", (1000, 1000), [1980, 1980, 1980])
    prefill = passes("fi", (8000, 1), [1830, 1838, 1830])
    assert not observe.reflag_clocks(decode + prefill)
    assert not any(observe.flags(r) for r in decode + prefill)
    dipped = passes("fa3", (1000, 1000), [1980, 1965, 1800])  # 1800 < 0.95 x 1965
    assert observe.reflag_clocks(dipped)
    assert [bool(observe.flags(r)) for r in dipped] == [False, False, True]
    assert "1800 MHz" in observe.flags(dipped[2])[0]["evidence"]
    assert not observe.reflag_clocks(dipped)  # evaluated again: the same flags, nothing changed


def test_server_side_tpot_is_a_metric_of_the_pass_but_not_of_one_token_requests():
    decode = passes("fa3", (1000, 1000), [1980])[0]
    prefill = passes("fa3", (8000, 1), [1830])[0]
    assert aggregate.value(decode, "server_mean_tpot_ms") == 12.5
    assert aggregate.value(prefill, "server_mean_tpot_ms") is None
    decode.samples["observation"]["server_metrics"] = "absent"
    assert aggregate.value(decode, "server_mean_tpot_ms") is None


def test_redrawing_a_result_folder_re_evaluates_clock_flags_and_saves_them(tmp_path):
    import json

    from attnbench.serving import run as serve_bench

    recs = passes("fi", (8000, 1), [1830, 1838, 1830])
    recs[0].samples["observation"]["flags"] = [{"kind": "gpu_clock", "evidence": "an older check", "contaminates": True}]
    for i, r in enumerate(recs):
        r.save(tmp_path / "fi" / f"serve-8000x1-r{i}.json")
    serve_bench.summarize(tmp_path)
    saved = json.loads((tmp_path / "fi" / "serve-8000x1-r0.json").read_text())
    assert saved["observation"]["flags"] == [] and not saved["observation"]["contaminated"]
    agg = json.loads((tmp_path / "fi" / "serve-8000x1.json").read_text())  # the aggregate follows
    assert agg["kind"] == "serve-aggregate" and agg["repeats_used"] == [0, 1, 2]
    assert (tmp_path / "summary.md").exists()


def test_the_frontend_check_reads_the_busiest_of_several_api_servers():
    """With --api-server-count 4 `vllm serve` only supervises; its VLLM::APIServer children stream."""
    cpu = {"fa3/api-server": 3.0, "fa3/VLLM::APIServer": 41.0, "fa3/VLLM::APIServer:812": 88.0,
           "fa3/VLLM::EngineCore": 99.0, "fa4/api-server": 95.0}
    assert observe._busiest_api_server(cpu, "fa3") == 88.0
    assert observe._busiest_api_server({"fa3/api-server": 91.0}, "fa3") == 91.0
    assert observe._busiest_api_server({}, "fa3") is None

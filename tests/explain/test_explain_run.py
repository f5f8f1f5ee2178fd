"""run: selecting serve records, checking them before any timing, writing explain records."""

import pytest
from explain_runs import TINY, serve, two_backends

from attnbench.errors import UserError
from attnbench.explain import render, run
from attnbench.records import record


def per_token(kernel_us: dict):
    calls = []

    def timer(kernel, shape):
        calls.append((kernel, shape))
        return kernel_us[kernel] * sum(shape.context_lens)

    timer.calls = calls
    return timer


def explain(records, tmp_path, timer, device="cuda", **kw):
    """explain with an injected timer: device names only where the kernels would run."""
    return run.explain(records, "run", timer, tmp_path / "out", device=device, provenance={"test": True}, **kw)


def test_two_backends_give_estimates_pairs_and_records(tmp_path):
    timer = per_token({"fa3": 1.0, "fa4": 2.0})
    (res,) = explain(two_backends(), tmp_path, timer)
    fa3, fa4 = res.estimates
    # one composition B4 ctx (48, 48, 48, 48) after page rounding: 192 KV tokens; x2 layers
    assert fa3.mix.compositions[0].context_lens == (48, 48, 48, 48)
    assert fa3.attn_ms == pytest.approx(192 * 1.0 * 2 / 1000) and fa4.attn_ms == pytest.approx(192 * 2.0 * 2 / 1000)
    (g,) = res.gaps
    assert (g.slower, g.faster) == ("fa4", "fa3") and g.tpot_gap_ms == pytest.approx(1.0)
    assert g.attn_gap_ms == pytest.approx(0.384) and g.rest_ms == pytest.approx(0.616)
    assert [s.q_heads for _, s in timer.calls] == [4, 4] and timer.calls[0][1].dtype == "float16"
    recs = {r.backend: r for r in record.load(tmp_path / "out")}
    assert set(recs) == {"fa3", "fa4"} and all(r.kind == "explain" and r.status == "ok" for r in recs.values())
    r = recs["fa4"]
    assert r.metrics["attn_est_ms"] == pytest.approx(0.768) and r.metrics["attn_share"] == pytest.approx(0.768 / 3)
    assert r.metrics["mean_tpot_ms"] == 3.0 and r.scenario["kernel"] == "fa4" and r.scenario["device"] == "cuda"
    assert r.scenario["coverage_target"] == 0.9 and r.scenario["input_len"] == 32
    assert r.provenance["serve_utc_time"] == "2026-11-24T12:00:00Z" and r.provenance["test"] is True
    assert r.samples["pairs"][0]["explained"] == pytest.approx(0.384)
    assert r.samples["compositions"][0]["layer_us"] == 384.0
    assert recs["fa3"].metrics["mixed_share"] == 0.0  # the prefill-only sample is not decode time
    assert (tmp_path / "out" / "fa4" / "explain-32x32-n4.json").exists()


def test_kernel_backend_maps_serve_backends_to_microbench_ones(tmp_path):
    timer = per_token({"reference": 1.0})
    explain(two_backends(), tmp_path, timer, kernels={"fa3": "reference", "fa4": "reference"})
    assert {k for k, _ in timer.calls} == {"reference"}
    assert len(timer.calls) == 1  # the same shape is timed once


def test_endpoint_records_need_a_kernel_mapping(tmp_path):
    with pytest.raises(UserError, match="--kernel-backend endpoint=KERNEL with KERNEL one of reference, fa2"):
        explain([serve("endpoint", 2.0, [[32]])], tmp_path, per_token({}), device="cuda")
    with pytest.raises(UserError, match="microbench has no kernel 'triton'"):
        explain([serve("triton", 2.0, [[32]])], tmp_path, per_token({}), device="cuda")
    (res,) = explain([serve("endpoint", 2.0, [[32]])], tmp_path, per_token({"fa3": 1.0}), device="cuda",
                 kernels={"endpoint": "fa3"})
    assert res.estimates[0].kernel == "fa3"


def test_cpu_times_only_the_reference_kernel(tmp_path):
    with pytest.raises(UserError, match="--kernel-backend fa3=reference"):
        explain(two_backends(), tmp_path, per_token({}), device="cpu")


def test_an_estimate_above_the_tpot_is_flagged(tmp_path):
    (res,) = explain([serve("fa3", 0.1, [[32]])], tmp_path, per_token({"fa3": 10.0}), device="cuda")
    assert res.estimates[0].share > 1 and any("exceeds the measured TPOT" in n for n in res.notes)


def test_bad_input_fails_before_any_kernel_is_timed(tmp_path):
    timer = per_token({"fa3": 1.0, "fa4": 1.0})
    recs = [serve("fa3", 2.0, [[32]]), serve("fa4", 2.0, [[32]], inflight=False)]
    with pytest.raises(UserError, match="fa4 .*re-run serve-bench with this attnbench version"):
        explain(recs, tmp_path, timer)
    assert timer.calls == []
    with pytest.raises(UserError, match="model_shape"):
        explain([serve("fa3", 2.0, [[32]], model_shape=None)], tmp_path, timer)


def test_no_serve_records_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no serve records"):
        explain([], tmp_path, per_token({}))


def test_filters_name_what_the_run_has(tmp_path):
    with pytest.raises(UserError, match=r"flashinfer not in run \(it has fa3, fa4\)"):
        explain(two_backends(), tmp_path, per_token({}), backends=["fa3", "flashinfer"])
    with pytest.raises(UserError, match=r"it has 32x32"):
        explain(two_backends(), tmp_path, per_token({}), shape=(1000, 1000))
    (res,) = explain(two_backends(), tmp_path, per_token({"fa4": 1.0}), backends=["fa4"], shape=(32, 32))
    assert [e.backend for e in res.estimates] == ["fa4"] and res.gaps == []


def test_failed_serve_runs_and_failing_kernels_become_notes_not_aborts(tmp_path):
    def timer(kernel, shape):
        if kernel == "fa4":
            raise RuntimeError("CUDA error: no kernel image\nmore")
        return 10.0

    recs = [*two_backends(), serve("flashinfer", 1.0, [], status="failed")]
    (res,) = explain(recs, tmp_path, timer)
    assert [e.backend for e in res.estimates] == ["fa3"]
    assert any(n.startswith("flashinfer: skipped, its serve run failed: server exited") for n in res.notes)
    assert "fa4: kernel 'fa4' could not be timed: CUDA error: no kernel image" in res.notes
    saved = {r.backend: r for r in record.load(tmp_path / "out")}
    assert saved["fa4"].status == "failed" and saved["fa4"].error == "CUDA error: no kernel image"
    assert "flashinfer" not in saved


@pytest.mark.parametrize("spec,want", [("1000x1000", (1000, 1000)), ("8000:1", (8000, 1)), (None, None)])
def test_parse_shape(spec, want):
    assert run.parse_shape(spec) == want


@pytest.mark.parametrize("bad", ["1000", "axb", "1000x"])
def test_parse_shape_rejects(bad):
    with pytest.raises(UserError, match="INPUTxOUTPUT"):
        run.parse_shape(bad)


def test_parse_kernels():
    assert run.parse_kernels(["attnbench-fa4=fa4", " fa3 = reference"]) == {"attnbench-fa4": "fa4", "fa3": "reference"}
    with pytest.raises(UserError, match="SERVE_BACKEND=MICROBENCH_BACKEND"):
        run.parse_kernels(["fa3"])


def test_table_and_markdown_show_the_split(tmp_path):
    results = explain(two_backends(), tmp_path, per_token({"fa3": 1.0, "fa4": 2.0}))
    text = render.table(results)
    fa4 = next(line for line in text.splitlines() if line.startswith("fa4 "))
    assert fa4.split() == ["fa4", "fa4", "3.00", "2.70", "0.77", "26%", "2.23", "4", "47", "100%"]
    assert "fa4 vs fa3: TPOT +1.00 ms; attention +0.38 ms (38% of the gap); rest +0.62 ms" in text
    written = render.write_plots(results, tmp_path / "out", "CPU")
    md = render.write_summary(results, tmp_path / "out", written).read_text()
    assert "| fa4 vs fa3 | 1.00 | +0.38 | 38% | +0.62 |" in md and "explain-32x32-n4.png" in md
    assert written["explain-32x32-n4.png"].read_bytes()[:4] == b"\x89PNG"
    assert TINY["num_hidden_layers"] == 2 and "x2 layers" in text


def test_same_load_times_the_slower_kernel_on_the_faster_runs_batches(tmp_path):
    timer = per_token({"fa3": 1.0, "fa4": 2.0})
    recs = [serve("fa3", 2.0, [[32, 32]]), serve("fa4", 3.0, [[64, 64]])]
    (res,) = explain(recs, tmp_path, timer, same_load=True)
    (g,) = res.gaps
    # fa3 64 tokens -> 0.128ms; fa4 128 tokens x2us -> 0.512ms; fa4 on fa3's 64 tokens -> 0.256ms
    assert g.kernel_gap_ms == pytest.approx(0.128) and g.load_gap_ms == pytest.approx(0.256)
    assert "attention = kernel +0.13 ms (same batches) + load +0.26 ms" in render.table([res])
    saved = {r.backend: r for r in record.load(tmp_path / "out")}
    assert saved["fa3"].samples["pairs"][0]["kernel_gap_ms"] == pytest.approx(0.128)
    md = render.markdown([res])
    assert "| fa4 vs fa3 | 1.00 | +0.38 | 38% | +0.62 | +0.13 | +0.26 |" in md


def _passes(backend, client_tpots, engine_tpots=None, run_id="run-1"):
    """serve-bench's repeats of one backend: one pass record per TPOT, the engine's in /metrics."""
    steady = [[40, 48, 48, 52]] * 3
    out = []
    for i, tpot in enumerate(client_tpots):
        rec = serve(backend, tpot, steady)
        rec.scenario.update(repeat=i, seed=i)
        rec.provenance["run_id"] = run_id
        if engine_tpots:
            rec.samples["observation"] = {"server_metrics": "ok", "server_mean_tpot_ms": engine_tpots[i],
                                          "server_median_tpot_ms": engine_tpots[i], "flags": []}
        out.append(rec)
    return out


def test_repeats_are_explained_by_their_mean_tpot_with_its_interval(tmp_path):
    (res,) = explain(_passes("fa3", [2.0, 2.2, 2.4]), tmp_path, per_token({"fa3": 1.0}))
    (est,) = res.estimates
    assert est.tpot_mean_ms == pytest.approx(2.2)  # not the newest pass's 2.4
    (r,) = record.load(tmp_path / "out")
    assert r.metrics["tpot_passes"] == 3 and r.scenario["tpot_source"] == "client"
    assert r.metrics["mean_tpot_ci_low_ms"] < 2.2 < r.metrics["mean_tpot_ci_high_ms"]


def test_the_engines_own_tpot_is_the_step_explained_when_every_pass_has_it(tmp_path):
    """A saturated API server delays delivery: the client's TPOT then is not the decode step."""
    (res,) = explain(_passes("fa3", [3.1, 3.3, 3.2], engine_tpots=[2.0, 2.0, 2.0]), tmp_path, per_token({"fa3": 1.0}))
    (est,) = res.estimates
    assert est.tpot_mean_ms == pytest.approx(2.0)
    # the engine's median is a histogram bucket's interpolation: the client's per-request one is shown
    assert est.tpot_median_ms == pytest.approx(3.2 * 0.9)
    (r,) = record.load(tmp_path / "out")
    assert r.scenario["tpot_source"] == "engine"
    half = _passes("fa4", [3.0, 3.0], engine_tpots=[2.0, 2.0])
    del half[1].samples["observation"]  # one pass without /metrics: the client's for all, never a mix
    (res,) = explain(half, tmp_path / "b", per_token({"fa4": 1.0}))
    assert res.estimates[0].tpot_mean_ms == pytest.approx(3.0)


def test_only_the_newest_run_of_a_backend_and_load_is_explained(tmp_path):
    old, new = _passes("fa3", [5.0, 5.0], run_id="2026-11-01-1"), _passes("fa3", [2.0, 2.0], run_id="2026-12-01-1")
    (res,) = explain(old + new, tmp_path, per_token({"fa3": 1.0}))
    assert [e.tpot_mean_ms for e in res.estimates] == [pytest.approx(2.0)]


def test_the_table_says_whose_tpot_and_over_how_many_passes(tmp_path):
    results = explain(_passes("fa3", [3.1, 3.3, 3.2], engine_tpots=[2.0, 2.1, 2.2]), tmp_path, per_token({"fa3": 1.0}))
    text = render.table(results)
    assert "mean of 3 passes ± 95% CI" in text and "(e): the engine's own TPOT" in text
    assert "2.10 ±" in text and "(e)" in text.splitlines()[2]

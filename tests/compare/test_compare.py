"""`attnbench compare` on constructed records: thresholds, noise, directions, exit codes, markdown."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.compare import direction, judge, match, noise, render
from attnbench.records.record import Record


def serve(backend="fa3", tps=1000.0, ttft_ms=100.0, input_len=1000, ttfts=None, seed=0, status="ok", **extra):
    scenario = {"input_len": input_len, "output_len": 1000, "num_prompts": 256, "request_rate": None, "seed": seed,
                "endpoint": f"http://127.0.0.1:{8000 + seed}/v1", "model": "qwen3-0.6b",
                "model_shape": {"num_hidden_layers": 28, "head_dim": 128}}
    metrics = {} if status != "ok" else {"output_throughput": tps, "median_ttft_ms": ttft_ms, "completed": 256, **extra}
    samples = {} if ttfts is None else {"ttfts": list(ttfts)}
    return Record("serve", backend, scenario, metrics, samples, {"gpu_name": "H100"}, status,
                  None if status == "ok" else "engine died")


def save(tmp_path, name, records):
    d = tmp_path / name
    for i, r in enumerate(records):
        r.save(d / r.backend / f"rep{i}" / "serve-1000x1000.json")
    return d


def cli(*args, env=None):
    return CliRunner().invoke(app, ["compare", *map(str, args)], env=env)


def row(cmp, metric, backend="fa3"):
    [r] = [r for r in cmp.rows if r.metric == metric and r.backend == backend]
    return r


def test_identical_results_pass(tmp_path):
    recs = [serve("fa3"), serve("fa4", tps=1200)]
    res = cli(save(tmp_path, "a", recs), save(tmp_path, "b", recs))
    assert res.exit_code == 0, res.output
    assert "no regression over 2 matched record group(s)" in res.output


def test_a_20pct_throughput_drop_fails(tmp_path):
    res = cli(save(tmp_path, "a", [serve(tps=1000)]), save(tmp_path, "b", [serve(tps=800)]))
    assert res.exit_code == 1
    assert "REGRESSION" in res.output and "-20.0%" in res.output and "no noise estimate" in res.output


def test_change_within_threshold_passes_and_overrides_apply():
    base, cur = [serve(tps=1000)], [serve(tps=960)]
    assert row(judge.compare(base, cur), "output_throughput").verdict == judge.OK  # -4% < 5%
    strict = judge.Settings(metric_thresholds={"output_*": 2})
    r = row(judge.compare(base, cur, strict), "output_throughput")
    assert r.verdict == judge.REGRESSION and "threshold 2%" in r.rule


def test_metric_threshold_option(tmp_path):
    a, b = save(tmp_path, "a", [serve(tps=1000)]), save(tmp_path, "b", [serve(tps=800)])
    assert cli(a, b, "--metric-threshold", "output_throughput=25").exit_code == 0
    assert cli(a, b, "--threshold", "30").exit_code == 0
    assert cli(a, b, "--metric-threshold", "oops").exit_code == 2


def test_noise_within_the_spread_of_repeats_passes():
    base = [serve(tps=t) for t in (1000, 800, 1200)]
    cur = [serve(tps=t) for t in (900, 850, 1100)]  # median -10%: beyond 5%, inside the spread
    r = row(judge.compare(base, cur), "output_throughput")
    assert r.verdict == judge.NOISE and "mann-whitney" in r.rule and r.n_baseline == 3
    assert r.change_pct == pytest.approx(-10.0)


def test_a_drop_beyond_the_spread_of_repeats_fails():
    base = [serve(tps=t) for t in (1000, 1010, 990)]
    cur = [serve(tps=t) for t in (800, 810, 790)]
    r = row(judge.compare(base, cur), "output_throughput")
    assert r.verdict == judge.REGRESSION and "mann-whitney p=0.05 (3 vs 3 repeats)" in r.rule


def test_a_flagged_pass_is_left_out_and_said_so():
    # serve-bench passes: the third current pass stalled on a JIT compile and says so in its record
    base = [serve(tps=t) for t in (1000, 1010, 990)]
    cur = [serve(tps=t) for t in (1000, 1005, 400)]
    cur[2].samples["observation"] = {"flags": [{"kind": "jit", "evidence": "JIT compilation during inference",
                                                "contaminates": True}]}
    cmp = judge.compare(base, cur)
    r = row(cmp, "output_throughput")
    assert r.verdict != judge.REGRESSION and r.n_current == 2
    assert "1 flagged current pass(es) left out (jit)" in cmp.notes
    cur[2].samples["observation"]["flags"][0]["contaminates"] = False  # a warning only: it counts
    assert row(judge.compare(base, cur), "output_throughput").n_current == 3


def test_aggregates_are_not_compared_beside_their_passes():
    agg = serve(tps=500.0)
    agg.kind = "serve-aggregate"
    cmp = judge.compare([serve(tps=1000.0), agg], [serve(tps=1000.0), agg])
    assert {r.kind for r in cmp.rows} == {"serve"}


def test_two_repeats_need_complete_separation():
    overlapping = judge.compare([serve(tps=1000), serve(tps=800)], [serve(tps=850), serve(tps=700)])
    assert row(overlapping, "output_throughput").verdict == judge.NOISE
    touching = judge.compare([serve(tps=1000), serve(tps=1000)], [serve(tps=1000), serve(tps=500)])
    assert row(touching, "output_throughput").verdict == judge.NOISE  # a tie is not a separation
    separated = judge.compare([serve(tps=1000), serve(tps=990)], [serve(tps=800), serve(tps=790)])
    r = row(separated, "output_throughput")
    assert r.verdict == judge.REGRESSION and "complete separation" in r.rule


def test_latency_increase_fails_on_per_request_samples():
    rng = np.random.default_rng(1)
    base_t = rng.normal(0.100, 0.01, 256)
    cur_t = rng.normal(0.130, 0.01, 256)
    cmp = judge.compare([serve(ttft_ms=100, ttfts=base_t)], [serve(ttft_ms=130, ttfts=cur_t)])
    r = row(cmp, "median_ttft_ms")
    assert r.verdict == judge.REGRESSION and "bootstrap 95% CI of ratio" in r.rule and "256 vs 256 samples" in r.rule
    assert cmp.exit_code == 1


def test_latency_change_inside_the_request_spread_is_noise():
    rng = np.random.default_rng(2)
    base_t = rng.lognormal(np.log(0.1), 0.8, 12)  # a few requests with a wide spread
    cur_t = base_t * 1.10
    cmp = judge.compare([serve(ttft_ms=float(np.median(base_t) * 1000), ttfts=base_t)],
                        [serve(ttft_ms=float(np.median(cur_t) * 1000), ttfts=cur_t)])
    r = row(cmp, "median_ttft_ms")
    assert r.verdict == judge.NOISE and "bootstrap" in r.rule and cmp.exit_code == 0


def test_directions_decide_regression_or_improvement():
    cmp = judge.compare([serve(tps=1000, ttft_ms=100, foo_widgets=5, p99_itl_ms=10, rel_err=0.001)],
                        [serve(tps=1300, ttft_ms=70, foo_widgets=9, p99_itl_ms=13, rel_err=0.002)])
    assert row(cmp, "output_throughput").verdict == judge.IMPROVEMENT  # up is good
    assert row(cmp, "median_ttft_ms").verdict == judge.IMPROVEMENT  # down is good
    assert row(cmp, "p99_itl_ms").verdict == judge.REGRESSION
    assert row(cmp, "rel_err").verdict == judge.REGRESSION
    assert row(cmp, "foo_widgets").verdict == judge.UNJUDGED  # reported, not judged
    assert row(cmp, "completed").verdict == judge.UNJUDGED


@pytest.mark.parametrize("metric, expected", [
    ("output_throughput", 1), ("total_token_throughput", 1), ("max_output_tokens_per_s", 1), ("tflops", 1),
    ("gbps", 1), ("accuracy", 1), ("score_pct", 1), ("pct_measured_bw", 1), ("top1_agreement", 1),
    ("mean_ttft_ms", -1), ("p99_e2el_ms", -1), ("us", -1), ("rel_err", -1), ("failed", -1), ("max_abs_dlogprob", -1),
    ("std_ttft_ms", 0), ("completed", 0), ("n_samples", 0), ("widgets", 0), ("measured_gbps", 0), ("flops", 0),
    ("greedy_prefix_mean", 1), ("greedy_identical_frac", 1), ("passed", 1), ("max_kl", -1), ("kv_gbps", 1),
])
def test_direction_table(metric, expected):
    assert direction.of(metric) == expected


def test_accuracy_uses_the_recorded_stderr():
    def gpqa(acc, se):
        return Record("gpqa", "fa3", {"model": "gpt-oss-20b", "effort": "low"}, {"accuracy": acc, "stderr": se})
    noisy = judge.compare([gpqa(0.70, 0.03)], [gpqa(0.64, 0.03)])  # -8.6%, z = 1.41
    assert row(noisy, "accuracy").verdict == judge.NOISE and "z-test" in row(noisy, "accuracy").rule
    sure = judge.compare([gpqa(0.70, 0.005)], [gpqa(0.60, 0.005)])
    assert row(sure, "accuracy").verdict == judge.REGRESSION


def test_run_specific_settings_do_not_prevent_a_match_but_shapes_do():
    assert match.key(serve(seed=0)) == match.key(serve(seed=7))  # seed and endpoint port differ
    assert match.key(serve(input_len=1000)) != match.key(serve(input_len=8000))
    assert match.label(match.key(serve())) == "1000:1000 x256"


def test_failed_current_run_is_a_regression_and_missing_is_reported():
    cmp = judge.compare([serve("fa3"), serve("fa4")], [serve("fa3", status="failed")])
    r = row(cmp, "(run)", "fa3")
    assert r.verdict == judge.FAILED and "engine died" in r.rule
    assert row(cmp, "(run)", "fa4").verdict == judge.MISSING
    assert cmp.exit_code == 1


def test_nothing_matched_exits_2(tmp_path):
    res = cli(save(tmp_path, "a", [serve(input_len=1000)]), save(tmp_path, "b", [serve(input_len=8000)]))
    assert res.exit_code == 2 and "nothing matched" in res.output


def test_schema_mismatch_and_missing_input_exit_2(tmp_path):
    a = save(tmp_path, "a", [serve()])
    old = serve().to_json() | {"schema_version": 99}
    (tmp_path / "old.json").write_text(json.dumps(old))
    res = cli(tmp_path / "old.json", a)
    assert res.exit_code == 2 and "schema_version 99" in res.output
    assert cli(a, tmp_path / "nope").exit_code == 2
    (tmp_path / "empty").mkdir()
    assert cli(a, tmp_path / "empty").exit_code == 2


def test_markdown_file_json_and_github_step_summary(tmp_path):
    a, b = save(tmp_path, "a", [serve(tps=1000)]), save(tmp_path, "b", [serve(tps=800)])
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    res = cli(a, b, "--markdown", tmp_path / "out.md", "--json", tmp_path / "out.json",
              env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert res.exit_code == 1
    md = (tmp_path / "out.md").read_text()
    assert md.startswith("## attnbench compare") and ":x: **1 regression(s)" in md
    assert "| serve | fa3 | 1000:1000 x256 | output_throughput | 1,000 | 800 | -20.0% | **REGRESSION** |" in md
    assert summary.read_text() == "earlier step\n" + md + "\n"
    rows = json.loads((tmp_path / "out.json").read_text())["rows"]
    assert {r["metric"]: r["verdict"] for r in rows}["output_throughput"] == "regression"


def test_text_table_hides_unchanged_non_headline_metrics():
    cmp = judge.compare([serve(tps=1000, mean_e2el_ms=5.0)], [serve(tps=1000, mean_e2el_ms=5.0)])
    shown = render.table(cmp)
    assert "output_throughput" in shown and "mean_e2el_ms" not in shown
    assert "mean_e2el_ms" in render.table(cmp, everything=True)
    md = render.markdown(cmp)
    assert md.index("output_throughput") < md.index("<details><summary>all 4 rows</summary>") < md.index("mean_e2el_ms")


def test_mann_whitney_exact_values():
    # b entirely below a: the smallest of C(6,3) = 20 rank splits
    assert noise.mann_whitney_less([4, 5, 6], [1, 2, 3]) == (pytest.approx(1 / 20), pytest.approx(1 / 20))
    assert noise.mann_whitney_less([1, 2, 3], [4, 5, 6])[0] == pytest.approx(1.0)
    p, _ = noise.mann_whitney_less([1, 2, 3, 4], [1, 2, 3, 4])  # ties, no shift
    assert 0.5 <= p <= 0.75
    # large samples: normal approximation agrees in direction
    rng = np.random.default_rng(0)
    p_big, p_min = noise.mann_whitney_less(list(rng.normal(1, 1, 30)), list(rng.normal(0, 1, 30)))
    assert p_big < 0.05 and p_min == 0.0


def test_mann_whitney_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    a, b = list(rng.normal(1, 1, 6)), list(rng.normal(0, 1, 7))
    p, _ = noise.mann_whitney_less(a, b)
    assert p == pytest.approx(stats.mannwhitneyu(b, a, alternative="less", method="exact").pvalue)
    a, b = list(rng.integers(0, 20, 40).astype(float)), list(rng.integers(0, 16, 40).astype(float))  # ties
    p, _ = noise.mann_whitney_less(a, b)
    assert p == pytest.approx(stats.mannwhitneyu(b, a, alternative="less", method="asymptotic").pvalue, rel=1e-6)


def test_metrics_option_restricts_what_is_judged(tmp_path):
    a = save(tmp_path, "a", [serve(tps=1000, ttft_ms=100)])
    b = save(tmp_path, "b", [serve(tps=800, ttft_ms=100)])
    res = cli(a, b, "--metrics", "*_ttft_ms", "--all")
    assert res.exit_code == 0 and "median_ttft_ms" in res.output and "output_throughput" not in res.output
    assert cli(a, b, "--metrics", "output_*").exit_code == 1


def test_unusable_input_is_said_in_the_step_summary(tmp_path):
    summary = tmp_path / "summary.md"
    res = cli(tmp_path / "nope", tmp_path / "nope2", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert res.exit_code == 2
    assert "unusable input" in summary.read_text() and "no such file or directory" in summary.read_text()


def micro(us, times, backend="fa4"):
    scenario = {"op": "decode", "batch": 4, "context": 1024, "q_heads": 16, "kv_heads": 8, "head_dim": 128,
                "label": "B4 ctx1024 H16/8/128 bf16", "device": "cuda", "repeats": len(times)}
    return Record("microbench", backend, scenario, {"us": us, "gbps": 100 / us * 10, "flops": 1e9},
                  {"times_us": list(times)})


def test_microbench_timings_are_the_noise_of_us_and_of_rates():
    rng = np.random.default_rng(4)
    steady, slower = rng.normal(10, 0.05, 20), rng.normal(12, 0.05, 20)
    cmp = judge.compare([micro(10, steady)], [micro(12, slower)])
    assert row(cmp, "us", "fa4").verdict == judge.REGRESSION and "20 vs 20 samples" in row(cmp, "us", "fa4").rule
    assert row(cmp, "gbps", "fa4").verdict == judge.REGRESSION and "bootstrap" in row(cmp, "gbps", "fa4").rule
    assert row(cmp, "flops", "fa4").verdict == judge.UNJUDGED  # work done, not speed
    jittery_base, jittery_cur = rng.normal(10, 3, 5), rng.normal(10.8, 3, 5)
    noisy = judge.compare([micro(10, jittery_base)], [micro(10.8, jittery_cur)])
    assert row(noisy, "us", "fa4").verdict == judge.NOISE
    assert match.label(match.key(micro(1, [1]))) == "B4 ctx1024 H16/8/128 bf16"


def test_different_gpus_are_noted():
    other = serve()
    other.provenance = {"gpu_name": "H200"}
    cmp = judge.compare([serve()], [other])
    assert cmp.notes == ["baseline ran on H100, current on H200"] and "note: baseline ran on H100" in render.table(cmp)

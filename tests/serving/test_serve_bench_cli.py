"""`attnbench serve-bench` end to end: against a running server (--endpoint), against stand-in
vLLM servers it starts itself, and with bad input."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from attnbench.records import record
from attnbench.serving.scripted_server import Script, ScriptedServer

FAKE = Path(__file__).with_name("fake_vllm.py")


def attnbench(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "attnbench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def server():
    with ScriptedServer(Script(ttft_s=0.02, itl_s=0.002, model="tiny")) as s:
        yield s


def test_endpoint_run_writes_a_vllm_compatible_record_per_pass_and_an_aggregate(server, tmp_path):
    out = tmp_path / "res"
    p = attnbench("serve-bench", "--endpoint", f"http://127.0.0.1:{server.port}", "--input", "16,32",
                  "--output", "4,1", "--num-prompts", "8", "--vocab-size", "500", "--repeats", "2",
                  "--max-warmup-passes", "2", "--keep-flagged", "--result-dir", out)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("Serving Benchmark Result") == 0  # titled per backend, shape and run instead
    assert "endpoint 16:4 run 1" in p.stdout and "endpoint 32:1 run 2" in p.stdout
    recs = {(r.scenario["input_len"], r.scenario["output_len"], r.scenario["repeat"]): r for r in record.load(out)
            if r.kind == "serve"}
    assert set(recs) == {(16, 4, 0), (16, 4, 1), (32, 1, 0), (32, 1, 1)}
    r = recs[(16, 4, 1)]
    assert r.status == "ok" and r.backend == "endpoint" and r.scenario["served_model"] == "tiny"
    assert r.metrics["completed"] == 8 and r.metrics["total_output_tokens"] == 32
    raw = json.loads((out / "endpoint" / "serve-16x4-r1.json").read_text())
    for key in ("completed", "failed", "duration", "total_input_tokens", "total_output_tokens",
                "request_throughput", "output_throughput", "total_token_throughput", "max_output_tokens_per_s",
                "max_concurrent_requests", "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms",
                "mean_tpot_ms", "p99_itl_ms", "mean_e2el_ms", "ttfts", "itls", "input_lens", "output_lens"):
        assert key in raw, key
    assert raw["provenance"]["command"].startswith("attnbench serve-bench --endpoint ")  # `python -m attnbench`
    agg = json.loads((out / "endpoint" / "serve-16x4.json").read_text())
    # a loaded test machine may flag a pass (a starved client); --keep-flagged counts it anyway
    used = agg["repeats_used"]
    assert agg["kind"] == "serve-aggregate" and sorted(used) == [0, 1] and agg["keep_flagged"]
    tps = [recs[(16, 4, i)].metrics["output_throughput"] for i in used]
    assert agg["spread"]["output_throughput"]["n"] == len(used)
    assert abs(agg["output_throughput"] - sum(tps) / len(tps)) < 1e-6 * sum(tps)
    probe, *sent = server.requests  # first, one tiny request: does the server take token ids?
    assert probe["max_tokens"] == 1 and r.scenario["prompt_format"] == "token-ids"
    assert all(max(b["prompt"]) < 500 for b in sent)
    # two warm-up passes and two measured passes per shape, and no prompt is ever sent twice
    assert len(sent) == 2 * (2 + 2) * 8
    assert len({tuple(b["prompt"]) for b in sent}) == len(sent)


def test_endpoint_name_equals_url_names_the_records_as_parity_does(server, tmp_path):
    p = attnbench("serve-bench", "--endpoint", f"prod-fa3=http://127.0.0.1:{server.port}", "--input", "8",
                  "--output", "2", "--num-prompts", "2", "--vocab-size", "100", "--repeats", "1", "--warmup", "0",
                  "--result-dir", tmp_path)
    assert p.returncode == 0, p.stderr
    assert {r.backend for r in record.load(tmp_path) if r.kind == "serve"} == {"prod-fa3"}
    p = attnbench("serve-bench", "--endpoint", f"a=http://127.0.0.1:{server.port}", "--name", "b",
                  "--result-dir", tmp_path / "x")
    assert p.returncode == 2 and "names the server 'a' and --name says 'b'" in p.stderr


def test_endpoint_with_v1_suffix_and_model_check(server, tmp_path):
    p = attnbench("serve-bench", "--endpoint", f"{server.base_url}/", "--model", "other", "--num-prompts", "2",
                  "--result-dir", tmp_path)
    assert p.returncode == 2 and "does not serve 'other'" in p.stderr and "Traceback" not in p.stderr


def test_started_servers_one_per_backend_and_a_crash_is_recorded(tmp_path):
    env = {"ATTNBENCH_VLLM_CMD": f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} serve",
           "FAKE_VLLM_MODE_FLASHINFER": "crash", "FAKE_VLLM_START_S": "0.3"}
    out = tmp_path / "res"
    p = attnbench("serve-bench", "--backends", "fa3,flashinfer", "--input", "8", "--output", "3",
                  "--num-prompts", "4", "--repeats", "1", "--no-parallel-start", "--result-dir", out, env=env,
                  timeout=180)
    assert p.returncode == 0, p.stderr
    recs = {r.backend: r for r in record.load(out) if r.kind == "serve"}
    assert recs["fa3"].status == "ok" and recs["fa3"].metrics["completed"] == 4
    assert recs["fa3"].scenario["model_shape"]["num_key_value_heads"] == 8
    assert recs["flashinfer"].status == "failed" and "exited with code 3" in recs["flashinfer"].error
    assert "flashinfer: vllm serve exited with code 3" in p.stderr and "no kernel image" in p.stderr
    log = (out / "fa3" / "server.log").read_text()
    assert "--load-format dummy" in log and "--served-model-name qwen3-0.6b" in log


@pytest.mark.parametrize("args, message", [
    (["--backends", "fa9"], "unknown backend 'fa9'"),
    (["--num-prompts", "0"], "--num-prompts must be >= 1"),
    (["--input", "-5"], "--input must be >= 1"),
    (["--input", "10,20", "--output", "1,2,3"], "give pairs of equal length"),
    (["--input", "ten"], "comma-separated integers"),
    (["--percentiles", "50,150"], "strictly between 0 and 100"),
    (["--endpoint", "http://127.0.0.1:9"], "cannot reach http://127.0.0.1:9/v1"),
    (["--endpoint", "ftp://x"], "not an http(s) URL"),
    (["--endpoint", "http://127.0.0.1:9", "--serve-arg", "--max-num-seqs"], "with --endpoint the server is already running"),
    (["--request-rate", "0"], "--request-rate must be > 0"),
    (["--goodput", "ttft=5"], "--goodput"),
    (["--target-ci", "3"], "--target-ci is a fraction between 0 and 1"),
    (["--target-ci", "0.03", "--max-repeats", "2"], "--max-repeats 2 is below --repeats 3"),
    (["--max-repeats", "6"], "give --target-ci too"),
    (["--max-warmup-passes", "0"], "--max-warmup-passes must be >= 1 (got 0)"),  # bounds: ServeBench's fields
    (["--ready-timeout", "0"], "--ready-timeout must be > 0 (got 0.0)"),
])
def test_bad_input_gets_one_clear_line(args, message, tmp_path):
    p = attnbench("serve-bench", *args, "--result-dir", tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert message in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_backends_lists_every_registered_backend_with_a_reason():
    p = attnbench("backends", "--json")
    rows = {r["name"]: r for r in json.loads(p.stdout)}
    assert {"fa2", "fa3", "fa4", "flashinfer", "triton", "attnbench-fa4"} <= set(rows)
    assert all(r["reason"] for r in rows.values())


def test_help_is_instant_and_imports_nothing_heavy():
    code = ("import sys; sys.argv=['attnbench','--help']\nfrom attnbench import cli\n"
            "heavy=[m for m in ('torch','vllm','flashinfer','matplotlib','openai','datasets') if m in sys.modules]\n"
            "print(heavy)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "[]", p.stdout + p.stderr


def test_a_server_that_takes_only_text_gets_text_prompts_and_lost_requests_fail_the_run(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(300)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tokenizer.json"))
    # requests 0 and 1 are the token-id probes (one refused with HTTP 500, one to read the refusal)
    script = Script(ttft_s=0.01, itl_s=0.002, model="tiny", text_prompts_only=True, fail_status={})
    with ScriptedServer(script) as s:
        p = attnbench("serve-bench", "--endpoint", s.base_url, "--input", "12", "--output", "3", "--num-prompts",
                      "4", "--repeats", "1", "--warmup", "0", "--tokenizer", tmp_path, "--result-dir", tmp_path / "r")
        sent = [b for b in s.requests if b.get("ignore_eos")]
    assert "sending text prompts" in p.stderr
    assert sent and all(isinstance(b["prompt"], str) and len(b["prompt"].split()) == 12 for b in sent)
    [rec] = [r for r in record.load(tmp_path / "r") if r.kind == "serve"]
    assert rec.scenario["prompt_format"] == "text"
    assert p.returncode == 0 and rec.metrics["completed"] == 4 and rec.error is None


def test_lost_requests_fail_the_run_and_say_what_they_were(server, tmp_path):
    server.script.fail_status = {len(server.requests) + 2: 500}  # after the probe: the 2nd request of the pass
    p = attnbench("serve-bench", "--endpoint", server.base_url, "--input", "8", "--output", "3", "--num-prompts", "4",
                  "--repeats", "1", "--warmup", "0", "--vocab-size", "500", "--result-dir", tmp_path)
    [rec] = [r for r in record.load(tmp_path) if r.kind == "serve"]
    assert rec.metrics["failed"] == 1 and rec.metrics["completed"] == 3
    assert p.returncode == 1, p.stderr
    assert "1 of 4 requests failed (HTTP 500 x1); figures cover the 3 that finished" in rec.error
    assert "1 of 4 requests failed" in p.stderr


def test_a_ci_target_adds_rounds_until_it_is_met_or_the_cap_is_reached(server, tmp_path):
    url = f"http://127.0.0.1:{server.port}"
    common = ["--input", "16", "--output", "4", "--num-prompts", "8", "--vocab-size", "500",
              "--max-warmup-passes", "1", "--keep-flagged"]
    # a target no run meets: passes up to the cap, and the summary says it was not met
    out = tmp_path / "capped"
    p = attnbench("serve-bench", "--endpoint", url, *common, "--repeats", "2", "--target-ci", "1e-9",
                  "--max-repeats", "4", "--result-dir", out)
    assert p.returncode == 0, p.stderr
    recs = [r for r in record.load(out) if r.kind == "serve"]
    assert sorted(r.scenario["repeat"] for r in recs) == [0, 1, 2, 3]
    assert {(r.scenario["target_ci"], r.scenario["max_repeats"]) for r in recs} == {(1e-9, 4)}
    assert "NOT met (the cap, --max-repeats 4)" in p.stderr
    assert "**not met** (cap 4 passes)" in (out / "summary.md").read_text()
    agg = json.loads((out / "endpoint" / "serve-16x4.json").read_text())
    assert sorted(agg["repeats_used"]) == [0, 1, 2, 3]  # the added passes are repeats like the others
    # a run stopped before the cap (a time limit) says so, rather than blaming the cap
    (out / "endpoint" / "serve-16x4-r3.json").unlink()
    p = attnbench("serve-bench", "--from-results", out)
    assert p.returncode == 0, p.stderr
    assert "**not met** (stopped after 3 of at most 4 passes)" in (out / "summary.md").read_text()
    # a target any three passes meet (t(2) x sd / sqrt(3) under 99% of the mean): no pass is added
    out = tmp_path / "met"
    p = attnbench("serve-bench", "--endpoint", url, *common, "--repeats", "3", "--target-ci", "0.99",
                  "--result-dir", out)
    assert p.returncode == 0, p.stderr
    assert sorted(r.scenario["repeat"] for r in record.load(out) if r.kind == "serve") == [0, 1, 2]
    assert "target ±99% met" in p.stderr and "target ±99%: met" in (out / "summary.md").read_text()


def test_ctrl_c_during_the_warm_up_saves_no_pass_as_a_measurement(tmp_path):
    """An interrupted warm-up is not a measurement: nothing may be written as one."""
    import signal
    import time

    out = tmp_path / "res"
    with ScriptedServer(Script(ttft_s=0.001, itl_s=0.001, hang=set(range(1, 100)))) as s:  # warm-up never ends
        p = subprocess.Popen([sys.executable, "-m", "attnbench", "serve-bench", "--endpoint", s.base_url,
                              "--input", "4", "--output", "2", "--num-prompts", "3", "--warmup", "3",
                              "--vocab-size", "100", "--client-workers", "1", "--result-dir", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(s.requests) < 3 and time.monotonic() < deadline:  # the warm-up's requests are in flight
            time.sleep(0.05)
        assert len(s.requests) >= 3, "the warm-up never reached the server"
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert list(out.rglob("serve-*.json")) == []  # no pass record and no aggregate


def test_profile_steps_profile_one_more_pass_per_backend_beside_each_other(tmp_path):
    env = {"ATTNBENCH_VLLM_CMD": f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} serve",
           "FAKE_VLLM_START_S": "0.3", "FAKE_VLLM_ATTN_US_FLASH_ATTN3": "500", "FAKE_VLLM_ATTN_US_FLASHINFER": "420"}
    out = tmp_path / "res"
    p = attnbench("serve-bench", "--backends", "fa3,flashinfer", "--input", "8", "--output", "3",
                  "--num-prompts", "4", "--repeats", "1", "--profile-steps", "6", "--result-dir", out, env=env,
                  timeout=180)
    assert p.returncode == 0, p.stderr
    recs = record.load(out)
    profiles = {r.backend: r for r in recs if r.kind == "profile"}
    assert set(profiles) == {"fa3", "flashinfer"}
    fa3 = profiles["fa3"]
    assert fa3.metrics["steps"] == 6 and fa3.metrics["kernel_us_per_step"] == 800.0
    assert {k["name"] for k in fa3.samples["kernels"]} == {"gemm_bf16", "attention_FLASH_ATTN3"}
    assert (out / fa3.samples["trace"]).is_file() and fa3.scenario["profile_steps"] == 6
    assert sum(r.kind == "serve" for r in recs) == 2  # the profiled pass is no measurement
    log = (out / "fa3" / "server.log").read_text()
    assert '"max_iterations":6' in log and str((out / "fa3" / "profile").resolve()) in log
    md = (out / "summary.md").read_text()
    assert "Kernel time per engine step" in md
    assert "| attention_FLASHINFER | - | 420.0 |" in md and "| all GPU kernels | 800.0 | 720.0 |" in md
    again = attnbench("serve-bench", "--from-results", out)  # the records alone draw the same section
    assert again.returncode == 0 and "| attention_FLASH_ATTN3 | 500.0 | - |" in (out / "summary.md").read_text()


def test_profile_steps_with_an_endpoint_is_refused_with_the_way_to_do_it(server, tmp_path):
    p = attnbench("serve-bench", "--endpoint", f"http://127.0.0.1:{server.port}", "--input", "8", "--output", "2",
                  "--num-prompts", "2", "--vocab-size", "500", "--profile-steps", "5", "--result-dir", tmp_path)
    assert p.returncode != 0 and "start it with --profiler-config" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1

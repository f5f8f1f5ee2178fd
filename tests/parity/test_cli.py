"""`attnbench parity` end to end against scripted servers on loopback: records, summary, plot,
exit codes, and one-line errors for bad input."""

import json
import socket
import subprocess
import sys

import pytest

from attnbench.errors import UserError
from attnbench.parity import run
from attnbench.parity.cli import parse_endpoint, parse_endpoints
from attnbench.parity.collect import Collection, Settings
from attnbench.parity.prompts import PromptSet
from attnbench.records import record

from .logprob_server import VOCAB, LogprobServer, Script

FLAGS = ["--num-prompts", "3", "--short-len", "6", "--long-len", "20", "--top-k", "4", "--max-tokens", "5",
         "--vocab-size", str(VOCAB)]


def attnbench(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", "from attnbench.cli import main; main()", "parity", *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


def test_parse_endpoint():
    assert parse_endpoint("fa3=http://127.0.0.1:8001") == ("fa3", "http://127.0.0.1:8001")
    assert parse_endpoint(" fa4 = 127.0.0.1:8002/v1 ") == ("fa4", "127.0.0.1:8002/v1")
    for bad in ("http://127.0.0.1:8001", "=http://x", "fa3=", "fa3"):
        with pytest.raises(UserError, match="NAME=URL"):
            parse_endpoint(bad)
    with pytest.raises(UserError, match="twice"):
        parse_endpoints(["a=http://x", "a=http://y"])


def test_two_endpoints_end_to_end(tmp_path):
    out = tmp_path / "res"
    with LogprobServer() as fa3, LogprobServer(Script(prefill_shift={3: 0.3})) as fa4:
        p = attnbench("--endpoint", f"fa3={fa3.base_url}", "--endpoint", f"fa4=127.0.0.1:{fa4.port}",
                      "--result-dir", str(out), *FLAGS)
    assert p.returncode == 1, p.stderr  # fa4 breaks the max |Δ logprob| limit
    # the scripted fa3 repeats itself exactly: the null is 0, so the limits are the floors
    # (a quarter of the bf16 estimates): 0.3 > 0.0625; mean 3 x 0.3 / 65 positions > 0.005
    assert "fa4" in p.stdout and "FAIL" in p.stdout and "max_abs_dlogprob 0.3 > 0.0625 (the floor" in p.stdout
    assert "mean_abs_dlogprob 0.01385 > 0.005" in p.stdout
    assert "hf-fp32" not in p.stdout and "no fp32 transformers reference" in p.stderr
    recs = {r.backend: r for r in record.load(out)}
    assert set(recs) == {"fa3", "fa4"}
    fa4_rec = recs["fa4"]
    assert fa4_rec.kind == "parity" and fa4_rec.status == "ok" and fa4_rec.scenario["reference"] == "fa3"
    assert fa4_rec.metrics["max_abs_dlogprob"] == pytest.approx(0.3) and fa4_rec.metrics["passed"] == 0
    assert fa4_rec.samples["prefill_abs_dlogprob"][1][2] == pytest.approx(0.3)
    assert fa4_rec.provenance["server"].endswith(f":{fa4.port}/v1")
    assert recs["fa3"].metrics["passed"] == 1  # the reference against its null pass: identical
    assert recs["fa3"].metrics["null_max_abs_dlogprob"] == 0.0
    assert fa4_rec.metrics["decode_rescored"] == 1 and fa4_rec.metrics["decode_positions"] == 15
    assert fa4_rec.scenario["null"]["limits"]["max_abs_dlogprob"]["limit"] == pytest.approx(0.0625)
    collected = Collection.load(out / "collected" / "fa4.json.gz")
    assert collected.name == "fa4" and len(collected.results) == 3 and collected.source.endswith(f":{fa4.port}/v1")
    summary = (out / "summary.md").read_text()
    assert "| fa4 | fa3 | 0.3000 |" in summary and "max_abs_dlogprob 0.3 > 0.0625" in summary
    assert "## Limits from the null pass" in summary and "| max_abs_dlogprob | 0 | <= 0.0625 | floor |" in summary
    assert "| fa3 | itself (null) | 0.0000 |" in summary
    assert (out / "collected" / "fa3-null.json.gz").exists()
    assert (out / "parity_dlogprob.png").read_bytes()[:4] == b"\x89PNG"
    # judged again from what was collected, with fixed looser limits: no server needed
    again = attnbench("--from-collected", str(out / "collected"), "--no-null-pass", "--max-dlogprob", "0.5",
                      "--result-dir", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    rec = {r.backend: r for r in record.load(tmp_path / "again")}["fa4"]
    assert rec.metrics["passed"] == 1 and rec.metrics["max_abs_dlogprob"] == pytest.approx(0.3)
    assert rec.scenario["thresholds"]["max_abs_dlogprob"] == 0.5


def test_identical_endpoints_pass_and_thresholds_are_flags(tmp_path):
    with LogprobServer() as a, LogprobServer(Script(prefill_shift={3: 0.3})) as b:
        p = attnbench("--endpoint", f"a={a.base_url}", "--endpoint", f"b={b.base_url}", "--max-dlogprob", "0.5",
                      "--no-null-pass", "--result-dir", str(tmp_path), *FLAGS)
    assert p.returncode == 0, p.stderr
    assert "pass" in p.stdout and "FAIL" not in p.stdout


@pytest.mark.parametrize("args, message", [
    (["--endpoint", "fa3"], "is not NAME=URL"),
    (["--from-collected", "{empty}"], "no collected"),
    (["--endpoint", "a=http://127.0.0.1:{port}", "--endpoint", "b=http://127.0.0.1:{port}"], "cannot reach"),
    (["--endpoint", "a=http://127.0.0.1:{port}", "--endpoint", "b=http://x", "--reference", "c"], "--reference 'c'"),
    (["--endpoint", "a=http://127.0.0.1:{port}", "--hf-reference", "off"], "two or more"),
    (["--endpoint", "a=http://127.0.0.1:{port}"], "two or more sources, and there is one (no model folder"),
    (["--endpoint", "a=http://127.0.0.1:{port}", "--endpoint", "b=x", "--hf-reference", "/nonexistent"], "--hf-reference: /nonexistent is not a local model folder"),
    (["--prompts", "prose"], "--prompts must be one of random, text (got 'prose')"),  # bounds: Parity's fields
    (["--ready-timeout", "0"], "--ready-timeout must be > 0 (got 0.0)"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = attnbench(*[a.format(port=port, empty=tmp_path) for a in args], "--result-dir", str(tmp_path), *FLAGS)
    assert p.returncode == 2
    assert message in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_a_server_without_prompt_logprobs(tmp_path):
    with LogprobServer() as a, LogprobServer(Script(omit_prompt_logprobs=True)) as b:
        p = attnbench("--endpoint", f"a={a.base_url}", "--endpoint", f"plain={b.base_url}",
                      "--result-dir", str(tmp_path), *FLAGS)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "plain: the server returned no prompt_logprobs" in p.stderr and "vLLM" in p.stderr
    assert (tmp_path / "collected" / "a.json.gz").exists()  # what was collected before is kept


def test_fp32_reference_is_compared_like_a_backend(tmp_path, tiny_llama):
    folder, _ = tiny_llama
    settings = Settings(PromptSet(num_prompts=2, short_len=6, long_len=20, vocab_size=VOCAB), top_k=4, max_tokens=5)
    with LogprobServer() as a, LogprobServer() as b:
        records = run.run(run.Parity(settings=settings, result_dir=tmp_path, endpoints={"a": a.base_url, "b": b.base_url},
                                     hf_reference=str(folder)))
    recs = {r.backend: r for r in records}
    assert set(recs) == {"a", "b"}  # the fp32 reference is what they are compared with, not a record
    assert recs["b"].metrics["max_abs_dlogprob"] == 0.0  # b vs a: identical servers
    assert recs["a"].metrics["hf_max_abs_dlogprob"] > 0.5  # the scripted "model" is not the Llama
    assert recs["a"].metrics["passed"] == 0 and recs["a"].scenario["fp32_reference"] == str(folder)
    assert (tmp_path / "collected" / "hf-fp32.json.gz").exists()
    assert "hf-fp32" in (tmp_path / "summary.md").read_text()


def checkpoint(tmp_path):
    """A local model folder (the fake vLLM loads nothing from it)."""
    folder = tmp_path / "ckpt"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"vocab_size": VOCAB, "architectures": ["LlamaForCausalLM"]}))
    return str(folder)


@pytest.mark.parametrize("args", [["--model", "qwen3-0.6b"], ["--model", "{ckpt}", "--serve-arg=--load-format",
                                                                  "--serve-arg=dummy"]])
def test_dummy_weights_are_refused_with_the_fix(tmp_path, args):
    p = attnbench("--backends", "fa3,fa2", *[a.format(ckpt=checkpoint(tmp_path)) for a in args],
                  "--result-dir", str(tmp_path / "r"), *FLAGS)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "dummy" in p.stderr and "--random-weights" in p.stderr and "--model PATH" in p.stderr


def test_backends_start_one_vllm_each_and_a_crash_is_recorded(tmp_path, monkeypatch):
    from pathlib import Path

    fake = Path(__file__).parents[1] / "serving" / "fake_vllm.py"
    monkeypatch.setenv("ATTNBENCH_VLLM_CMD", f"{sys.executable} {fake} serve")
    monkeypatch.setenv("FAKE_VLLM_ARGS", str(tmp_path / "args.jsonl"))
    monkeypatch.setenv("FAKE_VLLM_MODE_FLASH_ATTN2", "shift:0.01")
    monkeypatch.setenv("FAKE_VLLM_MODE_FLASHINFER", "crash")
    out = tmp_path / "res"
    ckpt = checkpoint(tmp_path)
    p = attnbench("--backends", "fa2,fa3,flashinfer", "--model", ckpt, "--result-dir", str(out), *FLAGS)
    assert p.returncode == 1, p.stderr  # flashinfer did not run
    assert "flashinfer: vllm serve exited with code 3" in p.stderr
    assert "no fp32 transformers reference" in p.stderr
    recs = {r.backend: r for r in record.load(out)}
    assert recs["fa2"].metrics["max_abs_dlogprob"] == pytest.approx(0.01) and recs["fa2"].metrics["passed"] == 1
    assert recs["fa2"].scenario["reference"] == "fa3" and recs["fa2"].scenario["model"] == ckpt
    assert recs["flashinfer"].status == "failed" and "exited with code 3" in recs["flashinfer"].error
    assert (out / "fa2" / "server.log").exists()
    commands = [json.loads(line) for line in (tmp_path / "args.jsonl").read_text().splitlines()]
    assert len(commands) == 4  # fa2, fa3, flashinfer, then a second fa3 server for the null pass
    assert commands[3] == commands[1][:4] + commands[3][4:] and (out / "fa3" / "server-null.log").exists()
    assert recs["fa2"].metrics["decode_rescored"] == 1
    for cmd in commands:
        assert "--load-format" not in cmd and "dummy" not in cmd
        assert cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.8"
        assert cmd[cmd.index("--served-model-name") + 1] == ckpt


def test_when_the_default_reference_crashes_the_first_backend_that_ran_is_the_reference(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("ATTNBENCH_VLLM_CMD", f"{sys.executable} {Path(__file__).parents[1] / 'serving' / 'fake_vllm.py'} serve")
    monkeypatch.setenv("FAKE_VLLM_MODE_FLASH_ATTN3", "crash")
    monkeypatch.setenv("FAKE_VLLM_MODE_FLASHINFER", "shift:0.01")
    p = attnbench("--backends", "fa3,fa2,flashinfer", "--model", checkpoint(tmp_path), "--result-dir",
                  str(tmp_path / "r"), *FLAGS)
    assert p.returncode == 1 and "comparing with fa2 instead" in p.stderr
    recs = {r.backend: r for r in record.load(tmp_path / "r")}
    assert recs["fa3"].status == "failed"
    assert recs["flashinfer"].scenario["reference"] == "fa2"
    assert recs["flashinfer"].metrics["max_abs_dlogprob"] == pytest.approx(0.01)

"""benchmarks/peer_clients.py: each peer's result file read into the same metrics, the ratios and
spreads, and the attnbench leg end to end against the scripted server. The peer files are small:
guidellm.json and profile_export_aiperf.json are guidellm 0.8.1's and aiperf 0.13.0's output
against the scripted server, cut to the keys read; vllm.json is written after vLLM 0.26's
--save-result format."""

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from attnbench.serving.scripted_server import Script, ScriptedServer

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("peer_outputs")
spec = importlib.util.spec_from_file_location("peer_clients", ROOT / "benchmarks" / "peer_clients.py")
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)


@pytest.mark.parametrize("name, parse, expected", [
    ("vllm.json", peer.parse_vllm, (16, 0, 121.9, 210.5, 25.5)),
    ("vllm-old.json", peer.parse_vllm, (15, 1, 100.0, 300.0, 30.0)),  # no "failed": asked minus completed
    ("guidellm.json", peer.parse_guidellm, (6, 0, 198.8678, 23.7528, 4.9304)),  # ITL (decode only), not its TPOT
    ("profile_export_aiperf.json", peer.parse_aiperf, (6, 0, 215.0313, 27.2995, 5.2062)),
    ("aiperf-lost.json", peer.parse_aiperf, (15, 1, 215.0313, 27.2995, 5.2062)),  # completed_request_count has both
])
def test_each_peers_file_becomes_the_same_metrics(name, parse, expected):
    got = parse(OUT / name)
    assert tuple(got[k] for k in ("completed", "failed", "output_throughput", "mean_ttft_ms", "mean_tpot_ms")) == expected


def _m(tput, ttft, tpot, failed=0):
    return {"completed": 16 - failed, "failed": failed, "output_throughput": tput, "mean_ttft_ms": ttft, "mean_tpot_ms": tpot}


def test_ratios_pair_rounds_and_spreads_are_half_ranges():
    runs = {"attnbench": [_m(110, 180, 24), _m(90, 220, 26, failed=1)], "vllm": [_m(100, 200, 25), _m(100, 200, 25)]}
    res = peer.compare(runs)
    a = res["clients"]["attnbench"]
    assert a["lost"] == 1 and a["rounds"] == 2
    assert a["output_throughput"] == {"mean": 100, "spread_pct": pytest.approx(10.0)}
    assert res["clients"]["vllm"]["mean_ttft_ms"]["spread_pct"] == 0
    r = res["ratios"]["vllm"]["output_throughput"]
    assert (r["mean"], r["min"], r["max"]) == (pytest.approx(1.0), pytest.approx(0.9), pytest.approx(1.1))
    table = peer.format_table(res)
    # two rounds, ratios 1.1 and 0.9: logs +0.0953 and -0.1054, sd 0.1419, t(1) = 12.706:
    # exp(-0.0050 +- 12.706 * 0.1419 / sqrt 2) = 0.28 .. 3.56
    assert "| attnbench | 2 | 1 | 100.0 ±10% |" in table and "| vllm | 1.00 (0.90-1.10; 95% CI 0.28-3.56) |" in table


def test_peer_commands_use_the_same_load(tmp_path):
    a = argparse.Namespace(endpoint="http://h:8080/v1", model="m", tokenizer="/tok", input=128, output=32,
                           num_prompts=16, concurrency=4, vocab_size=None, peer_arg=["aiperf=--ui-type=none"])
    for client in peer.CLIENTS:
        cmd, result = peer.command(client, a, 0, tmp_path)
        text = " ".join(cmd)
        if client == "guidellm":  # its settings go in a scenario file
            text = (tmp_path / "guidellm-scenario.json").read_text()
        assert "http://h:8080" in text and "/v1/v1" not in text and "128" in text and "32" in text and "16" in text
        assert result.parent == tmp_path or result.parent.parent == tmp_path
    assert peer.command("aiperf", a, 0, tmp_path)[0][-1] == "--ui-type=none"


def test_the_attnbench_leg_runs_against_a_server(tmp_path):
    with ScriptedServer(Script(ttft_s=0.01, itl_s=0.002, close_after_stream=True, empty_final_event=True)) as s:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peer_clients.py"), "--endpoint", s.base_url,
                        "--model", "scripted", "--tokenizer", str(tmp_path), "--input", "8", "--output", "4",
                        "--num-prompts", "6", "--concurrency", "2", "--rounds", "2", "--vocab-size", "100",
                        "--clients", "attnbench", "--out", str(tmp_path / "out")], check=True, cwd=ROOT,
                       capture_output=True)
    res = __import__("json").loads((tmp_path / "out" / "comparison.json").read_text())
    a = res["clients"]["attnbench"]
    assert a["rounds"] == 2 and a["lost"] == 0  # the server drops reused connections; nothing is lost
    assert all(r["completed"] == 6 for r in res["runs"]["attnbench"])
    assert (tmp_path / "out" / "comparison.md").read_text().startswith("| client |")


def test_attnbench_variants_and_the_server_side_reference(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(300)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tokenizer.json"))
    with ScriptedServer(Script(ttft_s=0.01, itl_s=0.002)) as s:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peer_clients.py"), "--endpoint", s.base_url,
                        "--model", "scripted", "--tokenizer", str(tmp_path), "--input", "8", "--output", "4",
                        "--num-prompts", "4", "--concurrency", "2", "--rounds", "1", "--vocab-size", "100",
                        "--clients", "attnbench,attnbench-text", "--out", str(tmp_path / "out")], check=True, cwd=ROOT,
                       capture_output=True)
        sent = [b for b in s.requests if b.get("ignore_eos")]
    assert {type(b["prompt"]) for b in sent} == {list, str}  # token ids from one, text from the other
    res = __import__("json").loads((tmp_path / "out" / "comparison.json").read_text())
    for client in ("attnbench", "attnbench-text"):
        run = res["runs"][client][0]
        assert run["completed"] == 4 and run["server_mean_tpot_ms"] is not None  # the server's view of the pass
    assert "attnbench-text" in res["ratios"] and "server TPOT" in (tmp_path / "out" / "comparison.md").read_text()


def test_a_client_that_fails_is_recorded_and_the_others_rounds_are_kept(tmp_path):
    with ScriptedServer(Script(ttft_s=0.01, itl_s=0.002)) as s:
        r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peer_clients.py"), "--endpoint", s.base_url,
                            "--model", "scripted", "--tokenizer", str(tmp_path), "--input", "8", "--output", "4",
                            "--num-prompts", "4", "--concurrency", "2", "--rounds", "2", "--vocab-size", "100",
                            "--clients", "attnbench,attnbench-warm", "--peer-arg", "attnbench-warm=--no-such-flag",
                            "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "round 1 attnbench-warm: failed: RuntimeError: attnbench-warm wrote no" in r.stderr
    res = __import__("json").loads((tmp_path / "out" / "comparison.json").read_text())
    assert res["clients"]["attnbench"]["rounds"] == 2
    assert res["clients"]["attnbench-warm"] == {"rounds": 0, "failed_rounds": 2, "lost": 0}
    assert res["ratios"] == {}  # nothing to pair with


def test_the_scripted_servers_truth_is_its_timings():
    # 256 streams at once, 1000 tokens: 50 ms + 999 x 16 ms = 16.034 s, 256,000 tokens in it
    t = peer.scripted_truth(50, 16, num_prompts=256, concurrency=256, output=1000)
    assert (t["mean_ttft_ms"], t["mean_tpot_ms"], t["completed"], t["failed"]) == (50, 16, 256, 0)
    assert t["output_throughput"] == pytest.approx(256_000 / 16.034)
    # 10 requests 4 at a time: 3 waves
    assert peer.scripted_truth(10, 5, 10, 4, 3)["output_throughput"] == pytest.approx(30 / (3 * 0.020))


def test_clients_against_the_scripted_server_are_divided_by_its_truth(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peer_clients.py"), "--scripted", "20,5",
                    "--model", "scripted", "--tokenizer", str(tmp_path), "--input", "8", "--output", "12",
                    "--num-prompts", "8", "--concurrency", "8", "--rounds", "2", "--vocab-size", "100",
                    "--clients", "attnbench", "--out", str(tmp_path / "out")], check=True, cwd=ROOT, capture_output=True)
    res = __import__("json").loads((tmp_path / "out" / "comparison.json").read_text())
    assert res["runs"]["script"] == [peer.scripted_truth(20, 5, 8, 8, 12)] * 2
    a = res["clients"]["attnbench"]
    assert a["rounds"] == 2 and a["lost"] == 0
    # nothing arrives sooner than scripted; a loaded machine only delays
    assert a["mean_ttft_ms"]["mean"] >= 20 and a["mean_tpot_ms"]["mean"] >= 5 * 0.9
    r = res["ratios"]["attnbench"]
    assert r["mean_ttft_ms"]["max"] <= 1.0 and r["output_throughput"]["min"] >= 1.0
    assert "| script | 2 | 0 |" in (tmp_path / "out" / "comparison.md").read_text()

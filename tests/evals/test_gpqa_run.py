"""`attnbench gpqa` end to end against the scripted server: scores, counts, records, report,
summary, cross-backend comparison, and resume from the cache."""

import json
import signal
import subprocess
import sys
import time

import pytest

from attnbench.evals import gpqa, run, summary
from attnbench.records.record import load
from mcq_server import MCQServer, fixture_script

QS = gpqa.load("mini")
MIXED = {0: "wrong", 1: "malformed", 2: "always500", 3: "truncate", 4: "boxed", 5: "error500", 6: "ratelimit",
         7: "reasoning"}


def config(tmp_path, srv, **kw):
    kw = {"result_dir": tmp_path, "dataset": "mini", "endpoint": srv.root_url, "repeats": 2, "retry_time_s": 1.0,
          "backoff_s": 0.01, **kw}
    return run.GPQARun(**kw)


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_scores_and_counts(tmp_path, api):
    with MCQServer(fixture_script(QS, MIXED)) as srv:
        (rec,) = run.run(config(tmp_path, srv, api=api), notice=lambda s: None)
    m = rec.metrics
    # 20 questions x 2 repeats; q2 always fails, q0 wrong, q1 malformed, q3 truncated: 4 x 2 wrong of 40,
    # the failures among them; over the 38 answered samples 32 are right
    assert (m["n_samples"], m["n_expected"], m["n_answered"], m["failed_requests"]) == (40, 40, 38, 2)
    assert m["accuracy"] == pytest.approx(32 / 40) and m["score_pct"] == pytest.approx(80.0)
    assert m["accuracy_answered"] == pytest.approx(32 / 38)
    assert (m["extraction_failures"], m["truncations"], m["rejected_requests"]) == (4, 2, 0)
    assert m["ci_low"] < m["accuracy"] < m["ci_high"] <= 1.0
    assert m["stderr_repeat"] == 0.0 < m["stderr"]  # the scripted answers never vary between repeats
    assert rec.samples["per_question"]["mini01"] == 0.0 and rec.samples["per_question"]["mini05"] == 1.0
    assert rec.samples["per_question"]["mini03"] == 0.0
    assert rec.samples["per_repeat"] == [pytest.approx(16 / 20)] * 2
    assert rec.status == "ok" and rec.backend == "endpoint"
    assert rec.scenario["effort"] == "low" and rec.scenario["grader"] == "reference"
    assert rec.scenario["max_tokens"] == rec.scenario["max_tokens_sent"] == 131072
    assert rec.scenario["server"]["vllm"] == "0.0.scripted" and rec.scenario["server_key"]
    assert all(p == api for p in srv.paths)
    (saved,) = load(tmp_path / "endpoint" / "gpqa.json")
    assert saved.metrics["accuracy"] == m["accuracy"] and saved.kind == "gpqa"
    failed = [r for r in saved.samples["rows"] if r["outcome"] == "failed"]
    assert len(failed) == 2 and failed[0]["score"] == 0.0 and "--retry-time" in failed[0]["error"]
    assert all(r["effort_sent"] == "low" for r in saved.samples["rows"])
    malformed = [r for r in saved.samples["rows"] if r["question_id"] == "mini02"]
    assert {(r["extracted"], r["rule"]) for r in malformed} == {("I", "first-character")}
    html = (tmp_path / "endpoint" / "report.html").read_text()
    assert "Correct Answer:" in html and "Extracted Answer: I" in html and "request failed" in html
    assert "What is 7 + 5?" in html and "&lt;" not in QS[0].question
    md = (tmp_path / "summary.md").read_text()
    assert "| endpoint | ok | 80.0 |" in md and "| 84.2 | 40/40 | 38 | 0 | 2 |" in md
    assert "**endpoint**: 2 of 40 samples got no answer within the retry time; they count as wrong" in md
    assert (tmp_path / summary.PLOT).stat().st_size > 1000


def test_two_endpoints_are_compared(tmp_path):
    with MCQServer(fixture_script(QS)) as good, MCQServer(fixture_script(QS, {i: "wrong" for i in range(10)})) as bad:
        run.run(config(tmp_path, good, name="fa3"), notice=lambda s: None)
        run.run(config(tmp_path, bad, name="fa4"), notice=lambda s: None)
    comp = json.loads((tmp_path / "comparison.json").read_text())
    assert [(c["a"], c["b"]) for c in comp] == [("fa3", "fa4")]
    assert comp[0]["diff"] == pytest.approx(-0.5)
    assert comp[0]["ci_high"] < 0 and comp[0]["p_value"] < 0.01
    assert comp[0]["verdict"].startswith("fa4 vs fa3: -50.0 pts, 95% CI [")
    # no resample of 20 questions avoids all 10 wrong ones: the smallest bootstrap p, 2 / 10001
    assert comp[0]["verdict"].endswith("fa4 scores lower (p = 0.0002)")
    md = (tmp_path / "summary.md").read_text()
    assert "## Paired differences" in md and "| fa4 vs fa3 | -50.00 |" in md and "bootstrap p" in md


def test_rerun_asks_only_what_is_missing(tmp_path):
    notes = []
    with MCQServer(fixture_script(QS, {2: "always500"})) as srv:
        run.run(config(tmp_path, srv, retry_time_s=0.05), notice=lambda s: None)
        first = len(srv.requests)
        srv.script.behaviour.clear()
        (rec,) = run.run(config(tmp_path, srv), notice=notes.append)
        # only the 2 failed samples are asked again
        assert len(srv.requests) - first == 2
        assert rec.metrics["n_answered"] == 40 and rec.metrics["accuracy"] == 1.0
    lines = (tmp_path / "cache.jsonl").read_text().splitlines()
    assert len(lines) == 40  # failures are not cached
    (reuse,) = [n for n in notes if "reusing" in n]
    assert "reusing 38 of 40 answers from" in reuse and f"(server: url {srv.base_url}, model scripted-mcq" in reuse
    assert "vllm 0.0.scripted)" in reuse and reuse.endswith("asking 2")


def test_changed_settings_are_not_reused(tmp_path):
    with MCQServer(fixture_script(QS)) as srv:
        run.run(config(tmp_path, srv, api="chat"), notice=lambda s: None)
        n = len(srv.requests)
        run.run(config(tmp_path, srv, api="chat", temperature=0.5), notice=lambda s: None)
        assert len(srv.requests) - n == 40
        run.run(config(tmp_path, srv, api="chat", effort="high"), notice=lambda s: None)
        assert len(srv.requests) - n == 80


def test_a_changed_server_is_asked_again(tmp_path):
    """Same URL and model, another vLLM version (or model length): nothing is reused."""
    with MCQServer(fixture_script(QS, version="0.10.1")) as srv:
        run.run(config(tmp_path, srv, repeats=1), notice=lambda s: None)
        n = len(srv.requests)
        run.run(config(tmp_path, srv, repeats=1), notice=lambda s: None)
        assert len(srv.requests) == n
        srv.script.version = "0.11.0"
        (rec,) = run.run(config(tmp_path, srv, repeats=1), notice=lambda s: None)
        assert len(srv.requests) - n == 20 and rec.scenario["server"]["vllm"] == "0.11.0"
        srv.script.max_model_len = 65536
        run.run(config(tmp_path, srv, repeats=1), notice=lambda s: None)
        assert len(srv.requests) - n == 40


def test_effort_is_never_dropped_and_400_scores_wrong(tmp_path):
    """A server that refuses reasoning effort: the effort stays in every request, every sample is
    a counted HTTP 400 scored wrong (as the reference does), and the summary says so."""
    notes = []
    with MCQServer(fixture_script(QS, reject_effort=True)) as srv:
        (rec,) = run.run(config(tmp_path, srv, api="chat", concurrency=4), notice=notes.append)
        assert all("reasoning_effort" in b for b in srv.requests) and len(srv.requests) == 40
        m = rec.metrics
        assert (m["accuracy"], m["rejected_requests"], m["samples_without_effort"], m["n_answered"]) == (0.0, 40, 40, 0)
        assert rec.status == "failed" and rec.error.startswith("no sample was answered (40 rejected with HTTP 400")
        assert sum("answered HTTP 400 to a request with reasoning effort 'low'" in n for n in notes) == 1
        md = (tmp_path / "summary.md").read_text()
        assert "40 of 40 samples went without reasoning effort 'low'" in md and "use --effort none" in md
        (none,) = run.run(config(tmp_path, srv, api="chat", effort="none"), notice=lambda s: None)
    assert none.metrics["accuracy"] == 1.0 and none.metrics["samples_without_effort"] == 0


def test_one_rejected_question_counts_in_the_headline_only(tmp_path):
    with MCQServer(fixture_script(QS, {0: "reject"})) as srv:
        (rec,) = run.run(config(tmp_path, srv), notice=lambda s: None)
    m = rec.metrics
    assert m["accuracy"] == pytest.approx(38 / 40) and m["accuracy_answered"] == 1.0
    assert (m["rejected_requests"], m["samples_without_effort"], m["failed_requests"]) == (2, 2, 0)
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 40  # a 400 is an answer to keep


def test_max_tokens_are_capped_by_the_model_length(tmp_path):
    notes = []
    with MCQServer(fixture_script(QS, max_model_len=8192)) as srv:
        (rec,) = run.run(config(tmp_path, srv, repeats=1), notice=notes.append)
        assert {b["max_output_tokens"] for b in srv.requests} == {8192}
        run.run(config(tmp_path, srv, repeats=1, api="chat"), notice=notes.append)
        assert {b["max_tokens"] for b in srv.requests if "messages" in b} == {8192 - run.CHAT_PROMPT_ALLOWANCE}
    assert rec.scenario["max_tokens_sent"] == 8192 and rec.scenario["max_tokens"] == 131072
    assert any("max tokens 131072 capped to 8192: the server's max model length is 8192" in n for n in notes)
    assert "max tokens capped to 4096 by the server's max model length" in (tmp_path / "summary.md").read_text()


def test_chat_empty_content_is_asked_again_and_counted(tmp_path):
    with MCQServer(fixture_script(QS, {0: "empty_once"})) as srv:
        (rec,) = run.run(config(tmp_path, srv, api="chat", repeats=1), notice=lambda s: None)
    assert rec.metrics["accuracy"] == 1.0 and rec.metrics["empty_resamples"] == 1
    assert "1 answers with empty content were asked again" in (tmp_path / "summary.md").read_text()


def test_lenient_grader_is_opt_in_recorded_and_needs_no_request(tmp_path):
    with MCQServer(fixture_script(QS, {0: "lowercase"})) as srv:
        (ref,) = run.run(config(tmp_path, srv, repeats=1), notice=lambda s: None)
        n = len(srv.requests)
        (len_,) = run.run(config(tmp_path, srv, repeats=1, grader="lenient"), notice=lambda s: None)
        assert len(srv.requests) == n  # graded again from the cached responses
    assert ref.metrics["accuracy"] == pytest.approx(19 / 20) and len_.metrics["accuracy"] == 1.0
    assert len_.scenario["grader"] == "lenient"
    assert "grader lenient (not the reference's" in (tmp_path / "summary.md").read_text()


def test_interrupted_run_resumes(tmp_path):
    """Kill the command mid-run (SIGINT); the re-run asks only what the cache lacks. Questions
    6.. answer only after a minute, so the signal always lands while the run waits on them."""
    with MCQServer(fixture_script(QS, {i: "slow" for i in range(6, 20)}, slow_s=60)) as srv:
        cmd = [sys.executable, "-m", "attnbench", "gpqa", "--endpoint", srv.base_url, "--dataset", "mini",
               "--repeats", "2", "--concurrency", "2", "--api", "chat", "--result-dir", str(tmp_path)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cache = tmp_path / "cache.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 6
                                               or len(srv.requests) < 8):  # questions 0-5 answered, 6 and 7 held
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        done = len(cache.read_text().splitlines())
        assert done == 6
        (partial,) = load(tmp_path / "endpoint" / "gpqa.json")
        assert partial.status == "failed" and "interrupted" in partial.error
        before = len(srv.requests)
        srv.script.behaviour.clear()
        (rec,) = run.run(config(tmp_path, srv, api="chat", endpoint=srv.base_url), notice=lambda s: None)
        assert len(srv.requests) - before == 40 - done
    assert rec.status == "ok" and rec.metrics["n_samples"] == 40 and rec.metrics["accuracy"] == 1.0


def test_torn_cache_line_is_ignored(tmp_path):
    with MCQServer(fixture_script(QS)) as srv:
        run.run(config(tmp_path, srv, repeats=1), notice=lambda s: None)
        cache = tmp_path / "cache.jsonl"
        text = cache.read_text().splitlines()
        cache.write_text("\n".join(text[:-1]) + "\n" + text[-1][:25])  # a line cut mid-write
        n = len(srv.requests)
        (rec,) = run.run(config(tmp_path, srv, repeats=1), notice=lambda s: None)
        assert len(srv.requests) - n == 1 and rec.metrics["n_samples"] == 20
    assert all(json.loads(line) for line in cache.read_text().splitlines()[-1:])


def test_cache_line_torn_inside_a_multibyte_character(tmp_path):
    with MCQServer(fixture_script(QS)) as srv:
        run.run(config(tmp_path, srv, repeats=1), notice=lambda s: None)
        cache = tmp_path / "cache.jsonl"
        lines = cache.read_bytes().splitlines()
        last = json.loads(lines[-1]) | {"response": "Ответ: B"}
        raw = json.dumps(last, ensure_ascii=False).encode()
        cut = raw.index("Ответ".encode()) + 3  # inside the second Cyrillic letter
        cache.write_bytes(b"\n".join(lines[:-1]) + b"\n" + raw[:cut])
        n = len(srv.requests)
        (rec,) = run.run(config(tmp_path, srv, repeats=1), notice=lambda s: None)
        assert len(srv.requests) - n == 1 and rec.metrics["accuracy"] == 1.0


def test_backends_start_vllm_per_backend(tmp_path, monkeypatch):
    """--backends: one server per backend through serving.fleet.running (here a stand-in
    that serves the scripted answers), then the paired comparison."""
    from contextlib import ExitStack, contextmanager

    from attnbench.backends import registry
    from attnbench.serving import fleet

    specs = []

    @contextmanager
    def fake_running(wave, status=None):
        specs.extend(wave)
        with ExitStack() as stack:
            servers = [stack.enter_context(MCQServer(fixture_script(QS, {0: "wrong"} if spec.backend.name == "fa4"
                                                                     else {}))) for spec in wave]
            for srv in servers:
                srv.model_name = "openai/gpt-oss-20b"
            yield servers

    monkeypatch.setattr(fleet, "running", fake_running)
    cfg = run.GPQARun(result_dir=tmp_path, dataset="mini", repeats=1, backends=registry.parse_names("fa3,fa4"),
                      model="openai/gpt-oss-20b", serve_args=["--max-model-len", "4096"], backoff_s=0.01)
    records = run.run(cfg, notice=lambda s: None)
    assert [r.backend for r in records] == ["fa3", "fa4"]
    assert [s.backend.name for s in specs] == ["fa3", "fa4"]
    assert specs[0].extra_args == ["--max-model-len", "4096"] and specs[0].model == "openai/gpt-oss-20b"
    assert records[1].metrics["accuracy"] == pytest.approx(19 / 20)
    assert "fa4 vs fa3: -5.0 pts" in (tmp_path / "summary.md").read_text()
    # everything cached: a re-run starts no server
    specs.clear()
    run.run(cfg, notice=lambda s: None)
    assert specs == []


def test_server_that_fails_to_start_is_a_failed_record(tmp_path, monkeypatch):
    from contextlib import contextmanager

    from attnbench.backends import registry
    from attnbench.serving import fleet
    from attnbench.serving import server as server_mod

    @contextmanager
    def broken(specs, status=None):
        yield [server_mod.ServerFailed("fa3: vllm serve exited with code 1 after 3 s while starting", ["CUDA error"])
               for _ in specs]

    monkeypatch.setattr(fleet, "running", broken)
    cfg = run.GPQARun(result_dir=tmp_path, dataset="mini", repeats=1, backends=registry.parse_names("fa3"))
    (rec,) = run.run(cfg, notice=lambda s: None)
    assert rec.status == "failed" and "exited with code 1" in rec.error and "CUDA error" in rec.error
    assert "| fa3 | failed |" in (tmp_path / "summary.md").read_text()


def test_max_tokens_beyond_the_context_says_what_to_do(tmp_path):
    with MCQServer(fixture_script(QS, context=2048)) as srv:
        (rec,) = run.run(config(tmp_path, srv, api="chat", repeats=1), notice=lambda s: None)
        assert rec.status == "failed" and rec.metrics["rejected_requests"] == 20
        assert "maximum context length is 2048" in rec.error and rec.error.endswith("lower --max-tokens to fit the model's context")
        (rec,) = run.run(config(tmp_path, srv, api="chat", repeats=1, max_tokens=1024), notice=lambda s: None)
        assert rec.status == "ok" and rec.metrics["accuracy"] == 1.0

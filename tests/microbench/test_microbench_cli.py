"""`attnbench microbench` end to end on the CPU with the reference backend, and its output files."""

import json

import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from attnbench.cli import app  # noqa: E402
from attnbench.microbench import output  # noqa: E402
from attnbench.records.record import Record, load  # noqa: E402

runner = CliRunner()
TINY = ["--device", "cpu", "--backends", "reference", "--heads", "4/2", "--head-dim", "16", "--repeats", "2"]


def test_decode_end_to_end_writes_records_summary_and_plots(tmp_path):
    out = tmp_path / "res"
    r = runner.invoke(app, ["microbench", "decode", *TINY, "--batch", "1,2", "--context", "32,100",
                            "--page-size", "8", "--result-dir", str(out)])
    assert r.exit_code == 0, r.output
    recs = load(out)
    assert len(recs) == 4 and {x.kind for x in recs} == {"microbench"}
    assert all(x.status == "ok" and x.samples["verdict"] == "ok" and x.metrics["rel_err"] < 1e-2 for x in recs)
    assert {x.scenario["context"] for x in recs} == {32, 100} and recs[0].scenario["page_size"] == 8
    assert recs[0].metrics["us"] > 0 and recs[0].metrics["gbps"] > 0 and "git_sha" in recs[0].provenance
    summary = (out / "summary.md").read_text()
    assert "B2 ctx100 H4/2/16 bf16" in summary and "| reference |" in summary
    assert list((out / "plots").glob("decode-*.png"))
    assert "B1 ctx32 H4/2/16 bf16" in r.output  # terminal table


def test_prefill_chunked_noncausal_and_ragged_decode(tmp_path):
    r = runner.invoke(app, ["microbench", "prefill", *TINY, "--batch", "2", "--seqlen", "24", "--context", "0,16",
                            "--no-causal", "--result-dir", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    recs = load(tmp_path / "p")
    assert sorted(x.scenario["paged"] for x in recs) == [False, True]
    assert all(not x.scenario["causal"] and x.samples["verdict"] == "ok" for x in recs)
    r = runner.invoke(app, ["microbench", "decode", *TINY, "--batch", "3", "--ragged", "uniform:5:60",
                            "--q-len", "2", "--dtype", "fp16", "--result-dir", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    (rec,) = load(tmp_path / "d")
    assert rec.scenario["ragged"] and len(rec.scenario["context_lens"]) == 3 and rec.scenario["q_len"] == 2
    assert rec.scenario["dtype"] == "float16" and rec.metrics["tolerance"] == 5e-3


def test_grid_file_with_flag_overrides(tmp_path):
    g = tmp_path / "g.toml"
    g.write_text('name = "g"\n[microbench]\nop = "decode"\nbackends = ["fa3"]\nheads = ["8/8/16"]\n'
                 'batch = [1, 2, 3]\ncontext = [16]\n')
    r = runner.invoke(app, ["microbench", "decode", "--device", "cpu", "--grid", str(g), "--batch", "2",
                            "--repeats", "1", "--result-dir", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    (rec,) = load(tmp_path / "o")  # cpu: the grid's GPU backends give way to the reference
    assert rec.backend == "reference" and rec.scenario["batch"] == 2 and rec.scenario["q_heads"] == 8


@pytest.mark.parametrize("args,message", [
    (["--backends", "fa3"], "needs a GPU"),
    (["--backends", "triton"], "no microbench kernel adapter"),
    (["--backends", "nope"], "unknown backend"),
    (["--backends", "reference,reference"], "twice"),
    (["--ragged", "uniform:9:1"], "--ragged"),
    (["--heads", "16/5"], "multiple of KV"),
    (["--batch", "x"], "--batch"),
    (["--dtype", "fp8"], "bf16 or fp16"),
    (["--q-len", "0"], "q-len"),
    (["--device", "tpu"], "--device"),
    (["--repeats", "0"], "--repeats must be >= 1 (got 0)"),
    (["--fa4-splits", "-1"], "--fa4-splits must be >= 0 (got -1)"),
    (["--grid", "missing.toml"], "not found"),
    (["--context", "4", "--q-len", "8"], "bad shape"),
])
def test_bad_input_is_one_line_error(args, message, tmp_path):
    from attnbench.errors import UserError

    r = runner.invoke(app, ["microbench", "decode", "--device", "cpu", "--result-dir", str(tmp_path), *args])
    assert isinstance(r.exception, UserError), r.output
    assert message in str(r.exception) and "\n" not in str(r.exception)


def test_failed_and_skipped_results_are_visible_in_table_and_summary(tmp_path):
    def rec(backend, verdict, us):
        return Record(kind="microbench", backend=backend, scenario={"label": "B1 ctx8", "op": "decode"},
                      metrics={"us": us, "gbps": 10.0}, samples={"verdict": verdict},
                      status="ok" if verdict == "ok" else "failed",
                      error=None if verdict == "ok" else "FAIL: rel_err 0.5 > tolerance 0.01")
    recs = [rec("good", "ok", 1.0), rec("bad", "FAIL", 2.0), rec("odd", "skipped", None)]
    text = output.table(recs, "decode")
    assert "FAIL" in text and "skip" in text
    md = output.markdown(recs, "decode", None, ["B9 ctx9: inputs need 99 GiB"])
    assert "## Not ok" in md and "bad B1 ctx8: FAIL" in md and "99 GiB" in md
    w = output.ResultWriter(tmp_path)
    for x in recs:
        w.add(x)
    assert json.loads((tmp_path / "decode-bad.json").read_text())[0]["verdict"] == "FAIL"
    assert [r.backend for r in load(tmp_path)] == ["bad", "good", "odd"]


def test_second_invocation_into_the_same_directory_adds_to_the_summary(tmp_path):
    """The device script runs fa4 --fa4-splits 1 (and other head layouts) into the first run's directory."""
    common = ["microbench", "decode", *TINY, "--batch", "1", "--result-dir", str(tmp_path)]
    assert runner.invoke(app, [*common, "--context", "32"]).exit_code == 0
    assert runner.invoke(app, [*common, "--context", "48"]).exit_code == 0
    assert runner.invoke(app, [*common, "--context", "48"]).exit_code == 0  # a re-run replaces, not duplicates
    assert sorted(r.scenario["context"] for r in load(tmp_path)) == [32, 48]
    summary = (tmp_path / "summary.md").read_text()
    assert "ctx32 " in summary and "ctx48 " in summary
    r = runner.invoke(app, ["microbench", "prefill", *TINY, "--batch", "1", "--seqlen", "8", "--result-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert len(load(tmp_path)) == 3 and sorted(p.name for p in tmp_path.glob("*.json")) == ["decode-reference.json", "prefill-reference.json"]
    summary = (tmp_path / "summary.md").read_text()
    assert "microbench decode" in summary and "microbench prefill" in summary and "ctx48 " in summary


def test_summary_sets_the_reference_shapes_beside_the_h100_reference(monkeypatch, tmp_path):
    rec = Record(kind="microbench", backend="fa3", scenario={"label": "B256 ctx2048 H16/8/128 bf16", "op": "decode"},
                 metrics={"us": 370.0, "gbps": 2700.0, "kv_gbps": 2700.0}, samples={"verdict": "ok"})
    md = output.markdown([rec], "decode", {"gpu_name": "NVIDIA H100 80GB HBM3"}, [])
    assert "| B256 ctx2048 H16/8/128 bf16 | fa3 | kv_gbps | 3003 | 2700 | -10.1% **>5%** |" in md
    # the figures and their provenance come from results/, not from the code
    assert "Reference: NVIDIA H100 80GB HBM3" in md and "results/h100/microbench/reference.json" in md
    monkeypatch.setattr(output, "REFERENCE_FILE", tmp_path / "absent.json")
    assert "Against the reference" not in output.markdown([rec], "decode", None, [])


def test_summary_sets_ours_beside_the_best_other_backend_of_each_shape():
    def rec(backend, label, gbps, verdict="ok"):
        return Record(kind="microbench", backend=backend, scenario={"label": label, "op": "decode"},
                      metrics={"us": 1.0, "gbps": gbps}, samples={"verdict": verdict})

    a, b, c = "B256 ctx2048 H16/8/128 bf16", "B1 ctx32768 H16/8/128 bf16", "B8 ctx16384 H16/8/128 bf16"
    recs = [rec("fa3", a, 4257.0), rec("flashinfer", a, 4252.0), rec("attnbench-fa4", a, 4280.0),
            rec("fa3", b, 3228.0), rec("flashinfer", b, 3279.0), rec("attnbench-fa4", b, 3086.0),
            rec("fa3", c, 4074.0), rec("attnbench-fa4", c, 9999.0, verdict="FAIL")]  # a wrong result is no speed
    md = output.markdown(recs, "decode", None, []).split("## Ours against the best other backend")[1]
    assert "at or above the best other backend on 1 of 2 shapes" in md
    assert f"| {a} | attnbench-fa4 | 4280 | fa3 | 4257 | 1.005 |" in md
    assert f"| {b} | attnbench-fa4 | 3086 | flashinfer | 3279 | 0.941 |" in md
    assert f"| {c} | attnbench-fa4" not in md
    assert "best other backend" not in output.markdown(recs[:2], "decode", None, [])  # ours not measured: no section

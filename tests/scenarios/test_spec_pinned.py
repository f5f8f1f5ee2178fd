"""The command lines the committed scenario files expand to, written out in full: reading section
keys from the commands' configs must not change what a shipped study runs."""

from pathlib import Path

import pytest

from attnbench.scenarios import spec

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
GRID_BACKENDS = {"decode-grid": ["fa2", "fa3", "fa4", "flashinfer", "attnbench-fa4"],
                 "prefill-grid": ["fa2", "fa3", "fa4", "flashinfer"]}


def expected(name: str) -> list[tuple[str, int, float | None, list[str]]]:
    """(run id, gpus, timeout_s, argv with --result-dir R) of every run of scenarios/NAME.toml."""
    if name in GRID_BACKENDS:
        op = name.split("-")[0]
        grid = str(SCENARIOS / f"{name}.toml")
        return [(f"microbench-{op}-{b}", 1, None, ["microbench", op, "--grid", grid, "--backends", b, "--result-dir", "R"])
                for b in GRID_BACKENDS[name]]
    if name == "gpqa-gpt-oss-20b":
        return [(f"gpqa-{b}-{e}", 1, None, ["gpqa", "--backends", b, "--effort", e, "--model", "openai/gpt-oss-20b",
                                            "--result-dir", "R"])
                for b in ("fa3", "fa4", "flashinfer") for e in ("low", "medium")]
    if name == "parity":
        return [("parity", 1, None, ["parity", "--backends", "fa3,fa2,fa4,flashinfer,attnbench-fa4", "--reference", "fa3",
                                     "--result-dir", "R"])]
    if name == "seed-serve":
        return [("serve", 1, 1440, ["serve-bench", "--backends", "fa3,flashinfer,fa4,attnbench-fa4", "--input", "1000,8000",
                                    "--output", "1000,1", "--num-prompts", "256", "--repeats", "3", "--target-ci", "0.03",
                                    "--max-repeats", "5", "--result-dir", "R"]),
                ("explain", 1, 300, ["explain", "serve/rep0", "--shape", "1000x1000", "--result-dir", "R"])]
    if name == "h200-accuracy":  # accuracy.sh's commands as at 61ec77e, in order of need, fa2 added to GPQA
        every = "fa3,fa2,fa4,flashinfer,attnbench-fa4"
        smol = "/tmp/models/smollm2"
        return [("parity-smollm2", 1, 900, ["parity", "--backends", every, "--model", smol, "--hf-reference", smol,
                                            "--result-dir", "R"]),
                ("parity-broken", 1, 900, ["env", f"ATTNBENCH_PARITY_MODEL={smol}", "python3", "-m", "pytest", "-q", "-s",
                                           "-rs", "-p", "no:cacheprovider", "-m", "gpu", "tests/parity/test_gpu.py",
                                           "-k", "broken", "--junitxml", "R/junit.xml"]),
                ("gpqa-smollm2", 1, 900, ["gpqa", "--backends", every, "--model", smol,
                                          "--api", "chat", "--effort", "none", "--dataset", "mini", "--repeats", "8",
                                          "--max-tokens", "256", "--result-dir", "R"]),
                ("parity-qwen3-random", 1, 900, ["parity", "--backends", every, "--model", "qwen3-0.6b", "--random-weights",
                                                 "--result-dir", "R"]),
                ("parity-smollm2-text", 1, 900, ["parity", "--backends", every, "--model", smol, "--prompts", "text",
                                                 "--hf-reference", "off", "--result-dir", "R"])]
    if name == "h200-frontend":  # steps against its [servers]; the placeholders stay until the run
        warm = ["--model", "qwen3-0.6b", "--input", "1000", "--output", "1000", "--num-prompts", "256",
                "--warmup", "256", "--max-warmup-passes", "1", "--repeats", "1", "--result-dir", "R"]

        def peers(label, clients):
            return ["python3", "benchmarks/peer_clients.py", "--endpoint", f"{{endpoint:{label}}}", "--model",
                    "qwen3-0.6b", "--tokenizer", "{model_path}", "--input", "1000", "--output", "1000",
                    "--num-prompts", "256", "--concurrency", "256", "--rounds", "3", "--clients", clients,
                    "--reference", "vllm", "--out", "R"]
        return [("warm-fa3-api4", 0, 300, ["serve-bench", "--endpoint", "{endpoint:fa3-api4}", *warm]),
                ("fa3-api4", 0, 600, peers("fa3-api4", "vllm,attnbench,attnbench-text")),
                ("warm-fa3-api1", 0, 300, ["serve-bench", "--endpoint", "{endpoint:fa3-api1}", *warm]),
                ("fa3-api1", 0, 600, peers("fa3-api1", "vllm,attnbench"))]
    raise AssertionError(f"scenarios/{name}.toml is not pinned here: add its expected command lines")


BUDGETS = {"h200-frontend": 900}  # the study's own wall-clock budget, where it sets one


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_each_committed_scenario_expands_to_its_pinned_command_lines(path):
    study = spec.load(path)
    assert study.repeats == 1 and study.budget_s == BUDGETS.get(path.stem)
    got = [(r.id, r.gpus, r.timeout_s, r.argv("R")) for r in study.expand()]
    assert got == expected(path.stem)


def flags(args) -> tuple[str, dict[str, list[str]]]:
    """The subcommand and, order aside, each flag's values in the order given ("" for an on/off
    flag); a value starting with '--' comes as --flag=value."""
    out: dict[str, list[str]] = {}
    words = list(args[1:])
    while words:
        flag, eq, value = words.pop(0).partition("=")
        if not eq and words and not words[0].startswith("--"):
            value = words.pop(0)
        out.setdefault(flag, []).append(value)
    return args[0], out


def test_every_gpqa_key_a_scenario_could_set_keeps_its_flag(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('backends = ["fa3"]\n[gpqa]\neffort = "high"\nmodel = "m"\ndataset = "mini"\nrepeats = 2\n'
                    'concurrency = 3\napi = "chat"\nmax_tokens = 100\ntemperature = 0.5\nlimit = 4\nseed = 5\n'
                    'serve_args = ["--max-model-len", "8192"]\nargs = ["--grader", "lenient"]\n')
    [run] = spec.load(path).runs
    assert run.id == "gpqa-fa3-high" and run.gpus == 1
    assert flags(run.args) == ("gpqa", {
        "--backends": ["fa3"], "--effort": ["high"], "--model": ["m"], "--dataset": ["mini"], "--repeats": ["2"],
        "--concurrency": ["3"], "--api": ["chat"], "--max-tokens": ["100"], "--temperature": ["0.5"], "--limit": ["4"],
        "--seed": ["5"], "--serve-arg": ["--max-model-len", "8192"], "--grader": ["lenient"]})
    assert run.args[-2:] == ("--grader", "lenient")  # `args` stay last, verbatim


def test_every_parity_key_a_scenario_could_set_keeps_its_flag(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('backends = ["fa4", "fa3"]\n[parity]\nreference = "fa3"\nmodel = "m"\nnum_prompts = 2\ntop_k = 3\n'
                    'max_tokens = 4\nseed = 5\nhf_reference = "off"\nserve_args = ["--max-logprobs", "20"]\ngpus = 2\n'
                    'args = ["--no-null-pass"]\n')
    [run] = spec.load(path).runs
    assert run.id == "parity" and run.gpus == 2
    assert run.args[:5] == ("parity", "--backends", "fa3,fa4", "--reference", "fa3")
    assert flags(run.args) == ("parity", {
        "--backends": ["fa3,fa4"], "--reference": ["fa3"], "--model": ["m"], "--num-prompts": ["2"], "--top-k": ["3"],
        "--max-tokens": ["4"], "--seed": ["5"], "--hf-reference": ["off"], "--serve-arg": ["--max-logprobs", "20"],
        "--no-null-pass": [""]})
    assert run.args[-1] == "--no-null-pass"


# scripts/device/serve-study.sh's command before the job ran scenarios/seed-serve.toml (commit 61ec77e)
SERVE_STUDY = ("python3 -m attnbench serve-bench --input 1000,8000 --output 1000,1 --num-prompts 256 --repeats 3 "
               "--target-ci 0.03 --max-repeats 5 --backends fa3,flashinfer,fa4,attnbench-fa4 --result-dir /tmp/res/serve")
SERVE_EXPLAIN = "python3 -m attnbench explain /tmp/res/serve --shape 1000x1000 --result-dir /tmp/res/explain"


def test_the_seed_study_runs_the_commands_the_device_job_ran():
    """The same flags and values, order aside; the result folders are now the runner's, serve/rep0
    and explain/rep0 under the job's --result-dir /tmp/res."""
    serve, explain = spec.load(SCENARIOS / "seed-serve.toml").expand()
    in_tree = {"/tmp/res/serve": "/tmp/res/serve/rep0", "/tmp/res/explain": "/tmp/res/explain/rep0"}
    old_serve, old_explain = ([in_tree.get(w, w) for w in line.split()[3:]] for line in (SERVE_STUDY, SERVE_EXPLAIN))
    assert flags(serve.argv("/tmp/res/serve/rep0")) == flags(old_serve)
    assert explain.argv("/tmp/res/explain/rep0") == old_explain

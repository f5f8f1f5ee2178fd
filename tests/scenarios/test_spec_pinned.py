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
        return [("serve", 1, 1440, ["serve-bench", "--backends", "fa3,attnbench-fa4,flashinfer,fa4", "--input", "1000,8000",
                                    "--output", "1000,1", "--num-prompts", "256", "--repeats", "3", "--target-ci", "0.03",
                                    "--max-repeats", "10", "--result-dir", "R"]),
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
    if name == "h200-agreement":  # the clients on fa3, then on a scripted server (1 and 4 processes)
        load = ["--model", "qwen3-0.6b", "--tokenizer", "{model_path}", "--input", "1000", "--output", "1000",
                "--num-prompts", "256", "--concurrency", "256", "--rounds", "3"]

        def scripted(workers):
            return ["python3", "benchmarks/peer_clients.py", "--scripted", "50,16", "--server-workers", workers, *load,
                    "--clients", "vllm,attnbench", "--out", "R"]
        return [("warm-fa3-api1", 0, 300, ["serve-bench", "--endpoint", "{endpoint:fa3-api1}", "--model", "qwen3-0.6b",
                                           "--input", "1000", "--output", "1000", "--num-prompts", "256", "--warmup",
                                           "256", "--max-warmup-passes", "1", "--repeats", "1", "--result-dir", "R"]),
                ("fa3-api1", 0, 600, ["python3", "benchmarks/peer_clients.py", "--endpoint", "{endpoint:fa3-api1}",
                                      *load, "--clients", "vllm,attnbench,attnbench-text", "--reference", "vllm",
                                      "--out", "R"]),
                ("scripted-1", 0, 300, scripted("1")), ("scripted-4", 0, 300, scripted("4"))]
    if name == "h200-gc":  # the seed study's first pair on decode, then a profiled pass each
        return [("serve", 1, 720, ["serve-bench", "--backends", "fa3,attnbench-fa4", "--input", "1000", "--output", "1000",
                                   "--num-prompts", "256", "--repeats", "8", "--profile-steps", "20", "--result-dir", "R"])]
    if name == "h200-flashinfer-pair":  # ours beside flashinfer on both seed shapes, profiled, then explain
        return [("serve", 1, 1080, ["serve-bench", "--backends", "attnbench-fa4,flashinfer", "--input", "1000,8000",
                                    "--output", "1000,1", "--num-prompts", "256", "--repeats", "3", "--target-ci", "0.03",
                                    "--max-repeats", "8", "--profile-steps", "20", "--result-dir", "R"]),
                ("explain", 1, 240, ["explain", "serve/rep0", "--shape", "1000x1000", "--result-dir", "R"])]
    if name == "h200-noise":  # against its one fa3 server: the spread as placed, pinned, as placed again
        def serve(i, o, n):
            return ["serve-bench", "--endpoint", "{endpoint:fa3}", "--model", "qwen3-0.6b", "--input", i,
                    "--output", o, "--num-prompts", "256", "--repeats", n, "--result-dir", "R"]
        pin = ["python3", "scripts/device/pin_engine.py"]
        return [("prefill-as-placed", 0, 300, serve("8000", "1", "10")),
                ("decode-as-placed", 0, 300, serve("1000", "1000", "6")),
                ("pin", 1, 30, [*pin, "pin", "--cores", "11", "--save", "R/affinity.json"]),
                ("prefill-pinned", 0, 300, serve("8000", "1", "10")),
                ("decode-pinned", 0, 300, serve("1000", "1000", "6")),
                ("unpin", 1, 30, [*pin, "restore", "--save", "pin/rep0/affinity.json"]),
                ("prefill-as-placed-again", 0, 300, serve("8000", "1", "10"))]
    if name.startswith("h200-kernels-") or name == "h200-microbench":
        return device_steps(name)
    raise AssertionError(f"scenarios/{name}.toml is not pinned here: add its expected command lines")


def device_steps(name: str) -> list[tuple[str, int, float | None, list[str]]]:
    """scripts/device/kernels.sh's parts and microbench.sh's steps, written as the bash scripts
    wrote them before they ran these scenarios (commit c3b3372), limits included. What moved: each
    step's log is its run.log; the folders steps shared (microbench's decode/, the sweep's reports)
    are {shared:NAME}, here NAME/rep0; acceptance.xml is in its step's directory (R)."""
    mb, pytest_ = ["microbench"], ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if name == "h200-kernels-sanitize":
        pt = [*pytest_, "tests/kernels/test_fa4_acceptance.py"]
        return [("acceptance", 1, 300, [*pt, "--junitxml", "R/acceptance.xml"]),
                ("launcher-plugin", 1, 180, [*pytest_, "tests/kernels/test_launcher.py", "tests/kernels/test_vllm_plugin.py"]),
                *[(tool, 1, 240, ["compute-sanitizer", "--tool", tool, "--report-api-errors", "no", "--error-exitcode", "9",
                                  *pt, "-k", "sanitizer"]) for tool in ("memcheck", "racecheck", "synccheck")]]
    if name == "h200-kernels-sweep":
        s = ["python3", "-m", "attnbench.microbench.fa4_sweep", "--grid", "scenarios/decode-grid.toml",
             "--table", "attnbench/kernels/fa4_decode/tuning.json", "--skip-measured"]
        order = [("16/8/128", 16, 420), ("16/8/128", 128, 420), ("32/8/128", 16, 420), ("64/8/64", 16, 420),
                 ("32/8/128", 128, 300), ("64/8/64", 128, 300)]
        return [(f"sweep-{h.replace('/', '-')}-p{p}", 1, t, [*s, "--heads", h, "--page-size", str(p), "--out",
                                                            f"sweep/rep0/{h.replace('/', '-')}-p{p}.json"])
                for h, p, t in order]
    if name == "h200-kernels-grid":
        d = [*mb, "decode", "--result-dir", "decode/rep0", "--repeats", "20"]
        g = ["--grid", "scenarios/decode-grid.toml", "--heads", "16/8/128", "--skip-measured"]
        four = ("fa3", "flashinfer", "attnbench-fa4", "fa4")
        return [("warmup-flashinfer", 1, 200, [*d, "--backends", "flashinfer", *g, "--compile-only"]),
                *[(f"grid-{b}", 1, 150, [*d, "--backends", b, *g, "--precompile"]) for b in four],
                *[(f"corners-{b}", 1, 90, [*d, "--backends", b, "--grid", "scenarios/decode-grid.toml", "--heads",
                                          "32/8/128,64/8/64", "--batch", "1,32,256", "--context", "2048,32768",
                                          "--skip-measured"]) for b in four],
                ("summarize", 1, 30, ["python3", "-m", "attnbench", "microbench", "summarize", "decode/rep0"])]
    assert name == "h200-microbench", name
    d = [*mb, "decode", "--result-dir", "decode/rep0", "--repeats", "20"]
    p = [*mb, "prefill", "--result-dir", "prefill/rep0", "--repeats", "10"]
    q = ["--heads", "16/8/128"]
    kd = ["--shapes", "256x2048,1x32768", *q, "--precompile"]
    kp = ["--shapes", "8x8192", "--context", "0", *q, "--precompile"]
    gd = ["--grid", "scenarios/decode-grid.toml", *q, "--skip-measured"]
    gp = ["--grid", "scenarios/prefill-grid.toml", *q, "--skip-measured"]
    smoke = [*mb, "decode", "--result-dir", "smoke/rep0", "--repeats", "20"]  # bash: decode's --result-dir, then smoke's
    steps = [("ref-decode-fa3", 45, [*d, "--backends", "fa3", *kd]), ("ref-decode-fa4", 75, [*d, "--backends", "fa4", *kd]),
             ("ref-decode-attnbench-fa4", 75, [*d, "--backends", "attnbench-fa4", *kd]),
             ("ref-decode-fa2", 45, [*d, "--backends", "fa2", *kd]),
             ("ref-decode-fa4-splits1", 60, [*d, "--backends", "fa4", "--fa4-splits", "1", *kd]),
             ("ref-prefill-fa3", 40, [*p, "--backends", "fa3", *kp]), ("ref-prefill-fa4", 60, [*p, "--backends", "fa4", *kp]),
             ("ref-prefill-fa2", 40, [*p, "--backends", "fa2", *kp]),
             ("warmup-decode-flashinfer", 200, [*d, "--backends", "flashinfer", *kd, "--compile-only"]),
             ("ref-decode-flashinfer", 45, [*d, "--backends", "flashinfer", *kd]),
             ("warmup-prefill-flashinfer", 150, [*p, "--backends", "flashinfer", *kp, "--compile-only"]),
             ("ref-prefill-flashinfer", 45, [*p, "--backends", "flashinfer", *kp])]
    steps += [(f"grid-decode-{b}", 60, [*d, "--backends", b, *gd]) for b in ("fa3", "fa4", "attnbench-fa4", "flashinfer", "fa2")]
    steps += [("grid-decode-fa4-splits1", 45, [*d, "--backends", "fa4", "--fa4-splits", "1", *gd])]
    steps += [(f"grid-prefill-{b}", 45, [*p, "--backends", b, *gp]) for b in ("fa3", "fa4", "flashinfer", "fa2")]
    steps += [(f"corners-decode-{b}", 30, [*d, "--backends", b, "--grid", "scenarios/decode-grid.toml", "--heads",
                                           "32/8/128,64/8/64", "--batch", "1,32,256", "--context", "2048,32768",
                                           "--skip-measured"]) for b in ("fa3", "fa4", "attnbench-fa4", "flashinfer", "fa2")]
    steps += [(f"corners-prefill-{b}", 25, [*p, "--backends", b, "--grid", "scenarios/prefill-grid.toml", "--heads",
                                            "32/8/128,64/8/64", "--batch", "8", "--seqlen", "2048,8192", "--context", "0",
                                            "--skip-measured"]) for b in ("fa3", "fa4", "flashinfer", "fa2")]
    steps += [(f"smoke-{b}", 25, [*smoke, "--backends", b, "--batch", "3", "--ragged", "uniform:17:300"])
              for b in ("fa3", "fa4", "attnbench-fa4", "flashinfer", "fa2")]
    steps += [(f"smoke-qlen3-{b}", 25, [*smoke, "--backends", b, "--batch", "2", "--ragged", "uniform:17:300", "--q-len", "3"])
              for b in ("fa3", "flashinfer", "fa4", "fa2")]
    steps += [("summarize", 16, ["python3", "-m", "attnbench", "microbench", "summarize", "decode/rep0", "prefill/rep0",
                                 "smoke/rep0"])]
    return [(i, 1, t, w) for i, t, w in steps]


BUDGETS = {"h200-agreement": 1200, "h200-frontend": 900, "h200-microbench": 530, "h200-noise": 1200}  # the study's own wall-clock budget, where it sets one
FINAL = {"h200-microbench": ["summarize"]}  # the steps that run even once the budget is spent


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_each_committed_scenario_expands_to_its_pinned_command_lines(path):
    study = spec.load(path)
    assert study.repeats == 1 and study.budget_s == BUDGETS.get(path.stem)
    got = [(r.id, r.gpus, r.timeout_s, r.argv("R")) for r in study.expand()]
    assert got == expected(path.stem)
    assert [r.id for r in study.runs if r.final] == FINAL.get(path.stem, [])


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
    # two changes since: up to 10 passes, not 5 (8000:1's spread, docs/serving-noise.md), and
    # attnbench-fa4 second, so that it shares the first pair of servers with fa3
    command, old = flags(old_serve)
    assert flags(serve.argv("/tmp/res/serve/rep0")) == (
        command, {**old, "--max-repeats": ["10"], "--backends": ["fa3,attnbench-fa4,flashinfer,fa4"]})
    assert explain.argv("/tmp/res/explain/rep0") == old_explain

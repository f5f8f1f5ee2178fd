"""Scenario files: validation with one-line errors, and expansion into runs x repeats."""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from attnbench.errors import UserError
from attnbench.scenarios import spec
from attnbench.serving import run as serve_bench

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_serve_runs_one_per_backend_or_together(tmp_path):
    study = spec.load(write(tmp_path, 'backends = ["fa2", "fa3"]\n[serve]\ninput = [1000, 8000]\noutput = [1000, 1]\n'
                                      'num_prompts = 256\nrepeats = 2\n'))
    assert [r.id for r in study.runs] == ["serve-fa2", "serve-fa3"]
    assert study.runs[1].argv("/r") == ["serve-bench", "--backends", "fa3", "--input", "1000,8000", "--output", "1000,1",
                                        "--num-prompts", "256", "--repeats", "2", "--result-dir", "/r"]
    assert study.runs[1].gpus == 1 and study.repeats == 1  # [serve] repeats are serve-bench's passes
    together = spec.load(write(tmp_path, 'backends = ["fa2", "fa3"]\n[serve]\ntogether = true\n', "t.toml"))
    assert [(r.id, r.args[:3], r.gpus) for r in together.runs] == [("serve", ("serve-bench", "--backends", "fa2,fa3"), 1)]


def test_seed_serve_is_the_device_serving_study():
    """scripts/device/serve-study.sh runs scenarios/seed-serve.toml, and its limits' defaults are the
    scenario's (test_spec_pinned holds the command the job ran before it ran the scenario)."""
    script = (SCENARIOS.parent / "scripts/device/serve-study.sh").read_text()
    assert re.search(r"python3 -m attnbench run scenarios/seed-serve.toml --result-dir /tmp/res ", script)
    run, explain = spec.load(SCENARIOS / "seed-serve.toml").expand()
    assert (run.id, run.gpus, explain.id) == ("serve", 1, "explain")
    assert run.timeout_s == float(re.search(r"STUDY_LIMIT_S:-(\d+)", script).group(1))
    assert explain.timeout_s == float(re.search(r"EXPLAIN_S:-(\d+)", script).group(1))


def test_shipped_scenarios_load():
    gpqa = spec.load(SCENARIOS / "gpqa-gpt-oss-20b.toml")
    assert [r.id for r in gpqa.runs] == [f"gpqa-{b}-{e}" for b in ("fa3", "fa4", "flashinfer") for e in ("low", "medium")]
    assert "--model" in gpqa.runs[0].args and "openai/gpt-oss-20b" in gpqa.runs[0].args
    parity = spec.load(SCENARIOS / "parity.toml")
    assert len(parity.runs) == 1 and parity.runs[0].args[:3] == ("parity", "--backends", "fa3,fa2,fa4,flashinfer,attnbench-fa4")


def test_repeats_multiply_runs_repeat_major(tmp_path):
    study = spec.load(write(tmp_path, 'name = "x"\nbackends = ["fa3", "fa4"]\nrepeats = 2\n[serve]\ninput = 10\noutput = 5\n'))
    runs = study.expand()
    assert [(r.id, r.repeat, r.result_subdir) for r in runs] == [
        ("serve-fa3", 0, "serve-fa3/rep0"), ("serve-fa4", 0, "serve-fa4/rep0"),
        ("serve-fa3", 1, "serve-fa3/rep1"), ("serve-fa4", 1, "serve-fa4/rep1")]
    assert len(study.expand(3)) == 6
    with pytest.raises(UserError, match="--repeats must be >= 1"):
        study.expand(0)


def test_backends_override_replaces_every_list_but_keeps_the_parity_reference(tmp_path):
    path = write(tmp_path, 'backends = ["fa2"]\n[serve]\n[parity]\nreference = "fa3"\nbackends = ["fa4"]\n')
    study = spec.load(path, ["flashinfer"])
    assert [r.id for r in study.runs] == ["serve-flashinfer", "parity"]
    assert study.runs[1].args[:3] == ("parity", "--backends", "fa3,flashinfer")


def test_serve_options_become_flags(tmp_path):
    path = write(tmp_path, '[serve]\nbackends = ["fa3"]\ninput = [100]\noutput = [10]\nrequest_rate = 4\n'
                           'serve_args = ["--tensor-parallel-size", "2"]\ngoodput = ["ttft:500"]\nargs = ["--warmup", "3"]\n')
    run = spec.load(path).runs[0]
    assert run.args == ("serve-bench", "--backends", "fa3", "--input", "100", "--output", "10", "--request-rate", "4",
                        "--goodput=ttft:500", "--serve-arg=--tensor-parallel-size", "--serve-arg=2", "--warmup", "3")
    assert run.gpus == 2  # tensor parallel: the run asks for two GPUs


def test_microbench_references_a_grid_beside_the_scenario(tmp_path):
    write(tmp_path, 'name = "decode-grid"\n[microbench]\nop = "decode"\nbackends = ["fa3", "flashinfer"]\n'
                    'heads = ["16/8/128"]\nbatch = [1, 4]\ncontext = [1024]\nmax_kv_gib = 40\n', "decode-grid.toml")
    study = spec.load(write(tmp_path, '[microbench]\ngrid = "decode-grid.toml"\n'))
    assert [r.id for r in study.runs] == ["microbench-decode-grid-fa3", "microbench-decode-grid-flashinfer"]
    assert study.runs[0].args == ("microbench", "decode", "--grid", str(tmp_path / "decode-grid.toml"), "--backends", "fa3")
    # a grid file is itself a scenario
    grid = spec.load(tmp_path / "decode-grid.toml")
    assert grid.runs[1].args == ("microbench", "decode", "--grid", str(tmp_path / "decode-grid.toml"), "--backends", "flashinfer")


@pytest.mark.parametrize("text, message", [
    ('[serve]\nbackends = ["fa3"]\nnum_promts = 3\n', "unknown key 'num_promts' in [serve]; allowed: args, backends, burstiness"),
    ('nmae = "x"\n[serve]\n', "unknown key 'nmae'; allowed: backends, budget_s, description, gpqa, microbench, name, parity, repeats, serve, servers, step, timeout_s"),
    ('backends = ["fa9"]\n[serve]\n', "backends: unknown backend 'fa9'; known backends: fa2"),
    ('[serve]\nbackends = "fa3"\n', "[serve].backends must be a list of strings (got 'fa3')"),
    ('[serve]\nbackends = ["fa3"]\nnum_prompts = "many"\n', "[serve].num_prompts must be an integer (got 'many')"),
    ('[serve]\nbackends = ["fa3"]\ninput = [1, 2]\noutput = [1]\n', "input and output must have the same length"),
    ('repeats = 0\n[serve]\nbackends = ["fa3"]\n', "repeats must be >= 1"),
    ('name = "x"\n', "needs at least one of [serve], [microbench], [gpqa], [parity]"),
    ('[serve]\n', "no backends for [serve]"),
    ('serve = 3\n', "serve must be a table"),
    ('[serve\n', "not valid TOML"),
    ('[microbench]\ngrid = "nope.toml"\n', "grid 'nope.toml' not found"),
    ('[microbench]\nop = "train"\nbackends = ["fa3"]\n', 'op must be "decode" or "prefill"'),
    ('[microbench]\nop = "decode"\nbackends = ["fa3"]\ngpus = 2\n', "[microbench] gpus need the grid in its own file"),
    ('[microbench]\ngrid = "decode-grid.toml"\nbatch = [1]\n', "and also batch; set those in the grid file"),
    ('[serve]\nendpoints = { "a/b" = "http://x" }\n', "endpoints name 'a/b' must be letters"),
    ('[serve]\nendpoints = { a = "ftp://x" }\n', "endpoints.a must be an http(s) URL"),
    ('[serve]\nendpoints = { a = "http://x" }\nserve_args = ["--x"]\n', "serve_args applies to servers attnbench starts; drop it"),
    ('[serve]\nendpoints = { a = "http://x" }\ntogether = true\n', "together applies to servers attnbench starts; drop it"),
    ('[serve]\nbackends = ["fa3"]\nrepeats = 0\n', "[serve].repeats must be >= 1 (got 0)"),
    ('[serve]\nbackends = ["fa3"]\ntogether = 1\n', "[serve].together must be true/false (got 1)"),
    ('[parity]\nreference = "fa9"\nbackends = ["fa3"]\n', "[parity].reference: unknown backend 'fa9'"),
    ('backends = ["fa3", "fa3"]\n[serve]\n', "two runs share an id (serve-fa3)"),
    ('[serve]\nbackends = ["fa3"]\nnum_prompts = 0\n', "[serve].num_prompts must be >= 1 (got 0)"),
    ('[serve]\nbackends = ["fa3"]\ninput = [-5]\noutput = [10]\n', "[serve].input must be >= 1 (got [-5])"),
    ('[serve]\nbackends = ["fa3"]\nrequest_rate = 0\n', "[serve].request_rate must be > 0 (got 0)"),
    ('[gpqa]\nbackends = ["fa3"]\nconcurrency = 0\n', "[gpqa].concurrency must be >= 1 (got 0)"),
    ('[parity]\nbackends = ["fa3"]\ntop_k = -1\n', "[parity].top_k must be >= 1 (got -1)"),
    ('[serve]\nbackends = ["fa3"]\ngpus = 0\n', "[serve].gpus must be >= 1 (got 0)"),
    ('[serve]\nbackends = ["fa3"]\ntimeout_s = 0\n', "[serve].timeout_s must be > 0 (got 0)"),
    ('[gpqa]\nbackends = ["fa3"]\ntimeout_s = "1h"\n', "[gpqa].timeout_s must be a number (got '1h')"),
    ('[serve]\nbackends = ["fa3"]\ntimeout_s = true\n', "[serve].timeout_s must be a number (got True)"),
    ('budget_s = -5\n[serve]\nbackends = ["fa3"]\n', "budget_s must be > 0 seconds (got -5)"),
    ('budget_s = "2h"\n[serve]\nbackends = ["fa3"]\n', ": budget_s must be a number (got '2h')"),
    ('timeout_s = 0.0\n[serve]\nbackends = ["fa3"]\n', "timeout_s must be > 0 seconds (got 0.0)"),
    ('[microbench]\nop = "decode"\nbackends = ["fa3"]\ntimeout_s = 60\n', "timeout_s may also go at the top level"),
])
def test_bad_scenarios_give_one_line_errors(tmp_path, text, message):
    with pytest.raises(UserError) as e:
        spec.load(write(tmp_path, text))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_override_backend_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="--backends: unknown backend 'fa9'"):
        spec.load(SCENARIOS / "seed-serve.toml", ["fa9"])
    with pytest.raises(UserError, match="no such scenario file"):
        spec.load(tmp_path / "missing.toml")


def test_the_shipped_grids_are_scenarios_too():
    decode = spec.load(SCENARIOS / "decode-grid.toml")
    assert [r.id for r in decode.runs] == [f"microbench-decode-{b}" for b in ("fa2", "fa3", "fa4", "flashinfer", "attnbench-fa4")]
    prefill = spec.load(SCENARIOS / "prefill-grid.toml", ["fa4"])
    assert prefill.runs[0].args == ("microbench", "prefill", "--grid", str(SCENARIOS / "prefill-grid.toml"), "--backends", "fa4")


def test_a_scenario_referencing_a_grid_runs_the_microbench_grid_loader(tmp_path):
    """What a run hands to `microbench --grid` is a file the microbench grid loader accepts."""
    grid = pytest.importorskip("attnbench.microbench.grid")
    (tmp_path / "g.toml").write_text((SCENARIOS / "decode-grid.toml").read_text())
    study = spec.load(write(tmp_path, '[microbench]\ngrid = "g.toml"\nbackends = ["fa3"]\ngpus = 1\n'))
    [run] = study.runs
    loaded = grid.load(run.args[run.args.index("--grid") + 1])
    assert loaded.op == "decode" and (16, 8, 128) in loaded.heads


def test_microbench_accepts_its_reference_backend(tmp_path):
    study = spec.load(write(tmp_path, '[microbench]\nop = "decode"\nbackends = ["reference"]\nheads = ["4/2/16"]\n'
                                      'batch = [1]\ncontext = [64]\n'))
    assert [r.id for r in study.runs] == ["microbench-decode-reference"]
    with pytest.raises(UserError, match="unknown backend 'reference'"):
        spec.load(write(tmp_path, '[serve]\nbackends = ["reference"]\n', "serve.toml"))


def test_time_limits_a_section_sets_or_takes_from_the_top_level(tmp_path):
    path = write(tmp_path, 'backends = ["fa3"]\nbudget_s = 7200\ntimeout_s = 600\nrepeats = 2\n'
                           '[serve]\ntimeout_s = 1440.5\n[parity]\n')
    study = spec.load(path)
    assert study.budget_s == 7200
    assert [(r.id, r.repeat, r.timeout_s) for r in study.expand()] == [
        ("serve-fa3", 0, 1440.5), ("parity", 0, 600), ("serve-fa3", 1, 1440.5), ("parity", 1, 600)]
    assert "--timeout-s" not in " ".join(study.runs[0].args)  # a limit, not part of what is measured
    plain = spec.load(write(tmp_path, 'backends = ["fa3"]\n[serve]\n', "plain.toml"))
    assert plain.budget_s is None and plain.runs[0].timeout_s is None
    # an inline grid takes its limit from the top level (microbench --grid reads only grid keys)
    grid = spec.load(write(tmp_path, 'timeout_s = 60\n[microbench]\nop = "decode"\nbackends = ["fa3"]\n'
                                     'heads = ["4/2/16"]\nbatch = [1]\ncontext = [64]\n', "grid.toml"))
    assert grid.runs[0].timeout_s == 60


# ---- [serve] keys are serve-bench's flags, declared once on its config -------------------------

def sample(t, i: int):
    """The i-th key's value of a scenario type, within every declared bound and unlike the other
    keys' values: int -> 7 + i, [str] -> ["ai", "--b"]."""
    if isinstance(t, tuple):
        return sample(next(x for x in t if isinstance(x, list)), i)
    if isinstance(t, list):
        return [sample(t[0], i), {int: 1, float: 0.5, str: "--b"}[t[0]]]
    return {int: 7 + i, float: 2.5 + i, str: f"a{i}"}[t]


def serve_bench_parse(config, tmp_path, monkeypatch):
    """Load a scenario that sets every flag key `config` declares ([serve] read from `config`), and
    parse its one run's command line with serve-bench's own CLI parser (nothing runs):
    [(option, value parsed, value expected)]."""
    import typer

    from attnbench.cli import app

    monkeypatch.setitem(spec.SECTIONS, "serve", spec.serve_section(config))
    command = typer.main.get_command(app).commands["serve-bench"]
    opts = spec.options(config)
    values = {o.key: sample(o.type, i) for i, o in enumerate(opts)}
    text = "backends = [\"fa3\"]\n[serve]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
    [run] = spec.load(write(tmp_path, text, "every-key.toml")).runs
    subcommand, *args = run.argv(tmp_path / "res")
    assert subcommand == "serve-bench"
    parsed = command.make_context(subcommand, args).params
    by_flag = {flag: p.name for p in command.params for flag in p.opts}
    out = []
    for o in opts:
        v = values[o.key]
        expected = [str(x) for x in v] if o.each else ",".join(map(str, v)) if isinstance(v, list) else v
        out.append((o, parsed[by_flag[o.flag]], expected))
    return out


def test_every_serve_key_is_a_flag_serve_bench_parses(tmp_path, monkeypatch):
    """Each [serve] key the config declares turns into a flag serve-bench accepts, with the value
    the scenario gave; and the keys a scenario alone has are no flags of serve-bench's."""
    checked = serve_bench_parse(serve_bench.ServeBench, tmp_path, monkeypatch)
    assert {o.key for o, _, _ in checked} >= {"input", "output", "num_prompts", "repeats", "goodput", "serve_args"}
    for o, got, expected in checked:
        assert got == expected, o
    assert len({o.flag for o, _, _ in checked}) == len(checked)  # no two keys share a flag
    assert set(spec.SERVE.keys) == {o.key for o, _, _ in checked} | set(spec.COMMON) | set(spec.SERVE_ONLY)


@dataclass
class WiderServeBench(serve_bench.ServeBench):
    workers: int = field(default=0, metadata={"flag": "--client-workers", "bound": (">=", 0)})


def test_a_flag_declared_on_the_config_becomes_a_serve_key(tmp_path, monkeypatch):
    text = 'backends = ["fa3"]\n[serve]\nworkers = {}\n'
    with pytest.raises(UserError, match="unknown key 'workers' in \\[serve\\]"):
        spec.load(write(tmp_path, text.format(2)))
    monkeypatch.setitem(spec.SECTIONS, "serve", spec.serve_section(WiderServeBench))
    assert spec.load(write(tmp_path, text.format(2))).runs[0].args[-2:] == ("--client-workers", "2")
    with pytest.raises(UserError, match=r"\[serve\].workers must be an integer \(got '3%'\)"):
        spec.load(write(tmp_path, text.format('"3%"')))
    with pytest.raises(UserError, match=r"\[serve\].workers must be >= 0 \(got -1\)"):
        spec.load(write(tmp_path, text.format(-1)))
    assert all(got == expected for _, got, expected in serve_bench_parse(WiderServeBench, tmp_path, monkeypatch))


def test_a_declared_flag_serve_bench_lacks_or_misreads_is_caught(tmp_path, monkeypatch):
    @dataclass
    class Misspelt(serve_bench.ServeBench):
        warmup_tolerance: float = field(default=0.03, metadata={"flag": "--warmup-tol"})

    @dataclass
    class Mistyped(serve_bench.ServeBench):
        tokenizer: str | None = field(default=None, metadata={"flag": "--client-workers"})  # an int flag

    with pytest.raises(Exception, match="No such option: --warmup-tol"):
        serve_bench_parse(Misspelt, tmp_path, monkeypatch)
    with pytest.raises(Exception, match="valid integer"):
        serve_bench_parse(Mistyped, tmp_path, monkeypatch)

"""[gpqa], [parity] and [microbench] keys are their commands' flags, declared once on the
commands' config dataclasses: each becomes a flag the command's own CLI parser reads back with
the scenario's value, and a key or value the command would refuse is refused when the file loads."""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from attnbench.errors import UserError
from attnbench.evals.run import GPQARun
from attnbench.microbench.run import Options
from attnbench.parity.run import Parity
from attnbench.scenarios import spec

GRID = 'name = "g"\n[microbench]\nop = "decode"\nheads = ["4/2/16"]\nbatch = [1]\ncontext = [64]\n'
SECTIONS = {"gpqa": (GPQARun, spec.gpqa_section), "parity": (Parity, spec.parity_section),
            "microbench": (Options, spec.microbench_section)}


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def sample(o: spec.Option, i: int):
    """A value for the i-th key: one of its choices, else within its bound and unlike the others'."""
    if o.choices:
        return [o.choices[-1]] if isinstance(o.type, list) or isinstance(o.type, tuple) else o.choices[-1]
    t = next((x for x in o.type if isinstance(x, list)), o.type) if isinstance(o.type, tuple) else o.type
    if isinstance(t, list):
        return [sample(spec.Option(o.key, o.flag, t[0]), i), {int: 1, float: 0.5, str: "--b"}[t[0]]]
    return {int: 7 + i, float: 2.5 + i, str: f"a{i}"}[t]


def parse_every_key(section: str, tmp_path: Path):
    """Load a scenario whose [section] sets every key its command's config declares, and parse its
    first run's command line with the command's own CLI parser (nothing runs):
    [(option, value parsed, value expected)]."""
    import typer

    from attnbench.cli import app

    opts = spec.options(SECTIONS[section][0])
    values = {o.key: sample(o, i) for i, o in enumerate(opts)}
    values |= {"reference": "fa3"} if section == "parity" else {}
    values |= {"grid": "g.toml"} if section == "microbench" else {}
    write(tmp_path, GRID, "g.toml")
    text = f"backends = [\"fa3\"]\n[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
    run = spec.load(write(tmp_path, text, "every-key.toml")).runs[0]
    words = run.argv(tmp_path / "res")
    command = typer.main.get_command(app).commands[words.pop(0)]
    if section == "microbench":
        command = command.commands[words.pop(0)]
    parsed = command.make_context(command.name, words).params
    by_flag = {flag: p.name for p in command.params for flag in p.opts}
    out = []
    for o in opts:
        v = values[o.key]
        if o.each:
            expected = [str(x) for x in v]
        elif isinstance(v, list):  # gpqa's efforts: one run each, this the first
            expected = v[0] if o.key == "effort" else ",".join(map(str, v))
        else:
            expected = v
        out.append((o, parsed[by_flag[o.flag]], expected))
    return out


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_declared_key_is_a_flag_its_command_parses(section, tmp_path):
    checked = parse_every_key(section, tmp_path)
    for o, got, expected in checked:
        assert got == expected, o
    assert len({o.flag for o, _, _ in checked}) == len(checked)  # no two keys share a flag
    keys = {o.key for o, _, _ in checked}
    assert set(spec.SECTIONS[section].keys) == keys | set(spec.COMMON) | (
        {*spec.GRID_KEYS, "grid"} if section == "microbench" else set())


def test_the_keys_each_section_takes_from_its_command():
    assert set(spec.GPQA.keys) - set(spec.COMMON) == {
        "effort", "model", "dataset", "repeats", "concurrency", "api", "max_tokens", "temperature", "limit", "seed",
        "serve_args", "request_timeout_s", "retry_time_s", "empty_resamples", "grader", "ready_timeout_s"}
    assert set(spec.PARITY.keys) - set(spec.COMMON) == {
        "reference", "model", "num_prompts", "short_len", "long_len", "seed", "vocab_size", "prompts", "tokenizer",
        "top_k", "max_tokens", "request_timeout_s", "concurrency", "serve_args", "hf_reference", "ready_timeout_s",
        "max_dlogprob", "mean_dlogprob", "max_mean_kl", "min_top1", "min_greedy_prefix", "fp32_factor",
        "min_topk_overlap", "null_factor", "null_floor"}
    assert set(spec.MICROBENCH.keys) - set(spec.COMMON) - set(spec.GRID_KEYS) == {"grid", "device", "repeats", "fa4_splits"}


@pytest.mark.parametrize("text, message", [
    ('[gpqa]\nmax_model_len = 8192\n', "unknown key 'max_model_len' in [gpqa]; allowed: api, args, backends, "),
    ('[gpqa]\neffort = "hgih"\n', "[gpqa].effort must be one of low, medium, high, none (got 'hgih')"),
    ('[gpqa]\neffort = ["low", "max"]\n', "[gpqa].effort must be one of low, medium, high, none (got ['low', 'max'])"),
    ('[gpqa]\napi = "completions"\n', "[gpqa].api must be one of responses, chat (got 'completions')"),
    ('[gpqa]\ngrader = "strict"\n', "[gpqa].grader must be one of reference, lenient (got 'strict')"),
    ('[gpqa]\nretry_time_s = -1\n', "[gpqa].retry_time_s must be >= 0 (got -1)"),
    ('[gpqa]\nlimit = 0\n', "[gpqa].limit must be >= 1 (got 0)"),
    ('[gpqa]\nmax_tokens = "lots"\n', "[gpqa].max_tokens must be an integer (got 'lots')"),
    ('[parity]\nmax_model_len = 8192\n', "unknown key 'max_model_len' in [parity]"),
    ('[parity]\nprompts = "prose"\n', "[parity].prompts must be one of random, text (got 'prose')"),
    ('[parity]\nshort_len = 1\n', "[parity].short_len must be >= 2 (got 1)"),
    ('[parity]\nmax_mean_kl = "tight"\n', "[parity].max_mean_kl must be a number (got 'tight')"),
    ('[parity]\nready_timeout_s = 0\n', "[parity].ready_timeout_s must be > 0 (got 0)"),
    ('[microbench]\ngrid = "g.toml"\nrepeats = 0\n', "[microbench].repeats must be >= 1 (got 0)"),
    ('[microbench]\ngrid = "g.toml"\nfa4_splits = -1\n', "[microbench].fa4_splits must be >= 0 (got -1)"),
    ('[microbench]\ngrid = "g.toml"\nwarmup = 2\n', "unknown key 'warmup' in [microbench]"),  # no microbench flag
    ('[microbench]\nop = "decode"\nheads = ["4/2/16"]\nrepeats = 5\n', "[microbench] repeats need the grid in its own file"),
])
def test_a_key_or_value_the_command_refuses_is_refused_at_load(tmp_path, text, message):
    write(tmp_path, GRID, "g.toml")
    with pytest.raises(UserError) as e:
        spec.load(write(tmp_path, 'backends = ["fa3"]\n' + text))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_microbench_measurement_keys_go_beside_the_grid(tmp_path):
    write(tmp_path, GRID, "g.toml")
    study = spec.load(write(tmp_path, '[microbench]\ngrid = "g.toml"\nbackends = ["fa3"]\nrepeats = 5\nfa4_splits = 1\n'
                                      'args = ["--cold-l2"]\n'))
    assert study.runs[0].args == ("microbench", "decode", "--grid", str(tmp_path / "g.toml"), "--backends", "fa3",
                                  "--repeats", "5", "--fa4-splits", "1", "--cold-l2")


def test_gpqa_runs_one_per_effort_with_the_other_flags_shared(tmp_path):
    study = spec.load(write(tmp_path, 'backends = ["fa3", "fa4"]\n[gpqa]\neffort = ["none", "high"]\ngrader = "lenient"\n'
                                      'serve_args = ["--max-model-len", "8192"]\n'))
    assert [(r.id, r.args) for r in study.runs] == [
        (f"gpqa-{b}-{e}", ("gpqa", "--backends", b, "--effort", e, "--serve-arg=--max-model-len", "--serve-arg=8192",
                           "--grader", "lenient"))
        for b in ("fa3", "fa4") for e in ("none", "high")]


@dataclass
class WiderGPQARun(GPQARun):
    backoff_s: float = field(default=1.0, metadata={"flag": "--backoff", "bound": (">", 0)})


def test_a_flag_declared_on_the_config_becomes_a_key(tmp_path, monkeypatch):
    text = 'backends = ["fa3"]\n[gpqa]\nbackoff_s = {}\n'
    with pytest.raises(UserError, match=r"unknown key 'backoff_s' in \[gpqa\]"):
        spec.load(write(tmp_path, text.format(2)))
    monkeypatch.setitem(spec.SECTIONS, "gpqa", spec.gpqa_section(WiderGPQARun))
    assert spec.load(write(tmp_path, text.format(2))).runs[0].args[-2:] == ("--backoff", "2")
    with pytest.raises(UserError, match=r"\[gpqa\].backoff_s must be > 0 \(got 0\)"):
        spec.load(write(tmp_path, text.format(0)))


def test_a_key_declared_twice_or_taken_by_the_scenario_is_a_programming_error():
    @dataclass
    class TwoSeeds(GPQARun):
        backoff_s: float = field(default=1.0, metadata={"key": "seed", "flag": "--backoff"})

    @dataclass
    class OwnGpus(Parity):
        ready_timeout_s: float = field(default=1.0, metadata={"key": "gpus", "flag": "--ready-timeout"})

    with pytest.raises(TypeError, match=r"TwoSeeds declares seed, which \[gpqa\] already uses"):
        spec.gpqa_section(TwoSeeds)
    with pytest.raises(TypeError, match=r"OwnGpus declares gpus, which \[parity\] already uses"):
        spec.parity_section(OwnGpus)


def test_the_schema_lists_every_key_of_every_section():
    """docs/schema.md's bullet for each section names each key it accepts."""
    text = (Path(__file__).resolve().parents[2] / "docs/schema.md").read_text()
    for name, section in spec.SECTIONS.items():
        bullet = text.split(f"- `[{name}]`:", 1)[1].split("\n- ", 1)[0].split("\n\n", 1)[0]
        missing = [k for k in section.keys if k not in spec.COMMON and not re.search(f"`{k}[` ]", bullet)]
        assert not missing, f"docs/schema.md [{name}] lacks {missing}"

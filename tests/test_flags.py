"""Each option a scenario can set is declared once, on the command's config dataclass: the
command line's default, help, bounds and choices are the field's. A default or help re-declared
in a signature, or a bound the parser does not apply, fails here."""

import pytest
import typer

from attnbench.cli import app
from attnbench.errors import UserError
from attnbench.evals.run import GPQARun
from attnbench.flags import cli_default, typer_option
from attnbench.microbench.run import Options
from attnbench.parity.run import Parity
from attnbench.scenarios import spec
from attnbench.serving.run import ServeBench

# command -> (its config, the flags whose command-line default is None: the command decides)
COMMANDS = {
    ("serve-bench",): (ServeBench, {"--model", "--warmup", "--vocab-size", "--prompt-format"}),
    ("gpqa",): (GPQARun, set()),
    ("parity",): (Parity, {"--vocab-size"}),
    ("microbench", "decode"): (Options, set()),
    ("microbench", "prefill"): (Options, set()),
}


def command(path: tuple[str, ...]):
    c = typer.main.get_command(app)
    for name in path:
        c = c.commands[name]
    return c


def params(path):
    return {flag: p for p in command(path).params for flag in p.opts}


def parse(path, *args):
    c = command(path)
    return c.make_context(c.name, list(args)).params


CASES = [(path, o) for path, (config, _) in COMMANDS.items() for o in spec.options(config)]


def case_id(case):
    path, o = case
    return f"{' '.join(path)} {o.flag}"


@pytest.mark.parametrize("path, o", CASES, ids=map(case_id, CASES))
def test_the_command_line_default_and_help_are_the_fields(path, o):
    p = params(path)[o.flag]
    unset = COMMANDS[path][1]
    assert p.default == (None if o.flag in unset else cli_default(o))
    assert o.help and p.help == o.help


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_each_unset_flag_has_a_field_default_the_command_line_leaves_to_the_command(path):
    config, unset = COMMANDS[path]
    declared = {o.flag: o for o in spec.options(config)}
    assert unset <= set(declared)
    for flag, o in declared.items():
        if flag in unset:
            assert params(path)[flag].default is None and o.default is not None, flag


BOUNDED = [(path, o) for path, o in CASES if o.bound and o.type in (int, float)]


@pytest.mark.parametrize("path, o", BOUNDED, ids=map(case_id, BOUNDED))
def test_a_value_outside_the_fields_bound_is_refused_in_one_line(path, o):
    op, bound = o.bound
    edge = o.type(bound)
    if op == ">=":
        assert parse(path, o.flag, str(edge))[params(path)[o.flag].name] == edge
        edge -= 1
    with pytest.raises(UserError) as e:
        parse(path, o.flag, str(edge))
    assert str(e.value) == f"{o.flag} must be {op} {bound:g} (got {edge})"


CHOOSING = [(path, o) for path, o in CASES if o.choices]


@pytest.mark.parametrize("path, o", CHOOSING, ids=map(case_id, CHOOSING))
def test_a_value_outside_the_fields_choices_is_refused_in_one_line(path, o):
    name = params(path)[o.flag].name
    assert [parse(path, o.flag, c)[name] for c in o.choices] == list(o.choices)
    with pytest.raises(UserError) as e:
        parse(path, o.flag, "nope")
    assert str(e.value) == f"{o.flag} must be one of {', '.join(o.choices)} (got 'nope')"


def test_every_command_a_scenario_runs_is_covered():
    """A section's config the table above misses would escape these checks."""
    configs = {"serve": ServeBench, "gpqa": GPQARun, "parity": Parity, "microbench": Options}
    assert set(configs) == set(spec.SECTIONS)
    assert {config for config, _ in COMMANDS.values()} == set(configs.values())


def test_a_list_valued_flag_defaults_to_its_command_line_text():
    flags = params(("serve-bench",))
    assert (flags["--input"].default, flags["--percentiles"].default, flags["--goodput"].default) == ("1000", "50,90,99", [])


def test_a_key_the_config_does_not_declare_is_a_programming_error():
    with pytest.raises(TypeError, match="GPQARun declares no flag with key 'result_dir'"):
        typer_option(GPQARun, "result_dir")

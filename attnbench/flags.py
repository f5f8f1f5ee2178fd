"""A command's option declared once, on its config dataclass: the field's metadata (flag, help,
bound, choices; see serving.run.ServeBench) is the scenario key (scenarios.spec.options) and,
through `typer_option`, the typer option in the command's signature, where the parameter's name
and type stay. Options no scenario sets (--result-dir, --endpoint) are plain typer options.

Bounds and choices are checked as the flag is parsed, with the one-line error a scenario gets for
the same value. Not typer's min/max or a choice type: their errors are a multi-line usage box,
min cannot say "> 0", and both would change --help."""

from __future__ import annotations

import functools
from typing import Any

import typer

from attnbench.errors import UserError
from attnbench.scenarios.spec import Option, options


def typer_option(config: type, key: str, *, unset: bool = False) -> Any:
    """The typer option of the flag `config` declares for scenario key `key`. `unset`: the
    command line's default is None and the command decides (the help says what), as --warmup's
    is --num-prompts."""
    o = _declared(config).get(key)
    if o is None:
        raise TypeError(f"{config.__name__} declares no flag with key {key!r}")
    checks = o.bound is not None or o.choices is not None
    return typer.Option(None if unset else cli_default(o), o.flag, help=o.help,
                        callback=(lambda value: check(o, value)) if checks else None)


@functools.cache
def _declared(config: type) -> dict[str, Option]:
    return {o.key: o for o in options(config)}


def cli_default(o: Option) -> Any:
    """The field's default as the command line spells it: a list for a repeatable flag, the
    text Option.argv passes for a flag whose value may be a list (--percentiles 50,90,99)."""
    if o.each:
        return list(o.default or [])
    if isinstance(o.type, (list, tuple)) and o.default is not None:
        return o.argv(o.default)[1]
    return o.default


def check(o: Option, value: Any) -> Any:
    """Refuse a value outside the field's bound or choices. A bound applies to numbers: text
    such as --input 1000,8000 is parsed, and checked, by the command."""
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if o.choices is not None and isinstance(v, str) and v not in o.choices:
            raise UserError(f"{o.flag} must be one of {', '.join(o.choices)} (got {v!r})")
        if o.bound is not None and isinstance(v, (int, float)) and not isinstance(v, bool):
            op, bound = o.bound
            if not (v > bound if op == ">" else v >= bound):
                raise UserError(f"{o.flag} must be {op} {bound:g} (got {v})")
    return value

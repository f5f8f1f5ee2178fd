"""A command's option declared once, on its config dataclass field: the field's metadata (flag,
help, bound, choices; see serving.run.ServeBench) is both the scenario key (`options`, read by
scenarios.spec) and, through `typer_option`, the typer option in the command's signature, where
the parameter's name and type stay. Options no scenario sets (--result-dir, --endpoint) are plain
typer options. This module sits below the commands and the scenarios that read it.

Bounds and choices are checked as the flag is parsed, with the one-line error a scenario gets for
the same value. Not typer's min/max or a choice type: their errors are a multi-line usage box,
min cannot say "> 0", and both would change --help."""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass
from typing import Any

from attnbench.errors import UserError


def joined(values: list) -> str:
    """A list flag's value: 1000,8000."""
    return ",".join(str(v) for v in values)


def repeated(flag: str, values: list[str]) -> list[str]:
    return [f"{flag}={v}" for v in values]  # '=' so values starting with '--' stay values



@dataclass(frozen=True)
class Option:
    """A scenario key that is one flag of the command, declared on the command's config dataclass."""
    key: str
    flag: str
    type: Any  # the scenario notation: int, [str], (int, [int]) (int | list[int])
    bound: tuple[str, float] | None = None
    each: bool = False  # one `--flag=v` per list item, for a repeatable flag
    choices: tuple[str, ...] | None = None  # the values the command accepts
    default: Any = None  # the field's (metadata "default" where one field has several flags)
    help: str = ""  # the command's --help line (metadata "help")

    def argv(self, value: Any) -> list[str]:
        if self.each:
            return repeated(self.flag, value)
        return [self.flag, joined(value) if isinstance(value, list) else str(value)]


def options(config: type) -> list[Option]:
    """The flags a config dataclass declares in its fields' metadata (see serving.run.ServeBench), in field
    order; a field that is itself a config dataclass (ServeBench.load, Parity.settings) adds its own."""
    hints = typing.get_type_hints(config)
    out: list[Option] = []
    for f in fields(config):
        if is_dataclass(hints[f.name]):
            out += options(hints[f.name])
        for m in f.metadata.get("options", [f.metadata] if "flag" in f.metadata else []):
            out.append(Option(m.get("key", f.name), m["flag"], _scenario_type(m.get("type", hints[f.name])),
                              m.get("bound"), m.get("each", False), m.get("choices"),
                              m.get("default", _default(f)), m.get("help", "")))
    return out


def _default(f: Field) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None if f.default is MISSING else f.default



def _scenario_type(hint: Any) -> Any:
    """An annotation in the scenario notation: int | None -> int, list[str] -> [str]."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = tuple(_scenario_type(a) for a in typing.get_args(hint) if a is not type(None))
        return kinds[0] if len(kinds) == 1 else kinds
    if typing.get_origin(hint) is list:
        return [_scenario_type(typing.get_args(hint)[0])]
    if hint in (int, float, str):  # not bool: an on/off flag takes no value (pass it in `args`)
        return hint
    raise TypeError(f"{hint!r} is no scenario value type of a flag; give the field's metadata a \"type\"")


def typer_option(config: type, key: str, *, unset: bool = False) -> Any:
    """The typer option of the flag `config` declares for scenario key `key`. `unset`: the
    command line's default is None and the command decides (the help says what), as --warmup's
    is --num-prompts."""
    o = _declared(config).get(key)
    if o is None:
        raise TypeError(f"{config.__name__} declares no flag with key {key!r}")
    checks = o.bound is not None or o.choices is not None
    import typer

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

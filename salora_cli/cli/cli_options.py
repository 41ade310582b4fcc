"""The `salora train` flags, generated from the config dataclasses.

Every scalar field of RunConfig, TrainConfig and AdapterConfig is a flag: its name is the field's
(`train.warmup_fraction` -> --warmup-fraction), its help the field's metadata["help"], and its
default, shown in --help, the dataclass default. A flag counts only when it is given on the
command line: the ones not given never override the YAML config. Lists, mappings and the nested
sections themselves are set with --set section.key=value.

Imports nothing heavy: `salora --help` must start fast.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Iterable, Optional

import typer
from typer._click.core import ParameterSource

from salora.config import AdapterConfig
from salora_cli.core.config import RunConfig, TrainConfig

# Extra names for some flags (the first name given is the one errors quote).
ALIASES = {"adapter.r_init": ("--rank",)}
# Not flags: the command's own --task, and the adapter's method, which --method sets.
SKIPPED = ("task", "adapter.method")
METAVARS = {"data_dir": "DIR", "train.report_to": "TRACKERS"}
SECTIONS = (("", RunConfig, "Run"), ("train.", TrainConfig, "Training (train.*)"),
            ("adapter.", AdapterConfig, "Adapter (adapter.*)"))
SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class ConfigFlag:
    """One generated option: the config key it sets and how --help shows it."""

    key: str  # dotted config key: "method", "train.lr", "adapter.r_init"
    type: type  # bool, int, float or str
    optional: bool  # the field may be None (its default usually is)
    default: Any  # the dataclass default; the YAML config may set another value
    help: str
    panel: str  # the --help section it is listed in

    @property
    def field_name(self) -> str:
        return self.key.rsplit(".", 1)[-1]

    @property
    def flag(self) -> str:
        return "--" + self.field_name.replace("_", "-")

    @property
    def param(self) -> str:
        """The keyword Typer passes the value under (unique: it spells out the key)."""
        return "config__" + self.key.replace(".", "__")

    @property
    def decls(self) -> tuple[str, ...]:
        if self.type is bool:
            return (f"{self.flag}/--no-{self.flag[2:]}",)
        return (*ALIASES.get(self.key, ()), self.flag)

    def annotation(self, help_text: str | None = None) -> Any:
        option = typer.Option(*self.decls, help=help_text or self.help, show_default=self.default is not None,
                              metavar=METAVARS.get(self.key), rich_help_panel=self.panel)
        return Annotated[Optional[self.type] if self.optional else self.type, option]


def _scalar_type(tp: Any) -> tuple[type | None, bool]:
    """(scalar type, may be None) of an annotation; (None, _) for lists, mappings, dataclasses."""
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            return None, optional
        tp = args[0]
    return (tp if tp in SCALARS else None), optional


def config_flags() -> list[ConfigFlag]:
    """One flag per scalar config field, in the dataclasses' order."""
    flags = []
    for prefix, cls, panel in SECTIONS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = prefix + f.name
            tp, optional = _scalar_type(hints[f.name])
            if tp is None or key in SKIPPED:
                continue
            flags.append(ConfigFlag(key=key, type=tp, optional=optional, default=f.default,
                                    help=f.metadata.get("help", ""), panel=panel))
    names = [f.param for f in flags] + [d for f in flags for d in f.decls]
    if len(names) != len(set(names)):  # two sections with a field of the same name
        raise RuntimeError(f"config flags clash: {sorted(n for n in names if names.count(n) > 1)}")
    return flags


def nest(values: dict[str, Any]) -> dict:
    """{"train.lr": 1e-3, "method": "lora"} -> {"train": {"lr": 1e-3}, "method": "lora"}."""
    out: dict = {}
    for key, value in values.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def with_config_flags(exclude: Iterable[str] = (), help_text: dict[str, str] | None = None
                      ) -> Callable[[Callable], Callable]:
    """Decorate a command whose last parameter is `overrides`: Typer sees one option per config flag
    instead, and the command receives the flags given on the command line as a nested dict of
    config keys (an override layer above the YAML). `exclude` leaves keys out; `help_text` replaces
    the help of some keys for this command."""
    skip = set(exclude)
    return _with_flags([f for f in config_flags() if f.key not in skip], help_text or {})


def dataclass_flags(cls: type, panel: str, exclude: Iterable[str] = ()) -> list[ConfigFlag]:
    """One flag per scalar field of a settings dataclass (e.g. salora_cli.transfer.transfer_config.TransferConfig)."""
    skip, hints = set(exclude), typing.get_type_hints(cls)
    flags = []
    for f in dataclasses.fields(cls):
        tp, optional = _scalar_type(hints[f.name])
        if tp is not None and f.name not in skip:
            flags.append(ConfigFlag(key=f.name, type=tp, optional=optional, default=f.default,
                                    help=f.metadata.get("help", ""), panel=panel))
    return flags


def with_dataclass_flags(cls: type, panel: str, exclude: Iterable[str] = ()) -> Callable[[Callable], Callable]:
    """Like `with_config_flags`, for one settings dataclass: `overrides` holds the fields given."""
    return _with_flags(dataclass_flags(cls, panel, exclude), {})


def _with_flags(flags: list[ConfigFlag], help_text: dict[str, str]) -> Callable[[Callable], Callable]:
    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name != "overrides"]
        generated = [inspect.Parameter(f.param, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                       annotation=f.annotation(help_text.get(f.key))) for f in flags]
        context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

        @functools.wraps(command)
        def wrapper(ctx: typer.Context, **values: Any) -> Any:
            given = {}
            for f in flags:
                value = values.pop(f.param)
                if ctx.get_parameter_source(f.param) is ParameterSource.COMMANDLINE:  # not a default
                    given[f.key] = value
            return command(**values, overrides=nest(given))

        parameters = [*own, *generated, context]
        # Typer reads the signature and the type hints: both the new ones, as objects (not strings
        # that would be resolved in this module)
        wrapper.__signature__ = signature.replace(parameters=parameters)
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        del wrapper.__wrapped__
        return wrapper

    return decorate

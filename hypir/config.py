"""YAML configs validated into typed, frozen dataclasses (DESIGN.md §7).

:func:`parse` builds a dataclass from a nested mapping: unknown keys, missing required keys and
values of the wrong type are ``ValueError`` naming the dotted key (``train.lr_g: expected a
number, got 'fast'``). Field types are read from the annotations (``int``, ``float``, ``bool``,
``str``, ``X | None``, ``tuple[T, ...]``, ``tuple[A, B]``, ``Literal[...]``, nested dataclasses);
a dataclass's own ``__post_init__`` checks ranges, and its ``ValueError`` gets the dotted prefix.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")


def load_yaml(path: str | os.PathLike) -> dict:
    """The top-level mapping of a YAML file (an empty file is ``{}``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config: no such file {str(path)!r}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ValueError(f"config: {str(path)!r} is not valid YAML: {' '.join(str(e).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config: {str(path)!r} must hold a mapping of sections, got {type(data).__name__}")
    return data


def check_positive(name: str, value) -> None:
    if not value > 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")


def check_non_negative(name: str, value) -> None:
    if not value >= 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")


def check_run(run) -> None:
    """The checks every trainer's ``run`` section shares: ``steps``, ``seed``, ``ema``, the ``*_every``
    intervals and ``keep_last``."""
    from hypir_kernels.checks import check_int, check_seed

    check_int("steps", run.steps, minimum=1)
    check_seed("seed", run.seed)
    if not 0 <= run.ema < 1:
        raise ValueError(f"ema: expected a number in [0, 1), got {run.ema!r}")
    for name in ("log_every", "sample_every", "checkpoint_every"):
        check_int(name, getattr(run, name), minimum=0)
    check_int("keep_last", run.keep_last, minimum=1)


def check_betas(name: str, betas) -> None:
    if not all(0 <= b < 1 for b in betas):
        raise ValueError(f"{name}: expected two numbers in [0, 1), got {betas!r}")


def apply_overrides(data: dict, overrides: dict | None) -> dict:
    """Set ``dotted.key -> value`` pairs (``--set`` on the command line) in a config mapping."""
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"{dotted}: {p} is not a section")
        node[last] = value
    return data


def parse(cls: type[T], data: Any, prefix: str = "", base: T | None = None) -> T:
    """Build dataclass ``cls`` from mapping ``data`` (see the module docstring). Keys not given
    keep their values in ``base`` (default: the field defaults); a nested section given in part
    overrides only its keys, starting from the enclosing default (so a partial
    ``degradation.stage2`` keeps stage 2's own defaults)."""
    where = prefix or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        near = difflib.get_close_matches(unknown[0], list(fields), n=1, cutoff=0.6)
        hint = f"did you mean {_join(prefix, near[0])!r}? " if near else ""
        raise ValueError(f"{_join(prefix, unknown[0])}: unknown key; {hint}(known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if base is not None:
            default = getattr(base, name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if name in data:
            nested = default if dataclasses.is_dataclass(default) else None
            kwargs[name] = _convert(hints[name], data[name], key, nested)
        elif default is dataclasses.MISSING:
            raise ValueError(f"{key}: required")
        else:
            kwargs[name] = default
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ValueError(f"{prefix}.{e}" if prefix else str(e)) from None


def to_dict(obj) -> Any:
    """The plain (YAML/JSON-ready) form of a config dataclass: tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    return obj


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _convert(tp, value, key: str, base=None):
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, key, base)
            except ValueError as e:
                errors.append(str(e).removeprefix(f"{key}: "))
        raise ValueError(f"{key}: " + " or ".join(dict.fromkeys(errors)))
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and not any(isinstance(c, bool) for c in choices):
            # YAML 1.1 reads an unquoted no/off (yes/on) as a bool: take it as the choice it spells
            value = next((c for c in (("no", "off", "false") if not value else ("yes", "on", "true")) if c in choices), value)
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices if c == value):
            raise ValueError(f"{key}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{key}: expected a list of {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, key, base if isinstance(base, tp) else None)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported config field type {tp!r}")  # a bug in a config class


__all__ = ["load_yaml", "parse", "to_dict"]

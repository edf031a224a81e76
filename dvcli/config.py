"""Typed stage configurations: dataclass defaults, then a YAML file, then command-line values.

Every stage has one ``@dataclass`` config (``PrepareConfig``, ``ExtractUnitsConfig``...). A config
is built in layers, each overriding the one before:

1. the dataclass defaults;
2. ``--config FILE.yaml`` (a mapping; nested dataclasses are nested mappings);
3. the options the user typed on the command line (only those given);
4. ``--set key=value`` overrides (dotted keys reach into nested configs: ``--set model.hidden=192``).

Unknown keys and values of the wrong type are :class:`~dvcli.errors.UserError` naming the key and
where it came from. The resolved config is saved next to a stage's outputs as ``config.yaml`` and can
be fed back with ``--config`` to repeat a run.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union

import yaml

from dvcli.errors import UserError

C = TypeVar("C")


@dataclasses.dataclass(kw_only=True)
class StageConfig:
    """Fields every stage shares.

    A subclass lists settings it renamed in ``RENAMED`` (old name -> new name): a file, ``--set``
    or option that still uses an old name is refused with a message naming the new one.
    """

    RENAMED: ClassVar[Mapping[str, str]] = {}

    seed: int = 0  # random seed for everything the stage draws
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = CUDA when available


def load_config(
    cls: type[C],
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    values: Mapping[str, Any] | None = None,
) -> C:
    """Build a ``cls`` config from defaults, a YAML file, explicit values and ``key=value`` overrides.

    Args:
        cls: a dataclass type whose fields all have defaults or are given.
        config_file: optional YAML mapping.
        overrides: ``key=value`` strings; values are parsed as YAML scalars/lists.
        values: already-typed values (from CLI options); ``None`` entries are ignored.

    Raises:
        UserError: unreadable YAML, unknown keys, wrong types, or a malformed override.
    """
    data: dict[str, Any] = {}
    if config_file is not None:
        _merge(data, _read_yaml(Path(config_file)), cls, str(config_file))
    if values:
        given = {k: v for k, v in values.items() if v is not None}
        _merge(data, _unflatten(given), cls, "command line")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set seed=3")
        _merge(data, _unflatten({key.strip(): _RawValue(raw)}), cls, "--set")
    return build(cls, data, source="config")


def build(cls: type[C], data: Mapping[str, Any], source: str = "config") -> C:
    """Instantiate dataclass ``cls`` from a (nested) mapping, checking keys and types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        _check_renamed(cls, key, key, source)
        if key not in fields:
            raise UserError(f"{source}: unknown key '{key}' for {cls.__name__} (known: {', '.join(fields)})")
        kwargs[key] = _coerce(value, hints[key], f"{source}: key '{key}'", key)
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise UserError(f"{source}: missing required key(s) {', '.join(missing)} for {cls.__name__}")
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A plain-YAML-safe dict of a config (Paths become strings, tuples lists)."""
    return _plain(dataclasses.asdict(config))


def save_config(config: Any, path: str | Path) -> None:
    """Write ``config`` as YAML to ``path`` (atomically)."""
    from dvcli.atomic import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(config), sort_keys=False))


def config_keys(cls: type) -> list[str]:
    """Every settable dotted key of a config class (for help texts and error messages)."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += [f"{f.name}.{k}" for k in config_keys(hints[f.name])]
        else:
            keys.append(f.name)
    return keys


# -- internals ------------------------------------------------------------------------------------


class _RawValue(str):
    """A ``--set`` value as typed: parsed according to the target field's type."""


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        reason = str(err).splitlines()[0]
        raise UserError(f"{path}: not valid YAML ({reason})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: a config file must be a YAML mapping of key: value")
    return loaded


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def _merge(into: dict[str, Any], new: Mapping[str, Any], cls: type, source: str, prefix: str = "") -> None:
    """Merge ``new`` into ``into`` in place, checking keys against ``cls`` as we go."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for key, value in new.items():
        dotted = f"{prefix}{key}"
        _check_renamed(cls, key, dotted, source)
        if key not in names:
            raise UserError(f"{source}: unknown key '{dotted}' for {cls.__name__} (known: {', '.join(sorted(names))})")
        sub = hints[key]
        if dataclasses.is_dataclass(sub) and isinstance(value, Mapping):
            node = into.setdefault(key, {})
            if not isinstance(node, dict):
                node = into[key] = {}
            _merge(node, value, sub, source, prefix=f"{dotted}.")
        else:
            # Check the type now so the error names where the bad value came from.
            into[key] = _coerce(value, sub, f"{source}: key '{dotted}'", dotted)


def _check_renamed(cls: type, key: str, dotted: str, source: str) -> None:
    renamed = getattr(cls, "RENAMED", {})
    if key in renamed:
        new = dotted[: len(dotted) - len(key)] + renamed[key]
        raise UserError(
            f"{source}: '{dotted}' is now called '{new}' (one name for a setting across dv's stages); rename it"
        )


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


#: A decimal number in the notation users type (``3e-4``, ``1e6``, ``-2.5E+3``), finite.
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _coerce(value: Any, tp: Any, where: str, key: str) -> Any:
    """Return ``value`` converted to type ``tp`` or raise a UserError naming ``where``."""
    if isinstance(value, _RawValue):
        value = _parse_raw(value, tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad() -> UserError:
        return UserError(f"{where} expects {_type_name(tp)}, got {value!r}")

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, key)
            except UserError:
                continue
        raise bad()
    if origin is Literal:
        if value in args:
            return value
        raise bad()
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return build(tp, value, source=where.rsplit(":", 1)[0] + f": key '{key}'")
        raise bad()
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise bad()
        items = list(value)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise bad()
            return tuple(_coerce(v, a, where, key) for v, a in zip(items, args))
        item_tp = args[0] if args else Any
        converted = [_coerce(v, item_tp, where, key) for v in items]
        return tuple(converted) if (origin is tuple or tp is tuple) else converted
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise bad()
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, where, key): _coerce(v, vt, where, key) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp in (int, float) and isinstance(value, str) and _NUMBER.match(value.strip()):
        value = float(value)  # YAML 1.1 reads 3e-4 and 1e6 (no dot) as strings
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isnan(value):  # NaN compares false with every bound a stage checks, so it would pass them
                raise UserError(f"{where} expects a number, got NaN")
            return float(value)
        if isinstance(value, str) and value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
            raise UserError(f"{where} expects a finite number, got {value!r}")
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise bad()
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise bad()


def _parse_raw(raw: str, tp: Any) -> Any:
    """Parse a ``--set`` string: strings stay strings, everything else is read as YAML."""
    if tp in (str, Path):
        return str(raw)
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Literal and raw in args:
        return str(raw)
    if typing.get_origin(tp) in (Union, types.UnionType) and (str in args or Path in args):
        if raw.strip().lower() in ("null", "none", "~", ""):
            return None
        return str(raw)
    try:
        parsed = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return str(raw)
    return str(parsed) if isinstance(parsed, str) else parsed


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj

"""Settings dataclasses from plain dicts (TOML tables, `key=value` overrides), checked by type.

A mistake is reported with its dotted key before anything runs:
`iteration1.train.max_updates: expected an integer, got 'ten'`.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing


class SettingError(ValueError):
    """A setting of the wrong type or out of range; the message starts with its dotted key."""


def from_dict(cls, data, where: str):
    """An instance of dataclass `cls` built from `data` (a table), every value checked against
    the field's annotation; unknown keys and wrong types raise SettingError naming `where.key`."""
    if not isinstance(data, dict):
        raise SettingError(f"{where or 'config'}: expected a table of settings, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]  # not what __post_init__ resolves
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise SettingError(f"{where or 'config'}: unknown setting(s) {unknown}; known: {sorted(names)}")
    values = {name: check_value(_join(where, name), value, hints[name]) for name, value in data.items()}
    try:
        return cls(**values)
    except SettingError as error:
        raise SettingError(_join(where, str(error))) from None


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def check_value(key: str, value, annotation):
    """`value` converted to `annotation` (int, float, bool, str, tuples, dict, dataclass, `A | B`),
    or SettingError."""
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, key)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is types.UnionType:
        return _check_union(key, value, args)
    if origin is tuple:
        return _check_tuple(key, value, args)
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise SettingError(f"{key}: expected a table such as {{max_updates = 100}}, got {value!r}")
        return dict(value)
    return _check_scalar(key, value, annotation)


def _check_scalar(key: str, value, annotation):
    if annotation is bool:
        if not isinstance(value, bool):
            raise SettingError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingError(f"{key}: expected a whole number, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise SettingError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _check_union(key: str, value, args: tuple):
    """The first of `args` that `value` is (no conversion between them: 6 stays an int)."""
    for annotation in args:
        try:
            return check_value(key, value, annotation)
        except SettingError:
            continue
    names = " or ".join(getattr(a, "__name__", str(a)) for a in args)
    raise SettingError(f"{key}: expected {names}, got {value!r}")


def _check_tuple(key: str, value, args: tuple):
    if isinstance(value, str) and args[-1:] == (Ellipsis,) and args[0] is str:
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise SettingError(f"{key}: expected a list, got {value!r}")
    if args[-1:] == (Ellipsis,):
        return tuple(check_value(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
    if len(value) != len(args):
        raise SettingError(f"{key}: expected {len(args)} values, got {value!r}")
    return tuple(check_value(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))


def at_least(obj, name: str, low: float) -> None:
    """SettingError unless `obj.name >= low`."""
    if getattr(obj, name) < low:
        raise SettingError(f"{name}: must be at least {low}, got {getattr(obj, name)!r}")


def positive(obj, name: str) -> None:
    """SettingError unless `obj.name > 0`."""
    if not getattr(obj, name) > 0:
        raise SettingError(f"{name}: must be positive, got {getattr(obj, name)!r}")


def fraction(obj, name: str, zero_ok: bool = False) -> None:
    """SettingError unless `obj.name` lies in (0, 1] (or [0, 1) with `zero_ok`)."""
    value = getattr(obj, name)
    inside = 0 <= value < 1 if zero_ok else 0 < value <= 1
    if not inside:
        interval = "[0, 1)" if zero_ok else "(0, 1]"
        raise SettingError(f"{name}: must be a fraction in {interval}, got {value!r}")


def one_of(obj, name: str, choices) -> None:
    """SettingError unless `obj.name` is one of `choices` (listed in the message)."""
    value = getattr(obj, name)
    if value not in choices:
        raise SettingError(f"{name}: unknown value {value!r}; choose one of {', '.join(map(str, choices))}")


def _flatten(settings: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value, default=str)
    return out


def describe_changes(before: dict, now: dict, most: int = 4) -> str:
    """'key old -> new, ...' for the (nested, dotted) keys whose values differ; '' when none do.
    The top-level `settings.` and `budget.` prefixes of stage records are left out."""
    before, now = _flatten(before), _flatten(now)
    keys = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    shown = [f"{k.removeprefix('settings.').removeprefix('budget.')} {before.get(k, '(none)')} -> "
             f"{now.get(k, '(none)')}" for k in keys[:most]]
    return ", ".join(shown) + (f" and {len(keys) - most} more" if len(keys) > most else "")


# Field metadata that decides what a stage hash covers (see hashed_settings).
RUN_ONLY = {"run_only": True}  # how a run goes, not what it makes (threads, device, log interval)
BUDGET = {"budget": True}  # may be raised without starting over (max_updates)
DERIVED = {"derived": True}  # fixed by an input whose hash already covers it
OMIT_DEFAULT = {"omit_default": True}  # hashed only when set: added later, so earlier hashes hold


def hashed_settings(settings) -> dict:
    """A settings dataclass as the dict its stage hash covers: nested dataclasses as dicts, fields marked
    RUN_ONLY, BUDGET or DERIVED left out, OMIT_DEFAULT ones left out while at their default."""
    out = {}
    for spec in dataclasses.fields(settings):
        value, meta = getattr(settings, spec.name), spec.metadata
        if meta.get("run_only") or meta.get("budget") or meta.get("derived"):
            continue
        if meta.get("omit_default") and value == spec.default:
            continue
        out[spec.name] = hashed_settings(value) if dataclasses.is_dataclass(value) else _plain(value)
    return out


def budget_settings(settings) -> dict:
    """{name: value} of the BUDGET fields of a settings dataclass, nested ones included."""
    out = {}
    for spec in dataclasses.fields(settings):
        value = getattr(settings, spec.name)
        if dataclasses.is_dataclass(value):
            out.update(budget_settings(value))
        elif spec.metadata.get("budget"):
            out[spec.name] = value
    return out


def _plain(value):
    """Tuples as lists, as JSON writes them."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value

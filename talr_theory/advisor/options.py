"""A config dataclass becomes command-line flags: help from the fields, each default shown once, checks at parse time.

A field's ``metadata`` may carry ``help`` (text), ``check`` (a :class:`Range` of accepted values),
``choices`` and ``default_text`` (the default in words, when the value alone would not say it, e.g.
"the model's context length" for None). The flag is ``--field-name``; tuples take comma-separated
values. A bad value stops argparse itself (exit 2, the flag named, before any work); the same
checks run when the config is built in code (:func:`check_config`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Range:
    """What a numeric option accepts, said in words (``> 0``, ``in (1, 10]``) and checked."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return "finite"

    def accepts(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))


POSITIVE = Range(lo=0.0, lo_open=True)
AT_LEAST_ONE = Range(lo=1, integer=True)
COUNT = Range(lo=0, integer=True)


def human_value(value: Any) -> str:
    """A value as a person writes it on the command line (comma lists, 'none', no quotes)."""
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(human_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "text"}.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(text: str, item_type: Any, check: Range | None) -> Any:
    """One value from the command line, or an ArgumentTypeError in words (never a Python repr)."""
    try:
        value = item_type(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {_type_name(item_type)}, got '{text}'") from None
    if check is not None and not check.accepts(float(value)):
        raise argparse.ArgumentTypeError(f"expected {_type_name(item_type)} {check.describe()}, got {text.strip()}")
    return value


def option_type(item_type: Any, check: Range | None = None, sequence: bool = False, min_items: int = 1):
    """An argparse ``type=``: converts (a comma-separated list when ``sequence``) and applies ``check``."""
    if sequence:
        def parse(text: str):
            values = tuple(_convert(x, item_type, check) for x in text.split(",") if x.strip())
            if len(set(values)) < min_items:
                raise argparse.ArgumentTypeError(f"expected at least {min_items} different comma-separated values, "
                                                 f"got '{text}'")
            return values
    else:
        def parse(text: str):
            return _convert(text, item_type, check)
    parse.__name__ = "value"  # argparse names the type in some messages
    return parse


def _base_type(tp: Any) -> Any:
    """Strip Optional[...]."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else None


def _help(field: dataclasses.Field) -> str:
    text, check = field.metadata.get("help", ""), field.metadata.get("check")
    default = _default(field)
    if check is not None:
        text += ("; each " if isinstance(default, tuple) else "; ") + check.describe()
    shown = field.metadata.get("default_text", human_value(default))
    return f"{text} (default: {shown})".replace("%", "%%")  # argparse expands %-formats in help


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per field of the dataclass ``cls`` (fields with ``metadata={"flag": False}`` are skipped)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if not field.init or field.metadata.get("flag", True) is False:
            continue
        tp, check = _base_type(hints[field.name]), field.metadata.get("check")
        kwargs: dict[str, Any] = {"dest": field.name, "default": _default(field), "help": _help(field)}
        if typing.get_origin(tp) is tuple:
            item = typing.get_args(tp)[0]
            kwargs.update(type=option_type(item, check, sequence=True, min_items=field.metadata.get("min_items", 1)),
                          metavar="A,B,...")
        elif tp in (int, float):
            kwargs["type"] = option_type(tp, check)
        if "choices" in field.metadata:
            kwargs["choices"] = field.metadata["choices"]
        parser.add_argument("--" + field.name.replace("_", "-"), **kwargs)


def check_config(config: Any) -> None:
    """The flags' checks on a config built in code: ValueError naming the flag of the first bad field."""
    for field in dataclasses.fields(config):
        value, flag = getattr(config, field.name), "--" + field.name.replace("_", "-")
        if value is None:
            continue
        items = value if isinstance(value, (tuple, list)) else (value,)
        check, choices = field.metadata.get("check"), field.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ValueError(f"{flag}: expected one of {', '.join(choices)}, got {human_value(value)}")
        if len(set(items)) < field.metadata.get("min_items", 1):
            raise ValueError(f"{flag}: expected at least {field.metadata['min_items']} different values, "
                             f"got {human_value(value)}")
        if check is None:
            continue
        for item in items:
            ok = isinstance(item, (int, float)) and not isinstance(item, bool) and check.accepts(float(item))
            if not ok or (check.integer and float(item) != int(item)):
                raise ValueError(f"{flag}: expected values {check.describe()}, got {human_value(value)}")


def config_from_args(cls: type[T], namespace: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from the parsed flags (fields absent from the namespace keep their defaults)."""
    kwargs = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)
              if f.init and hasattr(namespace, f.name)}
    return cls(**{**kwargs, **overrides})

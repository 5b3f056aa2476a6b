"""Dataclass configs that become CLI flags (and their help text) without a second definition.

Each field may carry ``metadata={"help": "..."}``; the flag is ``--field-name``. Booleans become
``--flag/--no-flag``; tuples/lists take comma-separated values.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

from talr_theory.verdicts import Verdict

T = TypeVar("T")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """Strip Optional[...] and return (type, optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _parse_sequence(item_type: Any):
    def parse(text: str):
        return tuple(item_type(x.strip()) for x in text.split(",") if x.strip())

    parse.__name__ = f"comma-separated {getattr(item_type, '__name__', item_type)}"
    return parse


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per dataclass field of ``cls`` to ``parser``."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.init:
            continue
        tp, _ = _base_type(hints[field.name])
        flag = "--" + field.name.replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else None
        )
        help_text = field.metadata.get("help", "")
        choices = field.metadata.get("choices")
        if tp is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
            continue
        origin = typing.get_origin(tp)
        if origin in (tuple, list):
            item = typing.get_args(tp)[0] if typing.get_args(tp) else str
            shown = ",".join(str(x) for x in default) if default is not None else None
            parser.add_argument(flag, dest=field.name, type=_parse_sequence(item), default=default,
                                help=f"{help_text} (default: {shown})")
            continue
        if typing.get_origin(tp) is typing.Literal:
            choices = typing.get_args(tp)
            tp = type(choices[0])
        parser.add_argument(flag, dest=field.name, type=tp, default=default, choices=choices,
                            help=f"{help_text} (default: %(default)s)")


def dataclass_from_args(cls: type[T], namespace: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from the parsed flags (fields absent from the namespace keep their defaults)."""
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.init and hasattr(namespace, field.name):
            kwargs[field.name] = getattr(namespace, field.name)
    kwargs.update(overrides)
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a (possibly nested) dataclass config, for 'resolved config' records."""
    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if hasattr(value, "__fspath__"):
            return str(value)
        return value

    return convert(config)


def json_safe(value):
    """numpy scalars -> Python, non-finite floats -> None, tuples -> lists (recursively)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Verdict):
        return json_safe(value.to_dict())
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

"""Dataclass configs that become CLI flags (and their help text) without a second definition.

The one dataclass -> argparse machinery of every command. A field's ``metadata`` may carry:

* ``help``: the flag's help text (the default is appended once, in words);
* ``check``: a :class:`Range` of accepted values, applied at parse time and by :func:`check_fields`;
* ``choices``: the accepted values of a text option;
* ``min_items``: the fewest *different* values a comma-separated option accepts;
* ``default_text``: the default in words, when the value alone would not say it (e.g. None);
* ``flag``: ``False`` keeps the field off the command line.

The flag is ``--field-name``. Booleans become ``--flag/--no-flag``; tuples/lists take comma-separated
values. A bad value stops argparse itself (exit 2, the flag named, before any work); the same checks
run on a config built in code (:func:`check_fields`).
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


@dataclasses.dataclass(frozen=True)
class Range:
    """What a numeric option accepts, said in words (``in (0, 1)``, ``>= 100``) and checked.

    Used as ``metadata={"check": Range(...)}`` on a config field, or with ``option_type`` on a plain
    ``add_argument``; ``integer`` also refuses non-integers.
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return (f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}")
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return "finite"

    def accepts(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))


# Shared checks, so every command accepts the same values for the same kind of option.
PROBABILITY = Range(0.0, 1.0, lo_open=True, hi_open=True)      # thresholds θ, gains in (0, 1)
POSITIVE = Range(lo=0.0, lo_open=True)                          # learning rates, ε, gains
COUNT = Range(lo=0, integer=True)                               # 0 allowed (0: off / no limit)
AT_LEAST_ONE = Range(lo=1, integer=True)                        # steps, batch sizes
MIN_BOOT = 100                                                  # a percentile 95% interval needs >= 100
N_BOOT = Range(lo=MIN_BOOT, integer=True)


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


def option_type(item_type: Any = float, check: Range | None = None, sequence: bool = False, min_items: int = 1):
    """An argparse ``type=`` that converts (a comma-separated list when ``sequence``, of at least
    ``min_items`` different values) and checks ``check``."""
    if sequence:
        def parse(text: str):
            items = [x for x in text.split(",") if x.strip()]
            if not items:
                raise argparse.ArgumentTypeError(f"expected a comma-separated list, got '{text}'")
            values = tuple(_convert(x, item_type, check) for x in items)
            if len(set(values)) < min_items:
                raise argparse.ArgumentTypeError(f"expected at least {min_items} different comma-separated "
                                                 f"values, got '{text}'")
            return values
    else:
        def parse(text: str):
            return _convert(text, item_type, check)
    parse.__name__ = "value"  # argparse names the type in some messages
    return parse


def format_default(field: dataclasses.Field, default: Any) -> str:
    """The default as a person reads it (once, in the help): words for None, comma lists, on/off."""
    if "default_text" in field.metadata:
        return field.metadata["default_text"]
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, (tuple, list)):
        return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in default) or "empty"
    if isinstance(default, float):
        return f"{default:g}"
    if default == "":
        return "empty"
    return str(default)


def _help(field: dataclasses.Field, default: Any) -> str:
    text = field.metadata.get("help", "")
    check = field.metadata.get("check")
    if check is not None and check.describe() not in text:
        rule = ("each " if isinstance(default, (tuple, list)) else "") + check.describe()
        text = f"{text}; {rule}" if text else rule
    # argparse expands %-formats in help: a literal % must be doubled
    return f"{text} (default: {format_default(field, default)})".replace("%", "%%")


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else None


def _choices(field: dataclasses.Field, tp: Any) -> tuple | None:
    """A field's accepted values: ``metadata["choices"]`` or the arguments of a ``Literal`` type."""
    if "choices" in field.metadata:
        return tuple(field.metadata["choices"])
    return typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else None


def _flag_kwargs(field: dataclasses.Field, tp: Any, default: Any) -> dict[str, Any]:
    """``add_argument`` keywords for one field (its type, checks and choices), help and default aside."""
    check, choices = field.metadata.get("check"), _choices(field, tp)
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(tp) in (tuple, list):
        item = typing.get_args(tp)[0] if typing.get_args(tp) else str
        kind = option_type(item, check, sequence=True, min_items=field.metadata.get("min_items", 1))
        return {"type": kind, "metavar": "A,B,..."}
    if choices is not None:
        return {"type": type(choices[0]), "choices": choices}
    return {"type": option_type(tp, check) if tp in (int, float) else tp}


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per dataclass field of ``cls`` to ``parser``; its help shows the default once.

    Fields named in ``skip``, or with ``metadata={"flag": False}``, get no flag.
    """
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.init or field.metadata.get("flag", True) is False:
            continue
        tp, _ = _base_type(hints[field.name])
        default = _field_default(field)
        parser.add_argument("--" + field.name.replace("_", "-"), dest=field.name, default=default,
                            help=_help(field, default), **_flag_kwargs(field, tp, default))


def _field_problem(field: dataclasses.Field, tp: Any, value: Any) -> str | None:
    """What is wrong with one field's value, in words (None: nothing)."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    choices, check = _choices(field, tp), field.metadata.get("check")
    if choices is not None and any(item not in choices for item in items):
        return f"expected one of {', '.join(map(str, choices))}"
    min_items = field.metadata.get("min_items", 1)
    if isinstance(value, (tuple, list)) and len(set(items)) < min_items:
        return f"expected at least {min_items} different values"
    if check is None:
        return None
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not check.accepts(float(item)):
            return f"expected {'integers' if check.integer else 'values'} {check.describe()}"
    return None


def check_fields(config: Any, source: str = "option") -> Any:
    """Apply every field's checks (range, choices, fewest items) to a built config; return it.

    Values from code or a file skip argparse; this gives them the same checks, with a ValueError
    naming the flag of the first bad field.
    """
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None:
            continue
        problem = _field_problem(field, _base_type(hints[field.name])[0], value)
        if problem:
            raise ValueError(f"{source} --{field.name.replace('_', '-')}: {problem}, got {human_value(value)}")
    return config


def human_value(value: Any) -> str:
    """A value as a person writes it on the command line (comma lists, 'none', on/off, no quotes)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(human_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


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


KNOWN_MODELS = ("smollm2-135m", "stories260k", "tiny-random")


def model_spec_problem(spec: str) -> str | None:
    """Why ``spec`` cannot name a model, found without loading anything (None: it may be fine).

    Only what is certain from the file system: a folder without ``config.json``, a missing ``.gguf``,
    a path that does not exist. Hub ids and known names are left to the loader.
    """
    from pathlib import Path

    low = spec.lower()
    if low in KNOWN_MODELS or low.startswith("tiny-random:"):
        return None
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return None
        return (f"{spec} is a folder without config.json, so it is not a Hugging Face model folder; give a "
                f"folder written by save_pretrained (e.g. a sweep's --save-checkpoints output), a .gguf file, "
                f"or one of {', '.join(KNOWN_MODELS)}")
    if spec.endswith(".gguf") and not path.is_file():
        return f"{spec}: no such .gguf file"
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or path.suffix in (".gguf", ".bin")
    if looks_like_path and not path.exists():
        return f"{spec}: no such file or folder (expected a model folder, a .gguf file, or one of " \
               f"{', '.join(KNOWN_MODELS)})"
    return None


def check_model_spec(spec: str | None, flag: str = "--model") -> None:
    """Raise ValueError naming ``flag`` when ``spec`` cannot be a model (see ``model_spec_problem``)."""
    problem = model_spec_problem(spec) if spec else None
    if problem:
        raise ValueError(f"{flag} {problem}")

"""The scenario file's field types, and the one place a pydantic error becomes a ConfigError.

The scenario schema (:mod:`negsync.sim.scenario`) is declared once, with pydantic v2 models.  This
module holds what those models are built from: annotated field types that say what a user writes
(``Seconds``: a finite number >= 0; ``Count``: an integer; ``Share``: a number in [0, 1]; a
latency distribution) with the words the error message uses for them (:class:`Unit`), and
:func:`config_error`, which turns a :class:`pydantic.ValidationError` into the project's
:class:`~negsync.errors.ConfigError`: the dotted path of the field the user wrote
(``lb.health_check.interval``, ``sweep.drain.pre_stop_sleep.values[1]``) and one sentence
(``must be > 0, got 0``), which the CLI prints as one line with exit code 2.

Numbers are strict (``"5"`` and ``true`` are not numbers: YAML already typed them), except that an
integral float is an integer (``runs: 500.0``; a swept ``{from, to, step}`` yields floats).
Checks that span fields raise :func:`invalid` with the path relative to where they run.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, Field, PlainValidator, Strict, ValidationError, ValidationInfo
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from negsync.core.latency import Distribution, parse_distribution
from negsync.errors import ConfigError

_CUSTOM = "negsync"  # the error type of invalid(): its message is ours, verbatim


@dataclass(frozen=True, slots=True)
class Unit:
    """What a field's value must be, in the words of an error message (``a number of seconds``)."""

    words: str


@dataclass(frozen=True, slots=True)
class Hint:
    """The message when the field is missing (default ``required``): what to write instead."""

    text: str


def invalid(at: str, message: str) -> PydanticCustomError:
    """An error ``at`` a path relative to the validator raising it (``""``: that field itself)."""
    return PydanticCustomError(_CUSTOM, "{message}", {"message": message, "at": at})


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _distribution(value: Any, info: ValidationInfo) -> Distribution:
    # The distribution grammar lives in negsync.core.latency (shared with the memory provider);
    # its ConfigError names the key inside the distribution, relative to this field.
    base_dir = (info.context or {}).get("base_dir")
    try:
        return parse_distribution(value, field="", base_dir=base_dir)
    except ConfigError as exc:
        raise invalid(exc.field.lstrip("."), exc.message) from None


Seconds = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False), Unit("a number of seconds")]
PositiveSeconds = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False), Unit("a number of seconds")]
Rate = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False), Unit("a number of requests per second")]
Requests = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False), Unit("a number of requests")]
Share = Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False), Unit("a number")]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False), Unit("a number")]
PositiveNumber = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False), Unit("a number")]
Count = Annotated[int, BeforeValidator(_integral), Strict(), Field(ge=0), Unit("an integer")]
PositiveCount = Annotated[int, BeforeValidator(_integral), Strict(), Field(ge=1), Unit("an integer")]
Delay = Annotated[Distribution, PlainValidator(_distribution)]


def listed(value: Any) -> tuple[float, ...]:
    """A list of numbers, sorted and without repeats (a sweep's values)."""
    if not isinstance(value, list | tuple):
        raise invalid("", f"must be a list of values, got {type(value).__name__}")
    if not value:
        raise invalid("", "must list at least one value")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise invalid(f"[{i}]", f"must be a number, got {v!r}")
    return tuple(sorted({float(v) for v in value}))


# --------------------------------------------------------------------------- errors


def _join(prefix: str, part: str) -> str:
    if not part:
        return prefix
    if not prefix or part.startswith("["):
        return prefix + part
    return f"{prefix}.{part}"


def dotted(loc: Sequence[int | str], at: str = "") -> str:
    """``('sweep', 'drain.pre_stop_sleep', 'values', 1)`` -> ``sweep.drain.pre_stop_sleep.values[1]``."""
    path = ""
    for part in loc:
        path = _join(path, f"[{part}]" if isinstance(part, int) else str(part))
    return _join(path, at)


def _members(annotation: Any) -> list[Any]:
    """The annotation, or each member of a union, with ``None`` left out."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [a for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def _field_metadata(info: FieldInfo | None) -> list[Any]:
    """Metadata pydantic kept on the field, and that of an ``Annotated`` inside a ``| None``."""
    return [] if info is None else [*info.metadata, *_metadata(info.annotation)]


def _metadata(annotation: Any) -> list[Any]:
    out: list[Any] = []
    for member in _members(annotation):
        if get_origin(member) is Annotated:
            out.extend(member.__metadata__)
            out.extend(_metadata(get_args(member)[0]))
    return out


def _inner(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    members = _members(annotation)
    return _inner(members[0]) if len(members) == 1 and members[0] is not annotation else annotation


def _key(name: str, info: FieldInfo) -> str:
    return info.alias or name


def keys(model: type[BaseModel]) -> list[str]:
    """The keys a user may write in a section, in the schema's (and ``--show``'s) order."""
    return [_key(name, info) for name, info in model.model_fields.items()]


def field(model: type[BaseModel], key: str) -> tuple[str, FieldInfo] | None:
    """The attribute name and field of the key a user writes (an alias such as ``scenario``)."""
    for name, info in model.model_fields.items():
        if _key(name, info) == key:
            return name, info
    return None


def section(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (unwrapping ``Annotated`` and ``| None``), if it holds one."""
    inner = _inner(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _walk(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model holding the last key of ``loc``, and that key's field (``None`` where unknown)."""
    current: Any = model
    holder: type[BaseModel] | None = None
    info: FieldInfo | None = None
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            found = field(current, str(part))
            holder, info = current, (found[1] if found else None)
            current = _inner(info.annotation) if info is not None else None
        elif get_origin(current) in (dict, Mapping):  # a mapping's key, e.g. a swept path
            holder, info = None, None
            current = _inner(get_args(current)[1])
        else:
            return None, None
    return holder, info


def _choices(annotation: Any) -> str | None:
    for member in _members(_inner(annotation)):
        if get_origin(member) is Literal:
            return ", ".join(str(a) for a in get_args(member))
    return None


def _message(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    holder, info = _walk(model, error["loc"])
    if kind == _CUSTOM:
        return str(ctx["message"])
    if kind == "extra_forbidden" and holder is not None:
        return f"unknown key (expected one of: {', '.join(keys(holder))})"
    hints = [m.text for m in _field_metadata(info) if isinstance(m, Hint)]
    if kind == "missing" or (value is None and hints):  # `traffic:` with nothing under it is missing too
        return hints[0] if hints else "required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping, got {type(value).__name__}"
    if kind == "bool_type":
        return f"must be true or false, got {value!r}"
    if kind == "literal_error":
        choices = _choices(info.annotation) if info is not None else None
        return f"must be one of {choices or ctx.get('expected')}, got {value!r}"
    if kind in ("float_type", "float_parsing", "int_type", "int_parsing", "int_from_float", "finite_number"):
        units = [m.words for m in _field_metadata(info) if isinstance(m, Unit)]
        return f"must be {units[0] if units else 'a number'}, got {value!r}"
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
              "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}
    if kind in bounds:
        sign, name = bounds[kind]
        return f"must be {sign} {ctx[name]:g}, got {value!r}"
    return str(error["msg"])  # pydantic's own sentence: still names the field, through the path


def config_error(exc: ValidationError, model: type[BaseModel], *, root: str = "scenario") -> ConfigError:
    """The first error of ``exc`` (in the schema's field order) as a ConfigError naming our field."""
    error = exc.errors(include_url=False)[0]
    at = str((error.get("ctx") or {}).get("at", "")) if error["type"] == _CUSTOM else ""
    return ConfigError(dotted(error["loc"], at) or root, _message(error, model))

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Node parameters declared once, as frozen dataclasses (the generate_parameter_library idea).

Each field carries its default, description, unit, legal range or choices and whether it is
read-only. ``hapo_ros.parameters.declare`` turns a schema into ROS parameters (in the nodes);
``from_mapping`` builds and validates one from plain values (tests, the ``hapo`` runner's ``--help``)
without ROS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar('T')


class ParamError(ValueError):
    """A parameter value outside its declared range; the text names parameter, value and range."""


def param(default: Any, description: str, *, unit: str = '', lo: float | None = None,
          hi: float | None = None, choices: Sequence[Any] | None = None,
          read_only: bool = False) -> Any:
    """A dataclass field with the metadata ``declare`` and ``validate`` read."""
    meta = {'description': description, 'unit': unit, 'lo': lo, 'hi': hi,
            'choices': tuple(choices) if choices else None, 'read_only': read_only}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def describe(field: dataclasses.Field) -> str:
    """One-line help: 'description [unit]; one of ...; range [lo, hi]; read-only'."""
    m = field.metadata
    head = m.get('description', '') + (f' [{m["unit"]}]' if m.get('unit') else '')
    parts = [head]
    if m.get('choices'):
        parts.append('one of ' + ', '.join(map(str, m['choices'])))
    lo, hi = m.get('lo'), m.get('hi')
    if lo is not None and hi is not None:
        parts.append(f'range [{lo}, {hi}]')
    elif lo is not None or hi is not None:
        parts.append(f'>= {lo}' if lo is not None else f'<= {hi}')
    if m.get('read_only'):
        parts.append('read-only')
    return '; '.join(p for p in parts if p)


def default_of(field: dataclasses.Field) -> Any:
    """The declared default of a field."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def validate(obj: Any) -> None:
    """Raise ParamError on the first field outside its declared range or choices."""
    for f in dataclasses.fields(obj):
        value, m = getattr(obj, f.name), f.metadata
        if m.get('choices') and value not in m['choices']:
            raise ParamError(f'parameter {f.name}={value!r} not one of {list(m["choices"])}')
        lo, hi = m.get('lo'), m.get('hi')
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ParamError(f'parameter {f.name}={value!r} outside [{lo}, {hi}]')


def coerce(field: dataclasses.Field, value: Any) -> Any:
    """Convert ``value`` to the type of the field's default; raises ParamError."""
    default = default_of(field)
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ('true', 'false'):
                    raise ValueError(value)
                return value.lower() == 'true'
            return bool(value)
        if isinstance(default, list):
            kind = type(default[0]) if default else str
            if isinstance(value, str):  # from a command line: "[a, 'b']" or "a,b"
                inner = value.strip()
                inner = inner[1:-1] if inner.startswith('[') and inner.endswith(']') else inner
                value = [v.strip().strip('\'"') for v in inner.split(',') if v.strip()]
            return [kind(v) for v in value]
        return type(default)(value)
    except (TypeError, ValueError):
        raise ParamError(f'parameter {field.name}={value!r} is not a {type(default).__name__}') from None


def from_mapping(cls: type[T], values: Mapping[str, Any]) -> T:
    """Build and validate a schema from plain values; unknown names raise ParamError."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ParamError(f'unknown parameter(s) {unknown} for {cls.__name__}')
    obj = cls(**{k: coerce(fields[k], v) for k, v in values.items()})
    validate(obj)
    return obj

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Declare a parameter schema (a frozen dataclass of ``hapo_interfaces.params``) on a node; read it back validated."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.parameter import Parameter

from hapo_interfaces.params import default_of, describe, from_mapping

T = TypeVar('T')

# An empty list default has no type ROS can infer: it is declared as an unset string array (names, topics),
# which reads back as None.


def _descriptor(field: dataclasses.Field, default: Any) -> ParameterDescriptor:
    m = field.metadata
    desc = ParameterDescriptor(description=describe(field), read_only=bool(m.get('read_only')))
    lo, hi = m.get('lo'), m.get('hi')
    if lo is not None and hi is not None and not isinstance(default, bool):
        if isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        elif isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return desc


def declare(node: Any, cls: type[T]) -> T:
    """Declare every field of ``cls`` on ``node`` and return the validated values.

    Raises ``params.ParamError`` (one line, naming the parameter) on a bad value; nodes let it
    reach ``main`` which logs it and exits non-zero. ROS range checks reject out-of-range
    overrides at declaration with their own message, which we turn into the same error.
    """
    from rclpy.exceptions import InvalidParameterValueException

    from hapo_interfaces.params import ParamError

    values = {}
    for f in dataclasses.fields(cls):
        default = default_of(f)
        try:
            if isinstance(default, list) and not default:
                value = node.declare_parameter(f.name, Parameter.Type.STRING_ARRAY, _descriptor(f, default)).value
                value = [] if value is None else value
            else:
                value = node.declare_parameter(f.name, default, _descriptor(f, default)).value
        except InvalidParameterValueException as exc:
            raise ParamError(f'parameter {f.name}: {exc}') from None
        values[f.name] = value
    return from_mapping(cls, values)

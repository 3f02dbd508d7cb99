# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""hapo_ros.parameters.declare on a real rclpy node: defaults, overrides, empty-list defaults, range errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import rclpy
from rclpy.context import Context

from hapo_interfaces.params import ParamError, param
from hapo_ros.parameters import declare


@dataclass(frozen=True)
class Schema:
    rate_hz: float = param(20.0, 'rate', unit='Hz', lo=1.0, hi=100.0)
    names: list = param([], 'names; empty = all')
    axes: list = param([1, 2], 'axes')
    mode: str = param('a', 'mode', choices=('a', 'b'))


def make(*overrides: str) -> Schema:
    ctx = Context()
    rclpy.init(context=ctx, args=['--ros-args', *sum((['-p', o] for o in overrides), [])])
    try:
        node = rclpy.create_node('params_test', context=ctx)
        try:
            return declare(node, Schema)
        finally:
            node.destroy_node()
    finally:
        ctx.try_shutdown()


def test_defaults_and_overrides(ros_domain):
    assert make() == Schema()
    got = make('rate_hz:=50.0', "names:=['a','b']", 'axes:=[3]', 'mode:=b')
    assert (got.rate_hz, got.names, got.axes, got.mode) == (50.0, ['a', 'b'], [3], 'b')


@pytest.mark.parametrize(('override', 'match'), [('rate_hz:=500.0', 'rate_hz'), ('mode:=c', 'mode')])
def test_out_of_range_is_a_one_line_param_error(ros_domain, override, match):
    with pytest.raises(ParamError, match=match):
        make(override)

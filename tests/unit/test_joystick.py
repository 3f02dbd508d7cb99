# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Linux joystick events -> Joy axes/buttons, with the ROS joy driver's axis sign convention."""

from __future__ import annotations

import pytest

from hapo_teleop.joystick import AXIS, BUTTON, INIT, JoystickState, pack


def test_initial_state_then_changes():
    js = JoystickState(deadzone=0.05)
    for n in range(3):
        js.apply(pack(0, BUTTON | INIT, n))
    js.apply(pack(0, AXIS | INIT, 4))
    assert js.buttons == [0, 0, 0] and js.axes == [0.0] * 5
    assert js.apply(pack(1, BUTTON, 1)) is True
    assert js.apply(pack(1, BUTTON, 1)) is False  # repeated: no change
    assert js.buttons == [0, 1, 0]


@pytest.mark.parametrize(('raw', 'expected'), [(-32767, 1.0), (32767, -1.0), (-16384, 0.5), (1000, 0.0),
                                               (-32768, 1.0)])
def test_axes_negated_scaled_and_deadzoned(raw, expected):
    js = JoystickState(deadzone=0.05)
    js.apply(pack(raw, AXIS, 1))
    assert js.axes[1] == pytest.approx(expected, abs=1e-4)


def test_unknown_event_types_are_ignored():
    js = JoystickState()
    assert js.apply(pack(5, 0x04, 0)) is False and js.axes == [] and js.buttons == []

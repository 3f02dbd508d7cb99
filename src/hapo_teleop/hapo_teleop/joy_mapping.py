# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""sensor_msgs/Joy axes and buttons -> 7-D end-effector delta and operator buttons (no ROS).

Default indices are the Linux ``joy`` driver's Xbox layout (config/joy/xbox.yaml has the table).
Both the joystick and the policy command end-effector *deltas*, so taking over never makes the
arm jump to a new absolute target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hapo_interfaces.topics import ACTION_DIM

N_MOTION = ACTION_DIM - 1  # x, y, z, roll, pitch, yaw; the gripper is a toggle button


class JoyError(ValueError):
    """A Joy message the mapping cannot use (too few axes or buttons, non-finite axes)."""


@dataclass(frozen=True)
class JoyInput:
    """The fields of a Joy message the mux needs."""

    axes: tuple[float, ...]
    buttons: tuple[int, ...]


@dataclass(frozen=True)
class JoyMapping:
    """Axis/button layout; an index of -1 leaves that dimension or function unmapped."""

    axis_map: tuple[int, ...] = (1, 0, 4, -1, -1, 3)
    axis_scale: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, -1.0)
    deadzone: float = 0.1
    deadman_button: int = 4
    estop_button: int = 1
    estop_reset_button: int = 7
    gripper_button: int = 0
    success_button: int = 3
    failure_button: int = 2
    next_button: int = 6

    def __post_init__(self):
        if len(self.axis_map) != N_MOTION or len(self.axis_scale) != N_MOTION:
            raise ValueError(f'axis_map and axis_scale need {N_MOTION} entries (x y z roll pitch yaw), '
                             f'got {len(self.axis_map)} and {len(self.axis_scale)}')
        if not 0.0 <= self.deadzone < 1.0:
            raise ValueError(f'deadzone={self.deadzone} outside [0, 1)')

    @property
    def buttons_needed(self) -> int:
        return 1 + max(self.deadman_button, self.estop_button, self.estop_reset_button, self.gripper_button,
                       self.success_button, self.failure_button, self.next_button)

    @property
    def axes_needed(self) -> int:
        return 1 + max(self.axis_map)

    def check(self, joy: JoyInput) -> None:
        """Raise JoyError if ``joy`` is too short for this mapping or carries non-finite axes."""
        if len(joy.axes) < self.axes_needed:
            raise JoyError(f'Joy has {len(joy.axes)} axes, mapping needs {self.axes_needed} (axis_map)')
        if len(joy.buttons) < self.buttons_needed:
            raise JoyError(f'Joy has {len(joy.buttons)} buttons, mapping needs {self.buttons_needed}')
        if any(a != a or abs(a) == float('inf') for a in joy.axes):
            raise JoyError(f'Joy axes not finite: {joy.axes}')

    def pressed(self, joy: JoyInput, button: int) -> bool:
        return button >= 0 and bool(joy.buttons[button])

    def motion(self, joy: JoyInput) -> tuple[float, ...]:
        """The 6 motion deltas in [-1, 1], deadzone removed and rescaled so output is continuous."""
        out = []
        for idx, scale in zip(self.axis_map, self.axis_scale, strict=True):
            v = 0.0 if idx < 0 else float(joy.axes[idx])
            mag = max(0.0, abs(v) - self.deadzone) / (1.0 - self.deadzone)
            out.append(max(-1.0, min(1.0, scale * mag * (1.0 if v >= 0 else -1.0))))
        return tuple(out)


def joy_input(axes: Sequence[float], buttons: Sequence[int]) -> JoyInput:
    """Build a JoyInput from message fields."""
    return JoyInput(tuple(float(a) for a in axes), tuple(int(b) for b in buttons))

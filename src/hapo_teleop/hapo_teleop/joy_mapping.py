# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""sensor_msgs/Joy axes and buttons -> 7-D end-effector delta and operator buttons, and back (no ROS).

Default indices are the Linux ``joy`` driver's Xbox layout (config/joy/xbox.yaml has the table).
Both the joystick and the policy command end-effector *deltas*, so taking over never makes the
arm jump to a new absolute target. ``JoyEncoder`` is the inverse, for a scripted operator that drives
through the mux as a person does: an action becomes axes (deadzone and scale undone, float32 as Joy
carries them), the deadman held, and gripper changes as presses of the toggle button.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hapo_interfaces.topics import ACTION_DIM

N_MOTION = ACTION_DIM - 1  # x, y, z, roll, pitch, yaw; the gripper is a toggle button


class JoyError(ValueError):
    """A Joy message the mapping cannot use (too few axes or buttons, non-finite axes)."""


@dataclass(frozen=True)
class JoyInput:
    """The fields of a Joy message the mux needs."""

    axes: tuple[float, ...]
    buttons: tuple[int, ...]
    stamp_ns: int = 0  # header.stamp; 0 = unstamped (see mux.py: which observation a human command answers)


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
        return tuple(0.0 if idx < 0 else self._axis_motion(float(joy.axes[idx]), scale)
                     for idx, scale in zip(self.axis_map, self.axis_scale, strict=True))

    def _axis_motion(self, v: float, scale: float) -> float:
        mag = max(0.0, abs(v) - self.deadzone) / (1.0 - self.deadzone)
        return max(-1.0, min(1.0, scale * mag * (1.0 if v >= 0 else -1.0)))

    def axes_for(self, motion: Sequence[float]) -> tuple[float, ...]:
        """Axis values (float32, as Joy carries them) whose ``motion()`` is ``motion`` up to float32.

        The inverse of ``motion``: the deadzone and scale are undone, and of the float32 values next to the
        exact axis value the one that decodes closest is taken. What the mapping cannot express is lost: a
        dimension with no axis (index -1) or scale 0 stays 0, one beyond ``|scale|`` saturates, and of two
        dimensions on one axis the later wins. ``motion(axes_for(m))`` is what the mux will execute.
        """
        if len(motion) != N_MOTION:
            raise ValueError(f'motion needs {N_MOTION} values (x y z roll pitch yaw), got {len(motion)}')
        axes = [0.0] * self.axes_needed
        for m, idx, scale in zip(motion, self.axis_map, self.axis_scale, strict=True):
            if idx < 0 or scale == 0.0 or not math.isfinite(m) or m == 0.0:
                continue
            mag = min(1.0, abs(m) / abs(scale))
            exact = math.copysign(self.deadzone + mag * (1.0 - self.deadzone), m * scale)
            v32 = np.float32(exact)
            candidates = (v32, np.nextafter(v32, np.float32(-2.0)), np.nextafter(v32, np.float32(2.0)))
            target = math.copysign(mag * abs(scale), m)
            best = min((float(c) for c in candidates if abs(c) <= 1.0),
                       key=lambda c, s=scale, t=target: abs(self._axis_motion(c, s) - t))
            axes[idx] = best
        return tuple(axes)


def joy_input(axes: Sequence[float], buttons: Sequence[int], stamp_ns: int = 0) -> JoyInput:
    """Build a JoyInput from message fields."""
    return JoyInput(tuple(float(a) for a in axes), tuple(int(b) for b in buttons), int(stamp_ns))


@dataclass(frozen=True)
class Encoded:
    """What a ``JoyEncoder`` sends for one action: the Joy messages in order, and what the mux will execute."""

    messages: list[JoyInput]
    executed: tuple[float, ...]  # 7-D: motion(axes) and the mux's gripper state after the presses


@dataclass
class JoyEncoder:
    """Actions -> Joy messages for a mux with ``mapping``: deadman held, motion on the axes, gripper as presses.

    The mux's gripper is a toggle, edge-triggered on the gripper button; it starts at the mux's
    ``initial_gripper`` and, when the deadman engages, at the last executed gripper. The encoder tracks it, so
    it must be the only one driving, the mux must get its messages in order, and a message re-sent unchanged
    (a keepalive) never presses twice. The gripper is binary through a joystick: an action's gripper > 0
    closes, < 0 opens, 0 keeps the state.
    """

    mapping: JoyMapping
    initial_gripper: float = -1.0
    size: tuple[int, int] = (0, 0)  # at least this many (axes, buttons) per message, e.g. (8, 11): an Xbox pad's
    gripper: float = field(init=False)
    _button_down: bool = field(init=False, default=False)

    def __post_init__(self):
        self.gripper = 1.0 if self.initial_gripper > 0 else -1.0

    def encode(self, action: Sequence[float], stamp_ns: int) -> Encoded:
        """The messages answering the observation stamped ``stamp_ns`` with ``action`` (7-D, in [-1, 1]).

        Usually one message stamped ``stamp_ns``. When the gripper must toggle while its button is still down
        from the previous press, a release stamped ``stamp_ns - 1`` goes first (it answers no observation).
        """
        if len(action) != ACTION_DIM:
            raise ValueError(f'action needs {ACTION_DIM} values, got {len(action)}')
        m = self.mapping
        axes = m.axes_for([float(v) for v in action[:N_MOTION]])
        want = self.gripper if action[-1] == 0 else (1.0 if action[-1] > 0 else -1.0)
        press = want != self.gripper and m.gripper_button >= 0
        messages = []
        if press and self._button_down:
            messages.append(self._message(axes, False, stamp_ns - 1))
        messages.append(self._message(axes, press, stamp_ns))
        if press:
            self.gripper = want
        return Encoded(messages, (*m.motion(messages[-1]), self.gripper))

    def _message(self, axes: tuple[float, ...], grip: bool, stamp_ns: int, deadman: bool = True) -> JoyInput:
        m = self.mapping
        axes = axes + (0.0,) * (self.size[0] - len(axes))
        buttons = [0] * max(m.buttons_needed, self.size[1])
        buttons[m.deadman_button] = int(deadman)
        if m.gripper_button >= 0:
            buttons[m.gripper_button] = int(grip)
        self._button_down = grip
        return JoyInput(axes, tuple(buttons), int(stamp_ns))

    def idle(self, stamp_ns: int) -> JoyInput:
        """Deadman held, sticks centred, gripper button up, stamped ``stamp_ns``: takes control, answers nothing
        newer than ``stamp_ns``."""
        return self._message((0.0,) * self.mapping.axes_needed, False, stamp_ns)

    def release(self, stamp_ns: int) -> JoyInput:
        """Hands off: deadman up, sticks centred, no button down, stamped ``stamp_ns`` (the policy drives that
        observation)."""
        return self._message((0.0,) * self.mapping.axes_needed, False, stamp_ns, deadman=False)

    def engage(self, executed_gripper: float) -> None:
        """The deadman is about to engage after ``executed_gripper`` was executed: the mux's toggle starts there."""
        self.gripper = 1.0 if executed_gripper > 0 else -1.0

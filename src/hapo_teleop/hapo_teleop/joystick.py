# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The Linux joystick API (/dev/input/jsN) as axes and buttons, for setups without the ROS `joy` package.

Each read gives 8-byte events ``(time_ms u32, value i16, type u8, number u8)``; type 0x01 is a button,
0x02 an axis, and 0x80 marks the initial state the kernel sends on open. Axes follow the ROS ``joy``
driver's convention (pushing a stick up or left is positive: the raw value is negated), so the
mux's gamepad maps (config/joy/*.yaml) apply unchanged.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hapo_interfaces.params import param

EVENT = struct.Struct('<IhBB')  # time_ms, value, type, number
BUTTON, AXIS, INIT = 0x01, 0x02, 0x80
AXIS_MAX = 32767.0


@dataclass(frozen=True)
class JoyParams:
    """Parameters of joy_node (config/deploy.yaml)."""

    device: str = param('/dev/input/js0', 'joystick device (Linux joystick API); waited for if absent')
    deadzone: float = param(0.05, 'axis magnitude below which the axis reads 0 (the mux has its own too)',
                            lo=0.0, hi=0.99)
    autorepeat_rate_hz: float = param(20.0, 'republish the current state at this rate while the device is '
                                            'open (the mux treats a silent joystick as stale)', unit='Hz',
                                      lo=1.0, hi=1000.0)
    reopen_period_s: float = param(1.0, 'retry opening a missing or unplugged device this often', unit='s',
                                   lo=0.05, hi=60.0)


class JoystickState:
    """Axes in [-1, 1] and buttons (0/1), grown to the highest index an event names."""

    def __init__(self, deadzone: float = 0.05):
        self.deadzone = deadzone
        self.axes: list[float] = []
        self.buttons: list[int] = []

    def apply(self, event: bytes) -> bool:
        """Apply one 8-byte event; True if the state changed."""
        _, value, kind, number = EVENT.unpack(event)
        kind &= ~INIT
        if kind == BUTTON:
            self.buttons.extend([0] * (number + 1 - len(self.buttons)))
            new = 1 if value else 0
            changed, self.buttons[number] = self.buttons[number] != new, new
            return changed
        if kind == AXIS:
            self.axes.extend([0.0] * (number + 1 - len(self.axes)))
            v = -value / AXIS_MAX
            new = 0.0 if abs(v) < self.deadzone else max(-1.0, min(1.0, v))
            changed, self.axes[number] = self.axes[number] != new, new
            return changed
        return False


def pack(value: int, kind: int, number: int, time_ms: int = 0) -> bytes:
    """One event as the kernel writes it (for tests and simulated devices)."""
    return EVENT.pack(time_ms, value, kind, number)

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Key presses -> the Joy a gamepad would send (Xbox layout, ``KEYBOARD`` mapping): for labs without a gamepad.

A terminal reports presses (and auto-repeats of a held key) but no releases, so:

* the deadman is a toggle by default (``t``): HUMAN DRIVING stays on until ``t`` again; with ``deadman='hold'``
  it is held for ``hold_s`` after each key, i.e. while a key is held down and auto-repeating;
* a motion key moves at ``speed`` along its axis for ``hold_s`` after its last press (bridging the terminal's
  auto-repeat delay); ``space`` stops every axis at once;
* buttons (gripper, success, failure, next, e-stop) are pulses: down for ``pulse_s``, then up, so the mux sees
  one press.

Pure (no terminal, no ROS): ``keyboard_node`` reads the keys and publishes ``joy()`` at a steady rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from hapo_teleop.joy_mapping import N_MOTION, JoyMapping

KEYBOARD = JoyMapping(axis_map=(1, 0, 4, 6, 7, 3))  # the Xbox layout, roll and pitch on the d-pad axes
"""The mux's mapping for the keyboard (config/joy/keyboard.yaml holds the same values)."""

MOTION_KEYS = {  # key -> (motion dimension x y z roll pitch yaw, sign)
    'w': (0, 1), 's': (0, -1), 'a': (1, 1), 'd': (1, -1), 'r': (2, 1), 'f': (2, -1),
    'j': (3, 1), 'l': (3, -1), 'i': (4, 1), 'k': (4, -1), 'u': (5, 1), 'o': (5, -1),
}
BUTTON_KEYS = {'g': 'gripper_button', 'y': 'success_button', 'x': 'failure_button', 'n': 'next_button',
               'e': 'estop_button', 'c': 'estop_reset_button'}
HELP = """keyboard teleop (same Joy as a gamepad; run the graph with joy:=false gamepad:=keyboard)
  t        take over / hand back (deadman toggle)     space  stop all motion
  w / s    +x / -x      a / d  +y / -y      r / f  +z / -z
  j / l    roll +/-     i / k  pitch +/-    u / o  yaw +/-
  g        gripper open/close (while driving)         + / -  speed
  y        success      x  failure          n  next episode (aborts the open one)
  e        E-STOP (latched)                 c  clear the e-stop
  q        quit (hands back first)"""


@dataclass
class KeyboardState:
    """The virtual gamepad: ``press(key, now)`` then ``joy(now)`` -> (axes, buttons)."""

    speed: float = 0.5
    hold_s: float = 0.6
    pulse_s: float = 0.15
    deadman: str = 'toggle'  # or 'hold'
    mapping: JoyMapping = KEYBOARD

    def __post_init__(self) -> None:
        if self.deadman not in ('toggle', 'hold'):
            raise ValueError(f"deadman={self.deadman!r}: use 'toggle' or 'hold'")
        self.driving = False
        self.last_key_s = -1e9
        self.motion_until = [-1e9] * N_MOTION
        self.motion_sign = [0] * N_MOTION
        self.pulses: dict[int, float] = {}  # button index -> down until
        self.estop = False
        self.gripper_closed = False
        self.quit = False

    def press(self, key: str, now_s: float) -> None:
        """Take one key (a character; ' ' for space)."""
        self.last_key_s = now_s
        if key == 't':
            self.driving = not self.driving
        elif key == ' ':
            self.motion_until = [-1e9] * N_MOTION
        elif key in MOTION_KEYS:
            dim, sign = MOTION_KEYS[key]
            self.motion_until[dim], self.motion_sign[dim] = now_s + self.hold_s, sign
        elif key in '+=':
            self.speed = min(1.0, round(self.speed + 0.1, 2))
        elif key in '-_':
            self.speed = max(0.1, round(self.speed - 0.1, 2))
        elif key in BUTTON_KEYS:
            self.pulses[getattr(self.mapping, BUTTON_KEYS[key])] = now_s + self.pulse_s
            self.estop = (self.estop or key == 'e') and key != 'c'
            if key == 'g' and self.human(now_s):
                self.gripper_closed = not self.gripper_closed
        elif key == 'q':
            self.driving, self.quit = False, True

    def human(self, now_s: float) -> bool:
        """Whether the deadman is down now."""
        if self.quit:
            return False
        return self.driving if self.deadman == 'toggle' else now_s - self.last_key_s <= self.hold_s

    def motion(self, now_s: float) -> tuple[float, ...]:
        return tuple(self.speed * s if now_s <= until else 0.0
                     for until, s in zip(self.motion_until, self.motion_sign, strict=True))

    def joy(self, now_s: float) -> tuple[list[float], list[int]]:
        """Axes and buttons of the Joy to publish now."""
        m = self.mapping
        axes = list(m.axes_for(self.motion(now_s)))
        buttons = [0] * m.buttons_needed
        for index, until in self.pulses.items():
            if now_s <= until:
                buttons[index] = 1
        if self.human(now_s):
            buttons[m.deadman_button] = 1
        return axes, buttons

    def status(self, now_s: float) -> str:
        """One screen line: who drives, in capitals when it is the human."""
        who = ('HUMAN DRIVING' if self.human(now_s) else 'policy drives') + f' (deadman {self.deadman}: t)'
        moving = ' '.join(f'{d}{"+" if v > 0 else "-"}' for d, v in zip('xyzRPY', self.motion(now_s), strict=True)
                          if v)
        estop = ' | E-STOP LATCHED (c clears)' if self.estop else ''
        return f'{who} | speed {self.speed:.1f} | {moving or "still"} | gripper ' \
               f'{"closed" if self.gripper_closed else "open"}{estop}'

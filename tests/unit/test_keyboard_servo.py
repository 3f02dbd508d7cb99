# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The keyboard's virtual gamepad and the servo executor's mapping, as plain Python: what the mux will execute
for a key, pulses and the hold-mode deadman; twists scaled and clamped, holds and NaN as zero, the watchdog."""

from __future__ import annotations

import math

import pytest

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import EpisodeMessage
from hapo_teleop.joy_mapping import joy_input
from hapo_teleop.keyboard import KEYBOARD, MOTION_KEYS, KeyboardState
from hapo_teleop.servo import Episodes, ServoParams, Watchdog, to_servo


def executed(state, now):
    axes, buttons = state.joy(now)
    return KEYBOARD.motion(joy_input(axes, buttons)), buttons


@pytest.mark.parametrize('key', sorted(MOTION_KEYS))
def test_each_motion_key_moves_one_dimension_at_speed_until_hold_s_after_it(key):
    k = KeyboardState(speed=0.3, hold_s=0.5)
    k.press(key, 10.0)
    dim, sign = MOTION_KEYS[key]
    motion, _ = executed(k, 10.4)
    assert motion[dim] == pytest.approx(0.3 * sign, abs=1e-6) and sum(map(abs, motion)) == pytest.approx(0.3)
    assert not any(executed(k, 10.6)[0])


def test_deadman_toggle_and_hold_modes_and_button_pulses():
    k = KeyboardState()
    assert executed(k, 0)[1][KEYBOARD.deadman_button] == 0
    k.press('t', 1.0)
    assert executed(k, 100.0)[1][KEYBOARD.deadman_button] == 1  # stays down: no release to wait for
    k.press('y', 101.0)
    assert executed(k, 101.1)[1][KEYBOARD.success_button] == 1 and executed(k, 101.3)[1][KEYBOARD.success_button] == 0
    k.press('q', 102.0)
    assert executed(k, 102.0)[1][KEYBOARD.deadman_button] == 0 and k.quit
    h = KeyboardState(deadman='hold', hold_s=0.5)
    h.press('w', 0.0)
    assert executed(h, 0.4)[1][KEYBOARD.deadman_button] == 1 and executed(h, 0.6)[1][KEYBOARD.deadman_button] == 0
    with pytest.raises(ValueError, match='deadman'):
        KeyboardState(deadman='sticky')


def test_status_line_says_who_drives_and_the_estop():
    k = KeyboardState()
    assert k.status(0).startswith('policy drives')
    k.press('t', 0)
    k.press('e', 0)
    assert k.status(0).startswith('HUMAN DRIVING') and 'E-STOP LATCHED' in k.status(0)
    k.press('c', 0)
    assert 'E-STOP' not in k.status(0)


def test_actions_become_clamped_twists_and_holds_nan_zero():
    p = ServoParams(max_linear_m_s=0.2, max_angular_rad_s=1.0, gripper_open=0.1, gripper_closed=0.9)
    c = to_servo((0.5, -2.0, 0.0, 0.1, 0.0, -1.0, 1.0), ControlSource.POLICY, p)
    assert c.linear == pytest.approx((0.1, -0.2, 0.0)) and c.angular == pytest.approx((0.1, 0.0, -1.0))
    assert c.gripper == 0.9 and to_servo((0,) * 6 + (-1.0,), ControlSource.HUMAN, p).gripper == 0.1
    for source in (ControlSource.NONE, ControlSource.STOPPED):
        held = to_servo((1.0,) * 7, source, p)
        assert held.linear == (0, 0, 0) and held.angular == (0, 0, 0) and held.gripper is None
    assert to_servo((math.nan,) + (0.0,) * 6, ControlSource.POLICY, p).linear == (0, 0, 0)


def test_the_watchdog_zeroes_a_stale_command_and_sends_the_gripper_on_change():
    p = ServoParams()
    w = Watchdog(timeout_ns=100)
    assert w.twist(0) == ((0, 0, 0), (0, 0, 0), False)
    assert w.command(to_servo((1.0,) * 6 + (1.0,), ControlSource.POLICY, p), 1000) == p.gripper_closed
    assert w.command(to_servo((1.0,) * 6 + (1.0,), ControlSource.POLICY, p), 1010) is None  # unchanged
    assert w.twist(1110)[0] == (p.max_linear_m_s,) * 3 and w.twist(1111) == ((0, 0, 0), (0, 0, 0), True)


def test_next_starts_an_episode_and_success_only_ends_one():
    e = Episodes(ServoParams(task='pick', demo=True))
    assert not e.on_event(EpisodeMessage(EpisodeEvent.SUCCESS, 1, 'mux'))
    assert e.on_event(EpisodeMessage(EpisodeEvent.ABORT, 2, 'mux', {'reason': 'next'}))
    start = e.start(3)
    assert start.event is EpisodeEvent.START and start.extra == {'task': 'pick', 'instruction': '', 'episode': 1,
                                                                 'demo': True}
    assert e.open and not e.on_event(start)

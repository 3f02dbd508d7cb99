# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""JoyEncoder / JoyMapping.axes_for: an action through Joy and the real MuxLogic comes back as that action."""

from __future__ import annotations

import numpy as np
import pytest

from hapo_interfaces.enums import ControlSource
from hapo_teleop.joy_mapping import JoyEncoder, JoyMapping
from hapo_teleop.mux import MuxLogic, MuxParams

FULL = (1, 0, 4, 6, 7, 3)  # every motion dim on an axis (d-pad for roll and pitch)
MS = 1_000_000


@pytest.mark.parametrize('deadzone', [0.0, 0.1, 0.35])
def test_axes_for_inverts_motion_up_to_float32(deadzone):
    mapping = JoyMapping(axis_map=FULL, axis_scale=(1.0, -1.0, 1.0, 0.5, 1.0, -1.0), deadzone=deadzone)
    rng = np.random.default_rng(0)
    for motion in [*rng.uniform(-1, 1, (200, 6)), np.zeros(6), np.full(6, 1e-9), [1, -1, 1, 0.5, -1, 1]]:
        motion = [float(v) for v in motion]
        axes = mapping.axes_for(motion)
        assert all(float(np.float32(a)) == a and abs(a) <= 1.0 for a in axes), 'Joy axes are float32 in [-1, 1]'
        expected = [max(-0.5, min(0.5, m)) if i == 3 else m for i, m in enumerate(motion)]  # |scale| 0.5 saturates
        got = mapping.motion(mapping_input(axes))
        assert np.allclose(got, expected, rtol=0, atol=2e-7), (motion, got)


def test_unmapped_dimensions_are_lost_and_say_so_in_what_is_executed():
    mapping = JoyMapping()  # Xbox: roll and pitch have no axis
    enc = JoyEncoder(mapping)
    out = enc.encode([0.3, -0.2, 0.1, 0.4, -0.5, 0.6, -1.0], 7)
    assert out.executed[3:5] == (0.0, 0.0)
    assert np.allclose(out.executed, [0.3, -0.2, 0.1, 0.0, 0.0, 0.6, -1.0], atol=2e-7)


def mapping_input(axes):
    from hapo_teleop.joy_mapping import joy_input

    return joy_input(axes, [0] * 11)


def test_encoded_actions_through_the_real_mux_in_lockstep():
    """Deadman, deadzone, signs, toggles (also on consecutive steps): the mux executes what the encoder says."""
    params = MuxParams(axis_map=list(FULL))
    mux, enc = MuxLogic(params), JoyEncoder(params.mapping(), params.initial_gripper)
    rng = np.random.default_rng(1)
    grippers = [-1, -1, 1, 1, 1, -1, 1, -1, -1, 0, 1, 1]
    assert mux.step(5 * MS, joy=enc.idle(1)).commands == []  # takes control, answers nothing
    for i, g in enumerate(grippers):
        stamp = (i + 1) * 10 * MS
        action = [*rng.uniform(-1, 1, 6), g]
        mux.step(stamp, obs_stamp_ns=stamp)  # the observation reaches the mux first (or last: see below)
        out = enc.encode(action, stamp)
        commands = [c for msg in out.messages for c in mux.step(stamp + MS, joy=msg).commands]
        assert len(commands) == 1 and commands[0].source is ControlSource.HUMAN and commands[0].stamp_ns == stamp
        assert commands[0].action == out.executed
        want_grip = enc.gripper if g == 0 else float(np.sign(g))
        assert np.allclose(commands[0].action, [*action[:6], want_grip], atol=2e-7), i
        assert mux.step(stamp + 2 * MS, joy=out.messages[-1], tick=True).commands == []  # keepalive: nothing new


def test_joy_before_its_observation_waits_for_it():
    params = MuxParams(axis_map=list(FULL))
    mux, enc = MuxLogic(params), JoyEncoder(params.mapping())
    mux.step(0, joy=enc.idle(1), obs_stamp_ns=100)
    assert mux.step(1 * MS, tick=True).commands == []  # stamped 1: made before observation 100, no answer
    assert len(mux.step(2 * MS, joy=enc.encode([0.1, 0, 0, 0, 0, 0, -1], 100).messages[0]).commands) == 1
    out = enc.encode([0.5, 0, 0, 0, 0, 0, -1], 200)
    assert mux.step(3 * MS, joy=out.messages[0], tick=True).commands == []  # observation 200 not seen yet
    cmd = mux.step(4 * MS, obs_stamp_ns=200).commands
    assert [(c.stamp_ns, c.source) for c in cmd] == [(200, ControlSource.HUMAN)]
    assert cmd[0].action[0] == pytest.approx(0.5, abs=2e-7)


def test_encoder_refuses_a_wrong_size():
    with pytest.raises(ValueError, match='7 values'):
        JoyEncoder(JoyMapping()).encode([0.0] * 6, 1)
    with pytest.raises(ValueError, match='6 values'):
        JoyMapping().axes_for([0.0] * 7)

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""JoyExpert (no ROS): which observation is answered when, across the arrival orders of events and states."""

from __future__ import annotations

import numpy as np
import pytest

from hapo_interfaces.enums import EpisodeEvent as E
from hapo_interfaces.params import ParamError
from hapo_interfaces.records import EpisodeMessage
from hapo_sim.env import SimError, flatten_state, unflatten_state
from hapo_sim.joy_expert import ExpertParams, JoyExpert

STATE = {'cube_pos': np.array([0.0, 0.0, 0.82]), 'eef_pos': np.array([-0.1, 0.0, 1.0]),
         'eef_quat': np.array([0.0, 1.0, 0.0, 0.0])}


def ev(kind, stamp, **extra):
    return EpisodeMessage(kind, stamp, 'sim', extra)


def test_object_state_message_round_trip():
    names, values = flatten_state(STATE)
    assert names[:3] == ['cube_pos.x', 'cube_pos.y', 'cube_pos.z'] and names[-1] == 'eef_quat.qw'
    back = unflatten_state(names, values)
    assert list(back) == list(STATE) and all(np.array_equal(back[k], STATE[k]) for k in STATE)
    with pytest.raises(SimError, match="'cube' is not"):
        unflatten_state(['cube'], [1.0])


def test_answers_each_observation_once_with_its_stamp():
    ex = JoyExpert(ExpertParams(axis_map=[1, 0, 4, 6, 7, 3]))
    assert ex.last.stamp_ns == 1 and ex.last.buttons[4] == 1  # before anything: deadman held, answers nothing
    assert ex.observe(100, STATE).messages == [] and ex.counts['waited'] == 1  # its START is not known yet
    (msg,) = ex.event(ev(E.START, 90, seed=3)).messages  # the waiting observation is answered now
    assert msg.stamp_ns == 100 and msg.buttons[4] == 1 and msg.axes[1] == 1.0  # x (axis 1): full +x to the cube
    again = ex.observe(100, STATE)  # the sim re-sent it: same message, the expert is not stepped again
    assert again.messages == [msg] and again.executed == () and ex.steps == 1
    assert ex.observe(50, STATE).messages == [] and ex.counts['stale'] == 1
    assert len(ex.observe(110, STATE).messages) == 1 and ex.steps == 2


def test_a_new_episode_resets_the_expert_with_its_seed_and_waits_for_its_start():
    ex = JoyExpert(ExpertParams())
    ex.event(ev(E.START, 10, seed=7))
    first = ex.observe(11, STATE).executed
    ex.event(ev(E.SUCCESS, 20, steps=1))
    assert ex.observe(22, STATE).messages == []  # after the end event: belongs to a START not seen yet
    ex.event(ev(E.START, 21, seed=7))
    assert ex.steps == 1 and ex.counts['late_start'] == 0
    fresh = JoyExpert(ExpertParams())
    fresh.event(ev(E.START, 10, seed=7))
    assert fresh.observe(11, STATE).executed == first  # same seed, same state: same noisy action
    fresh.observe(30, STATE)
    fresh.event(ev(E.START, 25, seed=8))  # answered an observation of the new episode as the old one's
    assert fresh.counts['late_start'] == 1


def test_a_mapping_the_message_cannot_carry_fails_in_one_line():
    with pytest.raises(ParamError, match='joy_axes=4: axis_map needs 8'):
        ExpertParams(axis_map=[1, 0, 4, 6, 7, 3], joy_axes=4).mapping()
    with pytest.raises(ParamError, match='joystick mapping: axis_map'):
        ExpertParams(axis_map=[1, 0]).mapping()

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Recorder (the node's logic, no ROS): messages queued before the START event they belong to are recorded.

The node's executor takes ready subscriptions in creation order, so a step's proposal or command can reach the
queue before the episode's START; the pre-roll keeps them, and only those stamped at or after the start."""

from __future__ import annotations

from test_bag_roundtrip import JS, MS, STR, T0, joint_state, string

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import EpisodeMessage, encode_event
from hapo_recorder.bag_reader import list_episodes, read_episode
from hapo_recorder.params import RecorderParams
from hapo_recorder.recorder import Recorder, TopicSpec

SPECS = [TopicSpec('/hapo/episode', STR, 'episode'), TopicSpec('/hapo/cmd', JS, 'cmd'),
         TopicSpec('/hapo/policy/action', JS, 'policy_action')]


def event(kind, stamp_ns):
    return string(encode_event(EpisodeMessage(kind, stamp_ns, 'test', {'task': 'lift'})))


def test_messages_before_their_start_event_are_recorded(tmp_path):
    logs = []
    rec = Recorder(SPECS, RecorderParams(output_root=str(tmp_path), close_grace_s=0.0),
                   lambda level, text: logs.append((level, text)))
    rec.start()
    stale = T0 - 10 * MS  # a republished observation of the previous episode: must stay out
    rec.offer('/hapo/policy/action', joint_state(stale, [0.9] * 7))
    first = T0 + 5 * MS  # the first step, taken by the executor before the START it follows
    rec.offer('/hapo/policy/action', joint_state(first, [0.1] * 7))
    rec.offer('/hapo/cmd', joint_state(first, [0.1] * 7, ControlSource.POLICY.wire))
    rec.offer('/hapo/episode', event(EpisodeEvent.START, T0))
    second = T0 + 55 * MS
    rec.offer('/hapo/policy/action', joint_state(second, [0.2] * 7))
    rec.offer('/hapo/cmd', joint_state(second, [0.2] * 7, ControlSource.POLICY.wire))
    rec.offer('/hapo/episode', event(EpisodeEvent.SUCCESS, second + 1))
    rec.stop()
    assert rec.errors == 0, logs

    (bag,) = list_episodes([tmp_path])
    ep = read_episode(bag, decode_images=False)
    assert ep.outcome == 'success'
    assert ep.step_stamps_ns.tolist() == [first, second]
    assert ep.proposal_stamps_ns.tolist() == [first, second]
    assert rec.stats['/hapo/policy/action'].outside == 1  # only the stale one
    assert rec.stats['/hapo/cmd'].written == 2

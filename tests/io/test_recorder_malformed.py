# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Recorder (no ROS): a stream of malformed episode events gives one warning line, and the episode records on."""

from __future__ import annotations

from test_bag_roundtrip import JS, MS, STR, T0, joint_state, string
from test_recorder_preroll import event

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_recorder.bag_reader import list_episodes, read_episode
from hapo_recorder.params import RecorderParams
from hapo_recorder.recorder import Recorder, Throttle, TopicSpec

SPECS = [TopicSpec('/hapo/episode', STR, 'episode'), TopicSpec('/hapo/cmd', JS, 'cmd')]


def test_throttle_one_line_per_key_and_period_telling_what_it_held_back():
    now = [0.0]
    throttle = Throttle(5.0, clock=lambda: now[0])
    assert throttle('a') == 0 and throttle('a') is None and throttle('b') == 0  # keys apart
    now[0] = 4.9
    assert throttle('a') is None
    now[0] = 5.0
    assert throttle('a') == 2 and throttle('a') is None


def test_malformed_episode_events_warn_once_and_the_episode_records_on(tmp_path):
    # the fault matrix (bench/faults_malformed.py) found 50 bad events giving 50 warning lines
    logs = []
    rec = Recorder(SPECS, RecorderParams(output_root=str(tmp_path), close_grace_s=0.0),
                   lambda level, text: logs.append((level, text)))
    rec.start()
    rec.offer('/hapo/episode', event(EpisodeEvent.START, T0))
    for i in range(50):
        rec.offer('/hapo/episode', string('{"event": "explode", "stamp_ns": 1}' if i % 2 else '{"event": '))
    rec.offer('/hapo/cmd', joint_state(T0 + 5 * MS, [0.1] * 7, ControlSource.POLICY.wire))
    rec.offer('/hapo/episode', event(EpisodeEvent.SUCCESS, T0 + 10 * MS))
    rec.stop()
    warned = [text for level, text in logs if level == 'warn']
    assert len(warned) == 1 and "malformed episode event on /hapo/episode" in warned[0], logs
    assert rec.stats['/hapo/episode'].malformed == 50
    (bag,) = list_episodes([tmp_path])
    ep = read_episode(bag, decode_images=False)
    assert ep.outcome == 'success' and ep.step_stamps_ns.tolist() == [T0 + 5 * MS]

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Recorder (the node's logic, no ROS): messages queued before the START event they belong to are recorded.

The node's executor takes ready subscriptions in creation order, so a step's proposal or command can reach the
queue before the episode's START; the pre-roll keeps them, and only those stamped at or after the start."""

from __future__ import annotations

import threading
import time

from test_bag_roundtrip import JS, MS, STR, T0, joint_state, string

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import EpisodeMessage, encode_event
from hapo_interfaces.topics import CMD_HISTORY
from hapo_recorder.bag_reader import list_episodes, read_episode
from hapo_recorder.params import RecorderParams
from hapo_recorder.recorder import PREROLL, Recorder, TopicSpec

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


def sim_event(kind, stamp_ns, **extra):
    return string(encode_event(EpisodeMessage(kind, stamp_ns, 'sim', {'task': 'lift', **extra})))


def test_the_answer_to_the_final_observation_is_not_an_executed_step(tmp_path):
    """A lockstep sim's end event counts the executed steps; an answer to the final observation (published before
    the end event, never executed) stays out of the bag, whether it arrives before or after the end event, and so
    does a late one reaching the next episode."""
    rec = Recorder(SPECS, RecorderParams(output_root=str(tmp_path), close_grace_s=0.0), lambda *_: None)
    rec.start()
    human = ControlSource.HUMAN.wire
    for ep, (early, count) in enumerate([(True, 3), (False, 2)]):
        t0 = T0 + ep * 1000 * MS
        rec.offer('/hapo/episode', sim_event(EpisodeEvent.START, t0, seed=ep))
        if ep:  # the previous episode's final answer, arriving late
            rec.offer('/hapo/cmd', joint_state(T0 + 4 * MS, [0.9] * 7, human))
        for i in range(count):
            rec.offer('/hapo/cmd', joint_state(t0 + (i + 1) * MS, [0.1 * (i + 1)] * 7, human))
        final = t0 + (count + 1) * MS
        end = sim_event(EpisodeEvent.SUCCESS, final + 1, steps=count)
        answer = joint_state(final, [0.9] * 7, human)
        for raw in ((answer, end) if early else (end, answer)):
            rec.offer('/hapo/episode' if raw is end else '/hapo/cmd', raw)
    rec.stop()
    bags = [read_episode(p, decode_images=False) for p in list_episodes([tmp_path])]
    assert [len(ep.sources) for ep in bags] == [3, 2] and all(ep.outcome == 'success' for ep in bags)
    assert all((ep.actions < 0.5).all() for ep in bags), 'no answer to a final observation recorded'
    assert rec.stats['/hapo/cmd'].outside == 3


def test_a_policy_command_sent_again_for_its_observation_is_one_step(tmp_path):
    """The mux re-sends a policy command when a lockstep sim asks again (mux.py); holds between the two sends do
    not part them. A human step with a repeated stamp (a real robot's mux: one per tick) stays a step of its own."""
    rec = Recorder(SPECS, RecorderParams(output_root=str(tmp_path), close_grace_s=0.0), lambda *_: None)
    rec.start()
    policy, hold, human = (s.wire for s in (ControlSource.POLICY, ControlSource.NONE, ControlSource.HUMAN))
    rec.offer('/hapo/episode', event(EpisodeEvent.START, T0))
    a, b = T0 + MS, T0 + 2 * MS
    for stamp, source in ((a, policy), (a, hold), (a, policy), (b, policy), (b, human), (b, human)):
        rec.offer('/hapo/cmd', joint_state(stamp, [0.1] * 7, source))
    rec.offer('/hapo/episode', event(EpisodeEvent.SUCCESS, b + 1))
    rec.stop()
    (bag,) = list_episodes([tmp_path])
    ep = read_episode(bag, decode_images=False)
    assert [ControlSource(s).wire for s in ep.sources] == [policy, hold, policy, human, human]
    assert rec.stats['/hapo/cmd'].resent == 1


def test_a_restarted_recorder_resumes_the_running_episode_from_the_latched_start(tmp_path):
    """hapo/episode/latest brings the running episode's START to a recorder that (re)joins: with the bag of that
    START cut under output_root it continues it in a linked bag; the same START heard on both topics opens one
    bag, and a latched START of an episode already ended opens none."""
    specs = [*SPECS, TopicSpec('/hapo/episode/latest', STR, 'episode_latest')]
    params = RecorderParams(output_root=str(tmp_path), close_grace_s=0.0, flush_period_s=0.0)
    policy = ControlSource.POLICY.wire
    crashed = Recorder(specs, params, lambda *_: None)
    crashed.start()
    crashed.offer('/hapo/episode', sim_event(EpisodeEvent.START, T0, seed=4))
    crashed.offer('/hapo/episode/latest', sim_event(EpisodeEvent.START, T0, seed=4))  # the relay: handled once
    crashed.offer('/hapo/cmd', joint_state(T0 + MS, [0.1] * 7, policy))
    crashed.offer('/hapo/cmd', joint_state(T0 + 2 * MS, [0.2] * 7, policy))
    time.sleep(0.3)  # written and flushed; then the process dies: no close, no metadata.yaml
    crashed._thread = threading.Thread()  # a kill -9: stop() finds no writer thread to drain
    (cut,) = list_episodes([tmp_path])

    logs = []
    back = Recorder(specs, params, lambda level, text: logs.append(text))
    back.start()
    back.offer('/hapo/episode/latest', sim_event(EpisodeEvent.START, T0, seed=4))
    back.offer('/hapo/cmd', joint_state(T0 + 5 * MS, [0.3] * 7, policy))
    back.offer('/hapo/episode', sim_event(EpisodeEvent.START, T0, seed=4))  # a late copy: no second bag
    back.offer('/hapo/cmd', joint_state(T0 + 6 * MS, [0.4] * 7, policy))
    back.offer('/hapo/episode', sim_event(EpisodeEvent.SUCCESS, T0 + 7 * MS, steps=6))
    back.offer('/hapo/episode/latest', sim_event(EpisodeEvent.START, T0, seed=4))  # after its end: nothing
    back.stop()
    assert back.errors == 0 and any(f'it continues {cut.name}' in line for line in logs), logs
    first, cont = (read_episode(p, decode_images=False) for p in list_episodes([tmp_path]))
    # the newest driving step waits for the next one (module docstring of recorder.py): the kill loses it
    assert first.path == cut and first.truncated and first.step_stamps_ns.tolist() == [T0 + MS]
    assert cont.outcome == 'success' and cont.metadata['continuation_of'] == cut.name
    assert cont.step_stamps_ns.tolist() == [T0 + 5 * MS, T0 + 6 * MS]
    assert [e.event for e in cont.events] == [EpisodeEvent.START, EpisodeEvent.SUCCESS]

    fresh = tmp_path / 'fresh'  # a first start: the latched START of a running episode with no cut bag
    rec = Recorder(specs, RecorderParams(output_root=str(fresh), close_grace_s=0.0), lambda *_: None)
    rec.start()
    rec.offer('/hapo/episode/latest', sim_event(EpisodeEvent.START, T0, seed=4))
    rec.offer('/hapo/cmd', joint_state(T0 + 5 * MS, [0.3] * 7, policy))
    rec.offer('/hapo/episode', sim_event(EpisodeEvent.SUCCESS, T0 + 7 * MS))
    rec.stop()
    (only,) = [read_episode(p, decode_images=False) for p in list_episodes([fresh])]
    assert 'continuation_of' not in only.metadata and only.outcome == 'success'


def test_the_mux_history_reaching_a_late_recorder_before_its_start_is_recorded(tmp_path):
    """hapo/cmd is transient local: a recorder matching the mux late gets up to CMD_HISTORY executed steps at once,
    often before the (latched) START they belong to. More than the general pre-roll holds: all are kept, with the
    proposals that came with them; steps of the previous episode stay out."""
    rec = Recorder(SPECS, RecorderParams(output_root=str(tmp_path), close_grace_s=0.0), lambda *_: None)
    rec.start()
    rec.offer('/hapo/cmd', joint_state(T0 - 10 * MS, [0.9] * 7, ControlSource.POLICY.wire))  # previous episode
    steps = [T0 + (i + 1) * MS for i in range(CMD_HISTORY)]
    assert CMD_HISTORY > PREROLL
    for i, t in enumerate(steps):
        rec.offer('/hapo/cmd', joint_state(t, [0.001 * i] * 7, ControlSource.POLICY.wire))
    rec.offer('/hapo/policy/action', joint_state(steps[-1], [0.5] * 7))
    rec.offer('/hapo/episode', event(EpisodeEvent.START, T0))
    rec.offer('/hapo/episode', event(EpisodeEvent.SUCCESS, steps[-1] + 1))
    rec.stop()
    (bag,) = list_episodes([tmp_path])
    ep = read_episode(bag, decode_images=False)
    assert ep.step_stamps_ns.tolist() == steps and ep.proposal_stamps_ns.tolist() == [steps[-1]]
    assert rec.stats['/hapo/cmd'].outside == 1

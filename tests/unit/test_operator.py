# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The simulated operator (no ROS): its predicates, its arrival-order rules, and closed loops on the real simulator
through the real mux logic, with a bad policy and with the expert as the policy."""

from __future__ import annotations

import numpy as np
import pytest

from hapo_interfaces.enums import ControlSource as S
from hapo_interfaces.enums import EpisodeEvent as E
from hapo_interfaces.params import ParamError
from hapo_interfaces.records import EpisodeMessage, ExecutedStep
from hapo_sim.env import SimEnv, SimError
from hapo_sim.experts import expert_for
from hapo_sim.operator import FailureWatch, OperatorParams, SimOperator
from hapo_teleop.mux import MuxLogic, MuxParams, PolicyInput

AXES = [1, 0, 4, 6, 7, 3]  # every motion dim on an axis (as hapo collect-demos / evaluate-sim --operator use)
DEADMAN = 4


def state(eef, cube):
    return {'cube_pos': np.array(cube, float), 'eef_pos': np.array(eef, float),
            'eef_quat': np.array([1.0, 0.0, 0.0, 0.0])}


def watch(**kw):
    return FailureWatch(OperatorParams(**kw), 'cube_pos')


def test_each_predicate_fires_on_its_situation():
    w = watch(stall_steps=5)
    reasons = [w.update(state([0, 0, 1.0 - 0.02 * i], [0, 0, 0.8]), -1.0) for i in range(8)]
    assert reasons == [None] * 8  # nearing the cube: progress
    assert [w.update(state([0, 0, 0.86], [0, 0, 0.8]), -1.0) for _ in range(5)][-1] == 'stalled'
    w = watch()
    assert w.update(state([0, 0, 1.0], [0, 0, 0.8]), None) is None
    assert w.update(state([0, 0, 1.0], [0, 0, 0.8]), 1.0) == 'grasp_far'  # closing 20 cm above the cube
    w = watch()
    w.update(state([0, 0, 0.8], [0, 0, 0.8]), 1.0)  # closed on the cube: fine
    w.update(state([0, 0, 0.9], [0, 0, 0.9]), 1.0)  # lifted 10 cm
    assert w.update(state([0, 0, 0.9], [0, 0, 0.85]), 1.0) == 'dropped'
    w = watch()
    w.update(state([0, 0, 0.9], [0, 0, 0.8]), -1.0)
    assert w.update(state([0.2, 0, 0.9], [0, 0, 0.8]), -1.0) == 'drifting'


def test_parameters_are_checked_in_one_line():
    with pytest.raises(ParamError, match="handback_phase='fly'.*'descend', 'close', 'lift'"):
        SimOperator(OperatorParams(handback_phase='fly'))
    with pytest.raises(SimError, match=r"lacks \['cube_pos'\]"):
        SimOperator(OperatorParams()).observe(5, {'eef_pos': np.zeros(3), 'eef_quat': np.zeros(4)})


def test_an_observation_waits_for_its_start_and_for_the_previous_command():
    op = SimOperator(OperatorParams(axis_map=AXES))
    far = state([0, 0, 1.0], [0, 0, 0.8])
    assert op.observe(100, far) == [] and op.waiting() == 'observation 100 waits for its START'
    (msg,) = op.event(EpisodeMessage(E.START, 90, 'sim', {'seed': 3}))
    assert msg.stamp_ns == 100 and msg.buttons[DEADMAN] == 0  # watching: deadman up
    assert op.observe(100, far) == [msg]  # re-sent: the same answer
    assert op.observe(200, far) == []  # the command executed for 100 has not come yet
    assert op.waiting() == 'observation 200 waits for the command executed for 100'
    (msg,) = op.executed(ExecutedStep(100, (0,) * 6 + (1.0,), S.POLICY))
    assert msg.stamp_ns == 200 and op.watch._closest < 1  # answered now, with the policy closing the gripper
    op.executed(ExecutedStep(200, (0,) * 6 + (1.0,), S.POLICY))
    answers = [op.observe(300 + 100 * i, far) + op.executed(ExecutedStep(300 + 100 * i, (0,) * 7, S.POLICY))
               for i in range(4)]
    # grasp_far fired at 200; 3 observations of reaction (200, 300, 400), then it drives from 500
    assert [a[-1].buttons[DEADMAN] for a in answers] == [0, 0, 1, 1]
    assert [(t.event, t.step, t.reason) for t in op.log] == [('takeover', 4, 'grasp_far')]


def test_an_operator_that_missed_a_start_answers_the_next_episode():
    """Restarted mid-episode (bench/faults.py --operator), the operator sees observations whose START it never
    heard. It used to queue them for ever, and every later observation behind them: the lockstep sim waited for its
    answer for good. operator_node now hears the running START on hapo/episode/latest too (counted once), and an
    observation older than a START it knows of is dropped: its own START is not coming."""
    op = SimOperator(OperatorParams(axis_map=AXES))
    far = state([0, 0, 1.0], [0, 0, 0.8])
    assert op.observe(100, far) == [] and op.observe(200, far) == []  # the episode of START 50, never heard
    assert op.event(EpisodeMessage(E.START, 300, 'sim', {'seed': 4})) == []  # the next episode: 100, 200 dropped
    assert op.observe(310, far)[-1].stamp_ns == 310
    assert op.counts['missed_start'] == 2 and op.waiting() == 'nothing'
    assert op.event(EpisodeMessage(E.START, 300, 'sim', {'seed': 4})) == []  # heard again on the latched topic
    assert op.episodes.episode_of(310) == (300, 4)


def test_asking_for_help_waits_for_the_entropy_of_each_watched_observation_and_takes_over_when_the_flag_rises():
    op = SimOperator(OperatorParams(axis_map=AXES, ask_for_help=True, uncertain_threshold=2.0, reaction_steps=1))
    near = state([0, 0, 0.9], [0, 0, 0.8])
    calm, unsure = [1.0] * 7, [0.5] * 6 + [2.5]
    assert op.entropy(100, calm) == []  # before its START and its observation: kept
    op.event(EpisodeMessage(E.START, 90, 'sim', {'seed': 3}))
    assert len(op.observe(100, near)) == 1 and not op.flag.raised
    op.executed(ExecutedStep(100, (0,) * 6 + (-1.0,), S.POLICY))
    assert op.observe(200, near) == []  # watching: the policy's entropy for 200 is needed first
    assert op.waiting() == "observation 200 waits for the policy's entropy (the newest taken: 100)"
    (msg,) = op.entropy(200, unsure)  # the flag rises: the policy asks for help; one step of reaction
    assert msg.stamp_ns == 200 and msg.buttons[DEADMAN] == 0 and op.flag.raised and op.reason == 'uncertain'
    assert op.entropy(200, calm) == []  # a repeat (republished observation) keeps the first
    op.executed(ExecutedStep(200, (0,) * 6 + (-1.0,), S.POLICY))
    op.entropy(300, unsure)
    (msg,) = op.observe(300, near)
    assert msg.buttons[DEADMAN] == 1 and [(t.event, t.reason) for t in op.log] == [('takeover', 'uncertain')]
    op.executed(ExecutedStep(300, (0,) * 7, S.HUMAN))
    assert len(op.observe(400, near)) >= 1, 'driving, it waits for no entropy'
    assert op.waiting() == 'nothing'
    assert op.counts['takeover_uncertain'] == 1
    ended = SimOperator(OperatorParams(axis_map=AXES, ask_for_help=True, uncertain_threshold=2.0))
    ended.event(EpisodeMessage(E.START, 90, 'sim', {'seed': 3}))
    ended.entropy(100, calm)
    ended.observe(100, near)
    ended.executed(ExecutedStep(100, (0,) * 6 + (-1.0,), S.POLICY))
    assert ended.observe(200, near) == []  # the episode's last observation: the policy skipped it, no entropy comes
    ended.event(EpisodeMessage(E.SUCCESS, 250, 'sim', {}))
    ended.event(EpisodeMessage(E.START, 290, 'sim', {'seed': 4}))
    ended.entropy(300, calm)
    assert [m.stamp_ns for m in ended.observe(300, near)] == [200, 300], 'the next episode does not wait on it'
    quiet = SimOperator(OperatorParams(axis_map=AXES))  # off: entropies are ignored, never waited for
    quiet.event(EpisodeMessage(E.START, 90, 'sim', {'seed': 3}))
    assert quiet.entropy(100, unsure) == [] and quiet.flag is None and len(quiet.observe(100, near)) == 1
    with pytest.raises(ParamError, match='uncertain_threshold/uncertain_hysteresis'):
        SimOperator(OperatorParams(ask_for_help=True, uncertain_threshold=0.2, uncertain_hysteresis=0.25))


class Policy:
    """A policy for the closed loop: the expert (``expert``) or a bad one that drives the arm away and closes."""

    def __init__(self, kind):
        self.kind = kind
        self.expert = expert_for('lift', noise_std=0.0)

    def reset(self, seed):
        self.expert.reset(seed)

    def act(self, obs):
        if self.kind == 'expert':
            return tuple(float(v) for v in self.expert.act(obs))
        return (0.0, 0.5, 0.3, 0.0, 0.0, 0.0, 1.0)


def closed_loop(env, policy, seeds, horizon=150, **kw):
    """Episodes as the graph runs them: the operator answers each observation first, then the policy (the mux's
    order does not matter with lockstep_operator); the mux decides; the sim executes what it sends."""
    p = OperatorParams(axis_map=AXES, **kw)
    op = SimOperator(p)
    mux = MuxLogic(MuxParams(lockstep_operator=True, axis_map=AXES))
    stamp, out = 10, []
    from hapo_teleop.joy_mapping import joy_input

    for seed in seeds:
        stamp += 10
        op.event(EpisodeMessage(E.START, stamp, 'sim', {'seed': seed}))
        obs, success, sources, actions = env.reset(seed), False, [], []
        policy.reset(seed)
        for _ in range(horizon):
            stamp += 10
            mux.step(stamp, obs_stamp_ns=stamp)
            cmds = []
            for j in op.observe(stamp, obs.object_state):
                cmds += mux.step(stamp, joy=joy_input(j.axes, j.buttons, j.stamp_ns)).commands
            cmds += mux.step(stamp, policy=PolicyInput(stamp, policy.act(obs))).commands
            (cmd,) = [c for c in cmds if c.source in (S.POLICY, S.HUMAN)]
            op.executed(ExecutedStep(cmd.stamp_ns, cmd.action, cmd.source))
            sources.append(cmd.source)
            actions.append(cmd.action)
            obs, success = env.step(cmd.action)
            if success:
                break
        stamp += 10
        op.event(EpisodeMessage(E.SUCCESS if success else E.FAILURE, stamp, 'sim', {}))
        out.append((success, sources, np.array(actions)))
    return out, op


@pytest.fixture(scope='module')
def lift_env():
    e = SimEnv('lift', cameras=(), seed=0)
    yield e
    e.close()


def test_it_never_takes_over_the_expert_driving_as_the_policy(lift_env):
    episodes, op = closed_loop(lift_env, Policy('expert'), range(3))
    assert all(success for success, _, _ in episodes)
    assert op.log == [] and all(set(sources) == {S.POLICY} for _, sources, _ in episodes)


def test_it_takes_over_a_bad_policy_recovers_hands_back_and_is_reproducible(lift_env):
    episodes, op = closed_loop(lift_env, Policy('bad'), range(2), max_takeovers=1)
    for success, sources, _ in episodes:
        human = [s is S.HUMAN for s in sources]
        first = human.index(True)
        assert 4 <= first <= 8  # grasp_far fires on the second observation, then 3 of reaction
        assert not any(human[:first]) and S.POLICY in sources[first:]  # handed back after recovering
        assert success  # handed the grasped cube, this policy's +z lifts it
    assert [(t.event, t.reason) for t in op.log] == [('takeover', 'grasp_far'), ('handback', 'grasp_far')] * 2
    again, _ = closed_loop(lift_env, Policy('bad'), range(2), max_takeovers=1)
    for (_, s1, a1), (_, s2, a2) in zip(episodes, again, strict=True):
        assert s1 == s2 and np.array_equal(a1, a2)
    (alone,), op = closed_loop(lift_env, Policy('bad'), [0], horizon=40, max_takeovers=0)
    assert not alone[0] and set(alone[1]) == {S.POLICY} and op.log == []

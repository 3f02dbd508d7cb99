# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""MuxLogic transitions and timeouts over virtual time (no ROS, no clock)."""

from __future__ import annotations

import pytest

from hapo_interfaces.enums import ControlSource as S
from hapo_interfaces.enums import EpisodeEvent as E
from hapo_teleop.joy_mapping import JoyError, JoyMapping, joy_input
from hapo_teleop.mux import Mode, MuxLogic, MuxParams, PolicyInput

MS = 1_000_000
A = (0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 1.0)
B = (-0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def joy(deadman=False, estop=False, reset=False, grip=False, success=False, failure=False, nxt=False,
        x=0.0, z=0.0, n_axes=8, n_buttons=11):
    axes = [0.0] * n_axes
    if n_axes > 4:
        axes[1], axes[4] = x, z
    buttons = [0] * n_buttons
    for idx, on in ((4, deadman), (1, estop), (7, reset), (0, grip), (3, success), (2, failure), (6, nxt)):
        if on and idx < n_buttons:
            buttons[idx] = 1
    return joy_input(axes, buttons)


def mux(**kw) -> MuxLogic:
    return MuxLogic(MuxParams(**kw))


def sources(decision):
    return [c.source for c in decision.commands]


def events(decision):
    return [e for e, _ in decision.events]


def test_policy_passes_through_once_with_its_stamp():
    m = mux()
    d = m.step(0, policy=PolicyInput(100, A))
    assert [(c.stamp_ns, c.action, c.source) for c in d.commands] == [(100, A, S.POLICY)]
    assert m.step(10 * MS, tick=True).commands == []  # already executed: not repeated
    d = m.step(20 * MS, policy=PolicyInput(90, B))  # older observation than one acted upon
    assert d.commands == [] and m.counts['late_policy_actions'] == 1


@pytest.mark.parametrize('lockstep', [True, False])
def test_a_lockstep_sim_asking_again_gets_the_same_policy_command_once_more(lockstep):
    # the sim publishes observation 100 again when no command for it arrived (a mux restarted before the sim's
    # subscription matched it lost its first one): without the re-send the graph waited for ever
    m = mux(lockstep=lockstep, policy_timeout_s=0.1)
    m.step(0, obs_stamp_ns=100)
    first = m.step(1 * MS, policy=PolicyInput(100, A)).commands
    assert [(c.stamp_ns, c.source) for c in first] == [(100, S.POLICY)]
    m.step(2 * MS, policy=PolicyInput(100, A))  # the policy answers the republished frame again
    again = m.step(250 * MS, obs_stamp_ns=100).commands  # the policy is stale by now: the decision stands
    assert again == (first if lockstep else [])
    assert m.counts['policy_resent'] == int(lockstep) and m.counts['policy_forwarded'] == 1
    assert m.step(260 * MS, obs_stamp_ns=101).commands == []  # a new observation is no request to re-send


def test_no_resend_after_the_human_answered_the_observation():
    m = mux()
    m.step(0, obs_stamp_ns=100)
    m.step(1 * MS, policy=PolicyInput(100, A))
    m.step(2 * MS, joy=joy(deadman=True), obs_stamp_ns=101)  # the human answers 101
    assert S.POLICY not in sources(m.step(3 * MS, obs_stamp_ns=101))


def test_stale_until_first_message_then_hold_every_tick():
    m = mux(policy_timeout_s=0.1)
    for t in (0, 20, 40):
        assert sources(m.step(t * MS, tick=True)) == [S.NONE]
    m.step(50 * MS, policy=PolicyInput(1, A))
    assert m.step(140 * MS, tick=True).commands == []  # fresh (90 ms)
    holds = [m.step(t * MS, tick=True) for t in (160, 180, 200)]  # stale after 100 ms: hold on every tick
    assert all(sources(d) == [S.NONE] for d in holds)
    assert holds[0].commands[0].action == (0.0,) * 6 + (1.0,)  # zero motion, gripper kept closed


@pytest.mark.parametrize(('lockstep', 'expected'), [(True, 1), (False, 3)])
def test_deadman_takeover_and_handback(lockstep, expected):
    m = mux(lockstep=lockstep)
    m.step(0, policy=PolicyInput(10, A), obs_stamp_ns=10)
    d = m.step(1 * MS, joy=joy(deadman=True, x=1.0), obs_stamp_ns=11)  # the sim stepped: observation 11
    assert d.mode is Mode.HUMAN and events(d) == [E.INTERVENTION_START]
    human = d.commands[0]
    assert human.source is S.HUMAN and human.stamp_ns == 11 and human.action[0] == pytest.approx(1.0)
    assert human.action[6] == 1.0  # gripper taken over as the policy left it (closed)
    n = 1 + sum(len(m.step(t * MS, tick=True).commands) for t in (2, 3))  # same observation stamp
    assert n == expected
    m.step(4 * MS, policy=PolicyInput(20, B), obs_stamp_ns=20)  # the policy keeps proposing
    d = m.step(5 * MS, joy=joy(deadman=False))
    assert events(d) == [E.INTERVENTION_END]
    assert sources(d) == [S.NONE, S.POLICY]  # hold on hand-back, then the fresh proposal
    assert d.commands[1].stamp_ns == 20


def test_handback_does_not_replay_an_action_for_an_observation_the_human_answered():
    m = mux()
    m.step(0, joy=joy(deadman=True), obs_stamp_ns=30)
    m.step(1 * MS, policy=PolicyInput(30, A))  # late proposal for the observation the human answered
    d = m.step(2 * MS, joy=joy())
    assert sources(d) == [S.NONE]


def test_joy_goes_stale_while_driving():
    m = mux(joy_timeout_s=0.1)
    m.step(0, joy=joy(deadman=True))
    d = m.step(150 * MS, tick=True)
    assert events(d) == [E.INTERVENTION_END] and d.mode is Mode.POLICY
    assert sources(d) == [S.NONE]


def test_estop_latches_until_reset():
    m = mux()
    m.step(0, policy=PolicyInput(1, A))
    d = m.step(1 * MS, joy=joy(estop=True))
    assert d.mode is Mode.STOPPED and sources(d) == [S.STOPPED]
    m.step(2 * MS, joy=joy())  # released: still latched
    assert sources(m.step(3 * MS, policy=PolicyInput(2, B))) == []
    assert sources(m.step(4 * MS, tick=True)) == [S.STOPPED]
    assert m.step(5 * MS, joy=joy(deadman=True)).mode is Mode.STOPPED  # deadman ignored while stopped
    d = m.step(6 * MS, joy=joy(reset=True))
    assert d.mode is Mode.POLICY and sources(d) == [S.POLICY]


def test_estop_while_human_ends_the_intervention():
    m = mux()
    m.step(0, joy=joy(deadman=True))
    d = m.step(1 * MS, joy=joy(deadman=True, estop=True))
    assert events(d) == [E.INTERVENTION_END] and d.mode is Mode.STOPPED
    assert sources(d) == [S.NONE, S.STOPPED]


def test_gripper_toggles_on_press_edges_only():
    m = mux(lockstep=False)
    m.step(0, joy=joy(deadman=True))
    assert m.step(1 * MS, tick=True).commands[0].action[6] == -1.0
    m.step(2 * MS, joy=joy(deadman=True, grip=True))
    m.step(3 * MS, joy=joy(deadman=True, grip=True))  # still held: no second toggle
    assert m.step(4 * MS, tick=True).commands[0].action[6] == 1.0


@pytest.mark.parametrize(('kw', 'event', 'reason'), [
    ({'success': True}, E.SUCCESS, 'operator'), ({'failure': True}, E.FAILURE, 'operator'),
    ({'nxt': True}, E.ABORT, 'next')])
def test_episode_buttons(kw, event, reason):
    m = mux()
    d = m.step(0, joy=joy(**kw))
    assert d.events == [(event, {'reason': reason})]
    assert m.step(1 * MS, joy=joy(**kw)).events == []  # held: one event per press


def test_joy_with_too_few_axes_counts_as_absent():
    m = mux()
    m.step(0, joy=joy(deadman=True))
    d = m.step(1 * MS, joy=joy(deadman=True, n_axes=2))
    assert m.counts['bad_joy_messages'] == 1 and 'needs 5' in m.last_joy_error
    assert d.mode is Mode.HUMAN  # the last good message is still fresh
    assert m.step(600 * MS, tick=True).mode is Mode.POLICY  # and goes stale: hand-back


@pytest.mark.parametrize('lockstep', [False, True])
def test_a_malformed_joy_while_driving_holds_without_handing_back(lockstep):
    m = mux(lockstep=lockstep)
    m.step(0, joy=joy(deadman=True, x=0.8), obs_stamp_ns=1)
    assert m.step(10 * MS, tick=True, obs_stamp_ns=2).commands[-1].action[0] > 0.7  # driving
    d = m.step(20 * MS, joy=joy(deadman=True, x=0.8, n_axes=2), obs_stamp_ns=3)
    d2 = m.step(30 * MS, tick=True)
    held = [c for c in d.commands + d2.commands]
    assert held and all(c.source is S.NONE and c.action[:6] == (0.0,) * 6 for c in held)
    assert d2.mode is Mode.HUMAN and E.INTERVENTION_END not in events(d) + events(d2)  # no hand-back
    d = m.step(40 * MS, joy=joy(deadman=True, x=0.8), obs_stamp_ns=4)  # a good message: the human again
    d = d if d.commands else m.step(50 * MS, tick=True)
    assert sources(d) == [S.HUMAN]
    m.step(60 * MS, joy=joy(deadman=True, n_axes=2))
    assert m.step(600 * MS, tick=True).mode is Mode.POLICY  # the last good one went stale: hand-back


def test_deadzone_and_scale():
    mp = JoyMapping(deadzone=0.2)
    j = joy(x=0.1, z=-0.6)
    x, y, z, *_ = mp.motion(j)
    assert x == 0.0 and y == 0.0 and z == pytest.approx(-0.5)
    with pytest.raises(JoyError, match='buttons'):
        mp.check(joy(n_buttons=3))
    with pytest.raises(ValueError, match='axis_map'):
        JoyMapping(axis_map=(0, 1))


def test_joystick_defaults_live_in_joy_mapping_and_reach_it_by_name():
    assert MuxParams().mapping() == JoyMapping()
    mapped = MuxParams(axis_map=[0, 1, 2, 3, 4, 5], deadman_button=5, next_button=-1).mapping()
    assert (mapped.axis_map, mapped.deadman_button, mapped.next_button) == ((0, 1, 2, 3, 4, 5), 5, -1)


def test_hold_command_keeps_gripper_and_observation_stamp():
    m = mux(initial_gripper=1.0)
    assert m.hold(7 * MS).stamp_ns == 7 * MS  # no observation yet: now
    m.step(1 * MS, obs_stamp_ns=3 * MS)
    assert m.hold(9 * MS) == m.step(600 * MS, tick=True).commands[0]  # the node's last hold = the tick's hold
    assert m.hold(9 * MS).action == (0.0,) * 6 + (1.0,)


def test_lockstep_a_stamped_joy_answers_only_observations_made_before_it():
    m = mux()

    def stamped(t, x):  # a joystick driver's message: deadman held, x on the left stick, stamped with its clock
        return joy_input([0.0, x] + [0.0] * 6, [0, 0, 0, 0, 1] + [0] * 6, stamp_ns=t)

    m.step(10 * MS, joy=stamped(10 * MS, 0.5), obs_stamp_ns=20 * MS)  # input older than the observation
    assert m.mode is Mode.HUMAN and m.step(11 * MS, tick=True).commands == []
    d = m.step(25 * MS, joy=stamped(25 * MS, 1.0))  # the driver's next message: answers at once, no tick
    assert [(c.stamp_ns, c.action[0]) for c in d.commands] == [(20 * MS, pytest.approx(1.0))]
    assert m.step(30 * MS, joy=stamped(30 * MS, 1.0), tick=True).commands == []  # observation 20 answered
    d = m.step(31 * MS, obs_stamp_ns=31 * MS)  # a newer observation than the held Joy: wait
    assert d.commands == [] and m.step(32 * MS, tick=True).commands == []


def stamped(msg, stamp_ns):
    return joy_input(msg.axes, msg.buttons, stamp_ns)


def test_lockstep_operator_decides_who_drives_each_observation_whatever_comes_first():
    m = mux(lockstep_operator=True)
    m.step(0, joy=stamped(joy(), 1))  # the operator's keepalive: it is there, watching
    m.step(0, obs_stamp_ns=100)
    assert m.step(1 * MS, policy=PolicyInput(100, A)).commands == []  # waits for the operator's answer to 100
    d = m.step(2 * MS, joy=stamped(joy(), 100))  # hands off for 100: the waiting action goes out
    assert [(c.source, c.stamp_ns, c.action) for c in d.commands] == [(S.POLICY, 100, A)]
    m.step(3 * MS, obs_stamp_ns=200)
    m.step(4 * MS, joy=stamped(joy(), 200))  # the operator first this time: the policy then goes at once
    assert sources(m.step(5 * MS, policy=PolicyInput(200, B))) == [S.POLICY]
    m.step(6 * MS, obs_stamp_ns=300)
    m.step(7 * MS, policy=PolicyInput(300, A))
    d = m.step(8 * MS, joy=stamped(joy(deadman=True, x=1.0), 300))  # takes over 300: the policy's 300 never runs
    assert events(d) == [E.INTERVENTION_START]
    assert [(c.source, c.stamp_ns) for c in d.commands] == [(S.HUMAN, 300)]
    m.step(9 * MS, obs_stamp_ns=400)
    m.step(10 * MS, policy=PolicyInput(400, B))
    d = m.step(11 * MS, joy=stamped(joy(), 400))  # hands back at 400: hold, then the policy's answer to 400
    assert events(d) == [E.INTERVENTION_END] and sources(d) == [S.NONE, S.POLICY]


def test_an_operator_answer_later_than_the_policy_timeout_lets_the_proposal_go_once_the_policy_repeats_it():
    # seen as a graph that held for ever: the operator (asking for help) answered 100 after the policy timeout, the
    # sim republished 100, and the policy's repeated proposal for 100 was dropped as late, so it never went fresh
    m = mux(lockstep_operator=True, policy_timeout_s=0.1)
    m.step(0, joy=stamped(joy(), 1))
    m.step(0, obs_stamp_ns=100)
    assert m.step(1 * MS, policy=PolicyInput(100, A)).commands == []
    m.step(300 * MS, joy=stamped(joy(), 100))
    assert sources(m.step(310 * MS, tick=True)) == [S.NONE]  # the proposal went stale meanwhile: hold
    d = m.step(320 * MS, policy=PolicyInput(100, A), obs_stamp_ns=100)  # the sim asks again, the policy repeats
    assert [(c.source, c.stamp_ns) for c in d.commands] == [(S.POLICY, 100)] and m.counts['late_policy_actions'] == 0


def test_a_silent_operator_holds_nothing_up():
    m = mux(lockstep_operator=True, joy_timeout_s=0.1)
    m.step(0, obs_stamp_ns=100)
    m.step(0, joy=stamped(joy(), 50))
    assert m.step(1 * MS, policy=PolicyInput(100, A)).commands == []
    assert sources(m.step(200 * MS, tick=True)) == [S.POLICY]  # its Joy went stale: the policy drives
    plain = mux()  # without lockstep_operator the policy never waits
    plain.step(0, obs_stamp_ns=100)
    plain.step(0, joy=stamped(joy(), 50))
    assert sources(plain.step(1 * MS, policy=PolicyInput(100, A))) == [S.POLICY]


@pytest.mark.parametrize('good_joy_returns', [False, True])
def test_lockstep_a_hold_for_a_malformed_joy_leaves_the_observation_to_answer(good_joy_returns):
    # a lockstep sim does not step on a hold: the observation held on must still get a driving answer (the fault
    # matrix, bench/faults_malformed.py, found the graph stuck for ever: the hold marked it answered and the
    # policy's proposal for it was refused after the hand-back)
    m = mux()
    m.step(0, obs_stamp_ns=100)
    assert sources(m.step(1 * MS, joy=joy(deadman=True, x=0.8))) == [S.HUMAN]  # takes over: answers 100
    m.step(3 * MS, obs_stamp_ns=200)
    assert m.step(4 * MS, joy=joy(deadman=True, x=0.8, n_axes=2)).commands == []  # bad: holds on the ticks only
    assert sources(m.step(5 * MS, tick=True)) == [S.NONE]
    if good_joy_returns:
        d = m.step(6 * MS, joy=joy(deadman=True, x=0.8))
        d = d if d.commands else m.step(7 * MS, tick=True)
        assert [(c.stamp_ns, c.source) for c in d.commands] == [(200, S.HUMAN)]
    else:
        assert E.INTERVENTION_END in events(m.step(600 * MS, tick=True))  # the last good Joy went stale
        d = m.step(610 * MS, policy=PolicyInput(200, A))  # the policy answers the republished observation
        assert [(c.stamp_ns, c.source) for c in d.commands] == [(200, S.POLICY)]


def test_a_policy_action_stamped_far_from_the_mux_clock_is_refused_and_the_arm_holds():
    # the fault matrix (bench/faults_stale.py): a starved policy woke up and moved the arm for a scene long gone; a
    # frozen camera repeating its stamp kept the policy fresh for ever (no hold); a stamp from a clock that jumped
    # ahead locked every later action out as older
    m = mux(lockstep=False, policy_timeout_s=0.5)
    now = 10_000 * MS
    assert m.step(now, policy=PolicyInput(now - 2000 * MS, A)).commands == []
    assert m.last_policy_error == 'header.stamp 2.000 s behind the mux clock (policy_timeout_s 0.5): refused'
    assert m.step(now, policy=PolicyInput(now + 3600 * 10**9, A)).commands == []
    assert 'ahead of the mux clock' in m.last_policy_error and m.counts['refused_policy_stamps'] == 2
    assert sources(m.step(now + MS, policy=PolicyInput(now - 10 * MS, B))) == [S.POLICY], 'not locked out'
    frozen = [m.step(now + i * 100 * MS, policy=PolicyInput(now - 10 * MS, B)).commands for i in range(1, 8)]
    assert all(c.source is not S.POLICY for cmds in frozen for c in cmds), 'executed once, not again'
    assert sources(m.step(now + 800 * MS, tick=True)) == [S.NONE], 'the frozen stamp does not keep it fresh'
    step = mux(lockstep=True, policy_timeout_s=0.5)  # a lockstep sim waits as long as it takes: old stamps are fine
    assert sources(step.step(now, policy=PolicyInput(now - 2000 * MS, A))) == [S.POLICY]
    assert step.step(now, policy=PolicyInput(now + 3600 * 10**9, A)).commands == []

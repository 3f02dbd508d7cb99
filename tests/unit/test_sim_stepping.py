# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Sim node bookkeeping (hapo_sim.stepping): lockstep verdicts, real-time staleness, stamps, episodes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hapo_interfaces.enums import ControlSource as S
from hapo_interfaces.enums import EpisodeEvent
from hapo_interfaces.records import ExecutedStep
from hapo_sim.stepping import ZERO_ACTION, Episodes, LatestCommand, Lockstep, StampClock, Verdict

A = (0.1, 0.0, 0.5, 0.0, 0.0, 0.0, -1.0)


def cmd(stamp_ns: int, source: S = S.POLICY) -> ExecutedStep:
    return ExecutedStep(stamp_ns, A, source)


@pytest.mark.parametrize(('observed', 'offers', 'expected'), [
    (100, [cmd(100)], ['step']),
    (100, [cmd(100, S.HUMAN)], ['step']),
    (100, [cmd(100), cmd(100)], ['step', 'duplicate']),
    (100, [cmd(99)], ['stale']),
    (100, [cmd(101)], ['unknown']),
    (100, [cmd(100, S.NONE), cmd(100, S.STOPPED), cmd(100)], ['hold', 'hold', 'step']),
    (100, [cmd(50), cmd(100, S.NONE), cmd(100, S.HUMAN), cmd(100)], ['stale', 'hold', 'step', 'duplicate']),
    (None, [cmd(100)], ['idle']),
])
def test_lockstep_verdicts(observed, offers, expected):
    lock = Lockstep()
    if observed is not None:
        lock.observed(observed)
    assert [lock.offer(c).value for c in offers] == expected
    assert sum(lock.counts.values()) == len(offers)


def test_lockstep_next_observation_accepts_only_its_own_stamp():
    lock = Lockstep()
    lock.observed(100)
    assert lock.offer(cmd(100)) is Verdict.STEP
    lock.observed(200)
    assert [lock.offer(c) for c in (cmd(100), cmd(200))] == [Verdict.STALE, Verdict.STEP]
    lock.idle()
    assert lock.offer(cmd(200)) is Verdict.IDLE
    assert dict(lock.counts) == {'step': 2, 'stale': 1, 'idle': 1}


PERIOD = 50_000_000  # 20 Hz


@pytest.mark.parametrize(('events', 'now_ns', 'expected'), [
    ([], 0, ZERO_ACTION),  # stale until the first command
    ([(cmd(1), 1_000)], 1_000 + PERIOD, A),
    ([(cmd(1), 1_000)], 1_000 + 2 * PERIOD, A),
    ([(cmd(1), 1_000)], 1_001 + 2 * PERIOD, ZERO_ACTION),  # older than two periods: hold
    ([(cmd(1), 1_000), (cmd(2, S.NONE), 2_000)], 3_000, ZERO_ACTION),  # none clears at once
    ([(cmd(1, S.STOPPED), 1_000), (cmd(2, S.HUMAN), 2_000)], 3_000, A),
])
def test_realtime_latest_command(events, now_ns, expected):
    latest = LatestCommand(PERIOD)
    for step, at in events:
        latest.store(step, at)
    assert latest.choose(now_ns) == expected
    assert sum(latest.counts.values()) == 1


def test_stamps_strictly_increase_even_if_clock_stalls_or_goes_back():
    clock = StampClock()
    assert [clock.next(t) for t in (10, 10, 5, 20, 20)] == [10, 11, 12, 20, 21]


@pytest.mark.parametrize(('steps', 'success', 'expected'), [
    (1, False, None), (1, True, EpisodeEvent.SUCCESS), (5, False, EpisodeEvent.FAILURE),
    (5, True, EpisodeEvent.SUCCESS), (4, False, None),
])
def test_episode_outcome(steps, success, expected):
    assert Episodes(seed=0, horizon=5).outcome(steps, success) is expected


def test_episode_seeds_and_max_episodes():
    ep = Episodes(seed=7, horizon=5, max_episodes=2)
    assert ep.start() == 7 and ep.running and ep.index == 0
    assert ep.finish() is True and not ep.running
    assert ep.start() == 8
    assert ep.finish() is False  # limit reached: stay idle
    assert not ep.can_start()
    with pytest.raises(RuntimeError, match='max_episodes=2'):
        ep.start()


def test_episode_no_auto_reset():
    ep = Episodes(seed=0, horizon=5, auto_reset=False)
    ep.start()
    assert ep.finish() is False and ep.can_start()


def test_sim_params_defaults_and_validation():
    from hapo_interfaces.params import ParamError, from_mapping
    from hapo_sim.sim_params import SimParams

    p = from_mapping(SimParams, {})
    assert (p.task, p.cameras, p.image_size, p.mode, p.control_rate_hz, p.horizon) == (
        'lift', ['agentview'], 128, 'lockstep', 20.0, 200)
    assert from_mapping(SimParams, {'task': 'PickPlaceCan', 'cameras': ['a', 'b']}).cameras == ['a', 'b']
    with pytest.raises(ParamError, match="mode='fast' not one of"):
        from_mapping(SimParams, {'mode': 'fast'})
    with pytest.raises(ParamError, match='image_size=4 outside'):
        from_mapping(SimParams, {'image_size': 4})


def test_library_modules_import_without_rclpy():
    code = ("import sys; sys.modules['rclpy'] = None\n"
            'import hapo_sim.env, hapo_sim.experts, hapo_sim.stepping, hapo_sim.sim_params')
    subprocess.run([sys.executable, '-c', code], check=True, timeout=120)

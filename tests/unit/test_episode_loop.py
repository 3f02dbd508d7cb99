# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""EpisodeLoop on the real simulator (no cameras): what a command, the horizon and a reset send, in order."""

from __future__ import annotations

import pytest

from hapo_interfaces.enums import ControlSource as S
from hapo_interfaces.enums import EpisodeEvent as E
from hapo_interfaces.records import EpisodeMessage, ExecutedStep
from hapo_sim.env import SimEnv
from hapo_sim.episode_loop import EpisodeLoop, Published
from hapo_sim.sim_params import SimParams
from hapo_sim.stepping import ZERO_ACTION

UP = (0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


@pytest.fixture(scope='module')
def env():
    e = SimEnv('lift', cameras=(), seed=0, horizon=2)
    yield e
    e.close()


def test_lockstep_episodes_in_order(env):
    clock = iter(range(100, 10**6, 10))
    loop = EpisodeLoop(env, SimParams(horizon=2, max_episodes=2), 'lift the cube', lambda: next(clock))
    start, obs = loop.start(0)
    assert start.event is E.START and start.extra['seed'] == 0 and start.stamp_ns < obs.stamp_ns
    assert isinstance(obs, Published) and loop.started == 'episode 0 seed 0'
    assert 'demo' not in start.extra
    assert loop.command(1, ExecutedStep(obs.stamp_ns - 1, UP, S.POLICY)) == []  # stale
    assert loop.command(1, ExecutedStep(obs.stamp_ns, ZERO_ACTION, S.NONE)) == []  # a hold does not step
    (obs2,) = loop.command(2, ExecutedStep(obs.stamp_ns, UP, S.POLICY))
    assert obs2.stamp_ns > obs.stamp_ns and env.steps == 1
    out = loop.command(3, ExecutedStep(obs2.stamp_ns, UP, S.HUMAN))  # the horizon: FAILURE, then episode 1 starts
    assert [type(o) for o in out] == [Published, EpisodeMessage, EpisodeMessage, Published]
    assert (out[1].event, out[1].extra) == (E.FAILURE, {'reason': 'horizon', 'steps': 2})
    assert (out[2].event, out[2].extra['seed']) == (E.START, 1)
    assert loop.ended_by(4, EpisodeMessage(E.SUCCESS, 4, 'sim')) == []  # its own events end nothing
    ok, message, out = loop.reset(5)  # aborts episode 1; max_episodes reached: no episode 2
    assert (ok, message) == (False, 'max_episodes=2 reached')
    assert [(o.event, o.extra['reason']) for o in out] == [(E.ABORT, 'reset')] and not loop.episodes.running


def test_demo_episodes_say_so_in_their_start(env):
    start, _obs = EpisodeLoop(env, SimParams(horizon=2, demo=True), 'lift the cube', lambda: 1).start(0)
    assert start.event is E.START and start.extra['demo'] is True

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""EpisodeTally: steps paired with episodes by stamp, whatever order the two topics deliver them in."""

from __future__ import annotations

from hapo_bringup.episode_tally import EpisodeTally
from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import EpisodeMessage, ExecutedStep

P, H, N = ControlSource.POLICY, ControlSource.HUMAN, ControlSource.NONE


def _event(kind, stamp, **extra):
    return EpisodeMessage(kind, stamp, 'sim', extra)


def _step(stamp, source=P, x=0.0):
    return ExecutedStep(stamp, (x, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0), source)


def test_outcomes_count_sources_takeovers_and_skip_holds():
    t = EpisodeTally()
    t.event(_event(EpisodeEvent.START, 100, seed=7))
    sources = [P, P, H, H, P, H, P]
    for i, s in enumerate(sources):
        t.step(_step(101 + i, s))
    t.step(_step(104, N))  # a hold answering an observation: the sim did not step
    assert t.completed == 0
    t.event(_event(EpisodeEvent.SUCCESS, 120, steps=len(sources)))
    (ep,) = t.outcomes()
    assert ep == {**ep, 'seed': 7, 'success': True, 'steps': 7, 'takeovers': 2, 'human_steps': 3, 'end': 'success'}


def test_order_of_arrival_does_not_matter():
    steps = [_step(11 + i, x=0.1 * i) for i in range(3)] + [_step(31 + i, x=-0.1 * i) for i in range(2)]
    events = [_event(EpisodeEvent.START, 10, seed=1), _event(EpisodeEvent.FAILURE, 20, steps=3),
              _event(EpisodeEvent.START, 30, seed=2), _event(EpisodeEvent.SUCCESS, 40, steps=2)]
    a, b = EpisodeTally(), EpisodeTally()
    for e in events:
        a.event(e)
    for s in steps:
        a.step(s)
    for s in reversed(steps):  # every step before its START (hapo/cmd and hapo/episode are separate topics)
        b.step(s)
    for e in events:
        b.event(e)
    assert a.outcomes() == b.outcomes() and [o['seed'] for o in a.outcomes()] == [1, 2]
    assert [o['success'] for o in a.outcomes()] == [False, True]
    assert a.outcomes()[0]['actions_digest'] != a.outcomes()[1]['actions_digest']


def test_a_resent_observation_and_the_unexecuted_last_answer_are_not_steps():
    t = EpisodeTally()
    t.event(_event(EpisodeEvent.START, 10, seed=3))
    t.step(_step(11, x=0.5))
    t.step(_step(11, x=0.5))  # the policy answered the same (re-sent) observation twice
    t.step(_step(12, x=0.2))
    t.event(_event(EpisodeEvent.FAILURE, 14, reason='horizon', steps=2))
    t.step(_step(13, x=0.9))  # answers the last observation, published before FAILURE; never executed
    (ep,) = t.outcomes()
    reference = EpisodeTally()
    reference.event(_event(EpisodeEvent.START, 10, seed=3))
    reference.step(_step(11, x=0.5))
    reference.step(_step(12, x=0.2))
    reference.event(_event(EpisodeEvent.FAILURE, 14, steps=2))
    assert ep['steps'] == 2 and ep['actions_digest'] == reference.outcomes()[0]['actions_digest']


def test_an_episode_waits_for_its_steps():
    t = EpisodeTally()
    t.event(_event(EpisodeEvent.START, 10, seed=0))
    t.event(_event(EpisodeEvent.SUCCESS, 20, steps=2))
    t.step(_step(11))
    assert t.completed == 0 and t.outcomes() == []
    t.step(_step(12))
    assert t.completed == 1


def test_human_steps_are_attributed_to_the_reason_of_their_takeover():
    from hapo_bringup.episode_tally import _by_reason

    log = [{'event': 'takeover', 'step': 5, 'reason': 'stalled'},
           {'event': 'handback', 'step': 20, 'reason': 'stalled'},
           {'event': 'takeover', 'step': 30, 'reason': 'grasp_far'}]
    assert _by_reason(log, 40) == {'reasons': ['stalled', 'grasp_far'],
                                   'human_steps_by_reason': {'stalled': 15, 'grasp_far': 10}}
    assert _by_reason([], 40) == {'reasons': [], 'human_steps_by_reason': {}}

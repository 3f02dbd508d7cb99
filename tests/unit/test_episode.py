# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Episode boundaries: intervention spans and the EpisodeGate membership rules over virtual time."""

from __future__ import annotations

import pytest

from hapo_interfaces.enums import EpisodeEvent
from hapo_interfaces.records import EpisodeMessage
from hapo_recorder.episode import Close, EpisodeGate, Open, Phase, intervention_spans

MS = 1_000_000


def ev(kind: EpisodeEvent, stamp_ms: int) -> EpisodeMessage:
    return EpisodeMessage(kind, stamp_ms * MS, 'test', {})


@pytest.mark.parametrize(('sources', 'spans'), [
    ([1, 1, 1, 2, 2, 1], [(3, 5)]),
    ([2, 2, 1, 2], [(0, 2), (3, 4)]),
    ([1, 1], []),
    ([2, 2, 0, 2], [(0, 2), (3, 4)]),
    ([], []),
])
def test_intervention_spans(sources, spans):
    assert intervention_spans(sources) == spans


def test_gate_full_episode_with_late_step():
    gate = EpisodeGate(grace_ns=300 * MS)
    assert not gate.admit(5 * MS)  # idle: nothing belongs to an episode
    acts = gate.on_event(ev(EpisodeEvent.START, 10), now_ns=10 * MS)
    assert acts == [Open(ev(EpisodeEvent.START, 10))]
    assert gate.admit(11 * MS) and gate.admit(None)
    assert gate.on_event(ev(EpisodeEvent.SUCCESS, 100), now_ns=100 * MS) == []
    assert gate.phase == Phase.CLOSING
    assert gate.admit(99 * MS)  # executed before SUCCESS, arrived after it
    assert gate.admit(100 * MS)
    assert not gate.admit(101 * MS)  # after the end event
    assert not gate.admit(None)  # unstamped during grace: not admitted
    assert gate.tick(399 * MS) == []
    assert gate.tick(400 * MS) == [Close('success')]
    assert gate.phase == Phase.IDLE and not gate.admit(50 * MS)


@pytest.mark.parametrize(('event', 'outcome'), [
    (EpisodeEvent.SUCCESS, 'success'), (EpisodeEvent.FAILURE, 'failure'), (EpisodeEvent.ABORT, 'aborted')])
def test_gate_outcomes_without_grace(event, outcome):
    gate = EpisodeGate(grace_ns=0)
    gate.on_event(ev(EpisodeEvent.START, 0), 0)
    assert gate.on_event(ev(event, 5), 5 * MS) == [Close(outcome)]


def test_gate_start_while_open_aborts_previous():
    gate = EpisodeGate(grace_ns=0)
    gate.on_event(ev(EpisodeEvent.START, 0), 0)
    acts = gate.on_event(ev(EpisodeEvent.START, 10), 10 * MS)
    assert [type(a) for a in acts] == [Close, Open] and acts[0].outcome == 'aborted'


def test_gate_start_while_closing_keeps_outcome():
    gate = EpisodeGate(grace_ns=10**9)
    gate.on_event(ev(EpisodeEvent.START, 0), 0)
    gate.on_event(ev(EpisodeEvent.FAILURE, 10), 10 * MS)
    acts = gate.on_event(ev(EpisodeEvent.START, 20), 20 * MS)
    assert acts == [Close('failure'), Open(ev(EpisodeEvent.START, 20))]


def test_gate_ignores_stray_events_and_shutdown():
    gate = EpisodeGate(grace_ns=0)
    assert gate.on_event(ev(EpisodeEvent.SUCCESS, 1), MS) == []
    assert gate.ignored_events == 1
    assert gate.on_event(ev(EpisodeEvent.INTERVENTION_START, 1), MS) == []
    assert gate.shutdown() == []
    gate.on_event(ev(EpisodeEvent.START, 2), 2 * MS)
    (close,) = gate.shutdown()
    assert close.outcome == 'aborted' and 'SIGINT' in close.reason


def test_gate_a_late_answer_to_the_previous_episode_belongs_to_neither():
    gate = EpisodeGate(grace_ns=300 * MS)
    gate.on_event(ev(EpisodeEvent.START, 10), 10 * MS)
    gate.on_event(ev(EpisodeEvent.SUCCESS, 100), 100 * MS)
    gate.on_event(ev(EpisodeEvent.START, 101), 101 * MS)  # auto reset: the next START before the late step
    assert not gate.admit(99 * MS)  # answers observation 99 of the episode that ended
    assert gate.admit(102 * MS) and gate.admit(None)


def test_gate_admits_no_step_beyond_the_count_the_end_event_gives():
    gate = EpisodeGate(grace_ns=300 * MS)
    gate.on_event(ev(EpisodeEvent.START, 10), 10 * MS)
    assert gate.admit_step(20 * MS, driving_steps=5)  # open: no count known yet
    gate.on_event(EpisodeMessage(EpisodeEvent.SUCCESS, 100 * MS, 'sim', {'steps': 3}), 100 * MS)
    assert gate.admit_step(90 * MS, driving_steps=2)  # the 3rd executed step, arriving after the end event
    assert not gate.admit_step(99 * MS, driving_steps=3)  # answers the final observation: never executed
    assert gate.admit(99 * MS)  # that observation itself is recorded
    gate.on_event(EpisodeMessage(EpisodeEvent.START, 101 * MS, 'mux', {}), 101 * MS)
    gate.on_event(EpisodeMessage(EpisodeEvent.SUCCESS, 200 * MS, 'mux', {'reason': 'operator'}), 200 * MS)
    assert gate.admit_step(150 * MS, driving_steps=50)  # no count given: the stamp rule alone

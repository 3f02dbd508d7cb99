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

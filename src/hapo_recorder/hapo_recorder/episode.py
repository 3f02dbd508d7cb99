# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Episode boundaries and intervention spans from the event stream (pure: time is an argument, no ROS).

``EpisodeGate`` decides, message by message, whether a recorded message belongs to the open episode. Events and
data arrive on different topics, so their order at the recorder is not guaranteed; the rules are:

- START opens an episode; data processed after it belongs to it (the recorder subscribes to the episode topic
  first, so a START and a step that are ready together are handled START first), unless it is stamped before the
  START (a late answer to the previous episode's last observation: it belongs to neither).
- A terminal event (SUCCESS / FAILURE / ABORT) does not close at once: for ``grace_ns`` the episode stays
  *closing*, and a message whose header stamp is at or before the event's ``stamp_ns`` (a step the mux executed
  before the event but that reached us after it) is still admitted; anything newer, or unstamped, is not. An end
  event that says how many ``steps`` the episode executed (a lockstep sim's do) admits no driving step beyond
  that count: it answers the final observation, published before the end event, which nothing executes.
- A START while an episode is open or closing first closes the old one (``aborted`` if it had no end event).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import EpisodeMessage

OUTCOMES = {EpisodeEvent.SUCCESS: 'success', EpisodeEvent.FAILURE: 'failure', EpisodeEvent.ABORT: 'aborted'}
"""Outcome written to the bag per terminal event; a bag cut by a crash reads back as 'truncated'."""


def intervention_spans(sources: Sequence[int] | np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` step index spans of the interventions: maximal runs of HUMAN steps, in order."""
    human = np.asarray(sources, dtype=np.int8) == ControlSource.HUMAN  # (N,)
    edges = np.diff(np.concatenate(([0], human.astype(np.int8), [0])))  # (N+1,): +1 at a start, -1 after an end
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


class Phase(enum.Enum):
    IDLE = 'idle'
    OPEN = 'open'
    CLOSING = 'closing'


@dataclass(frozen=True)
class Open:
    """Open a new episode bag for this START event."""

    start: EpisodeMessage


@dataclass(frozen=True)
class Close:
    """Close the episode bag with this outcome (``reason`` says why when no terminal event did)."""

    outcome: str
    reason: str = ''
    steps: int | None = None  # driving steps the end event says the episode executed (a lockstep sim's); None: unknown


class EpisodeGate:
    """Episode membership state machine; see the module docstring for the rules."""

    def __init__(self, grace_ns: int):
        self.grace_ns = int(grace_ns)
        self.phase = Phase.IDLE
        self._start_ns = 0
        self._end_stamp_ns = 0
        self._end_steps: int | None = None
        self._close_at_ns = 0
        self._outcome = ''
        self.ignored_events = 0  # terminal events with no open episode

    def on_event(self, event: EpisodeMessage, now_ns: int) -> list[Open | Close]:
        """Actions for one episode event, in the order they must be done."""
        actions: list[Open | Close] = []
        if event.event == EpisodeEvent.START:
            if self.phase == Phase.CLOSING:
                actions.append(Close(self._outcome, steps=self._end_steps))
            elif self.phase == Phase.OPEN:
                actions.append(Close('aborted', 'a new start arrived before an end event'))
            actions.append(Open(event))
            self.phase = Phase.OPEN
            self._start_ns, self._end_steps = event.stamp_ns, None
        elif event.event.terminal:
            if self.phase != Phase.OPEN:
                self.ignored_events += 1
                return actions
            self.phase = Phase.CLOSING
            self._outcome = OUTCOMES[event.event]
            self._end_stamp_ns = event.stamp_ns
            steps = event.extra.get('steps')
            self._end_steps = steps if isinstance(steps, int) and not isinstance(steps, bool) else None
            self._close_at_ns = now_ns + self.grace_ns
            if self.grace_ns <= 0:
                return self.tick(now_ns)
        return actions

    def admit(self, stamp_ns: int | None) -> bool:
        """Whether a data message with this header stamp (None: unstamped) belongs to the episode."""
        if self.phase == Phase.OPEN:
            return stamp_ns is None or stamp_ns >= self._start_ns
        if self.phase == Phase.CLOSING:
            return stamp_ns is not None and self._start_ns <= stamp_ns <= self._end_stamp_ns
        return False

    def admit_step(self, stamp_ns: int, driving_steps: int) -> bool:
        """Whether a driving (policy/human) step belongs to the episode, which holds ``driving_steps`` of them."""
        if self.phase == Phase.CLOSING and self._end_steps is not None and driving_steps >= self._end_steps:
            return False
        return self.admit(stamp_ns)

    def tick(self, now_ns: int) -> list[Open | Close]:
        """Close a closing episode once its grace period is over."""
        if self.phase == Phase.CLOSING and now_ns >= self._close_at_ns:
            self.phase = Phase.IDLE
            return [Close(self._outcome, steps=self._end_steps)]
        return []

    def shutdown(self) -> list[Open | Close]:
        """Close whatever is open at shutdown: a closing episode keeps its outcome, an open one is 'aborted'."""
        phase, self.phase = self.phase, Phase.IDLE
        if phase == Phase.CLOSING:
            return [Close(self._outcome, steps=self._end_steps)]
        if phase == Phase.OPEN:
            return [Close('aborted', 'recorder shut down (SIGINT/SIGTERM)')]
        return []

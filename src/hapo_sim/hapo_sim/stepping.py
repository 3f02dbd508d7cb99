# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The sim node's bookkeeping as pure logic: which command steps the sim, stamps, episode seeds; no ROS.

Lockstep loop (``mode: lockstep``)::

    reset(seed + i) -> publish obs (stamp t) -> wait for hapo/cmd with header.stamp == t
        source policy|human -> step once -> publish obs (stamp t' > t) -> ...
        source none|stopped -> hold (no step), keep waiting
        stamp < t           -> stale, ignored;  stamp > t -> unknown, ignored

Real time (``mode: realtime``): a timer steps with the latest policy/human command if it arrived within
two control periods, else with a zero action (hold). Time is always an argument (``now_ns``).
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import ExecutedStep
from hapo_interfaces.topics import ACTION_DIM

ZERO_ACTION: tuple[float, ...] = (0.0,) * ACTION_DIM  # hold: no arm motion, gripper stays (robosuite increments)
DRIVING = (ControlSource.POLICY, ControlSource.HUMAN)


class Verdict(enum.Enum):
    """What the lockstep sim does with one command."""

    STEP = 'step'  # answers the current observation from a driving source: step once
    HOLD = 'hold'  # answers the current observation with source none/stopped: do not step
    STALE = 'stale'  # answers an older observation
    UNKNOWN = 'unknown'  # stamp newer than the current observation (not one we published)
    DUPLICATE = 'duplicate'  # the current observation was already answered
    IDLE = 'idle'  # no episode running


@dataclass
class Lockstep:
    """Matches ``hapo/cmd`` messages to the observation they answer; counts every ignored one."""

    current_ns: int | None = None
    answered: bool = False
    counts: Counter = field(default_factory=Counter)

    def observed(self, stamp_ns: int) -> None:
        """An observation with ``stamp_ns`` was published; wait for its command."""
        self.current_ns, self.answered = int(stamp_ns), False

    def idle(self) -> None:
        """No episode running: every command is ignored."""
        self.current_ns = None

    def offer(self, step: ExecutedStep) -> Verdict:
        """The verdict for one command (counted under its name)."""
        if self.current_ns is None:
            verdict = Verdict.IDLE
        elif step.stamp_ns < self.current_ns:
            verdict = Verdict.STALE
        elif step.stamp_ns > self.current_ns:
            verdict = Verdict.UNKNOWN
        elif self.answered:
            verdict = Verdict.DUPLICATE
        elif step.source not in DRIVING:
            verdict = Verdict.HOLD
        else:
            verdict = Verdict.STEP
            self.answered = True
        self.counts[verdict.value] += 1
        return verdict


@dataclass
class LatestCommand:
    """Real-time mode: the newest driving command, used while it is younger than ``2 * period_ns``."""

    period_ns: int
    action: tuple[float, ...] | None = None
    received_ns: int = 0
    counts: Counter = field(default_factory=Counter)

    def store(self, step: ExecutedStep, now_ns: int) -> None:
        """Remember a command; none/stopped clear it (hold at once, not after the timeout)."""
        self.action = tuple(step.action) if step.source in DRIVING else None
        self.received_ns = int(now_ns)

    def choose(self, now_ns: int) -> tuple[float, ...]:
        """The action for the tick at ``now_ns``: the latest fresh command, else ZERO_ACTION (counted)."""
        if self.action is not None and now_ns - self.received_ns <= 2 * self.period_ns:
            self.counts['commanded'] += 1
            return self.action
        self.counts['held'] += 1
        return ZERO_ACTION


@dataclass
class StampClock:
    """Observation stamps: the clock's time, bumped by 1 ns where needed so they strictly increase."""

    last_ns: int = -1

    def next(self, now_ns: int) -> int:
        self.last_ns = max(int(now_ns), self.last_ns + 1)
        return self.last_ns


@dataclass
class Episodes:
    """Episode index, seed (``seed + index``), horizon and the ``max_episodes`` limit (0 = unlimited)."""

    seed: int
    horizon: int
    max_episodes: int = 0
    auto_reset: bool = True
    index: int = -1  # index of the current (or last) episode; -1 before the first
    running: bool = False

    def can_start(self) -> bool:
        """Whether another episode may start."""
        return self.max_episodes == 0 or self.index + 1 < self.max_episodes

    def start(self) -> int:
        """Begin the next episode and return its seed; raises RuntimeError past ``max_episodes``."""
        if not self.can_start():
            raise RuntimeError(f'max_episodes={self.max_episodes} reached')
        self.index += 1
        self.running = True
        return self.seed + self.index

    def outcome(self, steps: int, success: bool) -> EpisodeEvent | None:
        """SUCCESS, FAILURE at the horizon, or None while the episode goes on (after step ``steps``)."""
        if success:
            return EpisodeEvent.SUCCESS
        if steps >= self.horizon:
            return EpisodeEvent.FAILURE
        return None

    def finish(self) -> bool:
        """End the current episode; True when the next one should start by itself."""
        self.running = False
        return self.auto_reset and self.can_start()

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Episode outcomes of a running graph, from what it publishes: ``hapo/episode`` events, ``hapo/cmd`` steps and
``robot/joint_states``, and a simulated operator's ``hapo/operator`` log; no ROS.

The topics arrive in no guaranteed order relative to each other, so everything is kept by stamp and paired when
asked: a step belongs to the episode whose START precedes its observation stamp and whose end event follows it
(the sim stamps events and observations from one increasing clock). An episode is complete once its end event has
come and as many driving steps (policy or human; holds do not step the sim) as the end event's ``steps``.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
import threading
import time
from typing import Any

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import EpisodeMessage, ExecutedStep

DRIVING = (ControlSource.POLICY, ControlSource.HUMAN)


class EpisodeTally:
    """Collects events, steps and states (from a spin thread) into per-episode outcomes (read from another)."""

    def __init__(self):
        self.first_start: float | None = None  # time.monotonic() of the first START (the graph is up)
        self._starts: list[tuple[int, int]] = []  # (stamp, seed), sorted
        self._ends: list[EpisodeMessage] = []
        self._steps: dict[int, ExecutedStep] = {}  # observation stamp -> the first answer (a re-sent observation
        self._states: dict[int, tuple[float, ...]] = {}  # can draw a second one, which the sim ignores)
        self._operator: dict[int, list[dict[str, Any]]] = {}  # seed -> the operator's takeovers and hand-backs
        self._lock = threading.Lock()

    def event(self, msg: EpisodeMessage) -> None:
        with self._lock:
            if msg.event is EpisodeEvent.START:
                self.first_start = self.first_start or time.monotonic()
                bisect.insort(self._starts, (msg.stamp_ns, int(msg.extra['seed'])))
            elif msg.event.terminal:
                self._ends.append(msg)

    def step(self, step: ExecutedStep) -> None:
        if step.source in DRIVING:
            with self._lock:
                self._steps.setdefault(step.stamp_ns, step)

    def operator(self, entry: dict[str, Any]) -> None:
        """A ``hapo/operator`` entry (hapo_sim.operator.Takeover as a dict)."""
        with self._lock:
            self._operator.setdefault(int(entry['seed']), []).append(entry)

    def state(self, stamp_ns: int, positions) -> None:
        """A ``robot/joint_states`` sample (the sim publishes one per observation, with its stamp)."""
        with self._lock:
            self._states.setdefault(stamp_ns, tuple(float(v) for v in positions))

    def _episodes(self) -> list[tuple[int, EpisodeMessage, list[int]]]:
        """(seed, end event, executed step stamps) of each complete episode."""
        out = []
        stamps = sorted(self._steps)
        for i, (start, seed) in enumerate(self._starts):
            stop = self._starts[i + 1][0] if i + 1 < len(self._starts) else None
            end = next((e for e in self._ends if start < e.stamp_ns and (stop is None or e.stamp_ns < stop)), None)
            if end is None:
                continue
            lo, hi = bisect.bisect_right(stamps, start), bisect.bisect_left(stamps, end.stamp_ns)
            # the first ``steps`` answers; one more can answer the last observation, published before the end
            # event and never executed (hapo/cmd arrives in order, so it comes after all executed ones)
            executed = stamps[lo:hi][:int(end.extra.get('steps', 0))]
            if len(executed) == int(end.extra.get('steps', 0)):
                out.append((seed, end, executed))
        return out

    @property
    def steps_seen(self) -> int:
        """Driving steps received so far (a running graph's sign of life)."""
        with self._lock:
            return len(self._steps)

    @property
    def completed(self) -> int:
        with self._lock:
            return len(self._episodes())

    def outcomes(self) -> list[dict[str, Any]]:
        """One record per complete episode, by seed: seed, success, steps, takeovers, human_steps, end, reasons
        (the operator's, one per takeover; [] without one), human_steps_by_reason, and the
        digests (sha256) of the executed actions and of the joint states they were taken in, in order: two runs
        that did the same thing have the same digests."""
        out = []
        with self._lock:
            for seed, end, executed in sorted(self._episodes(), key=lambda e: e[0]):
                steps = [self._steps[t] for t in executed]
                human = [s.source is ControlSource.HUMAN for s in steps]
                out.append({
                    'seed': seed, 'success': end.event is EpisodeEvent.SUCCESS, 'steps': len(steps),
                    'takeovers': sum(h and (i == 0 or not human[i - 1]) for i, h in enumerate(human)),
                    'human_steps': sum(human), 'end': end.event.name.lower(),
                    **_by_reason(sorted(self._operator.get(seed, ()), key=lambda t: t['step']), len(steps)),
                    'actions_digest': _digest(s.action for s in steps),
                    'states_digest': _digest(self._states.get(t, ()) for t in executed)})
        return out


def _by_reason(entries: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """``reasons`` (one per takeover) and ``human_steps_by_reason`` (from each takeover to its hand-back or the
    episode's end) of one episode's operator log, ordered by step."""
    reasons, by_reason = [], {}
    for i, t in enumerate(entries):
        if t['event'] == 'takeover':
            end = next((h['step'] for h in entries[i + 1:] if h['event'] == 'handback'), steps)
            reasons.append(t['reason'])
            by_reason[t['reason']] = by_reason.get(t['reason'], 0) + min(end, steps) - t['step']
    return {'reasons': reasons, 'human_steps_by_reason': by_reason}


def _digest(vectors) -> str:
    return hashlib.sha256(b''.join(struct.pack(f'<{len(v)}d', *v) for v in vectors)).hexdigest()[:16]

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Which episode an observation belongs to, from episode events that arrive in any order; no ROS.

The sim stamps its events and observations from one increasing clock: START (seed), the episode's observations,
its end event, the next START. ``hapo/episode`` and the state topics are separate streams, so a node may see an
observation before the START it follows; ``episode_of`` then says None (wait), never the previous episode.
"""

from __future__ import annotations

import bisect

from hapo_interfaces.enums import EpisodeEvent
from hapo_interfaces.records import EpisodeMessage


class EpisodeIndex:
    """START and end events by stamp."""

    def __init__(self):
        self._starts: list[tuple[int, int]] = []  # (stamp, seed), sorted
        self._ends: list[int] = []  # stamps of the terminal events, sorted

    def add(self, msg: EpisodeMessage) -> None:
        """Take one episode event (others than START and the terminal ones are ignored; one heard twice, on
        ``hapo/episode`` and ``hapo/episode/latest``, counts once)."""
        if msg.event is EpisodeEvent.START:
            _insert_once(self._starts, (int(msg.stamp_ns), int(msg.extra.get('seed', 0))))
        elif msg.event.terminal:
            _insert_once(self._ends, int(msg.stamp_ns))

    def started_after(self, stamp_ns: int) -> bool:
        """Whether a START later than ``stamp_ns`` is known: an observation whose own START is not known by then
        never gets it (events come in order; it was missed)."""
        return bool(self._starts) and self._starts[-1][0] > stamp_ns

    def episode_of(self, stamp_ns: int) -> tuple[int, int] | None:
        """(START stamp, seed) of the episode the observation ``stamp_ns`` belongs to; None while its START is
        not known (none before it, or an end event between the latest one and it: it follows a START not seen
        yet)."""
        i = bisect.bisect_left(self._starts, (stamp_ns, -1)) - 1
        if i < 0:
            return None
        start = self._starts[i][0]
        if bisect.bisect_left(self._ends, stamp_ns) > bisect.bisect_right(self._ends, start):
            return None
        return self._starts[i]


def _insert_once(items: list, item) -> None:
    i = bisect.bisect_left(items, item)
    if i == len(items) or items[i] != item:
        items.insert(i, item)

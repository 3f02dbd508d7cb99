# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The three vocabularies of the workspace; integer values are frozen because they are on disk."""

from __future__ import annotations

import enum


class ControlSource(enum.IntEnum):
    """Who produced an executed command (carried as its lowercase name in ``header.frame_id``)."""

    NONE = 0  # no valid source: the mux sent a zero (hold) command
    POLICY = 1
    HUMAN = 2
    STOPPED = 3  # e-stop latched: zero command

    @property
    def wire(self) -> str:
        """The string written into ``header.frame_id``."""
        return self.name.lower()

    @classmethod
    def from_wire(cls, text: str) -> ControlSource:
        """Parse a ``frame_id``; raises ``ValueError`` naming the bad value."""
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f'unknown control source {text!r}') from None


class Label(enum.IntEnum):
    """Per-step preference label ``c`` (DESIGN.md 'The method')."""

    UNDESIRABLE = 0  # one of the K policy steps right before an intervention
    POLICY = 1  # desirable: executed by the policy, or any step of a demonstration
    CORRECTION = 2  # desirable: executed by the human during an intervention


class EpisodeEvent(enum.IntEnum):
    """Events on ``hapo/episode``; terminal ones close the episode."""

    START = 0
    SUCCESS = 1
    FAILURE = 2
    ABORT = 3
    INTERVENTION_START = 4
    INTERVENTION_END = 5

    @property
    def terminal(self) -> bool:
        """Whether this event ends the episode."""
        return self in (EpisodeEvent.SUCCESS, EpisodeEvent.FAILURE, EpisodeEvent.ABORT)

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
    """Per-step preference label ``c`` (DESIGN.md 'The method'); the one vocabulary of classes.

    ``display`` (the lowercase name) is how a class is written everywhere outside tensors: bag ``custom_data``
    label counts, ``summary.json``, trainer metrics, evaluation reports and the ``ratios`` keys of the trainer
    config. ``NOT_TRAINING`` marks an executed step that is no training sample (a NONE / STOPPED hold).
    """

    NOT_TRAINING = -1  # a hold command (source NONE or STOPPED): recorded, never trained on
    UNDESIRABLE = 0  # one of the K policy steps right before an intervention
    POLICY = 1  # desirable: executed by the policy, or any step of a demonstration
    CORRECTION = 2  # desirable: executed by the human during an intervention

    @property
    def display(self) -> str:
        """The class name written into files and metrics: 'policy', 'correction', 'undesirable', ..."""
        return self.name.lower()

    @property
    def desirable(self) -> bool:
        """Whether the class is a desirable one (c in {1, 2})."""
        return self in (Label.POLICY, Label.CORRECTION)

    @classmethod
    def from_display(cls, text: str) -> Label:
        """Parse a display name; raises ``ValueError`` naming the bad value and the choices."""
        try:
            return cls[text.upper()]
        except KeyError:
            names = ', '.join(lab.display for lab in TRAINING_LABELS)
            raise ValueError(f'unknown label class {text!r}; expected one of {names}') from None


TRAINING_LABELS = (Label.POLICY, Label.CORRECTION, Label.UNDESIRABLE)
"""The trained classes in their reporting order (c = 1, 2, 0): ratios, summaries, metrics, tables."""


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

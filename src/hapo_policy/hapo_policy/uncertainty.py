# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The policy asks for help: a flag over the action-token entropy, with hysteresis (no ROS, no torch).

The peak of a step is the maximum over the 7 action dimensions of the entropy (nats) of the token the policy
decoded. The flag rises when a peak exceeds ``threshold`` and falls once a peak is below
``threshold - hysteresis``, so one noisy step neither raises nor drops it. ``policy_node`` publishes it on
``hapo/policy/uncertain``; ``hapo uncertainty`` replays it over recorded entropies. The default threshold is
``calibrate``'s quantile of the peaks on successful episodes (README: 'The policy asks for help')::

    flag = UncertaintyFlag(threshold=2.0, hysteresis=0.25)
    raised = [flag.update(e) for e in entropies]   # entropies: (N, 7) nats
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

THRESHOLD_NATS = 5.28  # the 0.95 quantile on the shipped Lift base's successful policy steps (README)
HYSTERESIS_NATS = 0.25


def peaks(entropies: np.ndarray) -> np.ndarray:
    """(N, 7) entropies -> (N,) maximum over the dimensions."""
    entropies = np.asarray(entropies, dtype=np.float64)
    return entropies.max(axis=-1) if entropies.size else np.zeros(len(entropies))


@dataclass
class UncertaintyFlag:
    """Entropy-peak flag with hysteresis; ``update`` per decoded step."""

    threshold: float
    hysteresis: float = 0.25
    raised: bool = False

    def __post_init__(self) -> None:
        if not np.isfinite(self.threshold) or self.threshold <= 0:
            raise ValueError(f'uncertainty threshold {self.threshold} must be a positive number of nats')
        if not 0 <= self.hysteresis < self.threshold:
            raise ValueError(f'uncertainty hysteresis {self.hysteresis} must lie in [0, threshold)')

    def update(self, entropy: Iterable[float]) -> bool:
        """Take one step's per-dimension entropies; whether the flag is raised after it (non-finite: unchanged)."""
        peak = float(np.max(np.asarray(list(entropy), dtype=np.float64)))
        if np.isfinite(peak):
            self.raised = peak >= self.threshold - self.hysteresis if self.raised else peak > self.threshold
        return self.raised

    def replay(self, entropies: np.ndarray) -> np.ndarray:
        """The flag after each of (N, 7) entropies, from the current state; (N,) bool."""
        return np.array([self.update(e) for e in np.asarray(entropies)], dtype=bool)


def calibrate(step_peaks: np.ndarray, quantile: float = 0.95) -> float:
    """The threshold: the ``quantile`` of the entropy peaks of policy steps in successful episodes."""
    step_peaks = np.asarray(step_peaks, dtype=np.float64)
    step_peaks = step_peaks[np.isfinite(step_peaks)]
    if not step_peaks.size:
        raise ValueError('no entropy on successful policy steps to calibrate the uncertainty threshold on')
    if not 0 < quantile < 1:
        raise ValueError(f'quantile {quantile} must lie in (0, 1)')
    return float(np.quantile(step_peaks, quantile))

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Per-step preference labels of one episode from its per-step control sources (no ROS; the trainer imports it).

The one relabel function of the workspace: the recorder tags bags with it at close and the trainer recomputes
labels with it for any K, so the two always agree::

    python -c "from hapo_recorder.relabel import relabel; print(relabel([1, 1, 1, 2, 2, 1], k=10))"
    # [0 0 0 2 2 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hapo_interfaces.enums import TRAINING_LABELS, ControlSource, Label
from hapo_recorder.episode import intervention_spans


def undesirable_windows(sources: Sequence[int] | np.ndarray, k: int) -> list[list[int]]:
    """Step indices relabelled undesirable, one list per intervention (ascending), in intervention order.

    The window holds the ``k`` POLICY steps right before the intervention starts; NONE/STOPPED steps are skipped
    (they are not counted and stay non-training steps).
    """
    if k < 0:
        raise ValueError(f'k={k} must be >= 0')
    src = np.asarray(sources, dtype=np.int8)  # (N,)
    windows: list[list[int]] = []
    for start, _end in intervention_spans(src):
        window: list[int] = []
        j = start - 1
        # Deviation from the public APO reference code (arXiv 2506.07127, its relabelling script): it marks the
        # index range [start - K, start) of the concatenated step array, which reaches back across the episode
        # start and into the previous intervention's corrections when two interventions are close. We walk back
        # over this episode only (j >= 0) and stop at the previous intervention's last HUMAN step, so a
        # correction is never relabelled undesirable; and we count POLICY steps, not indices.
        while j >= 0 and len(window) < k and src[j] != ControlSource.HUMAN:
            if src[j] == ControlSource.POLICY:
                window.append(j)
            j -= 1
        windows.append(sorted(window))
    return windows


def relabel(sources: Sequence[int] | np.ndarray, k: int, demo: bool = False) -> np.ndarray:
    """Labels (N,) int8 of one episode's executed steps, in step order.

    Args:
        sources: ``ControlSource`` values of the executed steps, in step order.
        k: number of POLICY steps before each intervention relabelled ``Label.UNDESIRABLE`` (DESIGN.md K, 10).
        demo: a whole expert demonstration: every POLICY/HUMAN step is ``Label.POLICY`` (desirable), no windows.

    Returns:
        POLICY -> 1, HUMAN -> 2, the window steps -> 0, NONE/STOPPED -> -1 (``Label.NOT_TRAINING``).
    """
    src = np.asarray(sources, dtype=np.int8)  # (N,)
    if src.ndim != 1:
        raise ValueError(f'sources must be 1-D, got shape {src.shape}')
    labels = np.full(src.shape, Label.NOT_TRAINING, dtype=np.int8)  # (N,)
    policy = src == ControlSource.POLICY
    human = src == ControlSource.HUMAN
    if demo:
        labels[policy | human] = Label.POLICY
        return labels
    labels[policy] = Label.POLICY
    labels[human] = Label.CORRECTION
    for window in undesirable_windows(src, k):
        labels[window] = Label.UNDESIRABLE
    return labels


def label_counts(labels: Sequence[int] | np.ndarray) -> dict[str, int]:
    """Steps per label: ``{'undesirable': n0, 'policy': n1, 'correction': n2, 'not_training': n_-1}``."""
    arr = np.asarray(labels, dtype=np.int8)  # (N,)
    return {lab.display: int(np.count_nonzero(arr == lab)) for lab in (*sorted(TRAINING_LABELS), Label.NOT_TRAINING)}

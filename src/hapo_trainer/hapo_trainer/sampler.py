# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Balanced batches by label class (``Label``): shares per class given by the method (``algos.py``), e.g.
50 % policy (c=1), 25 % correction (c=2), 25 % undesirable (c=0) for hapo.

Epoch rule (DESIGN.md 'Balanced batches'): an epoch ends when the *epoch class* is exhausted — the
corrections (c = 2) whenever their ratio is positive, otherwise the class with the largest ratio (e.g. c = 1
for ``bc``). The other classes cycle: their stream is a concatenation of fresh permutations, as long as the
epoch needs. Every sample of the epoch class is drawn at least once per epoch; the last global step is
filled up from the next permutation of that class if the count does not divide (ceil rule), so tiny datasets
still give at least one step.

Order is a pure function of ``(labels, batch_size, ratios, seed, epoch, rank, world_size)`` (the lerobot
``EpisodeAwareSampler`` idea): nothing depends on a global RNG or on how many batches were consumed, so a
resumed run asks for ``epoch_batches(...)[step:]`` and gets the uninterrupted order.

DDP: every rank builds the same per-class streams and takes the slots of global step ``s`` at stream
positions ``(s * world_size + rank) * k_c ... + k_c``. Ranks therefore see disjoint samples within an epoch
whenever no stream wraps (each class has at least as many samples as the epoch draws from it); a cycling
class smaller than that repeats samples, across ranks as within one process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hapo_interfaces.enums import TRAINING_LABELS, Label


def _named(ratios: Mapping[Label, float]) -> dict[str, float]:
    """Ratios keyed by display name, for messages."""
    return {Label(c).display: r for c, r in ratios.items()}


def class_counts(batch_size: int, ratios: Mapping[Label, float]) -> dict[Label, int]:
    """Samples per class in one batch: largest-remainder rounding of ``ratio * batch_size`` (sums to B).

    Ties go to the earlier class of ``TRAINING_LABELS`` (policy, correction, undesirable). Raises ValueError
    when a class with a positive ratio would get no slot (batch too small).
    """
    if batch_size < 1:
        raise ValueError(f'batch_size={batch_size} must be >= 1')
    unknown = [c for c in ratios if c not in TRAINING_LABELS]
    if unknown:
        raise ValueError(f'class ratios name {unknown}, which are no training classes {list(TRAINING_LABELS)}')
    total = sum(ratios.values())
    if abs(total - 1.0) > 1e-6 or any(r < 0 for r in ratios.values()):
        raise ValueError(f'class ratios {_named(ratios)} must be >= 0 and sum to 1 (sum is {total:g})')
    order = [c for c in TRAINING_LABELS if c in ratios]
    exact = {c: ratios[c] * batch_size for c in order}
    counts = {c: int(np.floor(exact[c] + 1e-9)) for c in order}
    left = batch_size - sum(counts.values())
    for c in sorted(order, key=lambda c: (-(exact[c] - counts[c]), order.index(c)))[:left]:
        counts[c] += 1
    starved = [c for c in order if ratios[c] > 0 and counts[c] == 0]
    if starved:
        raise ValueError(f'batch_size={batch_size} gives classes {[c.display for c in starved]} no slot at ratios '
                         f'{_named(ratios)}; use a larger micro-batch')
    return {c: n for c, n in counts.items() if n > 0}


def epoch_class(ratios: Mapping[Label, float]) -> Label:
    """The class whose exhaustion ends an epoch: corrections if sampled, else the largest share."""
    if ratios.get(Label.CORRECTION, 0.0) > 0:
        return Label.CORRECTION
    return max((c for c in TRAINING_LABELS if c in ratios), key=lambda c: ratios[c])


def _stream(indices: np.ndarray, length: int, seed: int, epoch: int, cls: Label) -> np.ndarray:
    """``length`` indices of one class: concatenated permutations, each seeded by (seed, epoch, class, cycle)."""
    parts, have, cycle = [], 0, 0
    while have < length:
        rng = np.random.default_rng([seed, epoch, int(cls), cycle])
        parts.append(indices[rng.permutation(len(indices))])
        have += len(indices)
        cycle += 1
    return np.concatenate(parts)[:length] if parts else indices[:0]


def epoch_batches(labels: Sequence[int] | np.ndarray, batch_size: int, ratios: Mapping[Label, float],
                  seed: int = 0, epoch: int = 0, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """All batches rank ``rank`` sees in ``epoch``: lists of dataset indices, ``batch_size`` each.

    ``ratios``: class -> share of each batch (``LossConfig.class_ratios()``, by default the method's).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f'rank={rank} outside [0, world_size={world_size})')
    labels = np.asarray(labels)  # (N,)
    counts = class_counts(batch_size, ratios)
    by_class = {c: np.flatnonzero(labels == c) for c in counts}  # c -> (N_c,)
    empty = [c for c, idx in by_class.items() if len(idx) == 0]
    if empty:
        raise ValueError(f'no samples of class {[c.display for c in empty]} but ratios {_named(ratios)} ask for them')
    ec = epoch_class(ratios)
    n_steps = max(1, -(-len(by_class[ec]) // (world_size * counts[ec])))  # ceil: every c=ec sample once
    streams = {c: _stream(idx, n_steps * world_size * counts[c], seed, epoch, c) for c, idx in by_class.items()}
    batches = []
    for s in range(n_steps):
        slot = s * world_size + rank
        batch = np.concatenate([streams[c][slot * k:(slot + 1) * k] for c, k in counts.items()])  # (B,)
        # Mix classes inside the batch so the KL roll-by-one pairs span classes (seeded per step).
        batch = batch[np.random.default_rng([seed, epoch, 7919, slot]).permutation(len(batch))]
        batches.append(batch.tolist())
    return batches

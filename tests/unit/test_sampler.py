# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""epoch_batches: per-batch ratios, the epoch rule, determinism and rank disjointness."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hapo_interfaces.enums import Label
from hapo_trainer.algos import get_algo
from hapo_trainer.sampler import class_counts, epoch_batches, epoch_class

HAPO = get_algo('hapo').ratios  # policy 0.5, correction 0.25, undesirable 0.25


def make_labels(n1: int, n2: int, n0: int) -> np.ndarray:
    labels = np.array([1] * n1 + [2] * n2 + [0] * n0)
    return labels[np.random.default_rng(3).permutation(len(labels))]


@pytest.mark.parametrize(('batch', 'ratios', 'expected'), [
    (8, {1: 0.5, 2: 0.25, 0: 0.25}, {1: 4, 2: 2, 0: 2}),
    (4, {1: 0.5, 2: 0.25, 0: 0.25}, {1: 2, 2: 1, 0: 1}),
    (6, {1: 0.5, 2: 0.25, 0: 0.25}, {1: 3, 2: 2, 0: 1}),  # remainders tie: c=2 before c=0
    (8, {1: 0.5, 2: 0.5, 0: 0.0}, {1: 4, 2: 4}),
    (5, {1: 1.0}, {1: 5}),
])
def test_class_counts(batch, ratios, expected):
    assert class_counts(batch, ratios) == expected


@pytest.mark.parametrize(('batch', 'ratios', 'match'), [
    (2, {1: 0.5, 2: 0.25, 0: 0.25}, 'no slot'),
    (8, {1: 0.5, 2: 0.25}, 'sum to 1'),
    (0, {1: 1.0}, 'must be >= 1'),
    (8, {1: 0.75, -1: 0.25}, 'no training classes'),
])
def test_class_counts_refuses(batch, ratios, match):
    with pytest.raises(ValueError, match=match):
        class_counts(batch, ratios)


@pytest.mark.parametrize(('ratios', 'expected'), [
    ({1: 0.5, 2: 0.25, 0: 0.25}, 2), ({1: 1.0, 2: 0.0, 0: 0.0}, 1), ({1: 0.3, 0: 0.7}, 0)])
def test_epoch_class(ratios, expected):
    assert epoch_class(ratios) == expected


def test_every_batch_has_the_ratios_and_epoch_ends_when_corrections_are_exhausted():
    labels = make_labels(50, 24, 7)  # few undesirable: they cycle
    batches = epoch_batches(labels, 8, HAPO, seed=1)
    assert len(batches) == 24 // 2
    for batch in batches:
        assert Counter(labels[batch].tolist()) == {1: 4, 2: 2, 0: 2}
    corrections = [i for batch in batches for i in batch if labels[i] == 2]
    assert sorted(corrections) == sorted(np.flatnonzero(labels == 2).tolist())  # each correction exactly once
    undesirable = Counter(i for batch in batches for i in batch if labels[i] == 0)
    assert set(undesirable) == set(np.flatnonzero(labels == 0).tolist())  # cycled: all seen, some twice


def test_ceil_rule_sees_every_correction_when_not_divisible():
    labels = make_labels(40, 5, 10)
    batches = epoch_batches(labels, 8, HAPO, seed=0)
    assert len(batches) == 3
    seen = {i for batch in batches for i in batch if labels[i] == 2}
    assert seen == set(np.flatnonzero(labels == 2).tolist())


def test_order_is_a_pure_function_of_seed_epoch_rank():
    labels = make_labels(60, 20, 20)
    a = epoch_batches(labels, 8, HAPO, seed=5, epoch=2, rank=1, world_size=2)
    assert a == epoch_batches(labels, 8, HAPO, seed=5, epoch=2, rank=1, world_size=2)
    assert a != epoch_batches(labels, 8, HAPO, seed=5, epoch=3, rank=1, world_size=2)
    assert a != epoch_batches(labels, 8, HAPO, seed=6, epoch=2, rank=1, world_size=2)
    # Keyed by Label or by the same ints: the same order (Label is an IntEnum; the order is on disk in no file,
    # but a resumed run must see the batches the interrupted one would have seen).
    assert a == epoch_batches(labels, 8, {1: 0.5, 2: 0.25, 0: 0.25}, seed=5, epoch=2, rank=1, world_size=2)


def test_ranks_are_disjoint_and_cover_the_single_process_global_batches():
    labels = make_labels(200, 40, 60)
    r0 = epoch_batches(labels, 4, HAPO, seed=9, rank=0, world_size=2)
    r1 = epoch_batches(labels, 4, HAPO, seed=9, rank=1, world_size=2)
    assert len(r0) == len(r1) == 40 // 2
    flat0, flat1 = {i for b in r0 for i in b}, {i for b in r1 for i in b}
    assert not flat0 & flat1
    assert len(flat0) == sum(len(b) for b in r0)
    # Global step s under DDP = micro-batches 2s and 2s+1 of one process accumulating 2 (the DDP test relies on it)
    single = epoch_batches(labels, 4, HAPO, seed=9, rank=0, world_size=1)
    assert single[0::2] == r0 and single[1::2] == r1


def test_missing_class_is_refused():
    with pytest.raises(ValueError, match=r"no samples of class \['undesirable'\]"):
        epoch_batches(make_labels(10, 4, 0), 8, HAPO)
    # bc needs only the policy class
    assert len(epoch_batches(make_labels(10, 0, 0), 4, get_algo('bc').ratios)) == 3
    assert len(epoch_batches(make_labels(10, 0, 0), 4, {Label.POLICY: 1.0})) == 3

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""random_shift (optim.image_shift_px): a shift with replicated borders, within range, reproducible by seed."""

from __future__ import annotations

import numpy as np

from hapo_trainer.augment import random_shift


def shifted(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``img`` shifted by (dy, dx) the slow way: out[y, x] = img[clip(y + dy), clip(x + dx)]."""
    h, w = img.shape[:2]
    ys = np.clip(np.arange(h) + dy, 0, h - 1)
    xs = np.clip(np.arange(w) + dx, 0, w - 1)
    return img[ys][:, xs]


def which_shift(out: np.ndarray, img: np.ndarray, max_px: int) -> tuple[int, int] | None:
    """The (dy, dx) within max_px that turns ``img`` into ``out``, or None."""
    for dy in range(-max_px, max_px + 1):
        for dx in range(-max_px, max_px + 1):
            if np.array_equal(shifted(img, dy, dx), out):
                return dy, dx
    return None


def test_each_camera_is_shifted_within_range_and_reproducibly():
    rng = np.random.default_rng(0)
    images = {'agentview': rng.integers(0, 256, (16, 20, 3), dtype=np.uint8),
              'wrist': rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)}
    seen = set()
    for seed in range(20):
        out = random_shift(images, 4, np.random.default_rng(seed))
        again = random_shift(images, 4, np.random.default_rng(seed))
        for cam, img in images.items():
            assert out[cam].shape == img.shape and out[cam].dtype == img.dtype
            np.testing.assert_array_equal(out[cam], again[cam])  # same seed, same shift
            shift = which_shift(out[cam], img, 4)
            assert shift is not None, f'{cam}: not a shift within 4 px'
            seen.add(shift)
    assert len(seen) > 10  # the offsets vary


def test_zero_is_off():
    images = {'agentview': np.arange(48, dtype=np.uint8).reshape(4, 4, 3)}
    assert random_shift(images, 0, np.random.default_rng(0)) is images

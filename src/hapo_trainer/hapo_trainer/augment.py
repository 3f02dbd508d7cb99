# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Image augmentation for training (``optim.image_shift_px``): the random shift of DrQ, seeded, numpy only.

DrQ (Kostrikov et al. 2020, arXiv 2004.13649, "Image Augmentation Is All You Need"): pad each image by ``n``
pixels replicating its border, and crop the original size back at a random offset, i.e. shift the image by
up to ``n`` pixels each way. Applied to the policy's inputs by ``steps.MicroBatches`` with a generator seeded by
(run seed, rank, micro-batch index), so a resumed run sees the same shifts as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np


def random_shift(images: dict[str, np.ndarray], max_px: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each camera's (H, W, C) image shifted by its own (dy, dx), uniform in [-max_px, max_px], borders replicated.

    ``out[y, x] = image[clip(y + dy), clip(x + dx)]``; ``max_px = 0`` returns the images unchanged.
    """
    if max_px == 0:
        return images
    out = {}
    for cam, img in images.items():
        h, w = img.shape[:2]
        dy, dx = (int(v) for v in rng.integers(-max_px, max_px + 1, size=2))
        padded = np.pad(img, ((max_px, max_px), (max_px, max_px), (0, 0)), mode='edge')  # (H + 2n, W + 2n, C)
        out[cam] = padded[max_px + dy:max_px + dy + h, max_px + dx:max_px + dx + w]  # (H, W, C)
    return out

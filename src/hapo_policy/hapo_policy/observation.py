# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``Observation``: what a policy reads for one step, the sample type of ``VlaPolicy.encode_batch`` and
``predict_batch`` and what ``PreferenceDataset.sample`` returns. A NamedTuple, so ``images, instruction, proprio =
obs`` still works."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Observation(NamedTuple):
    images: dict[str, np.ndarray]  # camera -> (H, W, 3) uint8
    instruction: str
    proprio: np.ndarray | None = None  # (P,) joint positions; None for a policy that takes none

    def image(self, cam: str) -> np.ndarray:
        """Camera ``cam``'s (H, W, 3) uint8 frame; ValueError when missing or of another shape or dtype."""
        if cam not in self.images:
            raise ValueError(f'camera {cam!r} missing from the observation (have {sorted(self.images)})')
        img = np.asarray(self.images[cam])
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'camera {cam!r}: expected (H, W, 3) uint8, got {img.shape} {img.dtype}')
        return img

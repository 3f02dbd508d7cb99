# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""ActionTokenizer: continuous 7-D actions <-> the last ``n_bins`` token ids of the vocabulary.

Contract (numpy and torch give identical ids)::

    normalised = stats.normalize(action)                  # clipped to [-1, 1]
    edges      = linspace(-1, 1, n_bins + 1)              # 257 edges -> 256 bins of width 2/256
    bin        = clip(floor((normalised + 1) / 2 * n_bins), 0, n_bins - 1)   # -1 -> 0, +1 -> 255
    token      = vocab_size - n_bins + bin                # bins on the LAST n_bins ids, in increasing order
    decode     = stats.unnormalize(centres[bin]),  centres = (edges[:-1] + edges[1:]) / 2

Round trip error is at most half a bin (1/256 in normalised units) inside [q01, q99].

Deviation from OpenVLA (prismatic/vla/action_tokenizer.py,
https://github.com/openvla/openvla/blob/main/prismatic/vla/action_tokenizer.py): OpenVLA builds
``bins = linspace(-1, 1, 256)`` (256 *edges*, i.e. 255 intervals), tokenises with ``np.digitize(a, bins)``
(values 1..256; -1.0 gives 1, +1.0 gives 256) and maps to ``vocab_size - digitized``, so its bins run in
*decreasing* id order and it decodes with ``bin_centers[clip(vocab_size - id - 1, 0, 254)]``, an
off-by-one that never uses one id and decodes the top value to the wrong centre. We use 256 true bins of
equal width, increasing ids and an exact inverse; checkpoints are therefore not token-compatible with
OpenVLA's (an OpenVLA checkpoint loaded through ``openvla.py`` keeps its own decoding).
"""

from __future__ import annotations

import numpy as np
import torch

from hapo_policy.normalization import ActionStats


class ActionTokenizer:
    """Uniform-bin action tokenizer; see the module docstring for the exact contract."""

    def __init__(self, vocab_size: int, n_bins: int = 256, stats: ActionStats | None = None):
        if n_bins < 2 or vocab_size < n_bins:
            raise ValueError(f'need 2 <= n_bins <= vocab_size, got n_bins={n_bins} vocab_size={vocab_size}')
        self.vocab_size = int(vocab_size)
        self.n_bins = int(n_bins)
        self.stats = stats or ActionStats.default()
        self.first_id = self.vocab_size - self.n_bins  # id of bin 0
        self.edges = np.linspace(-1.0, 1.0, self.n_bins + 1)  # (n_bins + 1,)
        self.centres = (self.edges[:-1] + self.edges[1:]) / 2.0  # (n_bins,)
        self.bin_width = 2.0 / self.n_bins

    @property
    def action_dim(self) -> int:
        return self.stats.dim

    def spec(self) -> dict:
        """What ``action_stats.json`` records about the tokenizer."""
        return {'kind': 'uniform_bins_last_ids', 'n_bins': self.n_bins, 'vocab_size': self.vocab_size}

    # numpy ---------------------------------------------------------------------------------------
    def bins(self, actions: np.ndarray) -> np.ndarray:
        """(..., A) raw actions -> (..., A) int64 bin indices in [0, n_bins)."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape[-1:] != (self.action_dim,):
            raise ValueError(f'actions must end in {self.action_dim} dims, got shape {actions.shape}')
        norm = self.stats.normalize(actions)
        return np.clip(np.floor((norm + 1.0) * 0.5 * self.n_bins), 0, self.n_bins - 1).astype(np.int64)

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """(..., A) raw actions -> (..., A) int64 token ids in [vocab_size - n_bins, vocab_size)."""
        return self.bins(actions) + self.first_id

    def decode(self, token_ids: np.ndarray) -> np.ndarray:
        """(..., A) token ids -> (..., A) float64 raw actions (bin centres); ValueError on non-action ids."""
        ids = np.asarray(token_ids, dtype=np.int64)
        bad = (ids < self.first_id) | (ids >= self.vocab_size)
        if bad.any():
            raise ValueError(f'token ids {np.unique(ids[bad]).tolist()[:8]} outside the action range '
                             f'[{self.first_id}, {self.vocab_size})')
        return self.stats.unnormalize(self.centres[ids - self.first_id])

    # torch (training: L1 of argmax tokens; no host sync unless check=True) ------------------------
    def encode_torch(self, actions: torch.Tensor) -> torch.Tensor:
        """(..., A) float raw actions -> (..., A) long token ids, same result as ``encode``."""
        norm = self.stats.normalize_torch(actions)  # (..., A) in [-1, 1]
        bins = torch.floor((norm + 1.0) * 0.5 * self.n_bins).clamp(0, self.n_bins - 1).long()
        return bins + self.first_id

    def decode_torch(self, token_ids: torch.Tensor, check: bool = True) -> torch.Tensor:
        """(..., A) long ids -> (..., A) float32 raw actions.

        ``check=True`` raises ValueError on non-action ids (one host sync); ``check=False`` clamps them
        into the action range, for training loops that must not sync.
        """
        bins = token_ids.long() - self.first_id  # (..., A)
        if check and bool(((bins < 0) | (bins >= self.n_bins)).any()):
            raise ValueError(f'token ids outside the action range [{self.first_id}, {self.vocab_size})')
        bins = bins.clamp(0, self.n_bins - 1)
        centres = torch.as_tensor(self.centres, dtype=torch.float32, device=token_ids.device)
        return self.stats.unnormalize_torch(centres[bins])

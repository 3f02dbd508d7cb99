# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""ActionStats: per-dimension q01/q99 of the training actions, normalise to [-1, 1] and back.

Saved in the checkpoint's ``action_stats.json`` (DESIGN.md 'Action space'; OpenVLA's BOUNDS_Q99). An optional
``mask`` marks the dimensions that are normalised; the others (OpenVLA: the gripper) pass through as they are,
clipped to [-1, 1], as OpenVLA's ``predict_action`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hapo_interfaces.topics import ACTION_DIM

_EPS = 1e-8


@dataclass(frozen=True)
class ActionStats:
    """1st and 99th percentile of each action dimension, as float64 arrays of shape (A,), and the bool (A,)
    mask of normalised dimensions (None: all of them)."""

    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        q01 = np.asarray(self.q01, dtype=np.float64).reshape(-1)
        q99 = np.asarray(self.q99, dtype=np.float64).reshape(-1)
        if q01.shape != q99.shape or q01.shape[0] == 0:
            raise ValueError(f'q01 {q01.shape} and q99 {q99.shape} must be equal non-empty vectors')
        if not (np.all(np.isfinite(q01)) and np.all(np.isfinite(q99))) or np.any(q99 < q01):
            raise ValueError(f'stats need finite q01 <= q99, got q01={q01.tolist()} q99={q99.tolist()}')
        mask = np.ones(q01.shape, dtype=bool) if self.mask is None else np.asarray(self.mask).reshape(-1)
        if mask.shape != q01.shape or mask.dtype != bool:
            raise ValueError(f'mask must be {q01.shape[0]} booleans, got {np.asarray(self.mask).tolist()}')
        object.__setattr__(self, 'q01', q01)
        object.__setattr__(self, 'q99', q99)
        object.__setattr__(self, 'mask', mask)

    @property
    def dim(self) -> int:
        return int(self.q01.shape[0])

    @classmethod
    def default(cls, dim: int = ACTION_DIM) -> ActionStats:
        """Identity stats (q01 = -1, q99 = +1): the sim's OSC_POSE action space is already [-1, 1]."""
        return cls(-np.ones(dim), np.ones(dim))

    @classmethod
    def from_actions(cls, actions: np.ndarray) -> ActionStats:
        """Stats of an (N, A) array of recorded actions."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] == 0:
            raise ValueError(f'expected (N, A) actions with N > 0, got shape {actions.shape}')
        return cls(np.percentile(actions, 1, axis=0), np.percentile(actions, 99, axis=0))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) (A,) of the raw values that tokenise without clipping: q01/q99, or -1/+1 off the mask."""
        return np.where(self.mask, self.q01, -1.0), np.where(self.mask, self.q99, 1.0)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """(..., A) raw -> (..., A) in [-1, 1], clipped; a constant dimension (q01 == q99) maps to 0."""
        actions = np.asarray(actions, dtype=np.float64)
        span = self.q99 - self.q01
        out = 2.0 * (actions - self.q01) / np.maximum(span, _EPS) - 1.0
        out = np.where(span > _EPS, out, 0.0)
        return np.clip(np.where(self.mask, out, actions), -1.0, 1.0)

    def normalize_torch(self, actions: torch.Tensor) -> torch.Tensor:
        """``normalize`` for a tensor on any device, in float64 (training: no host round trip)."""
        q01 = torch.as_tensor(self.q01, dtype=torch.float64, device=actions.device)
        span = torch.as_tensor(self.q99, dtype=torch.float64, device=actions.device) - q01
        mask = torch.as_tensor(self.mask, device=actions.device)
        raw = actions.double()  # (..., A)
        out = 2.0 * (raw - q01) / span.clamp_min(_EPS) - 1.0  # (..., A)
        out = torch.where(span > _EPS, out, torch.zeros_like(out))
        return torch.where(mask, out, raw).clamp(-1.0, 1.0)

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        """(..., A) in [-1, 1] -> (..., A) raw (inverse of ``normalize`` inside [q01, q99])."""
        normalized = np.asarray(normalized, dtype=np.float64)
        return np.where(self.mask, (normalized + 1.0) * 0.5 * (self.q99 - self.q01) + self.q01, normalized)

    def unnormalize_torch(self, normalized: torch.Tensor) -> torch.Tensor:
        """``unnormalize`` for a float tensor on any device, in its dtype."""
        q01 = torch.as_tensor(self.q01, dtype=normalized.dtype, device=normalized.device)
        q99 = torch.as_tensor(self.q99, dtype=normalized.dtype, device=normalized.device)
        mask = torch.as_tensor(self.mask, device=normalized.device)
        return torch.where(mask, (normalized + 1.0) * 0.5 * (q99 - q01) + q01, normalized)

    def to_json(self) -> dict[str, Any]:
        body = {'q01': self.q01.tolist(), 'q99': self.q99.tolist()}
        if not self.mask.all():
            body['mask'] = self.mask.tolist()
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ActionStats:
        """Inverse of ``to_json`` (also reads OpenVLA's per-dataset ``action`` stats); raises ValueError naming
        the missing key."""
        try:
            mask = body.get('mask')
            return cls(np.asarray(body['q01'], dtype=np.float64), np.asarray(body['q99'], dtype=np.float64),
                       None if mask is None else np.asarray(mask, dtype=bool))
        except KeyError as exc:
            raise ValueError(f'action stats lack key {exc}') from None

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Feature statistics of a LeRobot v3.0 dataset (``meta/stats.json`` and the episodes' ``stats/*`` columns), as
LeRobot's compute_stats defines them: per feature min / max / mean / std / count and the quantiles."""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTILES = {'q01': 0.01, 'q10': 0.10, 'q50': 0.50, 'q90': 0.90, 'q99': 0.99}  # LeRobot DEFAULT_QUANTILES


def vector_stats(x: np.ndarray) -> dict[str, list]:
    """Exact statistics over the rows of (N, D) or (N,) ``x``; rows with a NaN are left out (count says how many
    rows were used). LeRobot approximates the quantiles by histogram; these are exact."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)  # (N, D)
    x = x[~np.isnan(x).any(axis=1)]
    if not len(x):
        nan = [float('nan')] * (x.shape[1])
        return {'min': nan, 'max': nan, 'mean': nan, 'std': nan, 'count': [0], **{q: nan for q in QUANTILES}}
    out = {'min': x.min(0).tolist(), 'max': x.max(0).tolist(), 'mean': x.mean(0).tolist(), 'std': x.std(0).tolist(),
           'count': [len(x)]}
    out.update({key: np.quantile(x, q, axis=0).tolist() for key, q in QUANTILES.items()})
    return out


def image_stats(frames: np.ndarray) -> dict[str, Any]:
    """Per-channel statistics in [0, 1] with shape (3, 1, 1), over LeRobot's sample of the frames (all of them up
    to 100; then n**0.75, at most 10 000) downsampled as it does when a side is 300 px or more."""
    n = len(frames)
    num = n if n < 100 else max(100, min(int(n**0.75), 10_000))
    sample = frames[np.round(np.linspace(0, n - 1, num)).astype(int)]  # (S, H, W, 3)
    h, w = sample.shape[1:3]
    if max(h, w) >= 300:
        step = int(max(h, w) / 150)
        sample = sample[:, ::step, ::step]
    px = sample.reshape(-1, 3).astype(np.float64) / 255.0  # (S*H*W, 3)
    stats = vector_stats(px)
    out: dict[str, Any] = {k: [[[v]] for v in vals] for k, vals in stats.items() if k != 'count'}
    out['count'] = [num]
    return out


def aggregate_stats(per_episode: list[dict[str, Any]]) -> dict[str, Any]:
    """LeRobot's aggregate_feature_stats: count-weighted mean, pooled variance, min of min, max of max, and the
    count-weighted mean of each quantile (used for the video features)."""
    eps = [s for s in per_episode if s['count'][0] > 0]
    counts = np.array([s['count'][0] for s in eps], dtype=np.float64)
    arr = {k: np.array([s[k] for s in eps], dtype=np.float64) for k in eps[0] if k != 'count'}  # (E, ...)
    wshape = (-1,) + (1,) * (arr['mean'].ndim - 1)
    w = counts.reshape(wshape) / counts.sum()
    mean = (arr['mean'] * w).sum(0)
    var = ((arr['std'] ** 2 + (arr['mean'] - mean) ** 2) * w).sum(0)
    out = {'min': arr['min'].min(0).tolist(), 'max': arr['max'].max(0).tolist(), 'mean': mean.tolist(),
           'std': np.sqrt(var).tolist(), 'count': [int(counts.sum())]}
    out.update({q: (arr[q] * w).sum(0).tolist() for q in QUANTILES})
    return out

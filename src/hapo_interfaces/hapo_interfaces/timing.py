# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Rolling latency statistics the nodes report and the benches read (same numbers in both)."""

from __future__ import annotations

from collections import deque

import numpy as np


class LatencyWindow:
    """The last ``size`` samples in seconds; p50/p99/max in milliseconds."""

    def __init__(self, size: int = 1000):
        self.samples: deque[float] = deque(maxlen=size)
        self.total = 0

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self.total += 1

    def summary_ms(self) -> dict[str, float]:
        if not self.samples:
            return {'p50_ms': float('nan'), 'p99_ms': float('nan'), 'max_ms': float('nan'), 'n': 0}
        a = np.asarray(self.samples) * 1e3
        return {'p50_ms': float(np.percentile(a, 50)), 'p99_ms': float(np.percentile(a, 99)),
                'max_ms': float(a.max()), 'n': self.total}

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Shared bench plumbing: an isolated ROS domain, percentiles, one JSON object on stdout."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests'))

from helpers import unique_domain_id  # noqa: E402


def isolate() -> int:
    """Reserve a ROS_DOMAIN_ID for this bench and its child processes."""
    domain = unique_domain_id()
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    return domain


def pct_ms(samples_s) -> dict[str, float]:
    a = np.asarray(samples_s, dtype=float) * 1e3
    if a.size == 0:
        return {'n': 0}
    return {'n': int(a.size), 'p50_ms': round(float(np.percentile(a, 50)), 3),
            'p99_ms': round(float(np.percentile(a, 99)), 3), 'max_ms': round(float(a.max()), 3)}


def report(result: dict) -> None:
    print(json.dumps(result, indent=2, sort_keys=True), flush=True)


def hop(probe, msg_type, make, n: int, period_s: float, qos=10) -> list[float]:
    """Baseline: publish ``n`` messages ``make(stamp_ns)`` and time their arrival (now - header stamp) at a
    second node of the same process: what DDS alone costs."""
    import time

    from helpers import wait_for

    from hapo_interfaces.stamps import to_ns

    lat: list[float] = []
    sub = probe.node.create_subscription(msg_type, 'bench/hop', lambda m: lat.append(
        (time.time_ns() - to_ns(m.header.stamp)) / 1e9), qos)
    pub = probe.node.create_publisher(msg_type, 'bench/hop', qos)
    wait_for(lambda: pub.get_subscription_count() > 0, 10, what='hop subscriber')
    for _ in range(n):
        pub.publish(make(time.time_ns()))
        time.sleep(period_s)
    time.sleep(0.2)
    probe.node.destroy_subscription(sub)
    probe.node.destroy_publisher(pub)
    return lat

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``builtin_interfaces/Time`` <-> integer nanoseconds: the only time conversion in the workspace."""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def to_ns(stamp: Any) -> int:
    """Nanoseconds of a Time-like object (rclpy or rosbags message)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def fill(stamp: Any, ns: int) -> Any:
    """Write ``ns`` into a Time-like object in place and return it."""
    stamp.sec, stamp.nanosec = divmod(int(ns), NS_PER_S)
    return stamp

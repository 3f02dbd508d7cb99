# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Stamps: ``builtin_interfaces/Time`` <-> integer nanoseconds (the only time conversion in the workspace), and
the one rule that pairs an executed step with the observation it answers (``match_stamp``)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

NS_PER_S = 1_000_000_000


def to_ns(stamp: Any) -> int:
    """Nanoseconds of a Time-like object (rclpy or rosbags message)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def fill(stamp: Any, ns: int) -> Any:
    """Write ``ns`` into a Time-like object in place and return it."""
    stamp.sec, stamp.nanosec = divmod(int(ns), NS_PER_S)
    return stamp


def match_stamp(stamps: Sequence[int], t: int, max_lag_ns: int = 0) -> int | None:
    """Index in ascending ``stamps`` of the observation paired with a step stamped ``t``; None if none.

    The exact stamp ``t`` if present, else the latest stamp in ``[t - max_lag_ns, t]`` (``max_lag_ns=0``: exact
    only). Never a later observation: a step cannot answer what it has not seen.
    """
    j = bisect.bisect_right(stamps, t) - 1
    if j < 0 or t - stamps[j] > max_lag_ns:
        return None
    return j

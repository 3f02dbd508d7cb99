# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""stamps: Time <-> nanoseconds, and match_stamp, the one rule pairing a step with its observation."""

from __future__ import annotations

import numpy as np

from hapo_interfaces.stamps import fill, match_stamp, to_ns


class Time:
    sec = nanosec = 0


def test_time_round_trip():
    assert to_ns(fill(Time(), 3_000_000_007)) == 3_000_000_007


def test_match_stamp_exact_else_latest_earlier_within_lag():
    stamps = [10, 20, 30]
    assert match_stamp(stamps, 20) == 1  # exact
    assert match_stamp(stamps, 25) is None  # exact only by default
    assert match_stamp(stamps, 25, max_lag_ns=5) == 1 and match_stamp(stamps, 26, max_lag_ns=5) is None
    assert match_stamp(stamps, 5, max_lag_ns=100) is None  # never a later observation
    assert match_stamp(np.array(stamps, dtype=np.int64), 31, max_lag_ns=1) == 2  # sorted arrays too
    assert match_stamp([], 10, max_lag_ns=100) is None

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Build diagnostic_msgs/DiagnosticArray messages from plain dicts (what every node publishes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from hapo_interfaces.stamps import fill

OK, WARN = DiagnosticStatus.OK, DiagnosticStatus.WARN  # levels (bytes, as the message wants them)


def diagnostic_status(name: str, hardware_id: str, values: Mapping[str, Any], level: bytes = OK,
                      message: str = 'ok') -> DiagnosticStatus:
    """One status named ``name`` with ``values`` as key/value strings (floats to 3 decimals)."""
    st = DiagnosticStatus(level=level, name=name, hardware_id=hardware_id, message=message)
    st.values = [KeyValue(key=str(k), value=f'{v:.3f}' if isinstance(v, float) else str(v))
                 for k, v in values.items()]
    return st


def diagnostic_array(stamp_ns: int, *statuses: DiagnosticStatus) -> DiagnosticArray:
    """The array of ``statuses``, stamped ``stamp_ns``."""
    arr = DiagnosticArray(status=list(statuses))
    fill(arr.header.stamp, stamp_ns)
    return arr


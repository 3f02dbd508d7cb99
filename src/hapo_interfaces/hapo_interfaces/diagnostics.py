# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Build diagnostic_msgs/DiagnosticArray messages from plain dicts (nodes publish, tests read)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from hapo_interfaces.stamps import fill


def diagnostic_array(stamp_ns: int, name: str, hardware_id: str, values: Mapping[str, Any],
                     level: int = 0, message: str = 'ok') -> DiagnosticArray:
    """One status named ``name`` with ``values`` as key/value strings (floats to 3 decimals)."""
    st = DiagnosticStatus(level=bytes([level]), name=name, hardware_id=hardware_id, message=message)
    st.values = [KeyValue(key=str(k), value=f'{v:.3f}' if isinstance(v, float) else str(v))
                 for k, v in values.items()]
    arr = DiagnosticArray(status=[st])
    fill(arr.header.stamp, stamp_ns)
    return arr


def as_dict(array: Any, name: str) -> dict[str, str] | None:
    """The key/values of the status called ``name`` in a DiagnosticArray, or None."""
    for st in array.status:
        if st.name == name:
            return {kv.key: kv.value for kv in st.values}
    return None

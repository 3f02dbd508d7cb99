# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""RecorderParams: the recorder node's parameters, declared once (hapo_interfaces.params)."""

from __future__ import annotations

from dataclasses import dataclass

from hapo_interfaces.params import param


@dataclass(frozen=True)
class RecorderParams:
    """Parameters of ``recorder_node`` (README 'recorder_node'); topics are remapped, not parameters."""

    output_root: str = param('runs/episodes', 'directory holding one bag directory per episode (created)')
    cameras: list = param(['agentview'], 'camera names; records camera/<name>/image_raw for each')
    k: int = param(10, 'policy steps before each intervention tagged undesirable (0: none)', unit='steps',
                   lo=0, hi=10000)
    queue_size: int = param(500, 'messages waiting for the writer thread; beyond it new messages are dropped and '
                                 'counted per topic (hapo/cmd and hapo/episode are never dropped)',
                            unit='messages', lo=1, hi=1_000_000)
    chunk_size_bytes: int = param(1_000_000, 'MCAP chunk size: a kill -9 loses at most the pending chunk',
                                  unit='bytes', lo=1024, hi=1_048_576)
    flush_period_s: float = param(0.5, 'close the pending chunk and flush at least this often (bounds the '
                                       'time a kill -9 can lose)', unit='s', lo=0.01, hi=60.0)
    close_grace_s: float = param(0.3, 'after an end event, still accept messages stamped before it for this long '
                                      '(0: close at once)', unit='s', lo=0.0, hi=10.0)
    policy_id: str = param('', 'id of the running policy, used when the start event carries none')
    input_device: str = param('', 'operator input device, used when the start event carries none')
    # [''] not []: hapo_ros.parameters.declare cannot declare an empty typed list with this rclpy;
    # '' entries are skipped
    extra_topics: list = param([''], "more topics as 'name=pkg/msg/Type' (relative names are resolved)")
    diagnostics_period_s: float = param(1.0, 'period of /diagnostics (0: off)', unit='s', lo=0.0, hi=60.0)

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""QoS profiles more than one node uses (the rest are per node, next to their reason)."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from hapo_interfaces.topics import CMD_HISTORY

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""Instruction and policy id: the last message reaches subscribers that join later."""

EXECUTED = QoSProfile(depth=CMD_HISTORY, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""hapo/cmd, the executed steps: the mux keeps its last CMD_HISTORY for readers that match late. The recorder
subscribes with it, so the steps a restarted mux sent before the recorder matched it, and the steps executed while a
restarted recorder was down, still reach the bag. Executors (sim, servo) subscribe volatile: they never get history,
so nothing is executed twice. A volatile hapo/cmd publisher is incompatible with the recorder (it warns once)."""

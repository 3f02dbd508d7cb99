# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Baseline for bench_mux: the least a node can do, republish a JointState unchanged (same QoS as mux_node)."""

import sys

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from hapo_ros.main import run_node


class Relay(Node):
    def __init__(self):
        super().__init__('relay')
        pub = self.create_publisher(JointState, 'bench/relay_out', QoSProfile(depth=100,
                                    reliability=ReliabilityPolicy.RELIABLE))
        self.create_subscription(JointState, 'bench/relay_in', pub.publish,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))


if __name__ == '__main__':
    sys.exit(run_node(Relay, 'relay'))

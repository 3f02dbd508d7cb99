# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Test-side sim + policy + joystick stand-in for the through-the-mux recorder test.

    python tests/graph/joy_player.py <steps> <takeover_from> <takeover_to>

Publishes START (as the sim does), then per step at 20 Hz: joint states and a camera image (the observation),
the policy action for that observation, and a sensor_msgs/Joy with the deadman button (4) held for steps in
[takeover_from, takeover_to); finally a Joy with the success button (3) pressed. The real mux turns this into
hapo/cmd steps and intervention/success events for the recorder.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import String

from hapo_interfaces import topics as tp
from hapo_interfaces.enums import EpisodeEvent
from hapo_interfaces.images import fill_image
from hapo_interfaces.records import EpisodeMessage, encode_event, fill_action


def joy(buttons: dict[int, int]) -> Joy:
    msg = Joy()
    msg.header.stamp = rclpy.clock.Clock().now().to_msg()
    msg.axes = [0.0, 0.5, 0.0, 0.0, 0.0, 0.0]
    msg.buttons = [buttons.get(i, 0) for i in range(8)]
    return msg


def main() -> int:
    steps, t_from, t_to = map(int, sys.argv[1:4])
    rclpy.init()
    node = Node('joy_player')
    rel = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    episode = node.create_publisher(String, tp.EPISODE, rel)
    joints = node.create_publisher(JointState, tp.JOINT_STATES, qos_profile_sensor_data)
    image = node.create_publisher(Image, tp.camera_topic('agentview'), qos_profile_sensor_data)
    action = node.create_publisher(JointState, tp.POLICY_ACTION, rel)
    joy_pub = node.create_publisher(Joy, tp.JOY, qos_profile_sensor_data)
    cmd_seen = node.create_subscription(JointState, tp.CMD, lambda m: None, rel)
    deadline = time.monotonic() + 20
    pubs = (episode, joints, image, action, joy_pub)
    while (any(p.get_subscription_count() == 0 for p in pubs) or cmd_seen.get_publisher_count() == 0) \
            and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)
    episode.publish(String(data=encode_event(EpisodeMessage(EpisodeEvent.START, time.time_ns(), 'sim',
                                                            {'task': 'mux', 'instruction': 'lift'}))))
    time.sleep(0.1)
    for i in range(steps):
        t_step = time.monotonic()
        stamp = time.time_ns()
        joy_pub.publish(joy({4: 1} if t_from <= i < t_to else {}))
        joints.publish(fill_action(JointState(), stamp, [float(i)] * 7))
        image.publish(fill_image(Image(), np.full((8, 8, 3), i, np.uint8), stamp))
        time.sleep(0.01)
        action.publish(fill_action(JointState(), stamp, [0.1] * 7))
        while time.monotonic() < t_step + 0.05:  # 20 Hz, slower than the mux's 50 Hz tick
            rclpy.spin_once(node, timeout_sec=0.01)
    for _ in range(5):  # success button held a moment: one press, robust to a lost best-effort message
        joy_pub.publish(joy({3: 1}))
        rclpy.spin_once(node, timeout_sec=0.02)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        joy_pub.publish(joy({}))
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())

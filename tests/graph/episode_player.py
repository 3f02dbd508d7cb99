# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Test-side publisher process: plays scripted episodes to a real recorder over DDS.

    python tests/graph/episode_player.py '<json>' [diagnostics_out.json]

The JSON is a list of episodes ``{"task", "demo", "sources": "PPHH.", "end": "success"|"failure"|"abort"|null,
"period_s", "image_px"}``; per step it publishes a camera image, joint states, the policy action and entropy, then the
executed step on hapo/cmd (source from the script), plus intervention start/end events at HUMAN run edges,
as the mux does, and relays START and end events onto hapo/episode/latest as sim_node does. With a second
argument it writes the last /diagnostics it saw as JSON there.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from hapo_interfaces import topics as tp
from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.images import fill_image
from hapo_interfaces.records import EpisodeMessage, ExecutedStep, encode_event, fill_action, fill_step
from hapo_ros.episode_latest import relay_latest_episode
from hapo_ros.qos import EXECUTED

SRC = {'P': ControlSource.POLICY, 'H': ControlSource.HUMAN, '.': ControlSource.NONE, 'S': ControlSource.STOPPED}


def main() -> int:
    episodes = json.loads(sys.argv[1])
    diag_out = sys.argv[2] if len(sys.argv) > 2 else None
    rclpy.init()
    node = Node('episode_player')
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pubs = {'episode': node.create_publisher(String, tp.EPISODE, reliable),
            'cmd': node.create_publisher(JointState, tp.CMD, EXECUTED),
            'action': node.create_publisher(JointState, tp.POLICY_ACTION, reliable),
            'entropy': node.create_publisher(JointState, tp.POLICY_ENTROPY, reliable),
            'joints': node.create_publisher(JointState, tp.JOINT_STATES, qos_profile_sensor_data),
            'image': node.create_publisher(Image, tp.camera_topic('agentview'), qos_profile_sensor_data),
            'instruction': node.create_publisher(String, tp.INSTRUCTION, latched)}
    relay_latest_episode(node)  # as sim_node does: a recorder restarted mid-episode resumes it
    last_diag: list = []
    node.create_subscription(DiagnosticArray, tp.DIAGNOSTICS, lambda m: last_diag.append(m), 10)
    deadline = time.monotonic() + 20.0
    while any(p.get_subscription_count() == 0 for p in pubs.values()) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    if any(p.get_subscription_count() == 0 for p in pubs.values()):
        print('player: recorder not discovered', flush=True)
        return 1
    time.sleep(0.3)

    def event(kind: EpisodeEvent, **extra) -> None:
        pubs['episode'].publish(String(data=encode_event(EpisodeMessage(kind, time.time_ns(), 'player', extra))))

    for ep in episodes:
        pubs['instruction'].publish(String(data=ep.get('instruction', 'lift the cube')))
        time.sleep(0.05)
        event(EpisodeEvent.START, task=ep['task'], demo=ep.get('demo', False), seed=7)
        prev = ControlSource.NONE
        for i, ch in enumerate(ep['sources']):
            src = SRC[ch]
            if src == ControlSource.HUMAN and prev != ControlSource.HUMAN:
                event(EpisodeEvent.INTERVENTION_START)
            if prev == ControlSource.HUMAN and src != ControlSource.HUMAN:
                event(EpisodeEvent.INTERVENTION_END)
            stamp = time.time_ns()
            h, w = (ep['image_px'],) * 2 if 'image_px' in ep else (24, 32)
            pubs['image'].publish(fill_image(Image(), np.full((h, w, 3), i % 256, np.uint8), stamp, 'agentview'))
            pubs['joints'].publish(fill_action(JointState(), stamp, [i] * 7))
            pubs['action'].publish(fill_action(JointState(), stamp, [0.01 * i] * 7))
            pubs['entropy'].publish(fill_action(JointState(), stamp, [1.0] * 7))
            pubs['cmd'].publish(fill_step(JointState(), ExecutedStep(stamp, (0.02 * i,) * 7, src)))
            prev = src
            rclpy.spin_once(node, timeout_sec=ep.get('period_s', 0.02))
        if ep.get('end'):
            event(EpisodeEvent[ep['end'].upper()])  # right after the last step, as a mux would
        end = time.monotonic() + ep.get('pause_s', 0.6)
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    end = time.monotonic() + (1.5 if diag_out else 0.2)
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    if diag_out and last_diag:
        m = last_diag[-1]
        out = {s.name: {'level': int.from_bytes(s.level, 'little') if isinstance(s.level, bytes) else int(s.level),
                        'message': s.message, **{kv.key: kv.value for kv in s.values}} for s in m.status}
        with open(diag_out, 'w') as f:
            json.dump(out, f)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())

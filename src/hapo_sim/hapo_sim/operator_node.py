# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""operator_node: a simulated operator at the joystick, taking over from the policy like a person (logic: operator.py).

    python -m hapo_sim.operator_node --ros-args -p task:=lift -p axis_map:="[1,0,4,6,7,3]"

Subscribed: ``hapo/episode`` (START: a new episode and its seed), ``robot/object_state`` (one answer per
observation stamp), ``hapo/cmd`` (the executed commands the predicates read), with ``ask_for_help``
``hapo/policy/entropy``. Published: ``joy``
(sensor_msgs/Joy stamped with the observation it answers: deadman up while watching, held with the expert's
action while driving), the last message again at ``keepalive_hz``, and ``hapo/operator`` (JSON per takeover and
hand-back: event, seed, step, stamp_ns, reason). The mux must run with ``lockstep_operator:=true`` and the same
joystick mapping. As ``expert_node``, it subscribes only once the mux listens on ``joy``.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import String

from hapo_interfaces import topics
from hapo_interfaces.records import RecordError, decode_event, read_step
from hapo_interfaces.stamps import fill, to_ns
from hapo_ros.main import run_node
from hapo_ros.parameters import declare
from hapo_ros.qos import EXECUTED, LATCHED
from hapo_sim.env import SimError
from hapo_sim.expert_node import KEEPALIVES_BEFORE_EPISODES
from hapo_sim.operator import OperatorParams, SimOperator


class OperatorNode(Node):
    def __init__(self, **kwargs):
        super().__init__('operator_node', **kwargs)
        self.p = declare(self, OperatorParams)
        self.logic = SimOperator(self.p)
        self.pub = self.create_publisher(Joy, topics.JOY, qos_profile_sensor_data)
        self.log_pub = self.create_publisher(String, topics.OPERATOR, QoSProfile(
            depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self._logged = 0
        self._subscribed = False
        self._keepalives = 0
        self.create_timer(1.0 / self.p.keepalive_hz, self._on_keepalive)
        p = self.p
        self.get_logger().info(
            f'operator for {p.task}: takes over after {p.stall_steps} steps without progress, a grasp over '
            f'{p.grasp_far_m} m from the object, a drop of {p.drop_m} m or a drift of {p.drift_m} m, '
            f'{p.reaction_steps} steps later'
            + (f', or when the policy asks for help (entropy over {p.uncertain_threshold} nats)' if p.ask_for_help
               else '') + f'; hands back at phase {self.logic.handback_phase!r}; at most '
            f'{p.max_takeovers} per episode; waiting for the mux to subscribe {topics.JOY}')

    def _publish(self, messages) -> None:
        for m in messages:
            msg = Joy(axes=list(m.axes), buttons=list(m.buttons))
            fill(msg.header.stamp, m.stamp_ns)
            self.pub.publish(msg)
        for entry in self.logic.log[self._logged:]:
            self.log_pub.publish(String(data=json.dumps(dataclasses.asdict(entry))))
            self.get_logger().info(f'{entry.event} at step {entry.step} of seed {entry.seed}: {entry.reason}')
        self._logged = len(self.logic.log)

    def _on_keepalive(self) -> None:
        self._publish([self.logic.last])
        if not self._subscribed and self.pub.get_subscription_count() > 0:
            self._keepalives += 1
            if self._keepalives >= KEEPALIVES_BEFORE_EPISODES:
                self._subscribed = True
                # Events first (see expert_node); states and commands reliable, as the sim and the mux send them.
                self.create_subscription(String, topics.EPISODE, self._on_episode, 50)
                # restarted mid-episode: the running episode's START (else it never answers, the sim waits for ever)
                self.create_subscription(String, topics.EPISODE_LATEST, self._on_episode, LATCHED)
                self.create_subscription(JointState, topics.OBJECT_STATE, self._on_state, 10)
                # the mux's history too: restarted, it answers an observation the policy then drives, and waits
                # for that command, which can come before this subscription matched the mux (then it never would)
                self.create_subscription(JointState, topics.CMD, self._on_cmd, EXECUTED)
                if self.p.ask_for_help:
                    self.create_subscription(JointState, topics.POLICY_ENTROPY, self._on_entropy, QoSProfile(
                        depth=100, reliability=ReliabilityPolicy.RELIABLE))
                self.get_logger().info(f'the mux listens on {topics.JOY}: taking episodes from {topics.EPISODE}')

    def _on_episode(self, msg: String) -> None:
        try:
            event = decode_event(msg.data)
        except RecordError as exc:
            self.get_logger().warning(f'ignored bad {topics.EPISODE}: {exc}', throttle_duration_sec=2.0)
            return
        self._publish(self.logic.event(event))

    def _on_state(self, msg: JointState) -> None:
        try:
            self._publish(self.logic.observe_message(to_ns(msg.header.stamp), msg.name, msg.position))
        except (SimError, KeyError) as exc:
            self.get_logger().warning(f'ignored bad {topics.OBJECT_STATE}: {exc!r}', throttle_duration_sec=2.0)

    def _on_cmd(self, msg: JointState) -> None:
        try:
            step = read_step(msg)
        except RecordError as exc:
            self.get_logger().warning(f'ignored bad {topics.CMD}: {exc}', throttle_duration_sec=2.0)
            return
        self._publish(self.logic.executed(step))

    def _on_entropy(self, msg: JointState) -> None:
        if not msg.position:  # non-finite values pass: the flag keeps its state on them, as policy_node's does
            self.get_logger().warning(f'ignored bad {topics.POLICY_ENTROPY}: no values', throttle_duration_sec=2.0)
            return
        self._publish(self.logic.entropy(to_ns(msg.header.stamp), msg.position))

    def on_exit(self) -> None:
        print(f'operator_node: {self.logic.counts}; {self.logic.waiting()}', file=sys.stderr)


def main(args=None) -> int:
    return run_node(OperatorNode, 'operator_node', args, start_errors=(SimError,))


if __name__ == '__main__':
    sys.exit(main())

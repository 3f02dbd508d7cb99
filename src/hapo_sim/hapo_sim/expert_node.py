# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""expert_node: the scripted expert as a joystick operator (privileged sim state -> ``joy``; logic: joy_expert.py).

    python -m hapo_sim.expert_node --ros-args -p task:=lift -p axis_map:="[1,0,4,6,7,3]"

Subscribed: ``hapo/episode`` (START resets the expert with its seed), ``robot/object_state`` (one answer per
observation stamp). Published: ``joy`` (sensor_msgs/Joy, deadman held, stamped with the observation it
answers), the last message again at ``keepalive_hz``. The subscriptions are made only once the mux listens on
``joy`` and has the deadman held, so a sim waiting for this node (``wait_for``) starts no episode that the mux
would answer with holds.
"""

from __future__ import annotations

import sys

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import String

from hapo_interfaces import topics
from hapo_interfaces.records import RecordError, decode_event
from hapo_interfaces.stamps import fill, to_ns
from hapo_ros.main import run_node
from hapo_ros.parameters import declare
from hapo_sim.env import SimError
from hapo_sim.joy_expert import ExpertParams, JoyExpert

KEEPALIVES_BEFORE_EPISODES = 3  # idle messages the mux gets before the sim may start an episode


class ExpertNode(Node):
    def __init__(self, **kwargs):
        super().__init__('expert_node', **kwargs)
        self.p = declare(self, ExpertParams)
        self.logic = JoyExpert(self.p)
        # Joy: a state stream, as a joystick driver publishes it (the mux subscribes with sensor data QoS).
        self.pub = self.create_publisher(Joy, topics.JOY, qos_profile_sensor_data)
        self._episodes = None
        self._keepalives = 0
        self._warned_lost: set[int] = set()
        self.create_timer(1.0 / self.p.keepalive_hz, self._on_keepalive)
        self.get_logger().info(f'expert {self.p.task} (noise {self.p.noise_std}) on {topics.JOY}: axis_map '
                               f'{list(self.p.axis_map)}, deadman button {self.p.deadman_button}, gripper button '
                               f'{self.p.gripper_button}; waiting for the mux to subscribe {topics.JOY}')

    def _publish(self, messages) -> None:
        for m in messages:
            msg = Joy(axes=list(m.axes), buttons=list(m.buttons))
            fill(msg.header.stamp, m.stamp_ns)
            self.pub.publish(msg)
        lost = self.logic.lost_dims - self._warned_lost
        if lost:
            self._warned_lost |= lost
            self.get_logger().warning(f'action dims {sorted(lost)} (x y z roll pitch yaw gripper = 0..6) cannot be '
                                      f'expressed by this joystick mapping: the executed action differs there')

    def _on_keepalive(self) -> None:
        self._publish([self.logic.last])
        if self._episodes is None and self.pub.get_subscription_count() > 0:
            self._keepalives += 1
            if self._keepalives >= KEEPALIVES_BEFORE_EPISODES:
                # Episode events first: the executor takes ready subscriptions in creation order, so a START and the
                # first observation of its episode that are ready together are taken START first. States: reliable
                # depth 10, as the sim publishes them (a missed one is re-sent by the sim, republish_s).
                self._episodes = self.create_subscription(String, topics.EPISODE, self._on_episode, 50)
                self.create_subscription(JointState, topics.OBJECT_STATE, self._on_state, 10)
                self.get_logger().info(f'the mux listens on {topics.JOY}: taking episodes from {topics.EPISODE}')

    def _on_episode(self, msg: String) -> None:
        try:
            event = decode_event(msg.data)
        except RecordError as exc:
            self.get_logger().warning(f'ignored bad {topics.EPISODE}: {exc}', throttle_duration_sec=2.0)
            return
        self._publish(self.logic.event(event).messages)

    def _on_state(self, msg: JointState) -> None:
        try:
            self._publish(self.logic.observe_message(to_ns(msg.header.stamp), msg.name, msg.position).messages)
        except (SimError, KeyError) as exc:
            self.get_logger().warning(f'ignored bad {topics.OBJECT_STATE}: {exc!r}', throttle_duration_sec=2.0)

    def on_exit(self) -> None:
        print(f'expert_node: {self.logic.counts}', file=sys.stderr)


def main(args=None) -> int:
    return run_node(ExpertNode, 'expert_node', args, start_errors=(SimError,))


if __name__ == '__main__':
    sys.exit(main())

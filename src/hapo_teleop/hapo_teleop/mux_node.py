# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""mux_node: policy actions + joystick -> the executed command on ``hapo/cmd`` (see mux.py for rules).

    ros2 run hapo_teleop mux_node --ros-args --params-file config/deploy.yaml
    python -m hapo_teleop.mux_node --ros-args -p lockstep:=false

Callbacks hand their input to MuxLogic and publish at once what it decides (a policy action goes
out from its own callback: lowest latency); a control-rate timer handles staleness, holds and the
human's commands. ``hapo/cmd`` is also the executed-step record (records.py).
"""

from __future__ import annotations

import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import String

from hapo_interfaces import topics
from hapo_interfaces.records import (
    ACTION_LIMIT,
    EpisodeMessage,
    ExecutedStep,
    RecordError,
    encode_event,
    fill_step,
    read_action,
)
from hapo_interfaces.stamps import to_ns
from hapo_interfaces.timing import LatencyWindow
from hapo_ros.diagnostics import diagnostic_array, diagnostic_status
from hapo_ros.main import run_node
from hapo_ros.parameters import declare
from hapo_ros.qos import EXECUTED
from hapo_teleop.joy_mapping import joy_input
from hapo_teleop.mux import Decision, Mode, MuxLogic, MuxParams, PolicyInput

RELIABLE_10 = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class MuxNode(Node):
    def __init__(self, **kwargs):
        super().__init__('mux_node', **kwargs)
        self.params = declare(self, MuxParams)
        self.logic = MuxLogic(self.params)
        self.latency = LatencyWindow()
        self.cmd_pub = self.create_publisher(JointState, topics.CMD, EXECUTED)  # a late recorder gets history
        self.episode_pub = self.create_publisher(String, topics.EPISODE, QoSProfile(depth=50))
        self.diag_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, RELIABLE_10)
        self.create_subscription(JointState, topics.POLICY_ACTION, self.on_policy, RELIABLE_10)
        # Joy and joint states are state streams: the newest one is all that matters.
        self.create_subscription(Joy, topics.JOY, self.on_joy, qos_profile_sensor_data)
        self.create_subscription(JointState, topics.JOINT_STATES, self.on_joint_states, qos_profile_sensor_data)
        self.create_timer(1.0 / self.params.control_rate_hz, self.on_tick)
        self.create_timer(1.0, self.publish_diagnostics)
        self.bad_policy = 0
        p, m = self.params, self.logic.mapping
        self.get_logger().info(
            f'safety: deadman button {m.deadman_button}, e-stop {m.estop_button} (reset {m.estop_reset_button}), '
            f'policy timeout {p.policy_timeout_s} s, joy timeout {p.joy_timeout_s} s, '
            f'{p.control_rate_hz} Hz, lockstep={p.lockstep}')

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def on_policy(self, msg: JointState) -> None:
        t0 = time.perf_counter()
        try:
            action = read_action(msg, ACTION_LIMIT)  # a value beyond it is not executed: refused, counted
        except RecordError as exc:
            self.bad_policy += 1
            self.get_logger().warning(f'{topics.POLICY_ACTION}: {exc}', throttle_duration_sec=5.0)
            return
        refused = self.logic.counts['refused_policy_stamps']
        decision = self.logic.step(self.now_ns(), policy=PolicyInput(to_ns(msg.header.stamp), action))
        if self.logic.counts['refused_policy_stamps'] > refused:
            self.get_logger().warning(f'{topics.POLICY_ACTION}: {self.logic.last_policy_error}',
                                      throttle_duration_sec=5.0)
        self.publish(decision)
        if decision.commands:
            self.latency.add(time.perf_counter() - t0)

    def on_joy(self, msg: Joy) -> None:
        bad = self.logic.counts['bad_joy_messages']
        self.publish(self.logic.step(self.now_ns(), joy=joy_input(msg.axes, msg.buttons, to_ns(msg.header.stamp))))
        if self.logic.counts['bad_joy_messages'] > bad:
            effect = 'the arm holds' if self.logic.mode is Mode.HUMAN else 'ignored'
            self.get_logger().warning(f'{topics.JOY}: {self.logic.last_joy_error}; {effect}', throttle_duration_sec=5.0)

    def on_joint_states(self, msg: JointState) -> None:
        # a new observation: a stamped Joy that already answers it goes out at once (lockstep)
        self.publish(self.logic.step(self.now_ns(), obs_stamp_ns=to_ns(msg.header.stamp)))

    def on_tick(self) -> None:
        self.publish(self.logic.step(self.now_ns(), tick=True))

    def publish(self, decision: Decision) -> None:
        for cmd in decision.commands:
            self.cmd_pub.publish(fill_step(JointState(), ExecutedStep(cmd.stamp_ns, cmd.action, cmd.source)))
        for event, extra in decision.events:
            self.episode_pub.publish(String(data=encode_event(EpisodeMessage(event, self.now_ns(), 'mux', extra))))
            self.get_logger().info(f'episode event: {event.name.lower()} {extra or ""}')

    def publish_diagnostics(self) -> None:
        values = {'mode': self.logic.mode.value, **self.logic.counts, 'bad_policy_messages': self.bad_policy}
        values.update({f'forward_latency_{k}': v for k, v in self.latency.summary_ms().items()})
        status = diagnostic_status('hapo_teleop/mux', self.get_fully_qualified_name(), values)
        self.diag_pub.publish(diagnostic_array(self.now_ns(), status))

    def on_exit(self) -> None:
        """Leave the robot safe: one last hold command (zero motion, gripper kept)."""
        print(f'mux_node: {self.logic.mode.value} {self.logic.counts}', file=sys.stderr)
        if not self.context.ok():
            return
        self.publish(Decision(commands=[self.logic.hold(self.now_ns())]))
        # Reliable delivery is asynchronous: destroying the publisher right away could drop the message.
        self.cmd_pub.wait_for_all_acked(Duration(seconds=1.0))


def main(args=None) -> int:
    return run_node(MuxNode, 'mux_node', args)


if __name__ == '__main__':
    sys.exit(main())

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""servo_executor: the real-robot counterpart of sim_node. ``hapo/cmd`` -> MoveIt Servo twists and a gripper.

    ros2 run hapo_teleop servo_executor --ros-args --params-file config/deploy.yaml
    python -m hapo_teleop.servo_executor_node --ros-args -p max_linear_m_s:=0.05 -p twist_frame:=tool0

Subscribed: ``hapo/cmd`` (the mux's executed commands), ``joint_states_in`` (the robot's joint states),
``hapo/episode``. Published: ``twist_topic`` (geometry_msgs/TwistStamped at ``rate_hz``: the newest command's
twist while it is fresh, zero once it is older than ``cmd_timeout_s``, for a hold or stop, for the policy
between episodes (the operator can still move the arm then), and on shutdown),
the gripper command on change (``gripper_mode``), ``robot/joint_states`` (the robot's, republished: the
observation clock of the graph), a START on ``hapo/episode`` each time the operator presses next, and
``hapo/episode/latest`` (transient local: the newest START or end event heard, for a recorder restarted mid-episode).
Units and
limits: ``hapo_teleop.servo``. ``shadow:=true`` sends nothing to the arm. MoveIt Servo must be started and set to
accept twists (its ``~/switch_command_type`` service needs moveit_msgs: call it from your MoveIt install).
"""

from __future__ import annotations

import sys
import threading

from geometry_msgs.msg import TwistStamped
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String

from hapo_interfaces import topics
from hapo_interfaces.enums import ControlSource
from hapo_interfaces.records import RecordError, decode_event, encode_event, read_step
from hapo_interfaces.stamps import fill, to_ns
from hapo_ros.episode_latest import relay_latest_episode
from hapo_ros.main import NodeStartError, run_node
from hapo_ros.parameters import declare
from hapo_teleop.servo import Episodes, ServoParams, Watchdog, to_servo

RELIABLE_100 = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class ServoExecutor(Node):
    def __init__(self, **kwargs):
        super().__init__('servo_executor', **kwargs)
        self.p = declare(self, ServoParams)
        if self.resolve_topic_name(self.p.joint_states_in) == self.resolve_topic_name(topics.JOINT_STATES):
            raise NodeStartError(f'joint_states_in {self.p.joint_states_in} is robot/joint_states itself: name the '
                                 "robot driver's topic")
        self.watchdog = Watchdog(int(self.p.cmd_timeout_s * 1e9))
        self.episodes = Episodes(self.p)
        self.last_obs_ns = 0
        self.stale_logged = True  # nothing to say before the first command
        self.twist_pub = self.create_publisher(TwistStamped, self.p.twist_topic, 10)
        self.gripper_pub = self._gripper_publisher()
        self.joints_pub = self.create_publisher(JointState, topics.JOINT_STATES, qos_profile_sensor_data)
        self.episode_pub = self.create_publisher(String, topics.EPISODE, QoSProfile(depth=50))
        relay_latest_episode(self)  # a recorder restarted mid-episode resumes it
        self.create_subscription(JointState, topics.CMD, self.on_cmd, RELIABLE_100)
        self.create_subscription(JointState, self.p.joint_states_in, self.on_joints, qos_profile_sensor_data)
        self.create_subscription(String, topics.EPISODE, self.on_episode, QoSProfile(depth=50))
        self.create_timer(1.0 / self.p.rate_hz, self.tick)
        self.homing = threading.Lock()
        self.moveit = self._moveit() if self.p.home_between_episodes else None
        mode = 'SHADOW: the arm does not move' if self.p.shadow else f'twists on {self.p.twist_topic}'
        self.get_logger().info(f'{mode}; 1.0 = {self.p.max_linear_m_s} m/s, {self.p.max_angular_rad_s} rad/s in '
                               f'{self.p.twist_frame}; press next to start an episode')

    def _gripper_publisher(self):
        if self.p.gripper_mode == 'none':
            return None
        from trajectory_msgs.msg import JointTrajectory

        kind = JointTrajectory if self.p.gripper_mode == 'trajectory' else Float64MultiArray
        return self.create_publisher(kind, self.p.gripper_topic, 10)

    def _moveit(self):
        try:
            from moveit.planning import MoveItPy
        except ImportError:
            self.get_logger().warning('home_between_episodes: moveit_py is not importable here; episodes start '
                                      'where the arm is')
            return None
        return MoveItPy(node_name='hapo_home')

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def on_cmd(self, msg: JointState) -> None:
        try:
            step = read_step(msg)
        except RecordError as exc:
            self.get_logger().warning(f'{topics.CMD}: {exc}; the arm holds', throttle_duration_sec=5.0)
            return
        self.stale_logged = False
        source = step.source
        if source is ControlSource.POLICY and not self.episodes.open:
            source = ControlSource.NONE  # between episodes only the operator moves the arm
        grip = self.watchdog.command(to_servo(step.action, source, self.p), self.now_ns())
        if grip is not None and self.gripper_pub is not None and not self.p.shadow:
            self.gripper_pub.publish(self._gripper_msg(grip))

    def _gripper_msg(self, position: float):
        if self.p.gripper_mode == 'forward':
            return Float64MultiArray(data=[position] * len(self.p.gripper_joints))
        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        secs = int(self.p.gripper_move_s)
        point = JointTrajectoryPoint(positions=[position] * len(self.p.gripper_joints), time_from_start=Duration(
            sec=secs, nanosec=int((self.p.gripper_move_s - secs) * 1e9)))
        return JointTrajectory(joint_names=list(self.p.gripper_joints), points=[point])

    def tick(self) -> None:
        linear, angular, stale = self.watchdog.twist(self.now_ns())
        if stale and not self.stale_logged:
            self.get_logger().warning(f'{topics.CMD} silent for over {self.p.cmd_timeout_s} s: zero twists')
            self.stale_logged = True
        if not self.p.shadow:
            self.twist_pub.publish(self._twist(linear, angular))

    def _twist(self, linear, angular) -> TwistStamped:
        msg = TwistStamped()
        fill(msg.header.stamp, self.now_ns())
        msg.header.frame_id = self.p.twist_frame
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = linear
        msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = angular
        return msg

    def on_joints(self, msg: JointState) -> None:
        self.last_obs_ns = max(self.last_obs_ns, to_ns(msg.header.stamp))
        self.joints_pub.publish(msg)

    def on_episode(self, msg: String) -> None:
        try:
            event = decode_event(msg.data)
        except RecordError as exc:
            self.get_logger().warning(f'{topics.EPISODE}: {exc}', throttle_duration_sec=5.0)
            return
        if self.episodes.on_event(event):
            threading.Thread(target=self.start_episode, daemon=True).start()

    def start_episode(self) -> None:
        """Move home (when asked and possible), then publish the next START."""
        with self.homing:
            if self.moveit is not None and not self.p.shadow:
                self.get_logger().info(f'moving to {self.p.home_pose}')
                arm = self.moveit.get_planning_component(self.p.planning_group)
                arm.set_start_state_to_current_state()
                arm.set_goal_state(configuration_name=self.p.home_pose)
                plan = arm.plan()
                if not plan:
                    self.get_logger().error(f'no plan to {self.p.home_pose}; the episode starts where the arm is')
                else:
                    self.moveit.execute(plan.trajectory, controllers=[])
            start = self.episodes.start(max(self.now_ns(), self.last_obs_ns + 1))
            self.episode_pub.publish(String(data=encode_event(start)))
            self.get_logger().info(f'episode {start.extra["episode"]} started' + (' (demo)' if self.p.demo else ''))

    def on_exit(self) -> None:
        if self.p.shadow or not self.context.ok():
            return
        for _ in range(3):  # the last thing Servo hears is a stop, also on a best-effort subscription
            self.twist_pub.publish(self._twist((0.0,) * 3, (0.0,) * 3))
        # Reliable delivery is asynchronous: destroying the publisher right away could drop the stops.
        self.twist_pub.wait_for_all_acked(Duration(seconds=1.0))


def main(args=None) -> int:
    return run_node(ServoExecutor, 'servo_executor', args)


if __name__ == '__main__':
    sys.exit(main())

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""servo_executor against real subscribers over DDS: scaled and clamped twists in the named frame at its rate,
zero for a hold, zero within one period of a command going stale and on SIGINT, the gripper on change, the
robot's joint states republished, a START when the operator presses next, the policy held between episodes,
and shadow mode sending nothing."""

from __future__ import annotations

import json
import time

import pytest
from geometry_msgs.msg import TwistStamped
from helpers import RosProbe, wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from hapo_interfaces import topics
from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import EpisodeMessage, ExecutedStep, encode_event, fill_step
from hapo_interfaces.stamps import to_ns

pytestmark = pytest.mark.graph
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
PARAMS = {'twist_topic': 'servo/twist', 'twist_frame': 'tool0', 'max_linear_m_s': 0.1, 'max_angular_rad_s': 0.5,
          'rate_hz': 50.0, 'cmd_timeout_s': 0.1, 'gripper_topic': 'gripper/cmd', 'gripper_joints': ['finger'],
          'gripper_closed': 0.7, 'joint_states_in': 'arm/joint_states', 'demo': True}


def send(pub, action, source=ControlSource.POLICY):
    pub.publish(fill_step(JointState(), ExecutedStep(time.time_ns(), tuple(action), source)))


def vec(t):
    return (round(t.twist.linear.x, 6), round(t.twist.linear.y, 6), round(t.twist.linear.z, 6),
            round(t.twist.angular.x, 6), round(t.twist.angular.y, 6), round(t.twist.angular.z, 6))


def test_commands_become_scaled_twists_and_stale_or_stopped_ones_zero(start_node, ros_domain):
    node = start_node('hapo_teleop.servo_executor_node', params=PARAMS)
    with RosProbe(ros_domain) as probe:
        twists, arrivals = [], []
        probe.node.create_subscription(TwistStamped, 'servo/twist', lambda m: (twists.append(m), arrivals.append(
            time.monotonic())), 10)
        grips = probe.collect(JointTrajectory, 'gripper/cmd')
        joints = probe.collect(JointState, topics.JOINT_STATES, qos_profile_sensor_data)
        starts = probe.collect(String, topics.EPISODE, QoSProfile(depth=50))
        cmd = probe.node.create_publisher(JointState, topics.CMD, RELIABLE)
        episode = probe.node.create_publisher(String, topics.EPISODE, QoSProfile(depth=50))
        arm = probe.node.create_publisher(JointState, 'arm/joint_states', qos_profile_sensor_data)
        wait_for(lambda: len(twists) > 10, 20, what=f'zero twists before any command\n{node.log()}')
        assert all(vec(t) == (0,) * 6 for t in twists) and twists[0].header.frame_id == 'tool0'

        wait_for(lambda: cmd.get_subscription_count() > 0, 10, what='the executor on hapo/cmd')
        for _ in range(5):  # no episode yet: the policy does not move the arm
            send(cmd, (1.0,) * 7)
            time.sleep(0.05)
        assert all(vec(t) == (0,) * 6 for t in twists)
        episode.publish(String(data=encode_event(EpisodeMessage(EpisodeEvent.ABORT, time.time_ns(), 'mux',
                                                                {'reason': 'next'}))))
        wait_for(lambda: any('"origin": "servo"' in m.data for m in starts), 5, what='a START from the executor')
        start = json.loads(next(m.data for m in starts if '"origin": "servo"' in m.data))
        assert start['event'] == 'start' and start['demo'] is True and start['task'] == 'real'
        assert start['episode'] == 1
        moving = (0.5, -1.5, 0.0, 0.0, 0.2, 1.0)  # y beyond 1: clamped to the hard limit
        for _ in range(10):
            send(cmd, (*moving, 1.0))
            time.sleep(0.05)
        wait_for(lambda: vec(twists[-1]) != (0,) * 6, 5, what='a moving twist')
        assert vec(twists[-1]) == (0.05, -0.1, 0.0, 0.0, 0.1, 0.5)
        n = len(twists)
        time.sleep(1.0)
        assert 35 <= len(twists) - n <= 60, f'{len(twists) - n} twists in 1 s at rate_hz 50'
        wait_for(lambda: len(grips) >= 1, 5, what='the gripper command')
        assert grips[0].joint_names == ['finger'] and list(grips[0].points[0].positions) == [0.7] and len(grips) == 1

        # stale: the zero comes within cmd_timeout + one period (20 ms) of the last command, plus transport
        for _ in range(5):
            send(cmd, (*moving, 1.0))
            last = time.monotonic()
            time.sleep(0.05)
        wait_for(lambda: vec(twists[-1]) == (0,) * 6, 2, what='a zero twist after the commands stopped')
        first_zero = next(a for a, t in zip(arrivals, twists, strict=True) if a > last and vec(t) == (0,) * 6)
        assert first_zero - last <= 0.1 + 0.02 + 0.03, f'{first_zero - last:.3f} s to zero'
        assert 'silent for over 0.1 s' in node.log()

        send(cmd, (*moving, -1.0), ControlSource.NONE)  # a hold: zero, the gripper stays closed
        time.sleep(0.2)
        assert vec(twists[-1]) == (0,) * 6 and len(grips) == 1
        send(cmd, (*moving, -1.0), ControlSource.HUMAN)
        wait_for(lambda: len(grips) == 2, 5, what='the gripper opening')
        assert list(grips[1].points[0].positions) == [0.0]

        arm.publish(JointState(name=['j1'], position=[0.3]))
        wait_for(lambda: any(list(j.name) == ['j1'] for j in joints), 5, what='robot/joint_states republished')

        episode.publish(String(data=encode_event(EpisodeMessage(EpisodeEvent.SUCCESS, time.time_ns(), 'mux'))))
        time.sleep(0.2)  # the episode is over: the policy's commands hold, the operator's still move
        send(cmd, (*moving, -1.0))
        time.sleep(0.1)
        assert vec(twists[-1]) == (0,) * 6
        send(cmd, (*moving, -1.0), ControlSource.HUMAN)
        wait_for(lambda: vec(twists[-1]) != (0,) * 6, 2, what='the operator moving the arm between episodes')
        assert to_ns(twists[-1].header.stamp) > 0 and sum('"origin": "servo"' in m.data for m in starts) == 1

        for _ in range(5):  # the operator is moving the arm when the node is stopped
            send(cmd, (*moving, 1.0), ControlSource.HUMAN)
            time.sleep(0.05)
        assert vec(twists[-1]) != (0,) * 6
        assert node.stop() == 0  # the process is gone: what it sent last is the last that arrives
        wait_for(lambda: vec(twists[-1]) == (0,) * 6, 3, what='a stop as the last twist before exit')


def test_shadow_mode_sends_nothing_to_the_arm_but_keeps_the_observation_clock(start_node, ros_domain):
    node = start_node('hapo_teleop.servo_executor_node', params={**PARAMS, 'shadow': True, 'gripper_mode': 'forward'})
    with RosProbe(ros_domain) as probe:
        twists = probe.collect(TwistStamped, 'servo/twist')
        grips = probe.collect(Float64MultiArray, 'gripper/cmd')
        joints = probe.collect(JointState, topics.JOINT_STATES, qos_profile_sensor_data)
        cmd = probe.node.create_publisher(JointState, topics.CMD, RELIABLE)
        arm = probe.node.create_publisher(JointState, 'arm/joint_states', qos_profile_sensor_data)
        wait_for(lambda: 'SHADOW' in node.log() and cmd.get_subscription_count() > 0, 20, what='the executor')
        for _ in range(10):
            send(cmd, (1.0, 0, 0, 0, 0, 0, 1.0))
            arm.publish(JointState(name=['j1'], position=[0.1]))
            time.sleep(0.05)
        wait_for(lambda: len(joints) > 0, 5, what='robot/joint_states republished')
        assert not twists and not grips
    assert node.stop() == 0


def test_a_loop_on_its_own_joint_states_is_refused(start_node):
    node = start_node('hapo_teleop.servo_executor_node', params={'joint_states_in': 'robot/joint_states'})
    assert node.wait(20) == 2 and 'is robot/joint_states itself' in node.log()

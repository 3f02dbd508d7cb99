# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""mux_node as a real process: pass-through, bad Joy input, e-stop, shutdown hold, bad parameters."""

from __future__ import annotations

import time

import pytest
from helpers import RosProbe, wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import String

from hapo_interfaces import topics
from hapo_interfaces.enums import ControlSource as S
from hapo_interfaces.records import decode_event, fill_action, read_step

pytestmark = pytest.mark.graph
RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


def test_mux_node_end_to_end(ros_domain, start_node):
    mux = start_node('hapo_teleop.mux_node', params={'lockstep': False, 'policy_timeout_s': 0.3})
    with RosProbe(ros_domain) as probe:
        cmds = probe.collect(JointState, topics.CMD, RELIABLE)
        events = probe.collect(String, topics.EPISODE, 50)
        policy = probe.node.create_publisher(JointState, topics.POLICY_ACTION, 10)
        joy = probe.node.create_publisher(Joy, topics.JOY, 10)
        steps = lambda: [read_step(m) for m in list(cmds)]  # noqa: E731

        wait_for(lambda: any(s.source is S.NONE for s in steps()), 20, what='holds before any policy action')
        stamp = time.time_ns()
        policy.publish(fill_action(JointState(), stamp, [0.5, 0, 0, 0, 0, 0, 1.0], 'policy'))
        wait_for(lambda: any(s.source is S.POLICY and s.stamp_ns == stamp for s in steps()), 10,
                 what='the policy action passed through with its stamp')

        joy.publish(Joy(axes=[0.0, 0.0], buttons=[0] * 11))  # too few axes for the default mapping
        wait_for(lambda: 'Joy has 2 axes, mapping needs 5' in mux.log(), 10, what='a warning on the short Joy')
        policy.publish(fill_action(JointState(), time.time_ns(), [0.5, 0, 0], 'policy'))  # within the 5 s throttle
        wait_for(lambda: 'position: 3 values' in mux.log(), 10, what='a second, different warning (own throttle)')
        assert mux.running()

        buttons = [0] * 11
        buttons[4] = 1
        n = len(cmds)
        for _ in range(10):
            joy.publish(Joy(axes=[0.0] * 8, buttons=buttons))
            time.sleep(0.03)
        wait_for(lambda: any(s.source is S.HUMAN for s in steps()[n:]), 10, what='human commands')
        buttons[1] = 1  # e-stop while driving
        joy.publish(Joy(axes=[0.0] * 8, buttons=buttons))
        wait_for(lambda: any(s.source is S.STOPPED for s in steps()), 10, what='e-stop commands')
        kinds = [decode_event(m.data).event.name for m in events]
        assert kinds[:2] == ['INTERVENTION_START', 'INTERVENTION_END']

        n = len(cmds)
        assert mux.stop() == 0
        wait_for(lambda: len(cmds) > n, 15, what='a last hold command on shutdown')
        last = steps()[-1]
        assert last.action[:6] == (0.0,) * 6 and last.action[6] == 1.0  # gripper kept closed


def test_mux_node_refuses_an_out_of_range_policy_action(ros_domain, start_node):
    # the fault matrix (bench/faults_malformed.py) found a policy action of 5.0 executed as it came
    mux = start_node('hapo_teleop.mux_node', params={'lockstep': False})
    with RosProbe(ros_domain) as probe:
        cmds = probe.collect(JointState, topics.CMD, RELIABLE)
        policy = probe.node.create_publisher(JointState, topics.POLICY_ACTION, 10)
        wait_for(lambda: len(cmds) > 0 and policy.get_subscription_count() > 0, 20, what='the mux up')
        for _ in range(20):
            policy.publish(fill_action(JointState(), time.time_ns(), [5.0, 0, 0, 0, 0, 0, 1.0], 'policy'))
            time.sleep(0.02)
        good = time.time_ns()
        policy.publish(fill_action(JointState(), good, [0.5, 0, 0, 0, 0, 0, 1.0], 'policy'))
        wait_for(lambda: any(read_step(m).stamp_ns == good for m in list(cmds)), 10, what='the good action passed')
        assert all(abs(v) <= 1.0 for m in list(cmds) for v in read_step(m).action)
        warned = [ln for ln in mux.log().splitlines() if 'WARN' in ln and 'hapo/policy/action' in ln]
        assert len(warned) == 1 and 'position[0] (x) = 5.0: outside [-1, 1]' in warned[0], mux.log()
        assert mux.running()


def test_mux_node_refuses_bad_parameter(start_node):
    mux = start_node('hapo_teleop.mux_node', params={'axis_map': [0, 1]})
    assert mux.wait(30) == 2
    lines = [ln for ln in mux.log().splitlines() if ln.strip()]
    assert lines[-1].startswith('mux_node: ') and 'axis_map' in lines[-1], mux.log()

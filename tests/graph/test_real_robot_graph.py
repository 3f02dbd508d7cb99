# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The real-arm graph (robot:=servo) end to end, minus the arm: a video file as the camera, a test-side robot
driver publishing joint states, a test-side gamepad. next starts an episode, the policy's commands come out as
twists, Y ends it as a success, and the recorder's bag (read back with rosbags too) holds the policy's steps,
the camera frames and the episode's START from the executor."""

from __future__ import annotations

import contextlib
import io
import threading
import time

import numpy as np
import pytest
from geometry_msgs.msg import TwistStamped
from helpers import RosProbe, wait_for
from rclpy.qos import qos_profile_sensor_data
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import JointState, Joy

from hapo_bringup.graph import config_dir, resolve
from hapo_bringup.runner import GraphRunner
from hapo_interfaces import topics
from hapo_interfaces.enums import ControlSource
from hapo_policy.init_checkpoint import main as init_checkpoint
from hapo_recorder.bag_reader import list_episodes, read_episode, read_metadata
from hapo_teleop.joy_mapping import JoyMapping

pytestmark = pytest.mark.graph
PAD = JoyMapping()


def test_a_real_arm_episode_from_camera_to_twists_to_bag(ros_domain, tmp_path):
    import cv2

    video = tmp_path / 'camera.mp4'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'mp4v'), 20, (80, 60))
    for i in range(40):
        writer.write(np.full((60, 80, 3), 40 + 4 * i, np.uint8))
    writer.release()
    ckpt = tmp_path / 'policy'
    init_checkpoint(['--out', str(ckpt), '--camera', 'agentview', '--image-size', '32', '--seed', '3',
                     '--proprio-dim', '6'])  # a 6-joint arm
    nodes, params = resolve(config_dir() / 'deploy.yaml', [
        'robot:=servo', f'camera:={video}', f'checkpoint:={ckpt}', 'joy:=false', 'instruction:=lift the cube',
        f'output_root:={tmp_path / "episodes"}', 'servo_executor.twist_topic:=servo/twist',
        'servo_executor.joint_states_in:=arm/joint_states', 'servo_executor.gripper_mode:=none'])
    assert [n.name for n in nodes] == ['camera_node', 'servo_executor', 'policy_node', 'mux_node', 'recorder_node']
    out = io.StringIO()
    runner = GraphRunner(nodes, params, out=out, env={'ROS_DOMAIN_ID': str(ros_domain)})
    with RosProbe(ros_domain) as probe:
        twists = probe.collect(TwistStamped, 'servo/twist')
        driver = probe.node.create_publisher(JointState, 'arm/joint_states', qos_profile_sensor_data)
        pad = probe.node.create_publisher(Joy, topics.JOY, qos_profile_sensor_data)
        press: dict[str, int] = {}
        stop = threading.Event()

        def hardware():  # the robot driver and the gamepad driver publish at fixed rates
            while not stop.is_set():
                msg = JointState(name=[f'j{i}' for i in range(6)], position=[0.1] * 6)
                msg.header.stamp = probe.node.get_clock().now().to_msg()
                driver.publish(msg)
                buttons = [0] * 11
                for b in list(press.values()):
                    buttons[b] = 1
                joy = Joy(axes=[0.0] * 8, buttons=buttons)
                joy.header.stamp = msg.header.stamp
                pad.publish(joy)
                time.sleep(0.02)

        threading.Thread(target=hardware, daemon=True).start()
        runner.start()
        try:
            wait_for(lambda: len(twists) > 20, 90, what=f'twists from the executor\n{out.getvalue()}')
            time.sleep(1.0)  # the policy acts, but no episode is open: the arm holds
            assert all(t.twist.linear.x == t.twist.linear.y == t.twist.linear.z == 0 for t in list(twists))
            wait_for(lambda: pad.get_subscription_count() > 0, 30, what='the mux subscribed to joy')
            for _ in range(4):  # a press the mux did not see yet (discovery on a busy machine) is pressed again
                press['next'] = PAD.next_button
                time.sleep(0.3)
                press.pop('next')
                with contextlib.suppress(AssertionError):
                    wait_for(lambda: 'episode 1 started' in out.getvalue(), 5, what='a START')
                    break
            assert 'episode 1 started' in out.getvalue() and 'episode 2' not in out.getvalue(), out.getvalue()
            wait_for(lambda: any(t.twist.linear.x or t.twist.linear.y or t.twist.linear.z for t in list(twists)),
                     30, what=f'the policy moving the arm\n{out.getvalue()}')
            time.sleep(1.5)
            press['success'] = PAD.success_button
            time.sleep(0.3)
            press.pop('success')
            bags = lambda: list_episodes([tmp_path / 'episodes'])  # noqa: E731
            wait_for(lambda: bags() and (read_metadata(bags()[0]) or {}).get('outcome') == 'success', 30,
                     what=f'the episode closed as a success\n{out.getvalue()}')  # metadata: written at close
        finally:
            stop.set()
            codes = runner.stop()
    assert set(codes.values()) == {0}, out.getvalue()
    [path] = list_episodes([tmp_path / 'episodes'])
    ep = read_episode(path)
    policy = ep.sources == ControlSource.POLICY
    assert policy.sum() >= 5 and ep.metadata['task'] == 'real' and ep.metadata['instruction'] == 'lift the cube'
    frames = list(ep.images['agentview'].values())
    assert len(frames) > 10 and {f.shape for f in frames} == {(32, 32, 3)}  # what the model sees, not 80x60
    with Reader(path) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts['/camera/agentview/image_raw'] > 10 and counts['/hapo/episode'] >= 2

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""camera_node on a video file the test writes (as a lab's camera, minus the hardware): rgb8 frames at the asked
size, stamped at capture, in the file's order and looping; a source that is absent at start is waited for and
picked up when it appears, with a warning and no crash; SIGINT exits 0."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import RosProbe, wait_for
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from hapo_interfaces import topics
from hapo_interfaces.images import to_array

pytestmark = pytest.mark.graph
LEVELS = [30, 90, 150, 210]  # frame i is a flat grey of LEVELS[i]: its order survives the codec


def write_video(path, size=(64, 48), fps=20):
    import cv2

    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps, size)
    assert out.isOpened()
    for level in LEVELS:
        for _ in range(3):  # 3 frames per level
            out.write(np.full((size[1], size[0], 3), level, np.uint8))
    out.release()


def level(msg):
    return int(np.argmin([abs(float(to_array(msg).mean()) - v) for v in LEVELS]))


def test_a_video_file_becomes_stamped_rgb8_frames_that_loop(start_node, ros_domain, tmp_path):
    video = tmp_path / 'cam.mp4'
    write_video(video)
    node = start_node('hapo_policy.camera_node', params={'source': str(video), 'name': 'wrist', 'width': 32,
                                                         'height': 24, 'fps': 40.0, 'frame_id': 'wrist_optical'})
    with RosProbe(ros_domain) as probe:
        frames = probe.collect(Image, topics.camera_topic('wrist'), qos_profile_sensor_data)
        wait_for(lambda: len(frames) >= 30, 30, what=f'30 frames from the file\n{node.log()}')
        got = list(frames)
    m = got[0]
    assert (m.encoding, m.width, m.height, m.step, m.header.frame_id) == ('rgb8', 32, 24, 96, 'wrist_optical')
    stamps = [f.header.stamp.sec * 10 ** 9 + f.header.stamp.nanosec for f in got]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    rate = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9)
    assert 20 < rate < 50, f'{rate:.1f} Hz for fps 40'
    levels = [level(f) for f in got]
    steps = {(b - a) % 4 for a, b in zip(levels, levels[1:], strict=False)}
    assert steps <= {0, 1} and levels.count(0) >= 3 and set(levels) == {0, 1, 2, 3}  # in order, and again
    assert any(a == 3 and b == 0 for a, b in zip(levels, levels[1:], strict=False)), 'did not loop'
    assert node.stop() == 0


def test_an_absent_source_is_waited_for_and_picked_up_when_it_appears(start_node, ros_domain, tmp_path):
    video = tmp_path / 'later.mp4'
    node = start_node('hapo_policy.camera_node', params={'source': str(video), 'width': 32, 'height': 24,
                                                         'fps': 40.0, 'reopen_period_s': 0.2})
    wait_for(lambda: f'no camera at {video}' in node.log(), 20, what=f'a waiting message\n{node.log()}')
    assert node.running()
    with RosProbe(ros_domain) as probe:
        frames = probe.collect(Image, topics.camera_topic('agentview'), qos_profile_sensor_data)
        write_video(tmp_path / 'tmp.mp4')
        (tmp_path / 'tmp.mp4').rename(video)  # plugged in
        wait_for(lambda: len(frames) >= 5, 20, what=f'frames once the source appeared\n{node.log()}')
    assert node.stop() == 0

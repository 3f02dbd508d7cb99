# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""joy_node reading a device file (a FIFO fed by the test, as the kernel feeds /dev/input/js0)."""

from __future__ import annotations

import os
import time

import pytest
from helpers import RosProbe, wait_for
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Joy

from hapo_interfaces import topics
from hapo_teleop.joystick import AXIS, BUTTON, INIT, pack

pytestmark = pytest.mark.graph


def test_joystick_events_become_joy_messages(start_node, ros_domain, tmp_path):
    device = tmp_path / 'js0'
    node = start_node('hapo_teleop.joy_node', params={'device': str(device), 'reopen_period_s': 0.1})
    wait_for(lambda: f'no joystick at {device}' in node.log(), 20, what='a waiting message for the absent device')
    os.mkfifo(device)
    fd = os.open(device, os.O_RDWR)  # the "kernel" side
    with RosProbe(ros_domain) as probe:
        joys = probe.collect(Joy, topics.JOY, qos_profile_sensor_data)
        os.write(fd, b''.join(pack(0, BUTTON | INIT, n) for n in range(11)) +
                 b''.join(pack(0, AXIS | INIT, n) for n in range(8)))
        os.write(fd, pack(1, BUTTON, 4) + pack(-32767, AXIS, 4))  # deadman held, right stick up
        wait_for(lambda: any(m.buttons[4] == 1 and m.axes[4] == 1.0 for m in list(joys)), 20,
                 what=f'a Joy with the deadman held and the stick up; {list(joys)[-1:]}\n{node.log()}')
        n = len(joys)
        wait_for(lambda: len(joys) >= n + 5, 15, what='autorepeat while nothing changes')
        os.close(fd)  # unplugged
        wait_for(lambda: 'disconnected' in node.log(), 10, what='a disconnect warning')
        n = len(joys)
        time.sleep(0.5)
        assert len(joys) <= n + 1, 'still publishing after the device went away'
    assert node.stop() == 0

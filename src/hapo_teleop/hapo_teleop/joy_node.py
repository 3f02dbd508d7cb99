# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""joy_node: a gamepad on /dev/input/jsN -> sensor_msgs/Joy on ``joy``, for pip installs without ROS `joy`.

    python -m hapo_teleop.joy_node --ros-args -p device:=/dev/input/js0

Publishes on every change and at ``autorepeat_rate_hz`` while the device is open; nothing while it is
absent or unplugged, so the mux sees the joystick go stale and hands control back. In a full ROS install
``ros2 run joy joy_node`` does the same job.
"""

from __future__ import annotations

import os
import select
import sys
import threading

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Joy

from hapo_interfaces import topics
from hapo_ros.main import run_node
from hapo_ros.parameters import declare
from hapo_teleop.joystick import EVENT, JoyParams, JoystickState


class JoyNode(Node):
    def __init__(self, **kwargs):
        super().__init__('joy_node', **kwargs)
        self.p = declare(self, JoyParams)
        self.state = JoystickState(self.p.deadzone)
        self.lock = threading.Lock()
        self.connected = False
        self.pub = self.create_publisher(Joy, topics.JOY, qos_profile_sensor_data)  # a state stream
        self.create_timer(1.0 / self.p.autorepeat_rate_hz, self.publish)
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self.read_loop, name='joystick', daemon=True)
        self.reader.start()

    def publish(self) -> None:
        with self.lock:
            if not self.connected:
                return
            msg = Joy(axes=list(self.state.axes), buttons=list(self.state.buttons))
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub.publish(msg)

    def read_loop(self) -> None:
        log = self.get_logger()
        while not self.stop.is_set():
            try:
                fd = os.open(self.p.device, os.O_RDONLY | os.O_NONBLOCK)
            except OSError as exc:
                log.warning(f'no joystick at {self.p.device} ({exc.strerror}); waiting', throttle_duration_sec=10.0)
                self.stop.wait(self.p.reopen_period_s)
                continue
            log.info(f'joystick {self.p.device} open')
            try:
                self.read_events(fd)
            finally:
                os.close(fd)
                with self.lock:
                    self.connected = False
                    self.state = JoystickState(self.p.deadzone)
            if not self.stop.is_set():
                log.warning(f'joystick {self.p.device} disconnected; the human has no control until it is back')
                self.stop.wait(self.p.reopen_period_s)

    def read_events(self, fd: int) -> None:
        """Apply events until the device goes away (read error or end of file) or the node stops."""
        buf = b''
        while not self.stop.is_set():
            if not select.select([fd], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(fd, EVENT.size * 64)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            changed = False
            with self.lock:
                self.connected = True
                while len(buf) >= EVENT.size:
                    changed |= self.state.apply(buf[:EVENT.size])
                    buf = buf[EVENT.size:]
            if changed:
                self.publish()

    def on_exit(self) -> None:
        self.stop.set()
        self.reader.join(timeout=2.0)


def main(args=None) -> int:
    return run_node(JoyNode, 'joy_node', args)


if __name__ == '__main__':
    sys.exit(main())

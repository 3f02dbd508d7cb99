# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""camera_node: a USB or network camera (or a video file) -> sensor_msgs/Image rgb8 on ``camera/<name>/image_raw``.

    python -m hapo_policy.camera_node --ros-args -p source:=0 -p name:=agentview -p width:=224 -p height:=224

Each frame is stamped when it is captured (the policy answers that stamp) and published with sensor-data QoS.
Publish at the model's resolution: 640x480 rgb8 is ~28 MB/s at 30 Hz, which a recorder must also write. An
absent or unplugged camera is a warning and a retry every ``reopen_period_s``, never a crash; a file loops.
"""

from __future__ import annotations

import sys
import threading
import time

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from hapo_interfaces import topics
from hapo_interfaces.images import fill_image
from hapo_policy.camera import CameraParams, Capture
from hapo_ros.main import run_node
from hapo_ros.parameters import declare


class CameraNode(Node):
    def __init__(self, **kwargs):
        super().__init__('camera_node', **kwargs)
        self.p = declare(self, CameraParams)
        self.capture = Capture(self.p.source, self.p.width, self.p.height, self.p.fps, self.p.reopen_period_s)
        self.topic = topics.camera_topic(self.p.name)
        self.pub = self.create_publisher(Image, self.topic, qos_profile_sensor_data)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, name='capture', daemon=True)
        self.thread.start()

    def loop(self) -> None:
        """Capture, stamp, publish; a file source is paced at ``fps``, a device by its own clock."""
        log, period, streaming = self.get_logger(), 1.0 / self.p.fps, False
        next_t = time.monotonic()
        while not self.stop.is_set():
            frame = self.capture.read()
            stamp_ns = self.get_clock().now().nanoseconds
            if frame is None:
                if streaming:
                    log.warning(f'camera {self.capture.describe()} lost; retrying every {self.p.reopen_period_s} s '
                                '(the policy holds on a stale image)')
                else:
                    log.warning(f'no camera at {self.capture.describe()}; retrying every {self.p.reopen_period_s} s',
                                throttle_duration_sec=10.0)
                streaming = False
                self.stop.wait(min(self.p.reopen_period_s, 0.1))
                continue
            if not streaming:
                log.info(f'camera {self.capture.describe()} -> {self.topic} at {self.p.width}x{self.p.height}')
                streaming, next_t = True, time.monotonic()
            self.pub.publish(fill_image(Image(), frame, stamp_ns, self.p.frame_id))
            if self.capture.is_file:
                next_t = max(next_t + period, time.monotonic() - period)  # late: no burst to catch up
                self.stop.wait(max(0.0, next_t - time.monotonic()))

    def on_exit(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2.0)
        self.capture.release()


def main(args=None) -> int:
    return run_node(CameraNode, 'camera_node', args)


if __name__ == '__main__':
    sys.exit(main())

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""keyboard_node: keys in this terminal -> sensor_msgs/Joy on ``joy``, as a gamepad would send (Xbox layout).

    hapo deploy joy:=false gamepad:=keyboard        # the graph, in one terminal
    hapo node keyboard_node                         # the keyboard, in its own terminal

Keys and the toggle deadman: ``hapo_teleop.keyboard`` (printed at start; the status line says who drives).
Publishes at ``rate_hz`` while it runs, so the mux sees it go stale when it stops. Needs a terminal on stdin:
without one it says so in one line and exits 2.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import termios
import threading
import time
import tty
from dataclasses import dataclass

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Joy

from hapo_interfaces import topics
from hapo_interfaces.params import param
from hapo_ros.main import NodeStartError, run_node
from hapo_ros.parameters import declare
from hapo_teleop.keyboard import HELP, KeyboardState


@dataclass(frozen=True)
class KeyboardParams:
    """Parameters of keyboard_node."""

    speed: float = param(0.5, 'motion per key as a fraction of full stick (+/- change it)', lo=0.1, hi=1.0)
    hold_s: float = param(0.6, 'a motion key keeps moving this long after its last press or auto-repeat', unit='s',
                          lo=0.05, hi=5.0)
    deadman: str = param('toggle', "toggle: t takes over and hands back; hold: the deadman is down while keys "
                                   "keep coming (a held, auto-repeating key)", choices=('toggle', 'hold'))
    rate_hz: float = param(20.0, 'Joy publish rate', unit='Hz', lo=1.0, hi=200.0)


class KeyboardNode(Node):
    def __init__(self, **kwargs):
        super().__init__('keyboard_node', **kwargs)
        self.p = declare(self, KeyboardParams)
        if not os.isatty(sys.stdin.fileno()):
            raise NodeStartError('stdin is not a terminal: run keyboard_node in a terminal of its own')
        self.state = KeyboardState(speed=self.p.speed, hold_s=self.p.hold_s, deadman=self.p.deadman)
        self.lock = threading.Lock()
        self.pub = self.create_publisher(Joy, topics.JOY, qos_profile_sensor_data)
        self.saved = termios.tcgetattr(sys.stdin.fileno())
        tty.setcbreak(sys.stdin.fileno())  # keys one by one, no echo; Ctrl-C still stops the node
        print(HELP, flush=True)
        self.create_timer(1.0 / self.p.rate_hz, self.publish)
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self.read_keys, name='keys', daemon=True)
        self.reader.start()

    def read_keys(self) -> None:
        fd = sys.stdin.fileno()
        while not self.stop.is_set():
            if not select.select([fd], [], [], 0.1)[0]:
                continue
            data = os.read(fd, 32).decode(errors='ignore')
            if not data:
                return
            with self.lock:
                for key in data:
                    self.state.press(key, time.monotonic())

    def publish(self) -> None:
        now = time.monotonic()
        with self.lock:
            axes, buttons = self.state.joy(now)
            line, quit_ = self.state.status(now), self.state.quit
        msg = Joy(axes=axes, buttons=buttons)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub.publish(msg)
        sys.stdout.write('\r\x1b[K' + line)
        sys.stdout.flush()
        if quit_:
            os.kill(os.getpid(), signal.SIGINT)  # the same clean stop as Ctrl-C

    def on_exit(self) -> None:
        self.stop.set()
        with self.lock:
            self.state.quit = True
            axes, buttons = self.state.joy(time.monotonic())
        self.pub.publish(Joy(axes=axes, buttons=buttons))  # deadman up: the policy has the arm again
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)
        print('\nkeyboard_node: handed back', flush=True)


def main(args=None) -> int:
    return run_node(KeyboardNode, 'keyboard_node', args)


if __name__ == '__main__':
    sys.exit(main())

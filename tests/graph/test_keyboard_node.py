# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""keyboard_node in a real terminal (tmux, keys sent with send-keys): the toggle deadman and its status line,
motion and button keys as the Joy the mux's keyboard map reads, q hands back and exits 0; without a terminal a
one-line message and exit 2."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from helpers import RosProbe, wait_for
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Joy

from hapo_bringup.graph import config_dir
from hapo_interfaces import topics
from hapo_teleop.joy_mapping import joy_input
from hapo_teleop.keyboard import KEYBOARD

pytestmark = [pytest.mark.graph, pytest.mark.skipif(shutil.which('tmux') is None, reason='needs tmux')]


def tmux(*args: str) -> str:
    return subprocess.run(['tmux', *args], check=True, capture_output=True, text=True, timeout=10).stdout


def test_keys_in_a_terminal_drive_the_joy_a_gamepad_would_send(ros_domain, tmp_path):
    session, rc = f'kb{ros_domain}', tmp_path / 'rc'
    env = f'ROS_DOMAIN_ID={ros_domain} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST'
    cmd = f'{env} {shlex.quote(sys.executable)} -m hapo_teleop.keyboard_node; echo $? > {rc}; sleep 30'
    tmux('new-session', '-d', '-s', session, '-x', '160', '-y', '30', cmd)
    try:
        with RosProbe(ros_domain) as probe:
            joys = probe.collect(Joy, topics.JOY, qos_profile_sensor_data)
            wait_for(lambda: len(joys) > 5, 30, what='Joy from keyboard_node')
            screen = tmux('capture-pane', '-p', '-t', session)
            assert 'keyboard teleop' in screen and 'policy drives' in screen
            assert all(m.buttons[KEYBOARD.deadman_button] == 0 for m in joys)

            tmux('send-keys', '-t', session, 't')
            wait_for(lambda: joys[-1].buttons[KEYBOARD.deadman_button] == 1, 5, what='the deadman down after t')
            wait_for(lambda: 'HUMAN DRIVING' in tmux('capture-pane', '-p', '-t', session), 5, what='the status')
            tmux('send-keys', '-t', session, 'w')
            wait_for(lambda: KEYBOARD.motion(joy_input(joys[-1].axes, joys[-1].buttons))[0] > 0.4, 5,
                     what='+x after w')
            motion = KEYBOARD.motion(joy_input(joys[-1].axes, joys[-1].buttons))
            assert motion[0] == pytest.approx(0.5, abs=1e-6) and not any(motion[1:])
            tmux('send-keys', '-t', session, 'i')  # pitch, on a d-pad axis the xbox map leaves unmapped
            wait_for(lambda: KEYBOARD.motion(joy_input(joys[-1].axes, joys[-1].buttons))[4] > 0.4, 5, what='pitch')
            tmux('send-keys', '-t', session, ' ')
            wait_for(lambda: not any(KEYBOARD.motion(joy_input(joys[-1].axes, joys[-1].buttons))), 5, what='stop')
            n = len(joys)
            tmux('send-keys', '-t', session, 'y')
            wait_for(lambda: any(m.buttons[KEYBOARD.success_button] for m in list(joys)[n:]), 5, what='success')
            time.sleep(0.4)
            assert joys[-1].buttons[KEYBOARD.success_button] == 0, 'a button is a pulse'

            tmux('send-keys', '-t', session, 'q')
            wait_for(lambda: rc.exists() and rc.read_text().strip(), 15, what='keyboard_node to exit')
            assert rc.read_text().strip() == '0'
            assert joys[-1].buttons[KEYBOARD.deadman_button] == 0, 'q hands back'
            assert 'handed back' in tmux('capture-pane', '-p', '-t', session)
    finally:
        subprocess.run(['tmux', 'kill-session', '-t', session], capture_output=True, timeout=10)


def test_without_a_terminal_it_says_so_in_one_line(ros_domain):
    proc = subprocess.run([sys.executable, '-m', 'hapo_teleop.keyboard_node'], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, env={**os.environ})
    assert proc.returncode == 2
    assert proc.stderr.strip() == 'keyboard_node: stdin is not a terminal: run keyboard_node in a terminal of its own'


def test_the_mux_keyboard_map_is_the_keyboards():
    params = yaml.safe_load((config_dir() / 'joy' / 'keyboard.yaml').read_text())['mux_node']['ros__parameters']
    for name, value in params.items():
        want = getattr(KEYBOARD, name)
        assert (list(want) if isinstance(want, tuple) else want) == value, name

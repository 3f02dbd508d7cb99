# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Library modules import without ROS: only *_node.py, ros_*.py, launch and bringup may touch rclpy.

The trainer must run on a machine with no ROS at all, and the pure logic must stay testable alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / 'src'
ALLOWED = ('_node.py', 'ros_main.py', 'ros_params.py')
ROS_ONLY_PACKAGES = ('hapo_bringup',)


def library_modules() -> list[str]:
    mods = []
    for path in sorted(SRC.glob('hapo_*/hapo_*/*.py')):
        pkg = path.parent.name
        if path.name == '__init__.py' or path.name.endswith(ALLOWED) or pkg in ROS_ONLY_PACKAGES:
            continue
        if path.name == 'diagnostics.py':  # builds diagnostic_msgs messages: needs the ROS wheels, not rclpy
            continue
        mods.append(f'{pkg}.{path.stem}')
    return mods


BLOCKER = '''
import sys, importlib
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('rclpy', 'rosbag2_py', 'launch', 'launch_ros'):
            raise ImportError(f'{name} imported by a library module')
sys.meta_path.insert(0, Block())
for mod in sys.argv[1:]:
    importlib.import_module(mod)
'''


@pytest.mark.parametrize('module', library_modules())
def test_library_module_imports_without_rclpy(module):
    proc = subprocess.run([sys.executable, '-c', BLOCKER, module], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Library modules import without ROS: only *_node.py files and the ROS-only packages may touch rclpy.

The ROS-only packages are ``hapo_ros`` (the rclpy glue the nodes share) and ``hapo_bringup`` (launch, the
``hapo`` runner). The trainer must run on a machine with no ROS at all, the pure logic must stay testable
alone, and the contract (``hapo_interfaces``) imports no ROS message package either.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / 'src'
ROS_ONLY_PACKAGES = ('hapo_ros', 'hapo_bringup')


def library_modules(*packages: str) -> list[str]:
    """Every module that is neither a node file nor in a ROS-only package (of ``packages``, if given)."""
    mods = []
    for path in sorted(SRC.glob('hapo_*/hapo_*/*.py')):
        pkg = path.parent.name
        if path.name == '__init__.py' or path.name.endswith('_node.py') or pkg in ROS_ONLY_PACKAGES:
            continue
        if not packages or pkg in packages:
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


# Imports the contract, then the offline trainer, in one process; prints what ROS each step left in sys.modules:
# rclpy, and ROS message packages (a top-level package with a .msg or .srv module, e.g. sensor_msgs).
LOADED = '''
import importlib, json, sys
def ros():
    tops = {n.split('.')[0] for n in sys.modules}
    return sorted(t for t in tops if t == 'rclpy' or f'{t}.msg' in sys.modules or f'{t}.srv' in sys.modules)
contract, trainer = json.loads(sys.argv[1])
for mod in contract:
    importlib.import_module(mod)
after_contract = ros()
for mod in trainer:
    importlib.import_module(mod)
print(json.dumps({'contract': after_contract, 'trainer': ros()}))
'''


def test_contract_and_offline_trainer_leave_ros_unimported():
    assert not list(SRC.glob('hapo_trainer/hapo_trainer/*_node.py')), 'the trainer holds no node'
    contract, trainer = library_modules('hapo_interfaces'), library_modules('hapo_trainer')
    assert 'hapo_interfaces.stamps' in contract and 'hapo_trainer.optimize' in trainer
    proc = subprocess.run([sys.executable, '-c', LOADED, json.dumps([contract, trainer])], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.splitlines()[-1])
    assert loaded['contract'] == [], f'importing hapo_interfaces loaded ROS: {loaded["contract"]}'
    assert 'rclpy' not in loaded['trainer'], f'importing the offline trainer loaded rclpy: {loaded["trainer"]}'

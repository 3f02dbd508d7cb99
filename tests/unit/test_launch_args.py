# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""deploy.launch.py and replay.launch.py resolve their arguments through graph.launch_graph / replay_graph, the
code ``hapo deploy`` uses (launch_ros cannot be installed here): what each argument starts and sets."""

from __future__ import annotations

import ast
import sys

import pytest
import yaml

from hapo_bringup.cli import main as hapo
from hapo_bringup.graph import LAUNCH_ARGS, REPLAY_ARGS, config_dir, launch_graph, replay_graph, resolve
from hapo_interfaces.params import ParamError

ROOT = config_dir().parent
DEFAULTS = {name: default for name, default, _ in LAUNCH_ARGS}  # what launch passes when nothing is given


def names(nodes):
    return [n.name for n in nodes]


def test_the_launch_files_declare_the_shared_arguments_and_resolve_through_graph():
    for path, args, resolver in (('deploy.launch.py', 'LAUNCH_ARGS', 'launch_graph'),
                                 ('replay.launch.py', 'REPLAY_ARGS', 'replay_graph')):
        tree = ast.parse((ROOT / 'launch' / path).read_text())
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert {args, resolver, 'DeclareLaunchArgument'} <= used, path
    assert len({n for n, _, _ in LAUNCH_ARGS}) == len(LAUNCH_ARGS) >= 10
    assert {'robot', 'camera', 'checkpoint', 'instruction', 'record', 'gamepad'} <= set(DEFAULTS)


def test_no_arguments_start_what_hapo_deploy_starts():
    nodes, params = launch_graph(DEFAULTS)
    ref_nodes, ref_params = resolve(config_dir() / 'deploy.yaml', [])
    assert names(nodes) == names(ref_nodes) == ['sim_node', 'policy_node', 'mux_node', 'joy_node', 'recorder_node']
    assert params == ref_params


def test_robot_servo_starts_the_camera_and_the_executor_and_sets_them_from_the_checkpoint(capsys):
    settings = {**DEFAULTS, 'robot': 'servo', 'camera': '/dev/video2', 'checkpoint': 'policies/lift_base',
                'instruction': 'lift the red cube', 'gamepad': 'ps4', 'servo_executor.max_linear_m_s': '0.05'}
    nodes, params = launch_graph(settings)
    assert names(nodes) == ['camera_node', 'servo_executor', 'policy_node', 'mux_node', 'joy_node', 'recorder_node']
    assert params['camera_node']['source'] == '/dev/video2'
    assert (params['camera_node']['name'], params['camera_node']['width'], params['camera_node']['height']) == (
        'agentview', 64, 64)  # the shipped base's first camera at its image size
    assert params['mux_node']['lockstep'] is False and params['policy_node']['match_stamps'] is False
    assert params['policy_node']['instruction'] == params['servo_executor']['instruction'] == 'lift the red cube'
    assert params['servo_executor']['max_linear_m_s'] == 0.05
    ps4 = yaml.safe_load((config_dir() / 'joy' / 'ps4.yaml').read_text())['mux_node']['ros__parameters']
    assert all(params['mux_node'][k] == v for k, v in ps4.items()) and params['recorder_node']['input_device'] == 'ps4'
    # hapo deploy takes the same names and resolves the same graph
    assert hapo(['deploy', '--dry-run', *(f'{k}:={v}' for k, v in settings.items() if v)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == params


def test_robot_none_and_switches():
    nodes, _ = launch_graph({**DEFAULTS, 'robot': 'none', 'record': 'false', 'joy': 'false'})
    assert names(nodes) == ['policy_node', 'mux_node']
    nodes, params = launch_graph({**DEFAULTS, 'operator': 'true', 'scenario': 'lift_far', 'horizon': '50'})
    assert 'operator_node' in names(nodes) and 'joy_node' not in names(nodes)
    assert params['sim_node']['horizon'] == 50 and params['sim_node']['scenario'].endswith('lift_far.yaml')


@pytest.mark.parametrize(('settings', 'message'), [
    ({'robot': 'ur5'}, r"robot:=ur5 is not one of \['sim', 'servo', 'none'\]"),
    ({'sim': 'false'}, r'sim:=false is now robot:=sim\|servo\|none'),
    ({'gamepad': 'n64'}, r"no gamepad map 'n64'"),
    ({'robot': 'servo', 'servo_executor.gripper_mode': 'magnet'}, r'gripper_mode'),
])
def test_bad_arguments_are_one_line(settings, message):
    with pytest.raises(ParamError, match=message):
        launch_graph({**DEFAULTS, **settings})


def test_replay_starts_the_policy_alone_and_the_live_evaluation():
    nodes, params, command = replay_graph({'checkpoint': 'policies/lift_base', 'bags': 'runs/episodes'})
    assert names(nodes) == ['policy_node']
    ckpt = str(config_dir() / 'policies' / 'lift_base')
    assert params['policy_node']['checkpoint'] == ckpt
    assert command == [sys.executable, '-m', 'hapo_trainer.evaluate', '--live', '--policy', ckpt, '--bags',
                       'runs/episodes', '--rate', '1.0', '--out', 'runs/replay/live.json']
    assert {n for n, _, _ in REPLAY_ARGS} >= {'checkpoint', 'bags', 'out', 'rate'}
    with pytest.raises(ParamError, match='needs bags:='):
        replay_graph({'checkpoint': ckpt})

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""config/deploy.yaml stays in step with the node schemas; overrides resolve as documented."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from hapo_bringup.graph import DEPLOY_GRAPH, config_dir, gamepad_config, load_yaml, resolve
from hapo_interfaces.params import ParamError


def test_every_parameter_is_in_deploy_yaml_with_a_comment():
    path = config_dir() / 'deploy.yaml'
    text = path.read_text()
    values = load_yaml(path)
    for node in DEPLOY_GRAPH:
        fields = {f.name for f in dataclasses.fields(node.schema_class())}
        assert set(values.get(node.name, {})) <= fields, f'{node.name}: unknown keys in {path}'
        for name in fields:  # present (or commented out when its default cannot be typed in YAML)
            assert re.search(rf'^\s+#?\s?{name}: .*  # \S', text, re.M), f'{node.name}.{name} missing or undocumented'


def test_overrides_reach_the_nodes_that_declare_them():
    nodes, params = resolve(config_dir() / 'deploy.yaml', ['seed:=7', 'mux_node.deadzone:=0.2', 'record:=false'])
    assert params['sim_node']['seed'] == 7 and params['policy_node']['seed'] == 7
    assert params['mux_node']['deadzone'] == 0.2
    assert 'recorder_node' not in {n.name for n in nodes}
    assert params['sim_node']['wait_for'] == [''], 'the sim would wait for a recorder that is not started'
    _, params = resolve(config_dir() / 'deploy.yaml', [])
    assert params['sim_node']['wait_for'] == ['recorder_node']


@pytest.mark.parametrize('text', ["[agentview,robot0_eye_in_hand]", "['agentview', 'robot0_eye_in_hand']",
                                  'agentview,robot0_eye_in_hand'])
def test_list_overrides_parse_as_ros_writes_them(text):
    _, params = resolve(config_dir() / 'deploy.yaml', [f'cameras:={text}', 'axis_map:=[1, 0, 2, -1, -1, 3]'])
    assert params['sim_node']['cameras'] == params['recorder_node']['cameras'] == ['agentview', 'robot0_eye_in_hand']
    assert params['mux_node']['axis_map'] == [1, 0, 2, -1, -1, 3]


@pytest.mark.parametrize(('override', 'match'), [
    ('bogus:=1', 'no node declares'), ('mode:=fast', "not one of"), ('image_size:=big', 'is not a int'),
    ('nobody.x:=1', 'unknown node'), ('seed=3', 'not key:=value')])
def test_bad_overrides_fail_in_one_line(override, match):
    with pytest.raises(ParamError, match=match):
        resolve(config_dir() / 'deploy.yaml', [override])


def test_gamepad_map_merges_over_the_config():
    nodes, params = resolve(config_dir() / 'deploy.yaml', ['estop_reset_button:=8'],
                            extra_configs=[gamepad_config('ps4')])
    assert params['mux_node']['next_button'] == 8 and params['mux_node']['success_button'] == 2  # from ps4.yaml
    assert params['mux_node']['estop_reset_button'] == 8  # the command line wins
    with pytest.raises(ParamError, match="no gamepad map 'n64'"):
        gamepad_config('n64')


SCENARIOS = config_dir() / 'scenarios'
CAMS = ['agentview', 'robot0_eye_in_hand']
UNTRAINED = 'checkpoint:='  # no checkpoint, so no checkpoint layer over the scenario (the shipped base is the default)


def test_no_scenario_keeps_the_deploy_config():
    _, params = resolve(config_dir() / 'deploy.yaml', [UNTRAINED])
    yaml_values = load_yaml(config_dir() / 'deploy.yaml')
    for node in ('sim_node', 'policy_node', 'recorder_node'):
        for key in ('task', 'cameras', 'image_size', 'horizon', 'instruction', 'camera_names', 'scenario'):
            if key in yaml_values[node]:
                assert params[node][key] == yaml_values[node][key], (node, key)
    assert params['sim_node']['scenario'] == ''


def test_scenario_sets_sim_policy_and_recorder_at_once():
    _, params = resolve(config_dir() / 'deploy.yaml', [UNTRAINED, 'scenario:=pick_place_can'])
    sim, policy, recorder = params['sim_node'], params['policy_node'], params['recorder_node']
    assert (sim['task'], sim['horizon'], sim['cameras'], sim['image_size'], sim['instruction']) == (
        'pick_place_can', 300, CAMS, 64, '')
    assert sim['scenario'] == str(SCENARIOS / 'pick_place_can.yaml')
    assert policy['camera_names'] == 'agentview,robot0_eye_in_hand'
    assert policy['instruction'] == 'pick up the can and place it in its bin'
    assert recorder['cameras'] == CAMS
    # A path works as well as a name, and so does sim_node.scenario:=.
    for override in (f'scenario:={SCENARIOS / "lift_far.yaml"}', 'sim_node.scenario:=lift_far'):
        _, params = resolve(config_dir() / 'deploy.yaml', [UNTRAINED, override])
        assert params['sim_node']['scenario'] == str(SCENARIOS / 'lift_far.yaml')
        assert params['sim_node']['task'] == 'lift' and params['sim_node']['image_size'] == 64


def test_precedence_deploy_yaml_then_scenario_then_command_line(tmp_path):
    config = tmp_path / 'deploy.yaml'
    config.write_text(yaml.safe_dump({
        'sim_node': {'ros__parameters': {'task': 'lift', 'image_size': 128, 'horizon': 50, 'seed': 4,
                                         'instruction': 'do it', 'scenario': 'lift_far'}},
        'policy_node': {'ros__parameters': {'camera_names': 'agentview'}},
        'recorder_node': {'ros__parameters': {'cameras': ['agentview'], 'k': 3}}}))
    _, params = resolve(config, [])  # the config's own scenario
    sim = params['sim_node']
    assert (sim['image_size'], sim['horizon'], sim['seed'], sim['instruction']) == (64, 200, 4, '')
    assert params['policy_node']['camera_names'] == 'agentview,robot0_eye_in_hand'
    assert params['recorder_node'] == {'cameras': CAMS, 'k': 3}
    _, params = resolve(config, ['scenario:=pick_place_can', 'image_size:=96', 'sim_node.horizon:=77',
                                 'policy_node.camera_names:=robot0_eye_in_hand', 'instruction:=grab'])
    sim = params['sim_node']
    assert (sim['task'], sim['image_size'], sim['horizon'], sim['instruction']) == ('pick_place_can', 96, 77, 'grab')
    assert params['policy_node']['camera_names'] == 'robot0_eye_in_hand'
    assert params['policy_node']['instruction'] == 'grab' and params['recorder_node']['cameras'] == CAMS
    _, params = resolve(config, ['scenario:='])  # switched off on the command line: the config as it is
    assert params['sim_node']['scenario'] == '' and params['sim_node']['image_size'] == 128
    assert params['recorder_node']['cameras'] == ['agentview']


def test_scenario_without_the_sim_still_sets_policy_and_recorder():
    nodes, params = resolve(config_dir() / 'deploy.yaml', [UNTRAINED, 'robot:=none', 'scenario:=lift'])
    assert 'sim_node' not in {n.name for n in nodes}
    assert params['policy_node']['camera_names'] == 'agentview,robot0_eye_in_hand'
    assert params['recorder_node']['cameras'] == CAMS


def test_bad_scenarios_fail_in_one_line(tmp_path, capsys):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('task: lift\nobject: {rgba: [2, 0, 0, 1]}\n')
    with pytest.raises(ParamError, match=rf'^{bad}: object.rgba: \[2, 0, 0, 1\] outside \[0, 1\]$'):
        resolve(config_dir() / 'deploy.yaml', [f'scenario:={bad}'])
    with pytest.raises(ParamError, match=r"scenario 'nowhere': no such file, and not one of \[.*'lift_far'"):
        resolve(config_dir() / 'deploy.yaml', ['scenario:=nowhere'])
    from hapo_bringup.cli import main

    assert main(['deploy', '--dry-run', '--scenario', str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f'hapo deploy: {bad}: object.rgba: [2, 0, 0, 1] outside [0, 1]\n'
    assert main(['deploy', '--dry-run', '--scenario', 'lift_color', 'image_size:=32']) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out['sim_node']['image_size'] == 32 and out['sim_node']['scenario'].endswith('lift_color.yaml')


def _checkpoint(path, cameras, size):
    from hapo_policy.init_checkpoint import main as init_checkpoint

    init_checkpoint(['--out', str(path), '--image-size', str(size), *[a for c in cameras for a in ('--camera', c)]])
    return path


def test_the_checkpoint_sets_what_the_sim_renders_over_config_and_scenario(tmp_path):
    two = _checkpoint(tmp_path / 'two', ['agentview', 'robot0_eye_in_hand'], 48)
    _, params = resolve(config_dir() / 'deploy.yaml', [f'checkpoint:={two}'])
    assert params['sim_node']['cameras'] == params['recorder_node']['cameras'] == ['agentview', 'robot0_eye_in_hand']
    assert params['sim_node']['image_size'] == 48 and params['policy_node']['camera_names'] == ''
    _, params = resolve(config_dir() / 'deploy.yaml', [f'checkpoint:={two}', 'image_size:=96'])
    assert params['sim_node']['image_size'] == 96  # the command line still wins
    one = _checkpoint(tmp_path / 'one', ['agentview'], 32)
    _, params = resolve(config_dir() / 'deploy.yaml', ['scenario:=lift', f'policy_node.checkpoint:={one}'])
    assert params['sim_node']['cameras'] == ['agentview'] and params['sim_node']['image_size'] == 32
    assert params['sim_node']['task'] == 'lift' and params['sim_node']['horizon'] == 200  # the rest of the scenario


def test_a_relative_checkpoint_is_found_under_the_config_directory(tmp_path, monkeypatch):
    import shutil

    conf = tmp_path / 'conf'
    shutil.copytree(config_dir(), conf)
    _checkpoint(conf / 'policies' / 'mine', ['agentview'], 40)
    monkeypatch.setenv('HAPO_CONFIG_DIR', str(conf))
    monkeypatch.chdir(tmp_path)
    _, params = resolve(conf / 'deploy.yaml', ['checkpoint:=policies/mine'])
    assert params['policy_node']['checkpoint'] == str(conf / 'policies' / 'mine')
    assert params['sim_node']['image_size'] == 40
    _, params = resolve(conf / 'deploy.yaml', ['checkpoint:='])
    assert params['policy_node']['checkpoint'] == ''  # '' stays the untrained model


def test_a_graph_without_the_policy_ignores_the_default_checkpoint():
    from hapo_bringup.collect_demos import COLLECT_GRAPH

    nodes, params = resolve(config_dir() / 'deploy.yaml', [], graph=COLLECT_GRAPH)
    assert 'policy_node' not in params and params['sim_node']['cameras'] == ['agentview']

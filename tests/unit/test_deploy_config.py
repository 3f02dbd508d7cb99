# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""config/deploy.yaml stays in step with the node schemas; overrides resolve as documented."""

from __future__ import annotations

import dataclasses
import re

import pytest

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

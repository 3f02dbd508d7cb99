# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The base policy shipped in config/policies/lift_base: its manifest's hash, that it loads, and that `hapo deploy
checkpoint:=policies/lift_base` serves it with the cameras and image size it was trained on."""

from __future__ import annotations

import json

from hapo_bringup.graph import config_dir, resolve
from hapo_policy.checkpoint import policy_id, weights_files
from hapo_policy.model import VlaPolicy
from hapo_sim.scenario import load_scenario

BASE = config_dir() / 'policies' / 'lift_base'


def test_manifest_names_the_shipped_weights_and_how_they_were_made():
    manifest = json.loads((BASE / 'manifest.json').read_text())
    assert manifest['policy_id'] == policy_id(weights_files(BASE))
    assert manifest['command'][:2] == ['hapo', 'train-base'] and manifest['demos'] >= 200
    assert not set(manifest['demo_seeds']) & set(range(*manifest['select_seeds']))
    assert manifest['software_version'].startswith('hapo_bringup')
    size = sum(f.stat().st_size for f in BASE.iterdir())
    assert size < 8 * 2**20, f'{size} bytes: the repository carries this checkpoint'


def test_it_loads_with_the_plain_lift_scenario_cameras():
    policy = VlaPolicy.from_pretrained(BASE)
    scenario = load_scenario(config_dir() / 'scenarios' / 'lift.yaml')
    assert policy.camera_names == list(scenario.cameras)
    assert policy.config.image_size == scenario.image_size


def test_deploy_finds_it_by_name_and_renders_what_it_needs():
    _, params = resolve(config_dir() / 'deploy.yaml', ['checkpoint:=policies/lift_base'])
    assert params['policy_node']['checkpoint'] == str(BASE)
    assert params['sim_node']['cameras'] == ['agentview', 'robot0_eye_in_hand']
    assert params['sim_node']['image_size'] == 64

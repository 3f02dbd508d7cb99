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


def test_deploy_serves_it_by_default_and_checkpoint_empty_gives_the_untrained_model():
    _, params = resolve(config_dir() / 'deploy.yaml', [])
    assert params['policy_node']['checkpoint'] == str(BASE)
    assert params['sim_node']['cameras'] == ['agentview', 'robot0_eye_in_hand']
    _, params = resolve(config_dir() / 'deploy.yaml', ['checkpoint:='])
    assert params['policy_node']['checkpoint'] == '' and params['sim_node']['cameras'] == ['agentview']


def test_the_shipped_evaluations_are_its_own_and_rerun_to_the_same_outcomes():
    """hapo demo uses these results instead of evaluating the base again: they must still be what it does."""
    from hapo_bringup.deploy_round import shipped_result
    from hapo_bringup.evaluate_sim import evaluate_sim

    pid = json.loads((BASE / 'manifest.json').read_text())['policy_id']
    for scenario in ('lift', 'lift_far'):
        shipped = shipped_result([BASE / 'evaluation'], pid, scenario, range(100000, 100050))
        assert shipped is not None and len(shipped['episodes']) == 50, scenario
    episodes = shipped['episodes']  # lift_far: one success and one failure again, in one graph
    pick = [next(e for e in episodes if e['success']), next(e for e in episodes if not e['success'])]
    for e in pick:
        again = evaluate_sim(BASE, range(e['seed'], e['seed'] + 1), ['scenario:=lift_far'], workers=1)
        (got,) = again['episodes']
        assert (got['success'], got['steps'], got['actions_digest']) == (
            e['success'], e['steps'], e['actions_digest']), e['seed']

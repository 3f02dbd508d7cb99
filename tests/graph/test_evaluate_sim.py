# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""hapo evaluate-sim through the real graph: reproducible per seed, whatever the number of workers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hapo_bringup.evaluate_sim import evaluate_sim
from hapo_policy.checkpoint import policy_id, weights_files
from hapo_policy.init_checkpoint import main as init_checkpoint
from hapo_trainer.compare import compare, load_result

SEEDS = range(3000, 3003)
HORIZON = 12
RUNTIME_KEYS = ('startup_s', 'elapsed_s', 'steps_per_s', 'episodes_per_min', 'workers')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('evaluate') / 'policy'
    init_checkpoint(['--out', str(path), '--camera', 'agentview', '--camera', 'robot0_eye_in_hand',
                     '--image-size', '64', '--seed', '5'])
    return path


def test_same_checkpoint_and_seeds_give_identical_outcomes_with_one_or_two_workers(checkpoint, tmp_path):
    one = evaluate_sim(checkpoint, SEEDS, [f'horizon:={HORIZON}'], workers=1)
    two = evaluate_sim(checkpoint, SEEDS, [f'horizon:={HORIZON}'], workers=2)
    assert (one['workers'], two['workers']) == (1, 2)
    assert [e['seed'] for e in one['episodes']] == list(SEEDS)
    assert one['episodes'] == two['episodes'], 'the same seeds must give the same executed actions'
    assert {k: v for k, v in one.items() if k not in RUNTIME_KEYS} == {
        k: v for k, v in two.items() if k not in RUNTIME_KEYS}
    assert len({e['states_digest'] for e in one['episodes']}) == len(SEEDS), 'seeds must differ'
    assert all(e['steps'] == HORIZON and not e['success'] and e['human_steps'] == 0 for e in one['episodes'])
    assert one['policy_id'] == policy_id(weights_files(checkpoint))
    assert one['success_rate'] == 0.0 and one['wilson95'][0] == 0.0 and one['seeds'] == [SEEDS.start, SEEDS.stop]
    path = tmp_path / 'one.json'
    path.write_text(json.dumps(one))
    assert compare(load_result(path), two)['only_a'] == 0


def test_cli_writes_the_result_and_refuses_bad_input_in_one_line(checkpoint, tmp_path):
    out = tmp_path / 'r.json'
    run = subprocess.run([sys.executable, '-m', 'hapo_bringup.cli', 'evaluate-sim', '--policy', str(checkpoint),
                          '--seeds', '3000:3001', '--workers', '1', '--out', str(out), 'horizon:=5'],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    result = load_result(out)
    assert [e['steps'] for e in result['episodes']] == [5] and '0.0% success on 1 seeds' in run.stderr
    for args, why in [(['--seeds', '5:2'], 'need 0 <= A < B'), (['--seeds', 'x'], 'expected A:B'),
                      (['--seeds', '0:1', 'bogus:=1'], 'no node declares'),
                      (['--seeds', '0:1', '--policy', str(tmp_path / 'none')], 'no such checkpoint directory')]:
        bad = subprocess.run([sys.executable, '-m', 'hapo_bringup.cli', 'evaluate-sim', '--policy', str(checkpoint),
                              *args], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and why in bad.stderr.strip().splitlines()[-1], (args, bad.stderr)


def test_the_operator_takes_over_the_untrained_policy_the_same_way_every_run(checkpoint):
    overrides = ['horizon:=40', 'stall_steps:=6', 'reaction_steps:=1']
    one = evaluate_sim(checkpoint, range(3000, 3002), overrides, workers=1, operator=True)
    two = evaluate_sim(checkpoint, range(3000, 3002), overrides, workers=2, operator=True)
    assert one['operator'] and one['episodes'] == two['episodes'], 'same seeds, same takeovers and actions'
    for e in one['episodes']:
        assert e['takeovers'] >= 1 and 0 < e['human_steps'] < e['steps'], e
        assert len(e['reasons']) == e['takeovers'] and set(e['reasons']) <= {'stalled', 'grasp_far', 'drifting'}
        assert sum(e['human_steps_by_reason'].values()) == e['human_steps']  # the operator's log agrees with hapo/cmd
    steps = sum(e['steps'] for e in one['episodes'])
    assert one['intervention_ratio'] == round(sum(e['human_steps'] for e in one['episodes']) / steps, 4)
    assert sum(one['takeover_reasons'].values()) == sum(e['takeovers'] for e in one['episodes'])


def test_asking_for_help_the_operator_takes_over_when_the_policy_flag_rises_the_same_way_every_run(checkpoint):
    # the untrained model is unsure of everything (entropy near log 256 = 5.5 nats); predicates kept out of the way
    overrides = ['horizon:=30', 'stall_steps:=1000', 'drift_m:=10', 'grasp_far_m:=10', 'reaction_steps:=1',
                 'operator_node.ask_for_help:=true', 'policy_node.uncertain_threshold:=1.0']
    one = evaluate_sim(checkpoint, range(3000, 3002), overrides, workers=1, operator=True)
    two = evaluate_sim(checkpoint, range(3000, 3002), overrides, workers=2, operator=True)
    assert one['episodes'] == two['episodes'], 'same seeds, same takeovers and actions'
    for e in one['episodes']:
        assert e['reasons'][:1] == ['uncertain'] and set(e['reasons']) == {'uncertain'}, e
        assert 0 < e['human_steps'] < e['steps'], e
    calm = evaluate_sim(checkpoint, range(3000, 3001), [*overrides[:-1], 'policy_node.uncertain_threshold:=19'],
                        workers=1, operator=True)
    assert calm['episodes'][0]['takeovers'] == 0, 'the operator follows the threshold of the policy it watches'

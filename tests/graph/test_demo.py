# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""hapo demo end to end at toy sizes on the shipped base: demo.json holds every number and both policies, the
terminal gets the table and the one-line summary, a second run reuses what the first built."""

from __future__ import annotations

import json

from hapo_bringup.demo import main as demo_main
from hapo_bringup.graph import config_dir

# round seeds 20000:20003 hold one takeover
ARGS = ['--episodes', '3', '--eval-seeds', '100000:100001', '--steps', '20', '--workers', '1']


def test_demo_runs_the_loop_on_the_shipped_base_and_a_rerun_reuses_it(tmp_path, capsys):
    out = tmp_path / 'demo'
    assert demo_main(['--out', str(out), *ARGS]) == 0
    printed = capsys.readouterr()
    demo = json.loads((out / 'demo.json').read_text())
    assert demo['base_policy'] == str(config_dir() / 'policies' / 'lift_base') and not demo['from_scratch']
    assert demo['new_policy'] == str(out / 'round' / 'policy') and (out / 'round' / 'policy' / 'config.json').exists()
    assert demo['method'] == 'kto' and demo['scenario'] == 'lift_far' and demo['train_seed'] == 0
    assert demo['deploy']['seeds'] == [20000, 20003] and demo['deploy']['takeovers'] >= 1
    assert set(demo['evaluations']) == {'lift_far', 'lift'}
    for e in demo['evaluations'].values():
        assert e['seeds'] == [100000, 100001] and e['paired']['common_seeds'] == 1
    assert set(demo['timing_s']) == {'base', 'deploy', 'optimize', 'evaluate', 'total'}
    assert (out / 'demo.png').read_bytes()[:4] == b'\x89PNG'
    lines = printed.out.splitlines()
    assert any('McNemar p' in line for line in lines)
    assert lines[-2].startswith('hapo demo: kto after one round on lift_far (training seed 0): lift_far ')
    assert json.loads(lines[-1]) == {'base_policy': demo['base_policy'], 'new_policy': demo['new_policy']}
    assert demo_main(['--out', str(out), *ARGS]) == 0
    assert 'reusing' in capsys.readouterr().err
    assert demo_main(['--out', str(out), *ARGS, '--lr', '1e-3']) == 2  # not silently the policy of other settings
    assert 'optimized with other arguments' in capsys.readouterr().err
    assert demo_main(['--out', str(out), *ARGS, '--train-seed', '1']) == 2  # nor of another training seed
    assert 'optimized with other arguments' in capsys.readouterr().err
    again = json.loads((out / 'demo.json').read_text())
    assert again['evaluations'] == demo['evaluations'] and again['timing_s']['total'] < demo['timing_s']['total']

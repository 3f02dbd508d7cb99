# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""hapo experiment at toy sizes through the real graphs, training and evaluation: every unit's outcome is stored,
results.json holds the tables and the lifelong chain, a rerun runs nothing, a unit whose outcome and whose
dependency's checkpoint are gone runs again with the same per-seed outcomes, the README section is generated."""

from __future__ import annotations

import json
import shutil

import yaml

from hapo_bringup.experiment import main as experiment
from hapo_bringup.experiment_plan import load, plan
from hapo_bringup.graph import config_dir
from hapo_policy.checkpoint import policy_id, weights_files

PROTOCOL = {
    # retention is measured on the disruption itself here: one evaluation per checkpoint keeps the test short
    'tasks': {'lift': {'base': 'policies/lift_base', 'original': 'lift_far', 'disruptions': ['lift_far'], 'demos': 0}},
    'round': {'episodes': 2, 'overrides': ['horizon:=25', 'stall_steps:=5']},
    'train': {'lr': 5.0e-4, 'steps': 3},
    'arms': {'kto': {'method': 'kto'}},
    'training_seeds': [0],
    'evaluation': {'seeds': '100000:100001', 'overrides': ['horizon:=25']},
    'lifelong': {'task': 'lift', 'scenario': 'lift_far', 'rounds': 2, 'arms': ['kto'], 'seeds': [0]},
    'winner': {'alpha': 0.05, 'simplicity': ['kto']},
}


def test_the_protocol_runs_caches_every_unit_resumes_and_reports(tmp_path, capsys):
    cfg_path, out = tmp_path / 'experiment.yaml', tmp_path / 'exp'
    cfg_path.write_text(yaml.safe_dump(PROTOCOL))
    argv = ['--config', str(cfg_path), '--out', str(out), '--graphs', '1']
    assert experiment([*argv, '--workers', '2']) == 0
    p = plan(load(cfg_path), lambda name: policy_id(weights_files(config_dir() / name)))
    assert len(p.units) == 8  # base, 2 rounds, 2 trainings, an evaluation of each of the 3 (round 1 is shared)
    stored = {u.key: json.loads((out / 'units' / u.stage / f'{u.key}.json').read_text()) for u in p.units}
    body = json.loads((out / 'results.json').read_text())
    assert body['complete'] and body['winner']['arm'] == 'kto' and set(body['units']) == set(stored)
    assert body['versions']['torch'] and body['evaluation_seeds'] == '100000:100001'
    kto = body['tables']['lift/lift_far']['arms']['kto']
    for where in ('adaptation', 'retention'):
        assert kto[where]['n'] == 1 and kto[where]['per_seed'][0]['seeds'] == 1
    assert kto['adaptation']['per_seed'][0]['diagnostics']['loss'] is not None  # from metrics.jsonl
    life = body['lifelong']['kto/seed0']
    assert [r['round'] for r in life] == [1, 2] and all(r['intervention_ratio'] is not None for r in life)
    chain = p.chains[('kto', 0)]
    assert stored[chain[1]['round'].key]['outcome']['policy_id'] == stored[chain[0]['policy'].key]['outcome'][
        'policy_id']  # round 2 deployed round 1's policy
    assert all(b['cpu_s'] > 0 for b in stored.values() if b['stage'] == 'eval')
    assert (out / 'results.png').read_bytes()[:4] == b'\x89PNG'
    assert '| lift/lift_far |' in capsys.readouterr().out

    assert experiment(argv) == 0
    assert '0 units run, 8 in the protocol' in capsys.readouterr().err

    last = chain[1]
    (out / 'units' / 'eval' / f'{last["eval"].key}.json').unlink()
    shutil.rmtree(out / 'work' / 'train' / last['policy'].key)  # another machine: the checkpoint is not there
    assert experiment(argv) == 0
    err = capsys.readouterr().err
    assert '1 units run' in err and 'differs' not in err
    again = json.loads((out / 'units' / 'eval' / f'{last["eval"].key}.json').read_text())
    assert again['outcome']['episodes'] == stored[last['eval'].key]['outcome']['episodes']  # actions digests too
    assert (out / 'work' / 'train' / last['policy'].key / 'policy' / 'config.json').exists()

    readme = tmp_path / 'README.md'
    readme.write_text('# intro\n<!-- experiment:begin -->\nold\n<!-- experiment:end -->\ntail\n')
    assert experiment(['report', '--out', str(out), '--readme', str(readme)]) == 0
    assert 'README.md updated from' in capsys.readouterr().err
    text = readme.read_text()
    assert text.startswith('# intro\n') and text.endswith('<!-- experiment:end -->\ntail\n') and 'old' not in text
    assert 'Winner by the protocol\'s rule: **kto**' in text and '| kto/seed0 |' in text

    more = tmp_path / 'more.yaml'  # a new arm whose round bags are gone: it fails, its evaluations are skipped
    more.write_text(yaml.safe_dump({**PROTOCOL, 'arms': {**PROTOCOL['arms'], 'sirius': {'method': 'sirius'}}}))
    shutil.rmtree(out / 'work' / 'round' / chain[0]['round'].key / 'bags')
    assert experiment(['--config', str(more), '--out', str(out)]) == 1
    err = capsys.readouterr().err
    assert '0 units run, 10 in the protocol, 2 failed or blocked:' in err
    assert 'train[lift lift_far sirius 0]' in err and 'optimize failed' in err
    assert err.count('not run, train[lift lift_far sirius 0] failed') == 1
    body = json.loads((out / 'results.json').read_text())
    assert not body['complete'] and body['winner'] is None and len(body['missing']) == 2

    broken = tmp_path / 'broken.yaml'
    broken.write_text(yaml.safe_dump({**PROTOCOL, 'arms': {'kto': {}}}))
    assert experiment(['--config', str(broken), '--out', str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'hapo experiment: {broken}: arms.kto: needs method:') and '\n' not in err

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""hapo train-base: real simulator demos -> BC from a fresh model -> closed-loop selection through the graph."""

from __future__ import annotations

import json

import pytest
from episode_bags import write_sim_demos

from hapo_bringup.train_base import main
from hapo_policy.checkpoint import policy_id, weights_files
from hapo_policy.model import VlaPolicy


@pytest.fixture(scope='module')
def demos(tmp_path_factory):
    root = tmp_path_factory.mktemp('demos')
    paths = write_sim_demos(root, seeds=[0, 1, 2])
    return root, paths


def test_train_base_keeps_the_best_selected_epoch_and_writes_its_manifest(demos, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('HAPO_CACHE', str(tmp_path / 'cache'))
    root, _ = demos
    out = tmp_path / 'base'
    args = ['--bags', str(root), '--out', str(out), '--epochs', '2', '--eval-every', '1', '--select-seeds',
            '10000:10002', '--workers', '1', '--no-progress', 'horizon:=8']
    assert main(args) == 0, capsys.readouterr().err
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['demos'] == 3 and manifest['demo_seeds'] == [0, 1, 2]
    assert [r['epoch'] for r in manifest['selection']] == [1, 2]
    assert manifest['select_seeds'] == [10000, 10002] and manifest['train_s'] > 0
    best = max(manifest['selection'], key=lambda r: (r['success_rate'], r['epoch']))
    assert manifest['chosen_epoch'] == best['epoch']
    assert manifest['policy_id'] == policy_id(weights_files(out / 'policy')) == best['policy_id']
    policy = VlaPolicy.from_pretrained(out / 'policy')
    assert policy.camera_names == ['agentview', 'robot0_eye_in_hand'] and policy.config.image_size == 64
    first, second = (r['policy_id'] for r in manifest['selection'])
    assert first != second, 'the second epoch trained the weights further'

    assert main(args) == 2
    assert 'already holds a run' in capsys.readouterr().err


@pytest.mark.parametrize('extra, why', [
    (['--select-seeds', '0:2'], 'not all selection seeds'),
    (['--epochs', '0'], '--epochs and --eval-every must be >= 1'),
])
def test_bad_arguments_fail_in_one_line(demos, tmp_path, capsys, extra, why):
    root, _ = demos
    assert main(['--bags', str(root), '--out', str(tmp_path / 'o'), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert why in err and len(err.splitlines()) == 1


def test_no_demos_is_refused(tmp_path, capsys):
    (tmp_path / 'empty').mkdir()
    assert main(['--bags', str(tmp_path / 'empty'), '--out', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err
    assert 'hapo train-base:' in err and str(tmp_path / 'empty') in err

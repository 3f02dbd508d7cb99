# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""hapo round at toy sizes through the real graph: the operator's takeovers land in the bags as a person's (read back
with rosbags too), same seeds give the same bags, optimize and the before/after evaluation run, a rerun reuses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from hapo_bringup.deploy_round import deploy, for_evaluation
from hapo_bringup.deploy_round import main as round_main
from hapo_interfaces.enums import ControlSource, Label
from hapo_policy.init_checkpoint import main as init_checkpoint
from hapo_recorder.bag_reader import list_episodes, read_episode

GRAPH = ['horizon:=25', 'stall_steps:=6', 'reaction_steps:=1']
# K 3: some of the ~7 policy steps before the takeover stay desirable
ARGS = ['--scenario', 'lift', '--episodes', '2', '--method', 'kto', '--eval-seeds', '100000:100002', '--steps', '3',
        '--K', '3', '--train-seed', '2', '--workers', '1', *GRAPH]


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('round') / 'policy'
    init_checkpoint(['--out', str(path), '--camera', 'agentview', '--camera', 'robot0_eye_in_hand',
                     '--image-size', '64', '--seed', '5'])
    return path


def episodes(out):
    return {int(ep.metadata['seed']): ep for ep in map(read_episode, list_episodes([out / 'bags']))}


def driving(ep):
    """(sources, actions, labels) of the executed steps of an episode bag, holds left out."""
    keep = (ep.sources == ControlSource.POLICY) | (ep.sources == ControlSource.HUMAN)
    return ep.sources[keep], ep.actions[keep], ep.labels[keep]


def test_a_round_records_the_takeovers_trains_and_evaluates_and_a_rerun_reuses(checkpoint, tmp_path, capsys):
    out = tmp_path / 'r'
    assert round_main(['--policy', str(checkpoint), '--out', str(out), *ARGS]) == 0
    body = json.loads((out / 'round.json').read_text())
    deployed = json.loads((out / 'deploy.json').read_text())
    assert body['deploy']['seeds'] == [20000, 20002] and body['deploy']['takeovers'] >= 2
    bags = episodes(out)
    assert sorted(bags) == [20000, 20001]
    for e in deployed['episodes']:
        ep = bags[e['seed']]
        human = ep.sources == ControlSource.HUMAN
        assert human.sum() == e['human_steps'] > 0 and ep.metadata['input_device'] == 'operator_node'
        assert not ep.demo and (human | (ep.sources == ControlSource.POLICY)).sum() == e['steps']  # and holds
        first = int(np.argmax(human))
        assert (ep.labels[first:][human[first:]] == Label.CORRECTION).all()
        assert (ep.labels[max(0, first - ep.k):first][ep.sources[max(0, first - ep.k):first] == ControlSource.POLICY]
                == Label.UNDESIRABLE).all()  # the recorder's k policy steps before a takeover
        with Reader(ep.path) as reader:
            assert reader.topics['/hapo/cmd'].msgcount == len(ep.sources)
    assert set(body['evaluations']) == {'lift'} and body['evaluations']['lift']['before']['episodes'] == 2
    assert (out / 'policy' / 'model.safetensors').exists() and body['new_policy_id'] != body['policy_id']
    assert 'seed: 2' in (out / 'train' / 'config.yaml').read_text().split('run:')[1]  # --train-seed reached optimize
    assert (out / 'round.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    table = capsys.readouterr().out
    assert 'lift' in table and 'McNemar p' in table

    # same seeds, same bags: a second deployment elsewhere executes and records exactly the same
    again = deploy(checkpoint, 'lift', range(20000, 20002), tmp_path / 'again', GRAPH, workers=2)
    assert [e['actions_digest'] for e in again['episodes']] == [e['actions_digest'] for e in deployed['episodes']]
    for seed, ep in episodes(tmp_path / 'again').items():
        a, b = driving(ep), driving(bags[seed])  # the holds in between (none executed) come with the timing
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])

    mtime = (out / 'policy' / 'model.safetensors').stat().st_mtime
    assert round_main(['--policy', str(checkpoint), '--out', str(out), *ARGS]) == 0  # everything reused
    assert 'reusing' in capsys.readouterr().err
    assert (out / 'policy' / 'model.safetensors').stat().st_mtime == mtime
    assert json.loads((out / 'round.json').read_text())['evaluations'] == body['evaluations']


def test_the_operator_thresholds_stay_out_of_the_evaluation_graphs():
    assert for_evaluation(GRAPH) == ['horizon:=25']
    assert for_evaluation(['operator_node.drift_m:=0.2', 'noise_std:=0.1', 'seed:=3', 'recorder_node.k:=2',
                           'mux_node.deadzone:=0.2']) == ['seed:=3', 'mux_node.deadzone:=0.2']


@pytest.mark.parametrize(('args', 'why'), [
    (['--seeds', '100000:100002'], '--seeds: seeds 100000:100002 are not all rounds seeds'),
    (['--eval-seeds', '20000:20002'], '--eval-seeds: seeds 20000:20002 are not all evaluation seeds'),
])
def test_seeds_of_the_wrong_use_are_refused_in_one_line(checkpoint, tmp_path, capsys, args, why):
    assert round_main(['--policy', str(checkpoint), '--out', str(tmp_path), '--scenario', 'lift', *args]) == 2
    assert why in capsys.readouterr().err


def test_loop_chains_rounds_each_deploying_the_previous_policy(checkpoint, tmp_path, capsys):
    from hapo_bringup.loop import main as loop_main

    out = tmp_path / 'loop'
    args = ['--rounds', '2', '--policy', str(checkpoint), '--out', str(out), '--scenario', 'lift', '--episodes', '1',
            '--eval-seeds', '100000:100001', '--steps', '2', '--K', '3', '--workers', '1', *GRAPH]
    assert loop_main(args) == 0
    body = json.loads((out / 'loop.json').read_text())
    first, second = body['rounds']
    assert first['deploy']['seeds'] == [20000, 20001] and second['deploy']['seeds'] == [20001, 20002]
    assert first['policy'] == str(checkpoint) and second['policy'] == first['new_policy']
    assert second['evaluations']['lift']['before'] == first['evaluations']['lift']['after']  # evaluated once
    assert len(list((out / 'eval').glob('*.json'))) == 3 and (out / 'loop.png').stat().st_size > 0
    assert len(json.loads(capsys.readouterr().out.splitlines()[-1])) == 2

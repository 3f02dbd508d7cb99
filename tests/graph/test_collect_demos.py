# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""hapo collect-demos through the real graph (sim, mux, expert at the joystick, recorder): demo bags read back
with hapo_recorder and with rosbags/mcap, compared with the same expert run in this process; resume; bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from mcap.reader import make_reader
from rosbags.rosbag2 import Reader

from hapo_bringup.collect_demos import collect_demos, graph_params, main
from hapo_bringup.graph import config_dir
from hapo_interfaces.enums import ControlSource, Label
from hapo_interfaces.params import from_mapping
from hapo_policy.init_checkpoint import main as init_checkpoint
from hapo_policy.model import VlaPolicy
from hapo_recorder.bag_reader import list_episodes, read_episode
from hapo_recorder.bag_writer import typestore
from hapo_recorder.relabel import relabel
from hapo_sim.env import SimEnv
from hapo_sim.joy_expert import ExpertParams, JoyExpert, run_episode
from hapo_trainer.config import DataConfig
from hapo_trainer.dataset import BuildSpec, build_dataset

pytestmark = pytest.mark.graph
SEEDS = range(4000, 4002)
CLI = [sys.executable, '-m', 'hapo_bringup.cli', 'collect-demos']


@pytest.fixture(scope='module')
def demos(tmp_path_factory):
    out = tmp_path_factory.mktemp('collect') / 'demos'
    return out, collect_demos(SEEDS, out, workers=2, log=lambda m: None)


def floor(seeds: range) -> dict[int, tuple[bool, np.ndarray]]:
    """The same expert, same joystick mapping, in this process (no ROS): seed -> (success, executed actions)."""
    params = from_mapping(ExpertParams, graph_params([], config_dir() / 'deploy.yaml')['expert_node'])
    env, expert = SimEnv('lift', cameras=(), seed=0), JoyExpert(params)
    try:
        return {s: (ok, np.asarray(a, dtype=np.float32)) for s in seeds for ok, a in [run_episode(env, expert, s, 200)]}
    finally:
        env.close()


def test_demos_through_the_graph_are_the_experts_and_labelled_desirable(demos, tmp_path):
    out, result = demos
    assert [e['seed'] for e in result['episodes']] == list(SEEDS) and result['workers'] == 2
    assert result['recorded'] == 2 and result['skipped'] == 0
    bags = list_episodes([out])
    assert len(bags) == 2, 'one bag per seed, both workers in one directory'
    expected = floor(SEEDS)
    for path in bags:
        ep = read_episode(path)
        seed = int(ep.metadata['seed'])
        ok, actions = expected[seed]
        assert ep.demo and ep.metadata['input_device'] == 'expert_node' and not ep.truncated
        assert ep.outcome == ('success' if ok else 'failure') and ep.metadata['steps'] == len(actions)
        assert (ep.sources == ControlSource.HUMAN).all(), 'every executed step comes from the joystick'
        np.testing.assert_allclose(ep.actions, actions, rtol=0, atol=1e-6)  # the expert's, up to float32
        assert (ep.labels == Label.POLICY).all() and (relabel(ep.sources, ep.k, demo=True) == Label.POLICY).all()
        for cam in ('agentview', 'robot0_eye_in_hand'):  # every step paired with the observation it answered
            assert set(ep.step_stamps_ns.tolist()) <= set(ep.images[cam])
            assert next(iter(ep.images[cam].values())).shape == (64, 64, 3)
        with Reader(path) as reader:  # the independent readers agree
            assert reader.topics['/hapo/cmd'].msgcount == len(actions)
            custom = reader.storage.metadata.custom
            assert (custom['demo'], custom['outcome'], custom['seed']) == ('true', ep.outcome, str(seed))
        with (path / f'{path.name}.mcap').open('rb') as f:
            frames = [typestore().deserialize_cdr(m.data, 'sensor_msgs/msg/JointState').header.frame_id
                      for _s, _c, m in make_reader(f).iter_messages(topics=['/hapo/cmd'])]
        assert frames == ['human'] * len(actions)
    info = subprocess.run([sys.executable, '-m', 'hapo_recorder.info', str(out)], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    assert len(info) == 2 and all(' demo steps=' in line and 'c2=0 c0=0 none=0' in line for line in info)
    ckpt = tmp_path / 'policy'
    init_checkpoint(['--out', str(ckpt), '--camera', 'agentview', '--camera', 'robot0_eye_in_hand'])
    ds = build_dataset([out], BuildSpec.for_policy(DataConfig(), VlaPolicy.from_pretrained(ckpt)), method='bc',
                       cache_dir=tmp_path / 'cache', log=lambda m: None, progress=False)
    assert len(ds) > 0 and set(ds.labels.tolist()) == {int(Label.POLICY)}
    assert ds.class_counts() == {'policy': len(ds), 'correction': 0, 'undesirable': 0}


def test_cli_resumes_where_the_directory_stops(demos):
    out, _ = demos
    run = subprocess.run([*CLI, '--seeds', f'{SEEDS.start}:{SEEDS.stop + 1}', '--out', str(out)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert (result['recorded'], result['skipped'], result['workers']) == (1, 2, 1)
    assert [e['seed'] for e in result['episodes']] == [*SEEDS, SEEDS.stop]
    assert f'seeds {SEEDS.start}:{SEEDS.stop + 1}' in run.stderr and '2 seeds already recorded' in run.stderr
    assert len(list_episodes([out])) == 3


@pytest.mark.parametrize(('args', 'why'), [
    (['--seeds', '5:2'], 'need 0 <= A < B'), ([], 'give --episodes N'),
    (['--episodes', '3', '--seeds', '0:2'], 'holds 2 seeds'), (['--episodes', '1', 'bogus:=1'], 'no node declares'),
    (['--episodes', '1', 'task:=stack'], 'no scripted expert'), (['--episodes', '1', 'axis_map:=[1,0]'], 'axis_map'),
    (['--episodes', '1', '--workers', '0'], 'need at least 1')])
def test_bad_input_is_one_line_and_exit_2(args, why, tmp_path, capsys):
    assert main(['--out', str(tmp_path / 'demos'), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('hapo collect-demos: ') and why in err[0], err
    assert not (tmp_path / 'demos').exists()

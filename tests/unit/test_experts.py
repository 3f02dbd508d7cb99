# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The scripted PickPlaceCan expert and ``python -m hapo_sim.expert_check``, on the real simulator (no cameras).

The Lift expert's own tests are in test_sim_env.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hapo_sim.env import SimEnv
from hapo_sim.expert_check import check_expert, main
from hapo_sim.experts import PickPlaceCanExpert, expert_for


@pytest.fixture(scope='module')
def can_env():
    e = SimEnv('pick_place_can', cameras=(), seed=0)
    yield e
    e.close()


def test_pick_place_can_expert_places_the_can(can_env):
    expert = expert_for('PickPlaceCan', noise_std=0.05)
    assert isinstance(expert, PickPlaceCanExpert)
    for seed in (0, 1, 2):
        obs = can_env.reset(seed)
        expert.reset(seed)
        phases, success = [expert.phase], False
        while not success and can_env.steps < expert.HORIZON:
            obs, success = can_env.step(expert.act(obs))
            if expert.phase != phases[-1]:
                phases.append(expert.phase)
        assert success, (seed, phases, obs.object_state['Can_pos'])
        assert phases == [p.name for p in expert.PHASES]  # every phase once, in order: no retries needed
        can = obs.object_state['Can_pos']
        assert 0.1 < can[0] < 0.295 and 0.28 < can[1] < 0.525  # in the Can's quarter of the goal bin


def test_pick_place_can_expert_is_reproducible(can_env):
    def actions(seed):
        obs = can_env.reset(seed)
        expert = expert_for('pick_place_can', seed=seed)
        out = []
        for _ in range(30):
            out.append(expert.act(obs))
            obs, _ = can_env.step(out[-1])
        return np.array(out)

    np.testing.assert_array_equal(actions(4), actions(4))
    assert not np.array_equal(actions(4), actions(5))


def test_expert_check_json(tmp_path, capsys):
    out = tmp_path / 'sub' / 'r.json'
    assert main(['--task', 'pick_place_can', '--seeds', '3:5', '--out', str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed['task'] == 'pick_place_can' and printed['seeds'] == [3, 5]
    assert printed['horizon'] == PickPlaceCanExpert.HORIZON and printed['noise_std'] == 0.05
    assert printed['successes'] == 2 and printed['success_rate'] == 1.0 and printed['failures'] == []
    assert 50 < printed['min_steps'] <= printed['mean_steps'] <= printed['max_steps'] < printed['horizon']


def test_expert_check_counts_failures():
    result = check_expert('lift', range(0, 2), horizon=5)  # far too short to lift the cube
    assert result['successes'] == 0 and result['success_rate'] == 0.0 and result['failures'] == [0, 1]
    assert result['mean_steps'] is None and result['max_steps'] is None


@pytest.mark.parametrize(('args', 'message'), [
    (['--task', 'lift', '--seeds', '5:2'], "seeds '5:2': need 0 <= A < B"),
    (['--task', 'lift', '--seeds', '0-50'], "seeds '0-50': expected A:B"),
    (['--task', 'lift', '--seeds', '0:2', '--horizon', '0'], '--horizon 0: need >= 1'),
    (['--task', 'lift', '--seeds', '0:2', '--noise-std', '-0.1'], '--noise-std -0.1: need >= 0'),
    (['--task', 'stack', '--seeds', '0:2'], "no scripted expert for task 'stack'"),
    (['--task', 'juggle', '--seeds', '0:2'], "unknown task 'juggle'"),
])
def test_expert_check_refuses_bad_arguments(capsys, args, message):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ''
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('expert_check: ') and message in lines[0], lines

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""SimEnv (robosuite + our renderer) and the scripted Lift expert, on the real simulator."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hapo_sim.env import SimEnv, SimError, field_names, flatten_state, task_key
from hapo_sim.experts import expert_for

CAMS = ('agentview', 'robot0_eye_in_hand')


@pytest.fixture(scope='module')
def env():
    e = SimEnv('lift', cameras=CAMS, image_size=64, seed=0)
    yield e
    e.close()


@pytest.fixture(scope='module')
def blind_env():
    e = SimEnv('Lift', cameras=(), seed=0)
    yield e
    e.close()


def test_observation_layout(env):
    obs = env.reset(seed=0)
    assert set(obs.images) == set(CAMS)
    for img in obs.images.values():
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert img.std() > 5  # not a blank frame
    assert len(obs.joint_names) == 9 and obs.joint_positions.shape == (9,)
    assert obs.joint_names[-2:] == ['gripper0_right_finger_joint1', 'gripper0_right_finger_joint2']
    assert obs.eef_pos.shape == (3,)
    assert {'cube_pos', 'cube_quat', 'gripper_to_cube_pos', 'eef_pos'} <= set(obs.object_state)
    assert obs.step == 0


def test_reset_is_deterministic_per_seed(env):
    a, b, c = env.reset(seed=3), env.reset(seed=3), env.reset(seed=4)
    np.testing.assert_array_equal(a.object_state['cube_pos'], b.object_state['cube_pos'])
    np.testing.assert_array_equal(a.joint_positions, b.joint_positions)
    for cam in CAMS:
        np.testing.assert_array_equal(a.images[cam], b.images[cam])
    assert not np.allclose(a.object_state['cube_pos'], c.object_state['cube_pos'])
    assert not np.array_equal(a.images['agentview'], c.images['agentview'])


def test_same_seed_and_actions_give_same_trajectory(env):
    actions = np.random.default_rng(0).uniform(-1, 1, (8, 7))

    def rollout(seed):
        env.reset(seed)
        return [env.step(a)[0] for a in actions][-1]

    first, again = rollout(5), rollout(5)
    env.reset(6)  # another episode in between must not leak state
    third = rollout(5)
    for o in (again, third):
        np.testing.assert_array_equal(first.joint_positions, o.joint_positions)
        np.testing.assert_array_equal(first.images['agentview'], o.images['agentview'])


def test_images_are_upright(env):
    # Row 0 is the top of the picture. Wrist camera: the dark fingers are at the bottom, the white table
    # above them. Agent view: the white table fills the bottom, the robot and the room the top.
    obs = env.reset(seed=0)
    front, wrist = (obs.images[c].astype(float).mean(axis=(1, 2)) for c in CAMS)
    assert wrist[-8:].mean() < wrist[:8].mean() - 40
    assert front[-8:].mean() > front[:8].mean() + 20


@pytest.mark.parametrize(('axis', 'sign'), [(0, 1.0), (2, 1.0), (2, -1.0), (1, -1.0)])
def test_step_moves_eef_in_commanded_direction(blind_env, axis, sign):
    start = blind_env.reset(seed=1).eef_pos
    action = np.zeros(7)
    action[axis] = sign
    for _ in range(5):
        obs, success = blind_env.step(action)
    delta = obs.eef_pos - start
    assert sign * delta[axis] > 0.03  # 5 steps of at most 5 cm each (OSC tracks with a lag)
    assert np.abs(np.delete(delta, axis)).max() < 0.3 * abs(delta[axis])
    assert obs.step == 5 and success is False


@pytest.mark.parametrize('bad', [[0.0] * 6, [0.0] * 8, [np.nan] + [0.0] * 6, [0.0] * 6 + [np.inf]])
def test_bad_actions_raise(blind_env, bad):
    blind_env.reset(seed=0)
    with pytest.raises(SimError, match='action has'):
        blind_env.step(bad)


def test_actions_are_clipped(blind_env):
    blind_env.reset(seed=2)
    big = blind_env.step([5.0, 0, 0, 0, 0, 0, 0])[0]
    blind_env.reset(seed=2)
    one = blind_env.step([1.0, 0, 0, 0, 0, 0, 0])[0]
    np.testing.assert_array_equal(big.joint_positions, one.joint_positions)


def test_warm_reset_is_fast(blind_env):
    blind_env.reset(seed=0)
    t0 = time.perf_counter()
    for s in range(5):
        blind_env.reset(seed=s)
    assert (time.perf_counter() - t0) / 5 < 0.5  # hard_reset=False: ~0.03 s on a free core (DESIGN)


def test_lift_expert_succeeds(blind_env):
    expert = expert_for('lift', noise_std=0.05)
    results = []
    for seed in range(5):
        obs = blind_env.reset(seed)
        expert.reset(seed)
        success = False
        while not success and blind_env.steps < 200:
            obs, success = blind_env.step(expert.act(obs))
        results.append((success, blind_env.steps))
    assert sum(s for s, _ in results) >= 4, results


def test_expert_noise_is_seeded(blind_env):
    obs = blind_env.reset(0)
    a, b = expert_for('lift', seed=1), expert_for('lift', seed=1)
    np.testing.assert_array_equal(a.act(obs), b.act(obs))


def test_names():
    assert task_key('lift') == task_key('Lift') == 'lift'
    assert task_key('PickPlaceCan') == 'pick_place_can'
    with pytest.raises(SimError, match='unknown task'):
        task_key('juggle')
    with pytest.raises(SimError, match='no scripted expert'):
        expert_for('stack')
    assert field_names('cube_pos', 3) == ['cube_pos.x', 'cube_pos.y', 'cube_pos.z']
    assert field_names('cube_quat', 4)[-1] == 'cube_quat.qw'
    assert flatten_state({'a_pos': np.zeros(3), 'b': np.ones(2)}) == (
        ['a_pos.x', 'a_pos.y', 'a_pos.z', 'b.0', 'b.1'], [0.0, 0.0, 0.0, 1.0, 1.0])


def test_unknown_camera_raises():
    with pytest.raises(SimError, match='unknown camera'):
        SimEnv('lift', cameras=('nope',))


@pytest.mark.parametrize('task', ['pick_place_can', 'nut_assembly_square'])
def test_composite_placement_is_seeded(task):
    # Their placement initializer holds one sampler per object: every one must be reseeded.
    e = SimEnv(task, cameras=(), seed=0)
    try:
        a, b, c = e.reset(1).object_state, e.reset(1).object_state, e.reset(2).object_state
    finally:
        e.close()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.allclose(a[k], c[k]) for k in a)

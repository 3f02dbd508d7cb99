# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Scenario variations on the real simulator: placement ranges, colour, size, table, distractor, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hapo_bringup.graph import config_dir
from hapo_sim.env import SimEnv, SimError
from hapo_sim.experts import expert_for
from hapo_sim.scenario import LAYOUTS, Variation, load_scenario, parse_scenario
from hapo_sim.variation import DISTRACTOR_PLACE_M, SURFACE_BODIES, task_object

CAMS = ('agentview', 'robot0_eye_in_hand')
SCENARIOS = sorted((config_dir() / 'scenarios').glob('*.yaml'))
BLUE, TAN = [0.1, 0.3, 0.9, 1.0], [0.8, 0.55, 0.3, 1.0]
VARIED = {  # every variation at once, one env per task
    'lift': {'task': 'lift', 'placement': {'x': [0.05, 0.1], 'y': [-0.1, -0.04], 'yaw': [0.2, 0.8]},
             'object': {'rgba': BLUE, 'size_scale': 1.25}, 'table': {'rgba': TAN}, 'distractor': True},
    'pick_place_can': {'task': 'pick_place_can', 'placement': {'x': [-0.08, -0.04], 'y': [0.05, 0.15],
                                                                 'yaw': [-0.5, 0.5]},
                       'object': {'rgba': BLUE, 'size_scale': 1.25}, 'table': {'rgba': TAN}, 'distractor': True},
}
HOLD = [0.0] * 6 + [-1.0]


def varied(task: str):
    return parse_scenario(VARIED[task], f'varied-{task}')


@pytest.fixture(scope='module', params=['lift', 'pick_place_can'])
def pair(request):
    """(plain env, varied env) of one task, both made with seed 0 (so the same sampled object sizes)."""
    task = request.param
    plain, var = SimEnv(task, CAMS, 64), SimEnv.for_scenario(varied(task), cameras=CAMS, image_size=64)
    yield task, plain, var
    plain.close()
    var.close()


def model(env: SimEnv):
    return env._env.sim.model


def body_geoms(env: SimEnv, body: str) -> list[int]:
    m = model(env)
    bid = m.body_name2id(body)
    return [g for g in range(m.ngeom) if m.geom_bodyid[g] == bid]


def yaw_of(quat_xyzw) -> float:
    x, y, z, w = quat_xyzw
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def count(img: np.ndarray, channel: int, margin: int = 50, floor: int = 100) -> int:
    """Pixels where ``channel`` is above ``floor`` and exceeds both other channels by ``margin``."""
    px = img.astype(int)
    others = [px[..., c] for c in range(3) if c != channel]
    return int(((px[..., channel] > floor) & (px[..., channel] > others[0] + margin)
                & (px[..., channel] > others[1] + margin)).sum())


def test_task_layouts_match_robosuite(pair):
    task, plain, _ = pair
    layout, env = LAYOUTS[task], plain._env
    sampler = env.placement_initializer
    sampler = next(s for s in getattr(sampler, 'samplers', {'': sampler}).values()
                   if task_object(env, task) in s.mujoco_objects)
    np.testing.assert_allclose(sampler.reference_pos[:2], layout.centre)
    if task == 'lift':
        np.testing.assert_allclose(np.array(env.table_full_size[:2]) / 2, layout.half_size)
        assert env.cube.horizontal_radius <= layout.object_radius <= np.linalg.norm([0.022, 0.022]) + 1e-3
    else:  # robosuite samples the can within bin half-size - 0.05, less its radius
        np.testing.assert_allclose([sampler.x_range[1], sampler.y_range[1]], layout.half_size)
        assert sampler.ensure_object_boundary_in_range
        assert task_object(env, task).horizontal_radius == pytest.approx(layout.object_radius)
    assert layout.object_key in plain.reset(0).object_state


def test_plain_scenario_is_todays_env(pair):
    task, plain, _ = pair
    file = SimEnv.for_scenario(load_scenario(config_dir() / 'scenarios' / f'{task}.yaml'))
    try:
        assert type(file._env) is type(plain._env) and type(file._env).__name__ == plain._env.__class__.__name__
        assert file.variation is None and (file.cameras, file.image_size) == (CAMS, 64)
        for seed in (3, 4):
            a, b = plain.reset(seed), file.reset(seed)
            for key in a.object_state:
                np.testing.assert_array_equal(a.object_state[key], b.object_state[key])
            for cam in CAMS:
                np.testing.assert_array_equal(a.images[cam], b.images[cam])
    finally:
        file.close()


def test_variation_is_deterministic_per_seed(pair):
    task, _, var = pair
    a = var.reset(5)
    var.step([0.3, 0, 0, 0, 0, 0, -1])
    var.reset(6)
    b = var.reset(5)
    other = SimEnv.for_scenario(varied(task), cameras=CAMS, image_size=64)  # as another process would make it
    try:
        c = other.reset(5)
    finally:
        other.close()
    for o in (b, c):
        assert set(o.object_state) == set(a.object_state)
        for key in a.object_state:
            np.testing.assert_array_equal(a.object_state[key], o.object_state[key])
        for cam in CAMS:
            np.testing.assert_array_equal(a.images[cam], o.images[cam])
    key = LAYOUTS[task].object_key
    assert not np.allclose(var.reset(6).object_state[key], a.object_state[key])


def test_object_lands_in_the_declared_range(pair):
    task, _, var = pair
    layout, place = LAYOUTS[task], var.variation.placement
    rel, yaws = [], []
    for seed in range(10):
        state = var.reset(seed).object_state
        pos = state[layout.object_key]
        rel.append(pos[:2] - layout.centre)
        yaws.append(yaw_of(state[layout.object_key.replace('_pos', '_quat')]))
    rel = np.array(rel)
    for axis, (lo, hi) in enumerate((place.x, place.y)):
        assert np.all((rel[:, axis] >= lo - 1e-9) & (rel[:, axis] <= hi + 1e-9)), rel
        assert np.ptp(rel[:, axis]) > 0.3 * (hi - lo), 'the range is not sampled'
    assert all(place.yaw[0] - 1e-6 <= y <= place.yaw[1] + 1e-6 for y in yaws), yaws
    z0 = pos[2]
    for _ in range(10):
        obs, _ = var.step(HOLD)
    assert abs(obs.object_state[layout.object_key][2] - z0) < 0.02, 'the object did not come to rest where placed'


def test_object_colour_and_size_are_applied(pair):
    task, plain, var = pair
    obj = task_object(var._env, task)
    ids = body_geoms(var, obj.root_body)
    plain_ids = body_geoms(plain, task_object(plain._env, task).root_body)
    m, pm = model(var), model(plain)
    assert len(ids) == len(plain_ids) >= 2  # collision and visual geoms
    for g, pg in zip(ids, plain_ids, strict=True):
        np.testing.assert_allclose(m.geom_rgba[g], BLUE)
        assert m.geom_matid[g] == -1
        np.testing.assert_allclose(m.geom_size[g], 1.25 * pm.geom_size[pg], rtol=1e-3)  # also a mesh's extent
    body, pbody = m.body_name2id(obj.root_body), pm.body_name2id(task_object(plain._env, task).root_body)
    assert m.body_mass[body] == pytest.approx(1.25 ** 3 * pm.body_mass[pbody], rel=0.02)
    if task == 'lift':  # the wrist camera looks at the cube from above (the dark blue fingers are at the bottom)
        img, before = (e.reset(0).images['robot0_eye_in_hand'][:48] for e in (var, plain))
        assert count(img, 2, 60) > 10 and count(before, 2, 60) == 0


def test_table_colour_is_applied(pair):
    task, plain, var = pair
    for body in SURFACE_BODIES[task]:
        ids = body_geoms(var, body)
        legs = [g for g in ids if 'leg' in (model(var).geom_id2name(g) or '')]
        assert legs and len(ids) > len(legs)
        for g in ids:
            if g not in legs:
                np.testing.assert_allclose(model(var).geom_rgba[g], TAN)
                assert model(var).geom_matid[g] == -1
    if task == 'lift':  # the wrist view is mostly table: white before, tan now
        img = var.reset(0).images['robot0_eye_in_hand'][:32].astype(int)
        white = plain.reset(0).images['robot0_eye_in_hand'][:32].astype(int)
        assert np.median(img[..., 0] - img[..., 2]) > 60 and abs(np.median(white[..., 0] - white[..., 2])) < 15


def test_distractor_is_in_the_scene(pair):
    task, plain, var = pair
    layout, (hx, hy, _) = LAYOUTS[task], DISTRACTOR_PLACE_M[task]
    assert 'distractor_pos' not in plain.reset(0).object_state
    for seed in range(4):
        obs = var.reset(seed)
        d, o = obs.object_state['distractor_pos'], obs.object_state[layout.object_key]
        rel = d[:2] - layout.centre
        assert abs(rel[0]) <= hx + 1e-9 and abs(rel[1]) <= hy + 1e-9
        radius = task_object(var._env, task).horizontal_radius
        assert np.linalg.norm(d[:2] - o[:2]) > radius + 0.02 * math.sqrt(2), 'overlaps the task object'
    z0 = d[2]
    for _ in range(10):
        obs, _ = var.step(HOLD)
    assert abs(obs.object_state['distractor_pos'][2] - z0) < 0.02, 'the distractor does not rest on the surface'
    # Visible: green pixels in the front view (dark: lit from above), more than the robot's own green parts show.
    green, before = (count(o.images['agentview'], 1, 30, 50) for o in (obs, plain.reset(seed)))
    assert green >= before + 2, (green, before)


@pytest.mark.parametrize('path', SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenario_loads_renders_and_places(path):
    scenario = load_scenario(path)
    env = SimEnv.for_scenario(scenario)
    try:
        layout, v = LAYOUTS[scenario.task], scenario.variation
        for seed in range(3):
            obs = env.reset(seed)
            assert set(obs.images) == set(scenario.cameras)
            for img in obs.images.values():
                assert img.shape == (scenario.image_size,) * 2 + (3,) and img.std() > 5
            rel = obs.object_state[layout.object_key][:2] - layout.centre
            for axis, r in enumerate((v.placement.x, v.placement.y)):
                if r is not None:
                    assert r[0] - 1e-9 <= rel[axis] <= r[1] + 1e-9, (path.name, seed, rel)
            assert ('distractor_pos' in obs.object_state) == v.distractor
        obj = task_object(env._env, scenario.task)
        if v.object_rgba is not None:
            for g in body_geoms(env, obj.root_body):
                np.testing.assert_allclose(model(env).geom_rgba[g], v.object_rgba)
        assert env.horizon == scenario.horizon
    finally:
        env.close()


def test_lift_far_is_reachable():
    env = SimEnv.for_scenario(load_scenario(config_dir() / 'scenarios' / 'lift_far.yaml'), cameras=())
    expert = expert_for('lift')
    try:
        wins = 0
        for seed in range(1000, 1005):
            obs, success = env.reset(seed), False
            expert.reset(seed)
            while not success and env.steps < 100:
                obs, success = env.step(expert.act(obs))
            wins += success
    finally:
        env.close()
    assert wins >= 4


def test_tasks_without_variations_refuse_one():
    with pytest.raises(SimError, match="task 'stack' has no scene variations"):
        SimEnv('stack', cameras=(), variation=Variation(distractor=True))

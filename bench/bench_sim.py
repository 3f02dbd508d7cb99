# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""SimEnv step + render rate and reset time, against robosuite's own camera observations in the same run.

    MUJOCO_GL=egl OMP_NUM_THREADS=1 python bench/bench_sim.py [--steps 100] [--size 128] [--camera agentview]

Checks first (same seed -> same image; a wrong-size action raises), warms up, then measures per-step
times of: ours (step + our mujoco.Renderer, shadows/reflections off), physics only (no camera), and
robosuite with use_camera_obs=True (the baseline). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault('MUJOCO_GL', 'egl')

from hapo_sim.env import SimEnv, SimError  # noqa: E402


def _stats(times_s: list[float]) -> dict:
    t = np.asarray(times_s) * 1e3
    return {'p50_ms': round(float(np.percentile(t, 50)), 2), 'p99_ms': round(float(np.percentile(t, 99)), 2),
            'steps_per_s': round(1e3 / float(t.mean()), 1)}


def _time_steps(step, n: int, warmup: int = 10) -> list[float]:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.3, 0.3, (n + warmup, 7))
    out = []
    for i, a in enumerate(actions):
        t0 = time.perf_counter()
        step(a)
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=100, help='measured steps per variant')
    ap.add_argument('--size', type=int, default=128, help='image side in px')
    ap.add_argument('--camera', default='agentview')
    args = ap.parse_args()

    ours = SimEnv('lift', cameras=(args.camera,), image_size=args.size)
    a, b = ours.reset(0), ours.reset(0)
    if not np.array_equal(a.images[args.camera], b.images[args.camera]):
        print('bench_sim: same seed gave different images', file=sys.stderr)
        return 1
    try:
        ours.step([0.0] * 6)
        print('bench_sim: a 6-value action was accepted', file=sys.stderr)
        return 1
    except SimError:
        pass

    ours.reset(0)
    result = {'camera': args.camera, 'size': args.size, 'steps': args.steps}
    result['ours'] = _stats(_time_steps(ours.step, args.steps))
    resets = []
    for s in range(10):
        t0 = time.perf_counter()
        ours.reset(s)
        resets.append(time.perf_counter() - t0)
    result['reset'] = {'p50_ms': round(float(np.median(resets)) * 1e3, 1), 'max_ms': round(max(resets) * 1e3, 1)}
    ours.close()

    blind = SimEnv('lift', cameras=())
    blind.reset(0)
    result['physics_only'] = _stats(_time_steps(blind.step, args.steps))
    blind.close()

    import robosuite
    from robosuite.controllers import load_composite_controller_config
    base = robosuite.make('Lift', robots='Panda', controller_configs=load_composite_controller_config(robot='Panda'),
                          has_renderer=False, has_offscreen_renderer=True, use_camera_obs=True,
                          camera_names=[args.camera], camera_heights=args.size, camera_widths=args.size,
                          control_freq=20, horizon=10_000, hard_reset=False, seed=0)
    base.reset()
    result['robosuite_camera_obs'] = _stats(_time_steps(base.step, args.steps))
    base.close()
    result['speedup_vs_robosuite'] = round(result['ours']['steps_per_s']
                                           / result['robosuite_camera_obs']['steps_per_s'], 2)
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Demo collection throughput through the graph (``hapo collect-demos``) against the in-process floor.

    MUJOCO_GL=egl .venv/bin/python bench/bench_collect.py [--episodes 8] [--quick]

Floor: ``SimEnv`` with the same cameras (agentview + wrist at 64 px, rendered every step as the sim node does)
and the same expert behind the same joystick encoding (``joy_expert.run_episode``), in this process, no ROS.
Measured: ``collect_demos`` with 1 worker and with 2 (one graph each), episodes/min from the first episode's
START (node start-up reported apart). Correctness first (exit 1): on the same seeds the graph's demos must
succeed exactly when the in-process ones do, and every bag's recorded actions must equal the actions the expert
commanded in process, up to float32.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import isolate, report

SEEDS0 = 91_000  # bench seeds: apart from demo, selection and evaluation seeds
CAMERAS = ('agentview', 'robot0_eye_in_hand')


def in_process(seeds: range) -> tuple[dict[int, tuple[bool, np.ndarray]], float]:
    """(seed -> (success, executed actions), seconds) of the in-process loop (env made before the clock)."""
    from hapo_bringup.collect_demos import graph_params
    from hapo_bringup.graph import config_dir
    from hapo_interfaces.params import from_mapping
    from hapo_sim.env import SimEnv
    from hapo_sim.joy_expert import ExpertParams, JoyExpert, run_episode

    params = graph_params([], config_dir() / 'deploy.yaml')
    expert = JoyExpert(from_mapping(ExpertParams, params['expert_node']))
    env = SimEnv('lift', CAMERAS, 64, seed=0, horizon=params['sim_node']['horizon'])
    out, t0 = {}, time.monotonic()
    for seed in seeds:
        ok, actions = run_episode(env, expert, seed, params['sim_node']['horizon'])
        out[seed] = (ok, np.asarray(actions, dtype=np.float32))
    elapsed = time.monotonic() - t0
    env.close()
    return out, elapsed


def check(out: Path, floor: dict[int, tuple[bool, np.ndarray]]) -> list[str]:
    """What differs between the bags in ``out`` and the in-process demos (empty: nothing)."""
    from hapo_recorder.bag_reader import list_episodes, read_episode

    problems, seen = [], set()
    for path in list_episodes([out]):
        ep = read_episode(path, decode_images=False)
        seed = int(ep.metadata['seed'])
        seen.add(seed)
        ok, actions = floor[seed]
        if (ep.outcome == 'success') != ok:
            problems.append(f'seed {seed}: {ep.outcome} through the graph, success={ok} in process')
        elif ep.actions.shape != actions.shape or not np.allclose(ep.actions, actions, rtol=0, atol=1e-6):
            problems.append(f'seed {seed}: recorded actions differ from the expert\'s ({len(ep.actions)} vs '
                            f'{len(actions)} steps)')
        elif not (ep.sources == 2).all() or not ep.demo:
            problems.append(f'seed {seed}: not a demo of human steps only')
    return problems + [f'seed {s}: no bag' for s in sorted(set(floor) - seen)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--episodes', type=int, default=8)
    ap.add_argument('--quick', action='store_true', help='2 episodes (CI smoke)')
    args = ap.parse_args()
    episodes = 2 if args.quick else args.episodes
    isolate()
    from hapo_bringup.collect_demos import collect_demos

    seeds = range(SEEDS0, SEEDS0 + episodes)
    floor, floor_s = in_process(seeds)
    graphs = {}
    with tempfile.TemporaryDirectory(prefix='bench-collect-') as tmp:
        for w in (1, 2):
            out = Path(tmp) / f'{w}w'
            graphs[w] = collect_demos(seeds, out, workers=w, log=lambda m: None)
            problems = check(out, floor)
            if problems:
                print(f'correctness check failed with {w} worker(s): ' + '; '.join(problems), file=sys.stderr)
                return 1
    floor_rate = 60 * episodes / floor_s
    steps = sum(len(a) for _ok, a in floor.values())
    r = {'bench': 'collect', 'episodes': episodes, 'cameras': len(CAMERAS), 'image_size': 64, 'steps': steps,
         'expert_success': sum(ok for ok, _a in floor.values()) / episodes,
         'floor_episodes_per_min': round(floor_rate, 2), 'floor_steps_per_s': round(steps / floor_s, 2)}
    for w, g in graphs.items():
        r[f'graph_{w}w'] = {k: g[k] for k in ('episodes_per_min', 'startup_s', 'elapsed_s', 'success_rate')}
        r[f'graph_{w}w']['steps_per_s'] = round(steps / g['elapsed_s'], 2)
        r[f'ratio_{w}w_over_floor'] = round(g['episodes_per_min'] / floor_rate, 2)
    report(r)
    return 0


if __name__ == '__main__':
    sys.exit(main())

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Measure a scripted expert's success rate in the simulator, physics only (no cameras).

    python -m hapo_sim.expert_check --task pick_place_can --seeds 0:50 [--noise-std 0.05] [--horizon H]
                                    [--out r.json]

Episode s resets the env and the expert's noise with seed s and runs until robosuite's success check
passes or ``--horizon`` steps have run. Prints (and writes to --out) a JSON summary::

    {task, seeds: [a, b], noise_std, horizon, successes, success_rate, mean_steps, min_steps, max_steps,
     failures: [seeds]}

The step figures count the successful episodes; the default horizon, the expert's
``HORIZON``, leaves a margin over the longest episode measured (README, 'Scripted experts').
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from hapo_sim.env import SimEnv, SimError, task_key
from hapo_sim.experts import EXPERTS, PhaseExpert, expert_for
from hapo_sim.seeds import SeedError, parse


def episode_horizon(task: str, horizon: int | None = None, noise_std: float = 0.0) -> int:
    """``horizon`` or the expert's default; SimError for a task without an expert or bad values."""
    horizon = expert_for(task).HORIZON if horizon is None else int(horizon)
    if horizon < 1:
        raise SimError(f'--horizon {horizon}: need >= 1')
    if not noise_std >= 0:
        raise SimError(f'--noise-std {noise_std}: need >= 0')
    return horizon


def run_episode(env: SimEnv, expert: PhaseExpert, seed: int, horizon: int) -> tuple[bool, int]:
    """(success, steps) of one expert episode with ``seed``."""
    obs = env.reset(seed)
    expert.reset(seed)
    success = False
    while not success and env.steps < horizon:
        obs, success = env.step(expert.act(obs))
    return success, env.steps


def check_expert(task: str, seeds: range, noise_std: float = 0.05, horizon: int | None = None,
                 progress: Callable[[], None] | None = None) -> dict:
    """The JSON summary (module docstring) of the expert of ``task`` on ``seeds``."""
    key = task_key(task)
    horizon = episode_horizon(key, horizon, noise_std)
    expert = expert_for(key, noise_std=noise_std)
    env = SimEnv(key, cameras=(), seed=0)
    steps: list[int] = []
    failures: list[int] = []
    try:
        for seed in seeds:
            success, n = run_episode(env, expert, seed, horizon)
            if success:
                steps.append(n)
            else:
                failures.append(seed)
            if progress:
                progress()
    finally:
        env.close()
    return {'task': key, 'seeds': [seeds.start, seeds.stop], 'noise_std': noise_std, 'horizon': horizon,
            'successes': len(steps), 'success_rate': len(steps) / len(seeds),
            'mean_steps': round(sum(steps) / len(steps), 1) if steps else None,
            'min_steps': min(steps, default=None), 'max_steps': max(steps, default=None), 'failures': failures}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog='python -m hapo_sim.expert_check',
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1])
    ap.add_argument('--task', required=True, help='lift or pick_place_can (robosuite names work too)')
    ap.add_argument('--seeds', required=True, metavar='A:B', help='episode seeds A..B-1')
    ap.add_argument('--noise-std', type=float, default=0.05, help='expert action noise (default: %(default)s)')
    defaults = ', '.join(f'{task} {expert.HORIZON}' for task, expert in EXPERTS.items())
    ap.add_argument('--horizon', type=int, default=None,
                    help=f'steps before an episode counts as failed (default per task: {defaults})')
    ap.add_argument('--out', type=Path, default=None, help='also write the JSON summary here')
    args = ap.parse_args(argv)
    from tqdm import tqdm

    try:
        seeds = parse(args.seeds)
        episode_horizon(args.task, args.horizon, args.noise_std)  # fail before the progress bar starts
        with tqdm(total=len(seeds), desc=f'expert {args.task}', unit='episode') as bar:
            result = check_expert(args.task, seeds, args.noise_std, args.horizon, bar.update)
    except (SimError, SeedError) as exc:
        print(f'expert_check: {exc}', file=sys.stderr)
        return 2
    text = json.dumps(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + '\n')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())

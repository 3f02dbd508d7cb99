"""Closed-loop evaluation throughput through the graph (``hapo evaluate-sim``) against the in-process floor.

    MUJOCO_GL=egl .venv/bin/python bench/bench_evaluate.py [--episodes 6] [--horizon 60] [--quick]

Policy: a fresh tiny VLA of the base policy's shape (agentview + wrist camera at 64 px, proprio), so every
episode runs to the horizon. Floor: ``SimEnv`` + ``VlaPolicy.predict`` in this process, one thread, no ROS.
Measured: ``evaluate_sim`` with 1 worker and with 2 (one graph each), steps/s from the first episode's start
(node start-up reported apart). Correctness first (exit 1): the graph must execute exactly the actions the
in-process loop does on the same seeds (same ``actions_digest`` per seed), with 1 and with 2 workers.
Goal: graph steps/s >= 0.8 x the floor.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import isolate, report

SEEDS0 = 90_000  # bench seeds: apart from demo, selection and evaluation seeds


def in_process(ckpt: Path, seeds: range, horizon: int) -> tuple[dict[int, str], float, int]:
    """(seed -> actions digest, seconds, steps) of the in-process loop (env made before the clock starts)."""
    import torch

    from hapo_policy.model import VlaPolicy
    from hapo_sim.env import DEFAULT_INSTRUCTIONS, SimEnv

    torch.set_num_threads(1)
    policy = VlaPolicy.from_pretrained(ckpt)
    env = SimEnv('lift', policy.camera_names, int(policy.config.image_size), seed=0, horizon=horizon)
    digests, steps, t0 = {}, 0, time.monotonic()
    for seed in seeds:
        obs, actions = env.reset(seed), []
        for _ in range(horizon):
            proprio = obs.joint_positions[:policy.proprio_dim].astype(np.float32)
            action = [float(v) for v in policy.predict(obs.images, DEFAULT_INSTRUCTIONS['lift'], proprio).action]
            actions.append(struct.pack('<7d', *action))
            obs, success = env.step(action)
            steps += 1
            if success:
                break
        digests[seed] = hashlib.sha256(b''.join(actions)).hexdigest()[:16]
    elapsed = time.monotonic() - t0
    env.close()
    return digests, elapsed, steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--episodes', type=int, default=6)
    ap.add_argument('--horizon', type=int, default=60)
    ap.add_argument('--quick', action='store_true', help='2 episodes of 20 steps, 2 workers only (CI smoke)')
    args = ap.parse_args()
    episodes, horizon = (2, 20) if args.quick else (args.episodes, args.horizon)
    isolate()
    from hapo_bringup.evaluate_sim import evaluate_sim
    from hapo_policy.init_checkpoint import main as init_checkpoint

    seeds = range(SEEDS0, SEEDS0 + episodes)
    with tempfile.TemporaryDirectory(prefix='bench-evaluate-') as tmp:
        ckpt = Path(tmp) / 'policy'
        init_checkpoint(['--out', str(ckpt), '--camera', 'agentview', '--camera', 'robot0_eye_in_hand',
                         '--image-size', '64'])
        floor_digests, floor_s, floor_steps = in_process(ckpt, seeds, horizon)
        graphs = {w: evaluate_sim(ckpt, seeds, [f'horizon:={horizon}'], workers=w) for w in ((2,) if args.quick
                                                                                           else (1, 2))}
    for w, r in graphs.items():
        got = {e['seed']: e['actions_digest'] for e in r['episodes']}
        if got != floor_digests:
            print(f'correctness check failed: with {w} worker(s) the graph executed other actions than the '
                  f'in-process loop on seeds {sorted(s for s in floor_digests if got.get(s) != floor_digests[s])}',
                  file=sys.stderr)
            return 1
    floor = floor_steps / floor_s
    r = {'bench': 'evaluate', 'episodes': episodes, 'horizon': horizon, 'cameras': 2, 'image_size': 64,
         'floor_steps_per_s': round(floor, 2)}
    for w, g in graphs.items():
        r[f'graph_{w}w'] = {k: g[k] for k in ('steps_per_s', 'episodes_per_min', 'startup_s', 'elapsed_s')}
        r[f'ratio_{w}w_over_floor'] = round(g['steps_per_s'] / floor, 2)
    r['goal_ratio_ge_0.8'] = max(r[f'ratio_{w}w_over_floor'] for w in graphs) >= 0.8
    report(r)
    return 0


if __name__ == '__main__':
    sys.exit(main())

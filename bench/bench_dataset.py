# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Dataset build frames/s against reading the same bags raw with ``rosbags`` in the same run.

    OMP_NUM_THREADS=2 python bench/bench_dataset.py [--episodes 8] [--repeats 3]

Bags: recorder-written (EpisodeWriter) episodes with one 64 px camera, joint states and executed steps.
Baseline: rosbags ``Reader`` over every message + CDR deserialisation + image bytes -> (H, W, 3) arrays, the
minimum any trainer must do. Measured: ``build_dataset(..., rebuild=True)`` (read_episode, relabel, pairing,
drop rules, safetensors cache write) and a cached reload. Checks first (exit 1): both see the same number of
images. Goal: build frames/s >= 50 % of raw frames/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import report
from rosbags.rosbag2 import Reader
from train.episode_bags import CAMERA, SOURCES, step_action, write_bags

from hapo_interfaces.images import to_array
from hapo_policy.model import VlaPolicy
from hapo_policy.normalization import ActionStats
from hapo_policy.tiny import TinyVlaConfig
from hapo_recorder.bag_writer import typestore
from hapo_trainer.config import TrainConfig
from hapo_trainer.dataset import BuildSpec, build_dataset


def raw_read(bags: list[Path]) -> int:
    store, images = typestore(), 0
    for bag in bags:
        with Reader(bag) as reader:
            for conn, _, raw in reader.messages():
                msg = store.deserialize_cdr(raw, conn.msgtype)
                if conn.msgtype == 'sensor_msgs/msg/Image':
                    to_array(msg)
                    images += 1
    return images


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--episodes', type=int, default=8)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--repeat-pattern', type=int, default=4,
                    help='episode = the 25-step test pattern (policy, intervention, policy, hold) this many times; '
                         '4 = 100 steps = 5 s at 20 Hz. Per-bag fixed costs (metadata.yaml parsing) dominate '
                         'shorter episodes')
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    stats = ActionStats.from_actions(np.stack([step_action(s, 0, rng) for s in [1, 2] * 50]))
    policy = VlaPolicy.create(TinyVlaConfig(camera_names=[CAMERA]), stats)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bags = write_bags(tmp / 'bags', n=args.episodes, size=64, sources=SOURCES * args.repeat_pattern)
        spec = BuildSpec.for_policy(TrainConfig().data, policy)

        def build(rebuild: bool):
            return build_dataset([tmp / 'bags'], spec, cache_dir=tmp / 'cache', rebuild=rebuild, log=lambda m: None,
                                 progress=False)

        n_images = raw_read(bags)  # warm-up of both paths, and the check
        ds = build(True)
        frames = len(ds) + sum(ds.summary['drops'].values())  # every executed step read and paired (or dropped)
        if n_images != frames:
            print(f'check failed: raw read {n_images} images, dataset saw {frames} steps', file=sys.stderr)
            return 1
        raw_t, build_t, cached_t = [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            raw_read(bags)
            raw_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            build(True)
            build_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            build(False)
            cached_t.append(time.perf_counter() - t0)
    raw_fps, build_fps = frames / float(np.median(raw_t)), frames / float(np.median(build_t))
    result = {'bench': 'dataset', 'episodes': args.episodes, 'steps_per_episode': len(SOURCES) * args.repeat_pattern,
              'frames': frames, 'image_px': 64,
              'raw_rosbags_frames_per_s': round(raw_fps, 1), 'build_frames_per_s': round(build_fps, 1),
              'cached_load_frames_per_s': round(frames / float(np.median(cached_t)), 1),
              'build_over_raw': round(build_fps / raw_fps, 3), 'goal_min': 0.5}
    result['goal_met'] = result['build_over_raw'] >= 0.5
    report(result)
    return 0


if __name__ == '__main__':
    sys.exit(main())

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Training step time: a ``hapo`` step against a ``bc`` step, default tiny VLA, cached reference log-probs.

    OMP_NUM_THREADS=2 python bench/bench_train_step.py [--repeats 20]

A step = one micro-batch of 8 (encode, forward + backward, the method's loss; for hapo also the no-grad
forward on the KL pairs) + AdamW. Both methods run on the same dataset (recorder-written bags, 64 px) with the
same model; reference log-probs are computed before timing (as the trainer does at the start of an epoch).
Checks first (exit 1): at step 0 the policy equals the reference, so hapo's rewards and KL must be 0.
Goal: hapo p50 <= 1.6 x bc p50.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import report
from train.episode_bags import CAMERA, step_action, write_bags

from hapo_policy.logprobs import action_logprobs
from hapo_policy.model import VlaPolicy
from hapo_policy.normalization import ActionStats
from hapo_policy.tiny import TinyVlaConfig
from hapo_trainer.algos import get_algo
from hapo_trainer.config import TrainConfig
from hapo_trainer.dataset import BuildSpec, build_dataset
from hapo_trainer.steps import MicroBatches, ReferenceCache, TrainTensors, micro_batch_loss


def setup(tmp: Path, method: str):
    rng = np.random.default_rng(0)
    stats = ActionStats.from_actions(np.stack([step_action(s, 0, rng) for s in [1, 2] * 50]))
    policy = VlaPolicy.create(TinyVlaConfig(camera_names=[CAMERA]), stats, seed=0)  # the default model
    ds = build_dataset([tmp / 'bags'], BuildSpec.for_policy(TrainConfig().data, policy), method=method,
                       cache_dir=tmp / 'cache', log=lambda m: None, progress=False)
    algo, cfg = get_algo(method), TrainConfig().replace(**{'loss.method': method})
    ref_model = copy.deepcopy(policy.model).eval().requires_grad_(False)
    data = TrainTensors(ds, policy, policy.device)
    ref = ReferenceCache(policy, lambda b, t: action_logprobs(ref_model, policy.tokenizer.first_id, b, t), data)
    batches = MicroBatches(data, ref, algo, cfg)  # the loop's source: epoch 0's reference log-probs computed now
    batches(0)
    policy.model.train()
    opt = torch.optim.AdamW(policy.model.parameters(), lr=1e-5)

    def step(i: int):
        idx, samples = batches(i % batches.epoch_len)  # within epoch 0: no reference forward while timing
        loss, metrics = micro_batch_loss(policy.model, policy.model, policy, data, ref, idx, algo, cfg.loss,
                                         samples=samples)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss, metrics

    return step, policy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--repeats', type=int, default=20)
    ap.add_argument('--warmup', type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_bags(tmp / 'bags', n=6, size=64)
        steps = {m: setup(tmp, m) for m in ('hapo', 'bc')}
        loss, metrics = steps['hapo'][0](0)  # check before timing: policy == reference at step 0
        if not (torch.isfinite(loss) and abs(float(metrics['kl'])) < 1e-4
                and abs(float(metrics['rewards/margins'])) < 1e-4):
            print(f'check failed: loss {float(loss)}, kl {float(metrics["kl"])}', file=sys.stderr)
            return 1
        for step, _ in steps.values():
            for i in range(args.warmup):
                step(i)
        times = {m: [] for m in steps}
        for r in range(args.repeats):  # interleaved, so drift hits both alike
            for m, (step, _) in steps.items():
                t0 = time.perf_counter()
                step(args.warmup + r)
                times[m].append(time.perf_counter() - t0)
        p50 = {m: float(np.median(t)) for m, t in times.items()}
        n_params = steps['hapo'][1].num_parameters()
    result = {'bench': 'train_step', 'model_parameters': n_params, 'micro_batch': 8,
              'threads': torch.get_num_threads(),
              **{m: {'p50_ms': round(p50[m] * 1e3, 2), 'p99_ms': round(float(np.percentile(times[m], 99)) * 1e3, 2),
                     'samples_per_s': round(8 / p50[m], 1)} for m in times},
              'ratio_hapo_over_bc': round(p50['hapo'] / p50['bc'], 3), 'goal_ratio_max': 1.6}
    result['goal_met'] = result['ratio_hapo_over_bc'] <= 1.6
    report(result)
    return 0


if __name__ == '__main__':
    sys.exit(main())

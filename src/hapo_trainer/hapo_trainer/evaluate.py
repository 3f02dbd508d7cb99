# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``evaluate``: offline bag replay — recorded observations through a policy, scored per label class.

Every training step of the bags (the same pairing, labels and drop rules as the dataset) goes through the
policy's greedy decoding; per class (``Label.display``: policy, correction, undesirable) we report action L1
and token accuracy against the executed action, and the mean teacher-forced log-prob of the executed action.
A refined policy should be close to corrections and far from the undesirable actions::

    hapo evaluate --policy runs/round1/policy --bags runs/episodes --out runs/round1/eval.json

Writes the JSON (and a PNG bar plot next to it when matplotlib is installed; otherwise the JSON says so).
``--live`` replays the bags over ROS topics at their recorded pace into a running policy node instead
(``hapo_recorder.replay_node``: checks the live path; the trainer itself holds no node)::

    hapo evaluate --live --policy runs/round1/policy --bags runs/episodes --out runs/round1/live.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hapo_interfaces.enums import TRAINING_LABELS
from hapo_trainer.config import ConfigError, load_config
from hapo_trainer.dataset import BuildSpec, DatasetError, PreferenceDataset, build_dataset


@torch.no_grad()
def replay(policy: Any, ds: PreferenceDataset, batch_size: int = 64) -> dict[str, Any]:
    """Per-class metrics of ``policy`` on ``ds`` (greedy actions vs executed; log-prob of executed)."""
    n = len(ds)
    l1 = np.zeros(n)
    acc = np.zeros(n)
    logp = np.zeros(n)
    tokens_all = policy.tokenizer.encode(ds.actions)  # (N, A)
    for s in range(0, n, batch_size):
        idx = list(range(s, min(n, s + batch_size)))
        samples = [ds.sample(i) for i in idx]
        preds = policy.predict_batch(samples)  # greedy decoding, as the policy node runs it
        l1[idx] = np.abs(np.stack([p.action for p in preds]) - ds.actions[idx]).mean(1)
        acc[idx] = (np.stack([p.tokens for p in preds]) == tokens_all[idx]).mean(1)
        target = torch.from_numpy(tokens_all[idx]).to(policy.device)
        logp[idx] = policy.action_logprobs(policy.encode_batch(samples), target)[0].sum(1).cpu().numpy()
    out: dict[str, Any] = {'samples': n, 'classes': {}}
    for c in TRAINING_LABELS:
        m = ds.labels == c
        out['classes'][c.display] = {'n': int(m.sum()), 'action_l1': float(l1[m].mean()) if m.any() else None,
                                'token_accuracy': float(acc[m].mean()) if m.any() else None,
                                'logp_executed': float(logp[m].mean()) if m.any() else None}
    return out


def plot(result: dict[str, Any], path: Path) -> str | None:
    """Bar plot of action L1 and token accuracy per class; returns a note when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return 'matplotlib not installed: no PNG written (pip install matplotlib)'
    names = [k for k, v in result['classes'].items() if v['n']]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, key in zip(axes, ('action_l1', 'token_accuracy'), strict=True):
        ax.bar(names, [result['classes'][k].get(key) or 0.0 for k in names])
        ax.set_title(key)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``evaluate`` / ``hapo evaluate`` (offline bag replay)."""
    p = argparse.ArgumentParser(prog='hapo evaluate', description=__doc__.split('\n\n')[0])
    p.add_argument('--policy', required=True, help='checkpoint to evaluate')
    p.add_argument('--bags', nargs='+', required=True, help='episode bag directories, or directories of them')
    p.add_argument('--out', default=None, help='results JSON path (default: print only)')
    p.add_argument('--config', default=None, help='trainer YAML whose data: group (K, drop rules) applies')
    p.add_argument('--K', type=int, default=None, help='relabel window (default: config, 10)')
    p.add_argument('--cache-dir', default=None, help='dataset cache directory')
    p.add_argument('--batch-size', type=int, default=64, help='observations per forward pass')
    p.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    p.add_argument('--live', action='store_true', help='replay over ROS topics into a running policy node '
                                                       '(it must run CKPT) instead of running the policy here')
    p.add_argument('--rate', type=float, default=1.0, help='--live: replay speed (1.0 = as recorded)')
    p.add_argument('--timeout', type=float, default=30.0, help='--live: seconds to wait for the policy node')
    args = p.parse_args(argv)
    if args.live:
        return _live(args)
    from hapo_policy.errors import CheckpointError
    from hapo_policy.model import VlaPolicy

    try:
        cfg = load_config(args.config)
        if args.K is not None:
            cfg = cfg.replace(**{'data.K': args.K})
        policy = VlaPolicy.from_pretrained(args.policy, device=args.device)
        ds = build_dataset(args.bags, BuildSpec.for_policy(cfg.data, policy), method=None,
                           cache_dir=Path(args.cache_dir) if args.cache_dir else None,
                           log=lambda m: print(m, file=sys.stderr))
    except (ConfigError, CheckpointError, DatasetError) as exc:
        print(f'hapo evaluate: {exc}', file=sys.stderr)
        return 2
    if len(ds) == 0:
        print('hapo evaluate: no training steps in these bags', file=sys.stderr)
        return 2
    result = {'policy': str(args.policy), 'policy_id': policy.policy_id, 'mode': 'offline_bag_replay',
              'dataset': str(ds.path), 'K': cfg.data.K, **replay(policy, ds, args.batch_size)}
    return _write(result, args.out)


def _live(args: argparse.Namespace) -> int:
    from hapo_policy.errors import CheckpointError
    from hapo_policy.model import VlaPolicy
    from hapo_recorder import replay_node
    from hapo_recorder.bag_reader import BagError

    try:
        cfg = load_config(args.config)
        k = args.K if args.K is not None else cfg.data.K
        policy = VlaPolicy.from_pretrained(args.policy, device=args.device)
        episodes = replay_node.load(args.bags)
        if not episodes:
            raise DatasetError(f'no episode bags under {args.bags}')
        result = {'policy': str(args.policy), 'policy_id': policy.policy_id, 'mode': 'live_bag_replay',
                  'rate': args.rate, 'K': k, **replay_node.score(policy, episodes, k, args.rate, args.timeout)}
    except (ConfigError, CheckpointError, DatasetError, BagError, RuntimeError) as exc:
        print(f'hapo evaluate: {exc}', file=sys.stderr)
        return 2
    return _write(result, args.out)


def _write(result: dict[str, Any], out_path: str | None) -> int:
    if out_path:
        out = Path(out_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        note = plot(result, out.with_suffix('.png'))
        result['plot'] = None if note else str(out.with_suffix('.png'))
        if note:
            result['plot_note'] = note
            print(f'hapo evaluate: {note}', file=sys.stderr)
        out.write_text(json.dumps(result, indent=2) + '\n')
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``hapo train-base``: a base policy by BC from a fresh model on demo episodes, kept at its best closed-loop epoch.

    hapo train-base --bags runs/demos --out runs/base [--epochs 20] [--eval-every 4] [--select-seeds 10000:10020]
                    [--config config/optimize.yaml] [--resume] [key:=value ...]

Flow: the successful demo episodes under ``--bags`` (bag metadata: ``demo`` true, outcome ``success``) -> their
actions' q01/q99 statistics -> a fresh tiny VLA with the demos' cameras, image size and proprio -> the dataset
(every demo step is c = 1) -> ``optimize.train`` with method ``bc``, a warm-up + cosine schedule over all the
epochs and random-shift augmentation -> after every ``--eval-every`` epochs (and the last) that epoch's weights
run closed loop through ``evaluate_sim`` on the selection seeds (``hapo_sim.seeds``: never demo or evaluation
seeds) -> ``<out>/policy`` is the epoch with the highest selection success (a tie goes to the later epoch).
``<out>/manifest.json`` records the command, the demo and selection seeds, every selection result, the software
version, the training time and the chosen weights' hash. Ctrl-C saves a resumable checkpoint (``--resume``).
``key:=value`` arguments go to the evaluation graph (``hapo deploy --help``), e.g. ``horizon:=150``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from hapo_bringup.evaluate_sim import EvaluationError, evaluate_sim
from hapo_interfaces.params import ParamError
from hapo_sim import seeds as seed_uses

# Base training from scratch, not fine-tuning: a higher lr, larger micro-batches (bc's loss does not depend on the
# batch the way HAPO's weights do), DrQ shifts. Any of them can be changed in --config.
BASE_DEFAULTS = {'loss.method': 'bc', 'optim.lr': 5e-4, 'optim.micro_batch': 32, 'optim.warmup_steps': 100,
                 'optim.min_lr_ratio': 0.05, 'optim.weight_decay': 0.01, 'optim.image_shift_px': 4,
                 'data.range_margin': -1.0, 'data.drop_noop': False, 'run.log_every': 20}


class BaseTrainingError(RuntimeError):
    """Unusable demos or output directory; the text names the path and the reason."""


def successful_demos(bags: list[str]) -> tuple[list[Path], list[int], dict[str, Any]]:
    """(episode dirs, their seeds, a decoded first episode's shape) of the successful demos under ``bags``."""
    from hapo_recorder.bag_reader import BagError, list_episodes, read_episode

    try:
        paths = list_episodes(bags)
    except BagError as exc:
        raise BaseTrainingError(str(exc)) from None
    keep, seeds, shape, actions = [], [], None, []
    for path in paths:
        try:
            ep = read_episode(path, decode_images=shape is None)
        except BagError:
            continue  # hapo bag-info names unreadable bags; the dataset counts them too
        if not ep.demo or ep.outcome != 'success' or ep.truncated:
            continue
        keep.append(path)
        seeds.append(int(ep.metadata.get('seed', -1)))
        actions.append(ep.actions)
        if shape is None:
            cameras = sorted(ep.images)
            image = next(iter(ep.images[cameras[0]].values()))
            shape = {'task': ep.task, 'cameras': cameras, 'image_size': int(image.shape[0]),
                     'proprio_dim': len(next(iter(ep.joint_states.values())))}
    if not keep:
        raise BaseTrainingError(f'no successful demo episodes under {", ".join(bags)} (of {len(paths)} bags); '
                                'record them with hapo collect-demos')
    shape['actions'] = np.concatenate(actions)
    return keep, seeds, shape


def software_version() -> str:
    try:
        v = f'hapo_bringup {version("hapo_bringup")}'
    except PackageNotFoundError:
        v = 'hapo_bringup (not installed)'
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ''
    return f'{v} git {commit}' if commit else v


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='hapo train-base', formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 2)[2])
    p.add_argument('overrides', nargs='*', metavar='key:=value', help='evaluation graph parameters')
    p.add_argument('--bags', nargs='+', required=True, help='demo episode bags, or directories of them')
    p.add_argument('--out', type=Path, required=True, help='run directory (policy/, epochs/, manifest.json, tb/)')
    p.add_argument('--epochs', type=int, default=20, help='passes over the demo steps (default: %(default)s)')
    p.add_argument('--eval-every', type=int, default=4, help='closed-loop selection every N epochs and at the end')
    p.add_argument('--select-seeds', type=seed_uses.arg, default=seed_uses.first('selection', 20), metavar='A:B',
                   help='selection seeds (default: the first 20 of hapo_sim.seeds selection)')
    p.add_argument('--scenario', default=None, metavar='FILE|NAME', help='scenario of the selection episodes '
                   '(default: the demos\' task with config/deploy.yaml)')
    p.add_argument('--workers', type=int, default=2, help='evaluation graphs in parallel (default: %(default)s)')
    p.add_argument('--config', default=None, help='trainer YAML instead of the base-training defaults '
                                                  '(BASE_DEFAULTS in this module)')
    p.add_argument('--seed', type=int, default=0, help='weight init and sampler seed (default: %(default)s)')
    p.add_argument('--resume', action='store_true', help='continue the run in --out')
    p.add_argument('--no-progress', action='store_true')
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args, list(sys.argv if argv is None else ['hapo', 'train-base', *argv]))
    except (BaseTrainingError, EvaluationError, ParamError) as exc:
        print(f'hapo train-base: {exc}', file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, command: list[str]) -> int:

    from hapo_policy.model import VlaPolicy
    from hapo_policy.normalization import ActionStats
    from hapo_policy.tiny import TinyVlaConfig
    from hapo_trainer.config import ConfigError, dump_yaml, load_config
    from hapo_trainer.dataset import BuildSpec, DatasetError, build_dataset
    from hapo_trainer.optimize import train
    from hapo_trainer.train_state import ResumeError, latest_checkpoint

    out = args.out
    resume = args.resume and latest_checkpoint(out / 'train') is not None
    if args.resume and not resume:
        print(f'hapo train-base: --resume: no checkpoint under {out / "train"} yet; starting afresh', file=sys.stderr)
    if not args.resume and (latest_checkpoint(out) is not None or (out / 'manifest.json').exists()):
        raise BaseTrainingError(f'{out} already holds a run; pass --resume to continue it or choose another --out')
    if args.epochs < 1 or args.eval_every < 1:
        raise BaseTrainingError('--epochs and --eval-every must be >= 1')
    warning = seed_uses.check(args.select_seeds, 'selection')
    if warning:
        raise BaseTrainingError(f'--select-seeds: {warning}')
    paths, demo_seeds, shape = successful_demos(args.bags)
    if set(demo_seeds) & set(args.select_seeds):
        raise BaseTrainingError('--select-seeds overlap the demo seeds')
    stats = ActionStats.from_actions(shape.pop('actions'))
    policy = VlaPolicy.create(TinyVlaConfig(camera_names=shape['cameras'], image_size=shape['image_size'],
                                            proprio_dim=shape['proprio_dim']), stats=stats, seed=args.seed)
    try:
        cfg = load_config(args.config)
        cfg = cfg.replace(**{k: v for k, v in BASE_DEFAULTS.items() if args.config is None}, **{'run.seed': args.seed})
        ds = build_dataset(paths, BuildSpec.for_policy(cfg.data, policy), method='bc',
                           log=lambda m: print(m, file=sys.stderr), progress=not args.no_progress)
        epoch_len = -(-len(ds) // cfg.optim.micro_batch)
        cfg = cfg.replace(**{'optim.max_steps': epoch_len * args.epochs, 'run.checkpoint_every': epoch_len})
    except (ConfigError, DatasetError) as exc:
        raise BaseTrainingError(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    (out / 'config.yaml').write_text(dump_yaml(cfg))
    manifest_path = out / 'manifest.json'
    manifest = json.loads(manifest_path.read_text()) if resume and manifest_path.exists() else {'selection': []}
    manifest.update({'command': command, 'software_version': software_version(), 'task': shape['task'],
                     'cameras': shape['cameras'], 'image_size': shape['image_size'], 'demos': len(paths),
                     'demo_seeds': sorted(demo_seeds), 'samples': len(ds), 'epochs': args.epochs,
                     'epoch_steps': epoch_len, 'select_seeds': [args.select_seeds.start, args.select_seeds.stop]})
    overrides = ([f'scenario:={args.scenario}'] if args.scenario else [f'task:={shape["task"]}']) + args.overrides
    timing = {'train_s': manifest.get('train_s', 0.0), 'select_s': manifest.get('select_s', 0.0)}
    t_train = time.monotonic()
    print(f'hapo train-base: {len(paths)} demos, {len(ds)} samples, {args.epochs} epochs x {epoch_len} steps of '
          f'{cfg.optim.micro_batch}; selection on seeds {args.select_seeds.start}:{args.select_seeds.stop}',
          file=sys.stderr)

    def on_epoch_end(epoch: int, step: int) -> None:
        nonlocal t_train
        n = epoch + 1
        if n % args.eval_every and n != args.epochs:
            return
        timing['train_s'] += time.monotonic() - t_train
        t0 = time.monotonic()
        ckpt = policy.save_pretrained(out / 'epochs' / f'epoch-{n:03d}', run_config=cfg.to_dict())
        policy.model.eval()
        result = evaluate_sim(ckpt, args.select_seeds, overrides, workers=args.workers)
        policy.model.train()
        row = {'epoch': n, 'step': step, 'path': str(ckpt), 'policy_id': result['policy_id'],
               'success_rate': result['success_rate'], 'wilson95': result['wilson95']}
        manifest['selection'] = [r for r in manifest['selection'] if r['epoch'] != n] + [row]
        timing['select_s'] += time.monotonic() - t0
        manifest.update(timing)
        _write_json(manifest_path, manifest)
        print(f'hapo train-base: epoch {n}: {result["success_rate"]:.0%} on the selection seeds', file=sys.stderr)
        t_train = time.monotonic()

    try:
        result = train(policy, ds, cfg, out / 'train', resume=resume, progress=not args.no_progress,
                       log=lambda m: print(m, file=sys.stderr), on_epoch_end=on_epoch_end)
    except ResumeError as exc:
        raise BaseTrainingError(str(exc)) from None
    if result.interrupted:
        print(f'hapo train-base: interrupted; saved {result.path} (continue with --resume)', file=sys.stderr)
        return 130
    best = max(manifest['selection'], key=lambda r: (r['success_rate'], r['epoch']))
    from hapo_policy.checkpoint import atomic_dir

    with atomic_dir(out / 'policy') as tmp:
        for f in Path(best['path']).iterdir():
            shutil.copy2(f, tmp / f.name)
    manifest.update({'chosen_epoch': best['epoch'], 'policy_id': best['policy_id'],
                     'selection_success': best['success_rate']})
    _write_json(manifest_path, manifest)
    print(f'hapo train-base: {out / "policy"} = epoch {best["epoch"]} ({best["success_rate"]:.0%} on the selection '
          f'seeds); training {manifest["train_s"] / 60:.1f} min, selection {manifest["select_s"] / 60:.1f} min',
          file=sys.stderr)
    print(out / 'policy')
    return 0


def _write_json(path: Path, body: dict[str, Any]) -> None:
    from hapo_policy.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(body, indent=2) + '\n')


if __name__ == '__main__':
    sys.exit(main())

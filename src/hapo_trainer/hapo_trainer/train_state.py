# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Run checkpoints: a policy checkpoint the policy node loads, plus what ``--resume`` needs; never a pickle.

Layout of ``<out>/checkpoints/step-000100/`` (and of ``<out>/policy/``, the final one)::

    config.json, model.safetensors, action_stats.json, run_config.json    VlaPolicy.save_pretrained
    train_state.safetensors    trainable parameters ('param/<name>'), AdamW moments ('optim/<i>/<key>'),
                               torch RNG state ('rng/torch', 'rng/cuda')
    train_state.json           step, optimizer param groups, scheduler state, world size, micro-batch

The directory is assembled beside it (``.step-000100.<random>.partial``) and renamed by
``hapo_policy.checkpoint.atomic_dir``, so a killed run never leaves a half checkpoint that ``--resume`` would pick.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hapo_policy.checkpoint import atomic_dir

STATE_TENSORS = 'train_state.safetensors'
STATE_JSON = 'train_state.json'
LOCK_FILE = '.optimize.lock'


class ResumeError(RuntimeError):
    """No usable checkpoint to resume from; the text names the directory."""


class RunLockedError(RuntimeError):
    """Another run holds the run directory; the text names it and the holder's pid."""


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.optimize.lock`` for the block, so that two runs never write one directory; the kernel drops
    the lock when its holder exits, kill -9 included (nothing stale to clean up)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / LOCK_FILE).open('a+') as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or '?'
            raise RunLockedError(f'{out} is in use by another run (pid {holder}); wait for it to end or choose '
                                 'another --out') from None
        f.truncate(0)
        f.write(f'{os.getpid()}\n')
        f.flush()
        yield


def save_train_checkpoint(path: Path, save_policy: Any, trainable: dict[str, torch.Tensor],
                          optimizer: torch.optim.Optimizer, scheduler: Any, rng: dict[str, torch.Tensor],
                          info: dict[str, Any], run_config: dict[str, Any]) -> Path:
    """Write ``path`` atomically; ``save_policy(dir, run_config)`` writes the loadable policy into a directory."""
    with atomic_dir(path) as partial:
        save_policy(partial, run_config)
        tensors = {f'param/{k}': v.detach().cpu().contiguous() for k, v in trainable.items()}
        opt = optimizer.state_dict()
        for i, state in opt['state'].items():
            for key, value in state.items():
                tensors[f'optim/{i}/{key}'] = torch.as_tensor(value).detach().cpu().contiguous()
        tensors.update({f'rng/{k}': v.cpu().contiguous() for k, v in rng.items()})
        save_file(tensors, str(partial / STATE_TENSORS))
        sched = {k: v for k, v in scheduler.state_dict().items() if k != 'lr_lambdas'}
        body = {**info, 'param_groups': opt['param_groups'], 'scheduler': sched}
        (partial / STATE_JSON).write_text(json.dumps(body, indent=2, sort_keys=True) + '\n')
    return path


def latest_checkpoint(out: Path) -> Path | None:
    """The resumable checkpoint with the highest step under ``out`` (checkpoints/step-* and policy/)."""
    candidates = [*sorted((out / 'checkpoints').glob('step-*')), out / 'policy']
    best, best_step = None, -1
    for c in candidates:
        try:
            step = int(json.loads((c / STATE_JSON).read_text())['step'])
        except (OSError, ValueError, KeyError):
            continue
        if step > best_step:
            best, best_step = c, step
    return best


def load_train_checkpoint(path: Path, trainable: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                          scheduler: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore parameters, optimizer and scheduler in place; returns (train_state.json body, rng tensors)."""
    try:
        body = json.loads((path / STATE_JSON).read_text())
        tensors = load_file(str(path / STATE_TENSORS))
    except (OSError, ValueError) as exc:
        raise ResumeError(f'checkpoint {path} unreadable for --resume: {exc}') from None
    missing = [k for k in trainable if f'param/{k}' not in tensors]
    if missing:
        raise ResumeError(f'checkpoint {path} lacks trainable parameters {missing[:3]} (different model or LoRA '
                          f'setting than this run?)')
    with torch.no_grad():
        for k, p in trainable.items():
            p.copy_(tensors[f'param/{k}'])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith('optim/'):
            _, i, name = key.split('/', 2)
            state.setdefault(int(i), {})[name] = value
    optimizer.load_state_dict({'state': state, 'param_groups': body['param_groups']})
    scheduler.load_state_dict({**body['scheduler'], 'lr_lambdas': [None]})  # the lambdas are rebuilt from config
    rng = {k.removeprefix('rng/'): v for k, v in tensors.items() if k.startswith('rng/')}
    return body, rng

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``optimize``: bags -> preference dataset -> HAPO (or a baseline) fine-tuning -> a policy checkpoint.

Data flow::

    --bags --(dataset.build_dataset, cached)--> PreferenceDataset --(steps.MicroBatches: sampler.epoch_batches by
    seed/epoch/rank, reference log-probs cached per epoch, optional image shift)--> micro-batches of 8
    --(steps.micro_batch_loss: policy log-probs, cached reference log-probs, hapo_loss)--> grad accumulation
    (+ DDP all-reduce) --> AdamW, warm-up + cosine, clip --> <out>/checkpoints/step-N, <out>/policy
    (+ <out>/metrics.jsonl, <out>/tb, and at the end <out>/metrics.png: loss, KL, margins, r and lambda per class)

Run it::

    ros2 run hapo_trainer optimize --bags runs/episodes --policy ckpt/base --out runs/round1 [--method hapo]
    hapo optimize --bags runs/episodes --policy ckpt/base --out runs/round1 --config config/optimize.yaml
    torchrun --nproc_per_node 2 -m hapo_trainer.optimize --bags ... --policy ... --out ...   # data-parallel
    hapo optimize ... --resume                                                                # continue exactly

DDP the nanoGPT way: ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from torchrun select it (gloo on CPU, NCCL on GPU);
every rank trains on its own micro-batches (disjoint, see sampler.py), rank 0 builds the dataset first, logs
(tqdm, TensorBoard under <out>/tb) and saves. The loss is called per micro-batch (``optim.micro_batch``, 8):
the HAPO weights depend on the batch the loss sees (DESIGN.md); larger batches come from accumulation and ranks.
Ctrl-C (SIGINT) finishes the current optimiser step, saves a checkpoint and exits with status 130.

``train`` is the loop; its parts are named: ``_reference_forward`` (a frozen copy, or adapters off under
LoRA), ``_optimizer`` (AdamW + schedule), ``_resume``, ``steps.MicroBatches`` (which samples, reference cache,
augmentation), ``_MetricLog`` (rank-0 logging) and ``_Checkpoints``. It returns a ``TrainResult``; every
method and base-policy training (``bc``, ``optim.image_shift_px``, ``on_epoch_end``) run through it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch.optim.lr_scheduler import LambdaLR

from hapo_policy.logprobs import action_logprobs
from hapo_trainer.algos import METHODS, get_algo
from hapo_trainer.config import ConfigError, OptimConfig, TrainConfig, dump_yaml, load_config
from hapo_trainer.dataset import BuildSpec, DatasetError, PreferenceDataset, build_dataset
from hapo_trainer.steps import MicroBatches, ReferenceCache, TrainTensors, micro_batch_loss
from hapo_trainer.train_state import (
    ResumeError,
    RunLockedError,
    latest_checkpoint,
    load_train_checkpoint,
    run_lock,
    save_train_checkpoint,
)


@dataclass(frozen=True)
class World:
    """This process's place in a (possibly single-process) data-parallel run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        if 'RANK' not in os.environ:
            return cls()
        return cls(int(os.environ['RANK']), int(os.environ['WORLD_SIZE']), int(os.environ.get('LOCAL_RANK', 0)))


def lr_lambda(step: int, warmup: int, total: int, floor: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine down to ``floor`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _StopFlag:
    """SIGINT sets a flag; the loop stops after the current optimiser step (never mid-update)."""

    def __init__(self) -> None:
        self.stop = False
        self._old = None

    def __enter__(self) -> _StopFlag:
        def handler(signum, frame):
            if self.stop:  # second Ctrl-C: give up at once
                raise KeyboardInterrupt
            self.stop = True

        with contextlib.suppress(ValueError):  # not the main thread: no handler, Ctrl-C behaves as usual
            self._old = signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` did: the checkpoint it wrote last, the optimiser step reached, whether Ctrl-C stopped it."""

    path: Path  # <out>/policy, or <out>/checkpoints/step-N when interrupted
    step: int
    interrupted: bool = False


def _apply_lora(policy: Any, cfg: TrainConfig) -> None:
    from peft import LoraConfig, get_peft_model

    m = cfg.model
    lora = LoraConfig(r=m.lora_rank, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout,
                      target_modules=list(m.lora_targets))
    policy.model = get_peft_model(policy.model, lora)


def _reference_forward(policy: Any, lora: bool) -> Callable[[dict[str, Any], torch.Tensor], tuple[Any, Any]]:
    """The frozen reference pi_ref: a copy of the input policy, or (LoRA) the same model with its adapters off."""
    first_id = policy.tokenizer.first_id
    if lora:
        model = policy.model

        def adapters_off(batch, tokens):  # as TRL with peft: no second copy of a large backbone
            with model.disable_adapter():
                return action_logprobs(model, first_id, batch, tokens)

        return adapters_off
    ref_model = copy.deepcopy(policy.model).eval().requires_grad_(False)
    return lambda batch, tokens: action_logprobs(ref_model, first_id, batch, tokens)


def _optimizer(params: list[torch.Tensor], o: OptimConfig) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """AdamW with linear warm-up and cosine decay to ``min_lr_ratio`` at ``max_steps`` (``lr_lambda``)."""
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.adam_betas), weight_decay=o.weight_decay)
    return optimizer, LambdaLR(optimizer, lambda s: lr_lambda(s, o.warmup_steps, o.max_steps, o.min_lr_ratio))


def _resume(out: Path, trainable: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, scheduler: LambdaLR,
            o: OptimConfig, world: World, log: Callable[[str], None]) -> int:
    """Restore weights, optimiser, schedule and RNG from the latest checkpoint under ``out``; returns its step."""
    ckpt = latest_checkpoint(out)
    if ckpt is None:
        raise ResumeError(f'--resume: no checkpoint with train_state.json under {out}')
    body, rng = load_train_checkpoint(ckpt, trainable, optimizer, scheduler)
    if body.get('world_size') != world.world_size or body.get('micro_batch') != o.micro_batch:
        log(f'warning: resuming a run of world_size={body.get("world_size")}, micro_batch='
            f'{body.get("micro_batch")} with {world.world_size}, {o.micro_batch}: the sample order differs')
    torch.set_rng_state(rng['torch'])
    if 'cuda' in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng['cuda'])
    if world.main:
        log(f'resuming from {ckpt} at step {body["step"]}')
    return int(body['step'])


def _data_parallel(model: torch.nn.Module, device: torch.device, world: World) -> torch.nn.Module:
    """The module the loop calls: ``model`` itself, or its DDP wrapper (gradient all-reduce hooks)."""
    if world.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)


def _autocast(device: torch.device, bf16: bool) -> Callable[[], contextlib.AbstractContextManager]:
    if device.type == 'cuda' and bf16:
        return lambda: torch.autocast('cuda', dtype=torch.bfloat16)
    return contextlib.nullcontext


def _policy_saver(policy: Any, lora: bool):
    """A function writing the policy the node loads (LoRA adapters merged into a copy of the weights)."""
    def save(path: Path, run_config: dict[str, Any]) -> Path:
        if not lora:
            return policy.save_pretrained(path, run_config)
        merged = copy.deepcopy(policy.model).merge_and_unload()
        return policy.with_model(merged).save_pretrained(path, run_config)  # a foreign model keeps its processor

    return save


class _Checkpoints:
    """Writes a policy checkpoint the node loads plus what ``--resume`` needs (train_state.py), rank 0 only."""

    def __init__(self, policy: Any, ds: PreferenceDataset, cfg: TrainConfig, world: World,
                 trainable: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, scheduler: LambdaLR):
        self.save_policy = _policy_saver(policy, cfg.model.lora)
        self.run_config = {**cfg.to_dict(), 'base_policy': policy.source, 'base_policy_id': policy.policy_id,
                           'dataset': str(ds.path or ''), 'world_size': world.world_size}
        self.info = {'world_size': world.world_size, 'micro_batch': cfg.optim.micro_batch,
                     'grad_accum': cfg.optim.grad_accum, 'method': cfg.loss.method}
        self.trainable, self.optimizer, self.scheduler = trainable, optimizer, scheduler

    def save(self, step: int, path: Path) -> Path:
        rng = {'torch': torch.get_rng_state()}
        if torch.cuda.is_available():
            rng['cuda'] = torch.cuda.get_rng_state()
        return save_train_checkpoint(path, self.save_policy, self.trainable, self.optimizer, self.scheduler, rng,
                                     {**self.info, 'step': step}, self.run_config)


class _MetricLog:
    """Metrics of the micro-batches since the last log step -> their means (over ranks too) every ``log_every``
    steps; rank 0 shows them on the progress bar, writes TensorBoard (``<out>/tb``) and appends them as one JSON
    line to ``<out>/metrics.jsonl`` (per-class r and lambda, z0, ...: what ``hapo experiment`` stores). One sync
    per log step."""

    def __init__(self, cfg: TrainConfig, out: Path, world: World, start: int, progress: bool):
        from tqdm import tqdm

        self.every, self.total, self.world = cfg.run.log_every, cfg.optim.max_steps, world
        self.window: dict[str, list[torch.Tensor]] = {}
        self.tb = None
        self.jsonl = out / 'metrics.jsonl'
        if world.main and cfg.run.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / 'tb'))
        self.bar = tqdm(total=self.total, initial=start, desc=f'optimize[{cfg.loss.method}]', unit='step',
                        disable=not (progress and world.main))

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            self.window.setdefault(key, []).append(value)

    def step_done(self, step: int, lr: float) -> None:
        """Every rank calls this after each optimiser step (the means are a collective under DDP)."""
        self.bar.update(1)
        if step % self.every and step != self.total:
            return
        names = sorted(self.window)  # the same on every rank: one code path computes them
        means = _window_means(self.window, names, self.world.world_size > 1).tolist()  # 1 sync
        self.window.clear()
        if not self.world.main:
            return
        scalars = {**dict(zip(names, means, strict=True)), 'lr': lr}
        self.bar.set_postfix({k: f'{scalars[k]:.3g}' for k in ('loss', 'kl', 'rewards/margins') if k in scalars})
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
        self.jsonl.parent.mkdir(parents=True, exist_ok=True)
        with self.jsonl.open('a') as f:  # NaN (a class absent from the window) is written as null
            f.write(json.dumps({'step': step, **{k: None if math.isnan(v) else v for k, v in scalars.items()}}) + '\n')

    def close(self) -> None:
        self.bar.close()
        if self.tb is not None:
            self.tb.close()


def _window_means(window: dict[str, list[torch.Tensor]], names: list[str], distributed: bool) -> torch.Tensor:
    """Mean of each metric over the log window (and all ranks under DDP), NaN entries (empty classes) skipped."""
    values = [torch.stack(window[n]).float().flatten() for n in names]  # (M,) per name
    totals = torch.stack([torch.stack([torch.nansum(v), (~v.isnan()).sum().float()]) for v in values])  # (N, 2)
    if distributed:
        torch.distributed.all_reduce(totals)
    return totals[:, 0] / totals[:, 1]  # (N,): NaN where no rank saw the class


def _any_rank(flag: bool, world: World) -> bool:
    """Whether ``flag`` is set on any rank (so all ranks stop at the same step)."""
    t = torch.tensor(float(flag))
    if world.world_size > 1:
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return t.item() > 0


def train(policy: Any, ds: PreferenceDataset, cfg: TrainConfig, out: Path, *, resume: bool = False,
          world: World = World(), progress: bool = True, log: Callable[[str], None] = print,
          on_epoch_end: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train ``policy`` in place on ``ds``; rank 0 writes ``out``.

    ``on_epoch_end(epoch, step)`` runs on every rank after the optimiser step ``step`` (1-based count) in
    which this rank's micro-batches of ``epoch`` (0, 1, ...) ran out: the place for work between epochs
    (evaluation, say) that base-policy training needs without a second loop.
    """
    algo, o = get_algo(cfg.loss.method), cfg.optim
    torch.manual_seed(cfg.run.seed + world.rank)  # dropout differs per rank; sampler order does not use it
    if cfg.model.lora:
        _apply_lora(policy, cfg)
    ref_forward = _reference_forward(policy, cfg.model.lora)
    model = policy.model
    model.train()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    optimizer, scheduler = _optimizer(list(trainable.values()), o)
    step = _resume(out, trainable, optimizer, scheduler, o, world, log) if resume else 0
    module = _data_parallel(model, policy.device, world)
    data = TrainTensors(ds, policy, policy.device)
    ref = ReferenceCache(policy, ref_forward, data)
    batches = MicroBatches(data, ref, algo, cfg, world.rank, world.world_size)
    autocast = _autocast(policy.device, cfg.model.bf16)
    checkpoints = _Checkpoints(policy, ds, cfg, world, trainable, optimizer, scheduler)
    metrics_log = _MetricLog(cfg, out, world, step, progress)
    interrupted = False
    with _StopFlag() as stop:
        while step < o.max_steps:
            for k in range(o.grad_accum):  # DDP all-reduces the gradients on the last micro-batch only
                idx, samples = batches(step * o.grad_accum + k)
                sync = k == o.grad_accum - 1 or world.world_size == 1
                with contextlib.nullcontext() if sync else module.no_sync():
                    loss, metrics = micro_batch_loss(module, model, policy, data, ref, idx, algo, cfg.loss, autocast,
                                                     samples)
                    (loss / o.grad_accum).backward()
                metrics_log.add(metrics)
            grad_norm = torch.nn.utils.clip_grad_norm_(list(trainable.values()), o.grad_clip or float('inf'))
            metrics_log.add({'grad_norm': grad_norm.detach()})
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            metrics_log.step_done(step, scheduler.get_last_lr()[0])
            if on_epoch_end is not None:
                for epoch in batches.epochs_ended((step - 1) * o.grad_accum, step * o.grad_accum):
                    on_epoch_end(epoch, step)
            if _any_rank(stop.stop, world) and step < o.max_steps:
                interrupted = True
                break
            every = cfg.run.checkpoint_every
            if world.main and every and step % every == 0 and step < o.max_steps:
                checkpoints.save(step, out / 'checkpoints' / f'step-{step:06d}')
    metrics_log.close()
    final = out / 'checkpoints' / f'step-{step:06d}' if interrupted else out / 'policy'
    if world.main:
        checkpoints.save(step, final)
    return TrainResult(final, step, interrupted)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='hapo optimize', description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--bags', nargs='+', required=True, help='episode bag directories, or directories of them')
    p.add_argument('--policy', required=True, help='input checkpoint: the policy to refine and the frozen reference')
    p.add_argument('--out', required=True, help='run directory (checkpoints/, policy/, tb/, config.yaml)')
    p.add_argument('--config', default=None, help='trainer YAML (default: built-in defaults = config/optimize.yaml)')
    p.add_argument('--method', choices=METHODS, default=None, help='overrides loss.method')
    p.add_argument('--K', type=int, default=None, help='relabel window; overrides data.K')
    p.add_argument('--steps', type=int, default=None, help='optimiser steps; overrides optim.max_steps')
    p.add_argument('--lr', type=float, default=None, help='overrides optim.lr')
    p.add_argument('--micro-batch', type=int, default=None, help='overrides optim.micro_batch')
    p.add_argument('--grad-accum', type=int, default=None, help='overrides optim.grad_accum')
    p.add_argument('--seed', type=int, default=None, help='overrides run.seed')
    p.add_argument('--checkpoint-every', type=int, default=None, help='overrides run.checkpoint_every')
    p.add_argument('--log-every', type=int, default=None, help='overrides run.log_every')
    p.add_argument('--cache-dir', default=None, help='overrides data.cache_dir')
    p.add_argument('--lora', action='store_true', help='sets model.lora (peft adapters)')
    p.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default=None, help='overrides model.device')
    p.add_argument('--resume', action='store_true', help='continue from the latest checkpoint in --out')
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    return p


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    cfg = load_config(args.config)
    overrides = {'loss.method': args.method, 'data.K': args.K, 'optim.max_steps': args.steps, 'optim.lr': args.lr,
                 'optim.micro_batch': args.micro_batch, 'optim.grad_accum': args.grad_accum, 'run.seed': args.seed,
                 'run.checkpoint_every': args.checkpoint_every, 'run.log_every': args.log_every,
                 'data.cache_dir': args.cache_dir, 'model.device': args.device, 'model.lora': args.lora or None}
    return cfg.replace(**{k: v for k, v in overrides.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``optimize`` / ``hapo optimize`` / ``torchrun -m hapo_trainer.optimize``."""
    args = _parser().parse_args(argv)
    world = World.from_env()
    out = Path(args.out)

    def fail(msg: str, code: int = 2) -> int:
        print(f'hapo optimize: {msg}', file=sys.stderr)
        return code

    try:
        cfg = resolve_config(args)
    except ConfigError as exc:
        return fail(str(exc))
    with contextlib.ExitStack() as held:
        if world.main:
            try:
                held.enter_context(run_lock(out))
            except RunLockedError as exc:
                return fail(str(exc))
        return _optimize(args, cfg, world, out, fail)


def _optimize(args: argparse.Namespace, cfg: TrainConfig, world: World, out: Path, fail: Callable[..., int]) -> int:
    """``main`` once the run directory is held."""
    if not args.resume and world.main and latest_checkpoint(out) is not None:
        return fail(f'{out} already holds a run; pass --resume to continue it or choose another --out')
    device = cfg.model.device
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda':
        if not torch.cuda.is_available():
            return fail('model.device=cuda but no CUDA device is available')
        device = f'cuda:{world.local_rank}'
        torch.cuda.set_device(world.local_rank)
    if world.world_size > 1:
        torch.distributed.init_process_group('nccl' if device.startswith('cuda') else 'gloo')
    log = print if world.main else (lambda *a, **k: None)
    try:
        from hapo_policy.errors import CheckpointError
        from hapo_policy.model import VlaPolicy

        try:
            policy = VlaPolicy.from_pretrained(args.policy, device=device,
                                               trust_remote_code=cfg.model.trust_remote_code)
            spec = BuildSpec.for_policy(cfg.data, policy)
            if world.main:  # rank 0 builds (or validates the cache); the others then read the cache
                ds = build_dataset(args.bags, spec, method=cfg.loss.method, log=lambda m: print(m, file=sys.stderr),
                                   progress=not args.no_progress)
            if world.world_size > 1:
                torch.distributed.barrier()
            if not world.main:
                ds = build_dataset(args.bags, spec, method=cfg.loss.method, log=lambda m: None, progress=False)
        except (CheckpointError, DatasetError) as exc:
            return fail(str(exc))
        if world.main:
            out.mkdir(parents=True, exist_ok=True)
            (out / 'config.yaml').write_text(dump_yaml(cfg))
            print(f'hapo optimize: {len(ds)} samples {ds.class_counts()}, method {cfg.loss.method}, '
                  f'{cfg.optim.max_steps} steps x {cfg.optim.micro_batch * cfg.optim.grad_accum * world.world_size} '
                  f'samples, world {world.world_size}, device {device}', file=sys.stderr)
        try:
            result = train(policy, ds, cfg, out, resume=args.resume, world=world, progress=not args.no_progress,
                           log=log)
        except ResumeError as exc:
            return fail(str(exc))
        except (OSError, SafetensorError) as exc:  # disk full while saving: the partial is gone, older ones stand
            last = latest_checkpoint(out)
            where = getattr(exc, 'filename', None) or out
            return fail(f'cannot write {where}: {getattr(exc, "strerror", None) or exc}; '
                        + (f'{last} is the latest loadable checkpoint (free space, then --resume)' if last else
                           'no checkpoint was saved'))
        except KeyboardInterrupt:  # a second Ctrl-C: gave up at once
            return fail('interrupted twice; nothing saved since the last checkpoint', 130)
        if result.interrupted:
            if world.main:
                print(f'hapo optimize: interrupted; saved {result.path} (continue with --resume)', file=sys.stderr)
            return 130
        if world.world_size > 1:  # rank 0 was saving: tear gloo down together (a rank gone early aborted the other)
            torch.distributed.barrier()
        if world.main:
            from hapo_trainer.metrics_plot import plot_metrics

            png = plot_metrics(out / 'metrics.jsonl', out / 'metrics.png',
                               title=f'hapo optimize {cfg.loss.method}: {out}')
            if png is not None:
                print(f'hapo optimize: curves {png} (TensorBoard: tensorboard --logdir {out / "tb"})', file=sys.stderr)
            print(result.path)
        return 0
    finally:
        if world.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == '__main__':
    sys.exit(main())

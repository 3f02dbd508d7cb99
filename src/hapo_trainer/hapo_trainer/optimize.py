# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``optimize``: bags -> preference dataset -> HAPO (or a baseline) fine-tuning -> a policy checkpoint.

Data flow::

    --bags --(dataset.build_dataset, cached)--> PreferenceDataset --(sampler.epoch_batches, seed/epoch/rank)-->
    micro-batches of 8 --(steps.micro_batch_loss: policy log-probs, cached reference log-probs, hapo_loss)-->
    grad accumulation (+ DDP all-reduce) --> AdamW, warm-up + cosine, clip --> <out>/checkpoints/step-N, <out>/policy

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
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hapo_policy.logprobs import action_logprobs
from hapo_trainer.algos import METHODS, get_algo
from hapo_trainer.config import ConfigError, TrainConfig, dump_yaml, load_config
from hapo_trainer.dataset import BuildSpec, DatasetError, PreferenceDataset, build_dataset
from hapo_trainer.sampler import epoch_batches
from hapo_trainer.steps import ReferenceCache, TrainTensors, micro_batch_loss
from hapo_trainer.train_state import ResumeError, latest_checkpoint, load_train_checkpoint, save_train_checkpoint


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


def _window_means(window: dict[str, list[torch.Tensor]], names: list[str], distributed: bool) -> torch.Tensor:
    """Mean of each metric over the log window (and all ranks under DDP), NaN entries (empty classes) skipped."""
    values = [torch.stack(window[n]).float().flatten() for n in names]  # (M,) per name
    totals = torch.stack([torch.stack([torch.nansum(v), (~v.isnan()).sum().float()]) for v in values])  # (N, 2)
    if distributed:
        torch.distributed.all_reduce(totals)
    return totals[:, 0] / totals[:, 1]  # (N,): NaN where no rank saw the class


def _apply_lora(policy: Any, cfg: TrainConfig) -> None:
    from peft import LoraConfig, get_peft_model

    m = cfg.model
    lora = LoraConfig(r=m.lora_rank, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout,
                      target_modules=list(m.lora_targets))
    policy.model = get_peft_model(policy.model, lora)


def _policy_saver(policy: Any, lora: bool):
    """A function writing the policy the node loads (LoRA adapters merged into a copy of the weights)."""
    def save(path: Path, run_config: dict[str, Any]) -> Path:
        if not lora:
            return policy.save_pretrained(path, run_config)
        merged = copy.deepcopy(policy.model).merge_and_unload()
        return policy.with_model(merged).save_pretrained(path, run_config)  # a foreign model keeps its processor

    return save


def train(policy: Any, ds: PreferenceDataset, cfg: TrainConfig, out: Path, *, resume: bool = False,
          world: World = World(), progress: bool = True, log=print) -> tuple[Path, int]:
    """Train ``policy`` in place on ``ds``; returns (final checkpoint path, last step). Rank 0 writes ``out``."""
    algo = get_algo(cfg.loss.method)
    ratios = cfg.loss.class_ratios()
    o = cfg.optim
    device = policy.device
    torch.manual_seed(cfg.run.seed + world.rank)  # dropout differs per rank; sampler order does not use it
    if cfg.model.lora:
        _apply_lora(policy, cfg)
        model = policy.model

        def ref_forward(batch, tokens):  # reference = same weights with the adapters off (as TRL with peft)
            with model.disable_adapter():
                return action_logprobs(model, policy.tokenizer.first_id, batch, tokens)
    else:
        ref_model = copy.deepcopy(policy.model).eval().requires_grad_(False)

        def ref_forward(batch, tokens):
            return action_logprobs(ref_model, policy.tokenizer.first_id, batch, tokens)
    model = policy.model
    model.train()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(list(trainable.values()), lr=o.lr, betas=tuple(o.adam_betas),
                                  weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_lambda(s, o.warmup_steps, o.max_steps, o.min_lr_ratio))
    start = 0
    if resume:
        ckpt = latest_checkpoint(out)
        if ckpt is None:
            raise ResumeError(f'--resume: no checkpoint with train_state.json under {out}')
        body, rng = load_train_checkpoint(ckpt, trainable, optimizer, scheduler)
        if body.get('world_size') != world.world_size or body.get('micro_batch') != o.micro_batch:
            log(f'warning: resuming a run of world_size={body.get("world_size")}, micro_batch='
                f'{body.get("micro_batch")} with {world.world_size}, {o.micro_batch}: the sample order differs')
        start = int(body['step'])
        torch.set_rng_state(rng['torch'])
        if 'cuda' in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng['cuda'])
        if world.main:
            log(f'resuming from {ckpt} at step {start}')
    module = model
    if world.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)
    data = TrainTensors(ds, policy, device)
    ref = ReferenceCache(policy, ref_forward, data)
    use_bf16 = device.type == 'cuda' and cfg.model.bf16

    def autocast():
        return torch.autocast('cuda', dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    epoch_len = len(epoch_batches(ds.labels, o.micro_batch, ratios, cfg.run.seed, 0, world.rank, world.world_size))
    cache: dict[int, list[list[int]]] = {}

    def micro_batch(m: int) -> list[int]:
        """The m-th micro-batch of this rank: a pure function of (seed, epoch, rank) -> exact resume."""
        epoch, pos = divmod(m, epoch_len)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = epoch_batches(ds.labels, o.micro_batch, ratios, cfg.run.seed, epoch, world.rank,
                                         world.world_size)
            ref.ensure(ReferenceCache.pairs_for(cache[epoch], algo))
        return cache[epoch][pos]

    tb = None
    if world.main and cfg.run.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(out / 'tb'))
    run_config = {**cfg.to_dict(), 'base_policy': policy.source, 'base_policy_id': policy.policy_id,
                  'dataset': str(ds.path or ''), 'world_size': world.world_size}
    save_policy = _policy_saver(policy, cfg.model.lora)

    def checkpoint(step: int, path: Path) -> Path:
        rng = {'torch': torch.get_rng_state()}
        if torch.cuda.is_available():
            rng['cuda'] = torch.cuda.get_rng_state()
        info = {'step': step, 'world_size': world.world_size, 'micro_batch': o.micro_batch,
                'grad_accum': o.grad_accum, 'method': algo.name}
        return save_train_checkpoint(path, save_policy, trainable, optimizer, scheduler, rng, info, run_config)

    from tqdm import tqdm

    bar = tqdm(total=o.max_steps, initial=start, desc=f'optimize[{algo.name}]', unit='step',
               disable=not (progress and world.main))
    window: dict[str, list[torch.Tensor]] = {}
    step = start
    interrupted = False
    with _StopFlag() as stop:
        while step < o.max_steps:
            for k in range(o.grad_accum):
                idx = micro_batch(step * o.grad_accum + k)
                sync = k == o.grad_accum - 1 or world.world_size == 1
                ctx = contextlib.nullcontext() if sync else module.no_sync()
                with ctx:
                    loss, metrics = micro_batch_loss(module, model, policy, data, ref, idx, algo, cfg.loss, autocast)
                    (loss / o.grad_accum).backward()
                for key, value in metrics.items():
                    window.setdefault(key, []).append(value)
            params = list(trainable.values())
            grad_norm = torch.nn.utils.clip_grad_norm_(params, o.grad_clip if o.grad_clip > 0 else float('inf'))
            window.setdefault('grad_norm', []).append(grad_norm.detach())
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            if step % cfg.run.log_every == 0 or step == o.max_steps:
                names = sorted(window)  # the same on every rank: one code path computes them
                means = _window_means(window, names, world.world_size > 1).tolist()  # 1 sync
                window.clear()
            if world.main and (step % cfg.run.log_every == 0 or step == o.max_steps):
                scalars = dict(zip(names, means, strict=True))
                scalars['lr'] = scheduler.get_last_lr()[0]
                bar.set_postfix({k: f'{scalars[k]:.3g}' for k in ('loss', 'kl', 'rewards/margins') if k in scalars})
                if tb is not None:
                    for k, v in scalars.items():
                        tb.add_scalar(k, v, step)
            should_stop = torch.tensor(float(stop.stop))
            if world.world_size > 1:
                torch.distributed.all_reduce(should_stop, op=torch.distributed.ReduceOp.MAX)
            if should_stop.item() > 0 and step < o.max_steps:
                interrupted = True
                break
            every = cfg.run.checkpoint_every
            if world.main and every and step % every == 0 and step < o.max_steps:
                checkpoint(step, out / 'checkpoints' / f'step-{step:06d}')
    bar.close()
    final = out / 'checkpoints' / f'step-{step:06d}' if interrupted else out / 'policy'
    if world.main:
        checkpoint(step, final)
        if tb is not None:
            tb.close()
    if interrupted:
        raise KeyboardInterrupt(str(final))
    return final, step


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
            final, step = train(policy, ds, cfg, out, resume=args.resume, world=world,
                                progress=not args.no_progress, log=log)
        except ResumeError as exc:
            return fail(str(exc))
        except KeyboardInterrupt as exc:
            if world.main:
                print(f'hapo optimize: interrupted; saved {exc} (continue with --resume)', file=sys.stderr)
            return 130
        if world.world_size > 1:  # rank 0 was saving: tear gloo down together (a rank gone early aborted the other)
            torch.distributed.barrier()
        if world.main:
            print(final)
        return 0
    finally:
        if world.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == '__main__':
    sys.exit(main())

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""One micro-batch of any method: which samples (``MicroBatches``), encode, teacher-forced log-probs, the
method's loss, metrics (no logging).

Shared by ``optimize`` (the loop) and ``bench/bench_train_step.py``, so the bench times exactly what trains.
Letters: B samples, A action tokens, V action bins.

Reference log-probs come from ``ReferenceCache``: log pi_ref(a_j | o_i) for every (observation i, action j)
pair the run needs — the matched pairs (i, i) and the KL pairs (i, roll-by-one partner) — computed once with
the frozen reference (a copy of the input policy, or the same model with its LoRA adapters disabled) and
reused in every later epoch in which the same pair recurs. ``MicroBatches`` fills the cache for an epoch
when the loop first reaches it, and applies the image augmentation (``optim.image_shift_px``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hapo_policy.logprobs import action_logprobs
from hapo_policy.observation import Observation
from hapo_trainer.algos import Algo
from hapo_trainer.augment import random_shift
from hapo_trainer.config import LossConfig, TrainConfig
from hapo_trainer.dataset import PreferenceDataset
from hapo_trainer.loss import bc_loss, hapo_loss, paired_loss, sirius_weights
from hapo_trainer.sampler import epoch_batches

_SHIFT_STREAM = 104_729  # separates the augmentation's seeds from the sampler's


def kl_partners(idx: list[int]) -> list[int]:
    """Action partner of each sample for the KL estimate: the batch rolled by one (sample k gets k-1's action).

    Works for any B >= 2, odd included; with B = 1 the partner is the sample itself and ``hapo_loss`` uses
    z0 = 0 (see loss.py).
    """
    return [idx[(k - 1) % len(idx)] for k in range(len(idx))]


class TrainTensors:
    """The dataset's per-sample arrays as tensors on the training device (tokens with the base stats)."""

    def __init__(self, ds: PreferenceDataset, policy: Any, device: torch.device):
        self.ds = ds
        self.tokens = torch.from_numpy(policy.tokenizer.encode(ds.actions)).to(device)  # (N, A) long
        self.actions = torch.from_numpy(ds.actions).to(device)  # (N, A) float32
        self.labels = torch.from_numpy(ds.labels.astype(np.int64)).to(device)  # (N,)
        proposals = np.where(np.isfinite(ds.proposals), ds.proposals, ds.actions)  # (N, A): none -> the action
        self.proposal_tokens = torch.from_numpy(policy.tokenizer.encode(proposals)).to(device)  # (N, A) long
        self.paired = torch.from_numpy(ds.paired()).to(device) & (self.proposal_tokens != self.tokens).any(1)  # (N,)

    def targets(self, acts: list[int]) -> Tensor:
        """(C, A) action tokens of pair partners: ``a >= 0`` the recorded action of sample a, ``a < 0`` the policy's
        proposal of sample ``-1 - a``."""
        return torch.stack([self.tokens[a] if a >= 0 else self.proposal_tokens[-1 - a] for a in acts])


class ReferenceCache:
    """Frozen-reference log-probs per (observation, action) pair, computed in no-grad chunks on demand."""

    def __init__(self, policy: Any, ref_forward: Callable[[dict[str, Any], Tensor], tuple[Tensor, Tensor]],
                 data: TrainTensors, chunk: int = 64):
        self.policy, self.ref_forward, self.data, self.chunk = policy, ref_forward, data, chunk
        self.logps: dict[tuple[int, int], float] = {}
        self.argmax = torch.full_like(data.tokens, -1)  # (N, A) reference argmax of the matched pairs

    def ensure(self, pairs: Iterable[tuple[int, int]]) -> int:
        """Compute the missing pairs; returns how many were computed."""
        todo = sorted({p for p in pairs if p not in self.logps})
        for s in range(0, len(todo), self.chunk):
            part = todo[s:s + self.chunk]
            obs = [o for o, _ in part]
            with torch.no_grad():
                batch = self.policy.encode_batch([self.data.ds.sample(o) for o in obs])
                lp, am = self.ref_forward(batch, self.data.targets([a for _, a in part]))  # (C, A), (C, A)
            for k, (pair, value) in enumerate(zip(part, lp.sum(1).tolist(), strict=True)):
                self.logps[pair] = value
                if pair[0] == pair[1]:
                    self.argmax[pair[0]] = am[k]
        return len(todo)

    def get(self, obs: list[int], acts: list[int]) -> Tensor:
        """(B,) float32 reference log-probs of the given pairs (must be ensured)."""
        return torch.tensor([self.logps[(o, a)] for o, a in zip(obs, acts, strict=True)],
                            dtype=torch.float32, device=self.data.tokens.device)

    @staticmethod
    def pairs_for(batches: Iterable[list[int]], algo: Algo, paired: Tensor | None = None) -> list[tuple[int, int]]:
        """Pairs a list of micro-batches needs: matched always (metrics), KL pairs for preference losses, and
        (``algo.paired``) each paired correction with its proposal, ``(i, -1 - i)``."""
        out = []
        for idx in batches:
            out.extend((i, i) for i in idx)
            if algo.loss == 'preference':
                out.extend(zip(idx, kl_partners(idx), strict=True))
            if algo.paired and paired is not None:
                out.extend((i, -1 - i) for i in idx if paired[i])
        return out


class MicroBatches:
    """This rank's m-th micro-batch: ``(indices, samples)``, a pure function of (seed, rank, world size, m).

    Nothing depends on how many batches were drawn before, so ``--resume`` at step s asks for micro-batch
    ``s * grad_accum`` and gets what the uninterrupted run got (order and image shifts alike). Reference
    log-probs an epoch needs are computed when the loop first reaches that epoch (``ReferenceCache.ensure``).
    The shifts apply to the policy's inputs only: the reference's log-probs and argmax are of the recorded
    images (which is why ``TrainConfig`` allows shifts only for the BC methods).
    """

    def __init__(self, data: TrainTensors, ref: ReferenceCache, algo: Algo, cfg: TrainConfig, rank: int = 0,
                 world_size: int = 1):
        self.data, self.ref, self.algo = data, ref, algo
        self.ratios = cfg.loss.class_ratios()
        self.micro_batch, self.seed, self.shift_px = cfg.optim.micro_batch, cfg.run.seed, cfg.optim.image_shift_px
        self.rank, self.world_size = rank, world_size
        self.epoch_len = len(self._epoch(0))  # every epoch has the same number of micro-batches
        self._cached: tuple[int, list[list[int]]] | None = None

    def _epoch(self, epoch: int) -> list[list[int]]:
        return epoch_batches(self.data.ds.labels, self.micro_batch, self.ratios, self.seed, epoch, self.rank,
                             self.world_size)

    def __call__(self, m: int) -> tuple[list[int], list[Observation]]:
        epoch, pos = divmod(m, self.epoch_len)
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self._epoch(epoch))
            self.ref.ensure(ReferenceCache.pairs_for(self._cached[1], self.algo, self.data.paired.tolist()))
        idx = self._cached[1][pos]
        samples = [self.data.ds.sample(i) for i in idx]
        if self.shift_px:
            rng = np.random.default_rng([self.seed, self.rank, m, _SHIFT_STREAM])
            samples = [s._replace(images=random_shift(s.images, self.shift_px, rng)) for s in samples]
        return idx, samples

    def epochs_ended(self, m_from: int, m_to: int) -> range:
        """Epochs whose last micro-batch lies in [m_from, m_to): those that ended while drawing them."""
        return range(m_from // self.epoch_len, m_to // self.epoch_len)


def action_l1_normalized(tokenizer: Any, argmax: Tensor, tokens: Tensor) -> Tensor:
    """(B,) HAPO l_i on normalised bin centres: mean over A of |centre(argmax) - centre(recorded token)|.

    ``loss.l1_space='normalized'``: the reference's rule (HAPO's public code computes l_i as OpenVLA's
    ``vla-scripts/finetune.py`` computes its action L1, both token sequences decoded to bin centres in [-1, 1]).
    It differs from our default ``'raw'`` by the scale (q99 - q01) of each dimension and by the half-bin
    rounding of the target.
    """
    stats = tokenizer.stats
    pred = stats.normalize_torch(tokenizer.decode_torch(argmax, check=False))  # (B, A) in [-1, 1]
    target = stats.normalize_torch(tokenizer.decode_torch(tokens, check=False))  # (B, A) bin centres
    return (pred - target).abs().mean(1).detach()  # (B,)


def micro_batch_loss(module: Callable[..., Tensor], raw_model: torch.nn.Module, policy: Any, data: TrainTensors,
                     ref: ReferenceCache, idx: list[int], algo: Algo, cfg: LossConfig,
                     autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                     samples: list[Observation] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss and metrics of one micro-batch ``idx`` (the loss is called on exactly these B samples).

    ``samples``: the observations of ``idx`` as the policy sees them (``MicroBatches``: augmented); None = as
    recorded.
    """
    first_id = policy.tokenizer.first_id
    batch = policy.encode_batch(samples if samples is not None else [data.ds.sample(i) for i in idx])
    ix = torch.tensor(idx, device=data.tokens.device)  # (B,)
    tokens, labels = data.tokens[ix], data.labels[ix]  # (B, A), (B,)
    with autocast():
        logps, argmax = action_logprobs(module, first_id, batch, tokens)  # (B, A), (B, A)
    pred = policy.tokenizer.decode_torch(argmax, check=False)  # (B, A) continuous, from argmax tokens
    # HAPO l_i. Departure from the reference (normalised bin centres of argmax and target, kept as the option
    # loss.l1_space='normalized'): by default raw action units (m, rad per step) against the recorded action
    # itself, as DESIGN.md states it; a dimension with a wide range (q99 - q01) weighs more.
    raw_l1 = (pred - data.actions[ix]).abs().mean(1).detach()  # (B,)
    l1 = raw_l1 if cfg.l1_space == 'raw' else action_l1_normalized(policy.tokenizer, argmax, tokens)  # (B,) l_i
    if algo.loss == 'preference':
        partners = kl_partners(idx)
        with torch.no_grad(), autocast():  # z0 is detached: no graph for the KL pairs
            kl_logps = action_logprobs(raw_model, first_id, batch, data.tokens[torch.tensor(partners)])[0].sum(1)
        # r sums the A action tokens (logps.sum(1)); the reference also counts the stop token: see loss.py.
        loss, metrics = hapo_loss(logps.sum(1), ref.get(idx, idx), kl_logps, ref.get(idx, partners), l1, labels > 0,
                                  cfg, adaptive=algo.adaptive, labels=labels, weighting=algo.weighting)
        if algo.paired:
            paired = data.paired[ix]  # (B,)
            rejected = [-1 - i if p else i for i, p in zip(idx, paired.tolist(), strict=True)]  # unpaired: masked
            with autocast():
                prop_logps = action_logprobs(module, first_id, batch, data.targets(rejected))[0].sum(1)  # (B,)
            pair_loss, pair_metrics = paired_loss(logps.sum(1), ref.get(idx, idx), prop_logps, ref.get(idx, rejected),
                                                  paired, cfg.beta)
            loss = loss + algo.paired * pair_loss
            metrics.update(pair_metrics)
    else:
        weights = sirius_weights(labels, algo.class_weights) if algo.class_weights else None
        mask = labels >= 0 if algo.class_weights else labels > 0  # Sirius: weights decide; BC: desirable only
        loss, metrics = bc_loss(logps, mask, weights)
    with torch.no_grad():
        ref_pred = policy.tokenizer.decode_torch(ref.argmax[ix], check=False)  # (B, A)
        metrics['action/l1'] = raw_l1.mean()
        metrics['action/token_accuracy'] = (argmax == tokens).float().mean()
        metrics['action/l1_vs_reference'] = (pred - ref_pred).abs().mean()
    return loss, metrics

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""One micro-batch of any method: encode, teacher-forced log-probs, the method's loss, metrics (no logging).

Shared by ``optimize`` (the loop) and ``bench/bench_train_step.py``, so the bench times exactly what trains.
Letters: B samples, A action tokens, V action bins.

Reference log-probs come from ``ReferenceCache``: log pi_ref(a_j | o_i) for every (observation i, action j)
pair the run needs — the matched pairs (i, i) and the KL pairs (i, roll-by-one partner) — computed once with
the frozen reference (a copy of the input policy, or the same model with its LoRA adapters disabled) and
reused in every later epoch in which the same pair recurs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hapo_policy.logprobs import action_logprobs
from hapo_trainer.algos import Algo
from hapo_trainer.config import LossConfig
from hapo_trainer.dataset import PreferenceDataset
from hapo_trainer.loss import bc_loss, hapo_loss, sirius_weights


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
            acts = torch.tensor([a for _, a in part], device=self.data.tokens.device)
            with torch.no_grad():
                batch = self.policy.encode_batch([self.data.ds.sample(o) for o in obs])
                lp, am = self.ref_forward(batch, self.data.tokens[acts])  # (C, A), (C, A)
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
    def pairs_for(batches: Iterable[list[int]], algo: Algo) -> list[tuple[int, int]]:
        """Pairs a list of micro-batches needs: matched always (metrics), KL pairs for preference losses."""
        out = []
        for idx in batches:
            out.extend((i, i) for i in idx)
            if algo.loss == 'preference':
                out.extend(zip(idx, kl_partners(idx), strict=True))
        return out


def micro_batch_loss(module: Callable[..., Tensor], raw_model: torch.nn.Module, policy: Any, data: TrainTensors,
                     ref: ReferenceCache, idx: list[int], algo: Algo, cfg: LossConfig,
                     autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                     ) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss and metrics of one micro-batch ``idx`` (the loss is called on exactly these B samples)."""
    first_id = policy.tokenizer.first_id
    batch = policy.encode_batch([data.ds.sample(i) for i in idx])
    ix = torch.tensor(idx, device=data.tokens.device)  # (B,)
    tokens, labels = data.tokens[ix], data.labels[ix]  # (B, A), (B,)
    with autocast():
        logps, argmax = action_logprobs(module, first_id, batch, tokens)  # (B, A), (B, A)
    pred = policy.tokenizer.decode_torch(argmax, check=False)  # (B, A) continuous, from argmax tokens
    l1 = (pred - data.actions[ix]).abs().mean(1).detach()  # (B,)  HAPO l_i
    if algo.loss == 'preference':
        partners = kl_partners(idx)
        with torch.no_grad(), autocast():  # z0 is detached: no graph for the KL pairs
            kl_logps = action_logprobs(raw_model, first_id, batch, data.tokens[torch.tensor(partners)])[0].sum(1)
        loss, metrics = hapo_loss(logps.sum(1), ref.get(idx, idx), kl_logps, ref.get(idx, partners), l1, labels > 0,
                                  beta=cfg.beta, beta_d=cfg.beta_d, beta_u=cfg.beta_u, gamma=cfg.gamma,
                                  kl_clamp=(cfg.kl_clamp[0], cfg.kl_clamp[1]), eps=cfg.eps, adaptive=algo.adaptive,
                                  labels=labels)
    else:
        weights = sirius_weights(labels, algo.class_weights) if algo.class_weights else None
        mask = labels >= 0 if algo.class_weights else labels > 0  # Sirius: weights decide; BC: desirable only
        loss, metrics = bc_loss(logps, mask, weights)
    with torch.no_grad():
        ref_pred = policy.tokenizer.decode_torch(ref.argmax[ix], check=False)  # (B, A)
        metrics['action/l1'] = l1.mean()
        metrics['action/token_accuracy'] = (argmax == tokens).float().mean()
        metrics['action/l1_vs_reference'] = (pred - ref_pred).abs().mean()
    return loss, metrics

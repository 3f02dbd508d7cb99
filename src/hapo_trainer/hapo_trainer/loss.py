# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""HAPO / KTO preference loss, BC cross-entropy and Sirius class weights: pure functions on tensors.

Equations refer to DESIGN.md 'The method' and to the paper (arXiv 2506.07127, "Human-assisted Robotic
Policy Refinement via Action Preference Optimization", Sec. 3.3 / Alg. 1) and to KTO (arXiv 2402.01306,
Eq. 8). Nothing here holds trainer state, logs, gathers across processes or calls ``.item()``: the training
loop does those once per log step.

Letters in shape comments: B samples in the (micro-)batch, A action tokens (7).

Degenerate batches (STYLE habit 22; TRL issues #2554 batch size 1, #1911 odd batch KL):

* KL pairs come from rolling the batch by one (sample j paired with the action of sample j-1). That works
  for any B >= 2, odd included. With B = 1 the roll pairs a sample with its own action, so the "KL" would be
  the sample's own log-ratio r; subtracting it would make the loss constant (zero gradient) — the sample would
  silently teach nothing. We therefore define z0 = 0 when B < 2 (a neutral reference point, as if policy
  and reference agree, which is exactly true at the first step) and report ``kl/defined`` = 0.
* An empty class (no desirable or no undesirable sample in the batch) contributes exactly 0 to the loss;
  its metrics are NaN (meaning "no samples"), so the loop averages them with ``nanmean``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from hapo_interfaces.enums import TRAINING_LABELS, Label
from hapo_trainer.config import LossConfig


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over ``mask``; NaN when the mask is empty (no sample of that kind in the batch)."""
    n = mask.sum()
    total = torch.where(mask, x, torch.zeros_like(x)).sum()
    return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(total, float('nan')))


def kl_reference_point(policy_kl_logps: Tensor, reference_kl_logps: Tensor,
                       kl_clamp: tuple[float, float] | None = (-5.0, 5.0)) -> tuple[Tensor, Tensor]:
    """KTO reference point z0 from the mismatched pairs; returns (z0 clamped and detached, z0 raw).

    KTO Eq. 8 / HAPO Alg. 1: z0 = mean_j [log pi(a'_j|o_j) - log pi_ref(a'_j|o_j)], no gradient.

    Deviation from TRL (``trl/trainer/kto_trainer.py``, ``kl = ...mean().clamp(min=0)``): TRL clamps at
    >= 0; DESIGN.md asks for [-5, 5] by default because a policy that lowers the mismatched log-probs is
    a legitimate state and clamping at 0 hides it. Pass ``kl_clamp=(0.0, float('inf'))`` for TRL's rule, or
    None for no clamp.
    """
    b = policy_kl_logps.shape[0]
    raw = (policy_kl_logps - reference_kl_logps).detach()  # (B,)
    if b < 2:  # B = 1: the roll pairs the sample with itself; see the module docstring
        z_raw = torch.zeros((), dtype=raw.dtype, device=raw.device)
    else:
        z_raw = raw.mean()
    z0 = z_raw if kl_clamp is None else z_raw.clamp(min=kl_clamp[0], max=kl_clamp[1])
    return z0, z_raw


def adaptive_weights(action_l1: Tensor, desirable: Tensor, beta_d: float = 1.0, beta_u: float = 1.0,
                     gamma: float = 1.0, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """HAPO adaptive weights; returns (lambda (B,), w (B,)), both detached.

    HAPO Sec. 3.3: w_i = (l_i + eps) / (sum_{j in class(i)} l_j + eps), normalised within the sample's class
    (desirable / undesirable) in the batch; lambda_D = (1 - exp(-beta_D w))^gamma for desirable,
    lambda_U = exp(-beta_U w)^gamma for undesirable samples.
    """
    l1 = action_l1.detach()  # (B,)
    sum_d = torch.where(desirable, l1, torch.zeros_like(l1)).sum()
    sum_u = torch.where(desirable, torch.zeros_like(l1), l1).sum()
    class_sum = torch.where(desirable, sum_d, sum_u)  # (B,)
    w = (l1 + eps) / (class_sum + eps)  # (B,)  HAPO: w_i = (l_i + eps) / (sum_j l_j + eps)
    lam_d = (1.0 - torch.exp(-beta_d * w)) ** gamma  # (B,)  HAPO: lambda_D = (1 - exp(-beta_D w))^gamma
    lam_u = torch.exp(-beta_u * w) ** gamma  # (B,)  HAPO: lambda_U = exp(-beta_U w)^gamma
    return torch.where(desirable, lam_d, lam_u), w


def reweight(lam: Tensor, desirable: Tensor, weighting: str, labels: Tensor | None = None) -> Tensor:
    """The HAPO lambdas (B,) as an arm of ours uses them: 'paper' unchanged; 'mean1' divided by their mean over
    the sample's class (desirable / undesirable) in the batch, so each class keeps KTO's total weight and only the
    order within it changes; 'corrections' kept on c = 2 (``labels`` needed) and 1 elsewhere."""
    if weighting == 'paper':
        return lam
    if weighting == 'mean1':
        mean_d, mean_u = _masked_mean(lam, desirable), _masked_mean(lam, ~desirable)
        return lam / torch.where(desirable, mean_d, mean_u).clamp(min=1e-12)  # NaN means only in empty classes
    if weighting == 'corrections':
        assert labels is not None, "weighting='corrections' needs the labels"
        return torch.where(labels.to(lam.device) == Label.CORRECTION, lam, torch.ones_like(lam))
    raise ValueError(f'unknown weighting {weighting!r}; choose paper, mean1 or corrections')


def hapo_loss(policy_logps: Tensor, reference_logps: Tensor, policy_kl_logps: Tensor, reference_kl_logps: Tensor,
              action_l1: Tensor, desirable: Tensor, cfg: LossConfig | None = None, *, adaptive: bool = True,
              labels: Tensor | None = None, weighting: str = 'paper') -> tuple[Tensor, dict[str, Tensor]]:
    """HAPO loss (``adaptive=False``: plain KTO) with sum reduction over the batch.

    Args:
        policy_logps: (B,) log pi(a_i|o_i), summed over the A action tokens; the only input with gradient.
        reference_logps: (B,) log pi_ref(a_i|o_i) of the frozen reference.
        policy_kl_logps: (B,) log pi(a'_j|o_j) on the mismatched pairs (actions rolled by one).
        reference_kl_logps: (B,) log pi_ref(a'_j|o_j).
        action_l1: (B,) HAPO l_i, the error of the greedy action per sample (``steps.action_l1``).
        desirable: (B,) bool, True for c in {1, 2}.
        cfg: the loss config (None: its defaults, DESIGN.md's): beta, beta_d, beta_u, gamma, eps, and kl_clamp
            (lo, hi) for z0 (see ``kl_reference_point`` for the TRL difference). Its method is not read here.
        adaptive: False sets every lambda to 1 (KTO with lambda_D = lambda_U = 1); the method's ``Algo.adaptive``.
        labels: optional (B,) int labels c in {0, 1, 2} (``Label``), for the per-class metrics
            ``r/<class>``, ``lambda/<class>``, ``batch/n_<class>`` (``per_class_metrics``) and
            ``weighting='corrections'``.
        weighting: with ``adaptive``, how the lambdas are used (``reweight``): 'paper' as they are, 'mean1'
            divided by their mean in the sample's class of the batch, 'corrections' on c = 2 only (others 1).

    Returns:
        (loss, metrics): a scalar and a dict of 0-d tensors named like TRL's KTO trainer plus ours.
    """
    cfg = cfg or LossConfig()
    beta = cfg.beta
    b = policy_logps.shape[0]
    for name, t in (('reference_logps', reference_logps), ('policy_kl_logps', policy_kl_logps),
                    ('reference_kl_logps', reference_kl_logps), ('action_l1', action_l1), ('desirable', desirable)):
        assert t.shape == (b,), f'{name} has shape {tuple(t.shape)}, expected ({b},) like policy_logps'
    assert desirable.dtype == torch.bool, f'desirable must be bool, got {desirable.dtype}'
    desirable = desirable.to(policy_logps.device)

    # DESIGN / KTO Eq. 8: z0 = E[log pi(a'|o) - log pi_ref(a'|o)] on mismatched pairs, detached, clamped.
    z0, z_raw = kl_reference_point(policy_kl_logps, reference_kl_logps, (cfg.kl_clamp[0], cfg.kl_clamp[1]))
    # DESIGN: r_i = log pi(a_i|o_i) - log pi_ref(a_i|o_i), summed over action tokens (already summed). Departure
    # from the reference: its sum runs over every target token, which includes the stop token where the model
    # has one (a foreign OpenVLA checkpoint: '</s>' after the 7 actions); ours over the 7 action tokens only
    # (steps.micro_batch_loss), so r measures the action alone and the tiny model, which has no stop token,
    # and a foreign one are treated alike.
    logratio = policy_logps - reference_logps.detach()  # (B,)
    # KTO value (HAPO Alg. 1 OPTIMIZE): desirable 1 - sigma(beta (r - z0)), undesirable 1 - sigma(beta (z0 - r)).
    value = torch.where(desirable, 1.0 - torch.sigmoid(beta * (logratio - z0)),
                        1.0 - torch.sigmoid(beta * (z0 - logratio)))  # (B,)
    if adaptive:
        lam, w = adaptive_weights(action_l1, desirable, cfg.beta_d, cfg.beta_u, cfg.gamma, cfg.eps)  # (B,), (B,)
        lam = reweight(lam, desirable, weighting, labels)
    else:
        lam = torch.ones_like(value).detach()  # plain KTO: lambda_D = lambda_U = 1
        w = torch.full_like(value, float('nan'))
    # Sum reduction (DESIGN: "sum reduction"); an empty class simply adds nothing.
    loss = (lam.to(value.dtype) * value).sum()

    with torch.no_grad():
        und = ~desirable
        rewards = beta * logratio.detach()  # (B,)  TRL: chosen/rejected rewards = beta * logratio
        chosen, rejected = _masked_mean(rewards, desirable), _masked_mean(rewards, und)
        metrics: dict[str, Tensor] = {
            'loss': loss.detach(),
            'kl': z0,
            'kl/raw': z_raw,
            'kl/defined': torch.tensor(float(b >= 2)),
            'rewards/chosen': chosen,
            'rewards/rejected': rejected,
            'rewards/margins': chosen - rejected,
            'logps/chosen': _masked_mean(policy_logps.detach(), desirable),
            'logps/rejected': _masked_mean(policy_logps.detach(), und),
            'weights/desirable_mean': _masked_mean(lam, desirable),
            'weights/undesirable_mean': _masked_mean(lam, und),
            'weights/w_desirable_mean': _masked_mean(w, desirable),
            'weights/w_undesirable_mean': _masked_mean(w, und),
            'batch/n_desirable': desirable.sum().to(value.dtype),
            'batch/n_undesirable': und.sum().to(value.dtype),
        }
        if labels is not None:
            metrics.update(per_class_metrics(logratio.detach(), lam, labels.to(value.device)))
    return loss, metrics


def paired_loss(policy_chosen: Tensor, reference_chosen: Tensor, policy_rejected: Tensor, reference_rejected: Tensor,
                paired: Tensor, beta: float) -> tuple[Tensor, dict[str, Tensor]]:
    """DPO on the corrections that come with the policy's own proposal, summed over the pairs.

    DPO (arXiv 2305.18290, Eq. 7): -log sigma(beta [(log pi(a_w|o) - log pi_ref(a_w|o)) - (log pi(a_l|o) -
    log pi_ref(a_l|o))]) with a_w the human's correction and a_l what the policy proposed for the same
    observation (the recorder keeps both: paired by exact stamp). The paper holds that such pairs cannot be
    collected in robotics; here every correction with a proposal is one. ``paired`` (B,) bool selects them; a
    batch without pairs gives an exact zero that keeps the graph.

    Args: (B,) log-probs summed over the action tokens; the policy's carry gradient, the reference's do not.
    """
    margin = (policy_chosen - reference_chosen.detach()) - (policy_rejected - reference_rejected.detach())  # (B,)
    term = -torch.nn.functional.logsigmoid(beta * margin)  # (B,)
    paired = paired.to(term.device)
    loss = torch.where(paired, term, torch.zeros_like(term)).sum()
    with torch.no_grad():
        metrics = {'pairs/n': paired.sum().to(term.dtype), 'pairs/margin': _masked_mean(beta * margin.detach(), paired),
                   'pairs/accuracy': _masked_mean((margin.detach() > 0).to(term.dtype), paired),
                   'pairs/loss': loss.detach()}
    return loss, metrics


def per_class_metrics(logratio: Tensor, lam: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Mean r and lambda per label class (DESIGN asks for both per class), plus class counts.

    Keyed by ``Label.display``: ``r/policy``, ``lambda/correction``, ``batch/n_undesirable``, ...
    """
    out: dict[str, Tensor] = {}
    for c in TRAINING_LABELS:
        mask = labels == c  # (B,)
        out[f'r/{c.display}'] = _masked_mean(logratio, mask)
        out[f'lambda/{c.display}'] = _masked_mean(lam, mask)
        out[f'batch/n_{c.display}'] = mask.sum().to(logratio.dtype)
    return out


def bc_loss(policy_token_logps: Tensor, mask: Tensor, sample_weights: Tensor | None = None,
            ) -> tuple[Tensor, dict[str, Tensor]]:
    """Token cross-entropy (OpenVLA-style BC) on the samples selected by ``mask``.

    Args:
        policy_token_logps: (B, A) log pi(token_{i,k} | o_i, tokens_<k) of the recorded action tokens.
        mask: (B,) bool, which samples to imitate (desirable ones for bc/dagger/sirius).
        sample_weights: (B,) optional detached weights (Sirius); 1 when None.

    Returns:
        (loss, metrics): the weighted mean over selected samples of the mean token NLL. A batch with no
        selected sample gives an exact zero that still carries the graph (so DDP sees every parameter).
    """
    b, a = policy_token_logps.shape  # (B, A)
    assert mask.shape == (b,), f'mask has shape {tuple(mask.shape)}, expected ({b},)'
    mask = mask.to(policy_token_logps.device)
    nll = -policy_token_logps.mean(dim=1)  # (B,)  mean over the A tokens
    wts = torch.ones_like(nll) if sample_weights is None else sample_weights.detach().to(nll.dtype)  # (B,)
    wts = torch.where(mask, wts, torch.zeros_like(wts))  # (B,)
    denom = wts.sum().clamp(min=1e-12)
    loss = (wts * nll).sum() / denom  # weighted mean; 0 * graph when nothing is selected
    with torch.no_grad():
        metrics = {
            'loss': loss.detach(),
            'bc/nll': _masked_mean(nll.detach(), mask),
            'logps/chosen': _masked_mean(policy_token_logps.detach().sum(dim=1), mask),
            'batch/n_desirable': mask.sum().to(nll.dtype),
        }
    return loss, metrics


def sirius_weights(labels: Tensor, class_weights: Mapping[Label, float]) -> Tensor:
    """Per-sample Sirius weights (Liu et al. 2022, "Robot Learning on the Job", Sec. 4.2), detached.

    Sirius reweights weighted-BC samples by class: interventions up, pre-intervention (our undesirable) to zero.
    The weight of class c is ``class_weights[c]``; with the default balanced batch (0.5 / 0.25 / 0.25) and
    weights policy 1, correction 2, undesirable 0 the corrections carry half of the loss, as in Sirius'
    intervention ratio.
    """
    out = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)  # (B,)
    for c, wc in class_weights.items():
        out = torch.where(labels == c, torch.full_like(out, float(wc)), out)
    return out

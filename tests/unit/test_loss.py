# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""hapo_loss / bc_loss / sirius_weights against values computed by hand with ``math``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hapo_policy.normalization import ActionStats
from hapo_policy.tokenizer import ActionTokenizer
from hapo_trainer.algos import ALGOS, get_algo
from hapo_trainer.config import LossConfig
from hapo_trainer.loss import (
    adaptive_weights,
    bc_loss,
    hapo_loss,
    kl_reference_point,
    paired_loss,
    reweight,
    sirius_weights,
)
from hapo_trainer.steps import action_l1_normalized


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def t(*v, dtype=torch.float64):
    return torch.tensor(v, dtype=dtype)


def b(*v):
    return torch.tensor(v, dtype=torch.bool)


def test_two_samples_one_per_class_by_hand():
    # r = [0.5, -1.0]; KL diffs [0.2, -0.4] -> z0 = -0.1; one sample per class -> w = 1 each.
    loss, m = hapo_loss(t(-1.0, -2.0), t(-1.5, -1.0), t(-3.0, -4.0), t(-3.2, -3.6), t(0.2, 0.4), b(True, False))
    lam_d, lam_u = 1 - math.exp(-1.0), math.exp(-1.0)
    expected = lam_d * (1 - sig(0.1 * (0.5 + 0.1))) + lam_u * (1 - sig(0.1 * (-0.1 + 1.0)))
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert m['kl'].item() == pytest.approx(-0.1)
    assert m['rewards/chosen'].item() == pytest.approx(0.05)
    assert m['rewards/rejected'].item() == pytest.approx(-0.1)
    assert m['rewards/margins'].item() == pytest.approx(0.15)
    assert m['logps/chosen'].item() == pytest.approx(-1.0)
    assert m['logps/rejected'].item() == pytest.approx(-2.0)
    assert m['weights/desirable_mean'].item() == pytest.approx(lam_d)
    assert m['weights/undesirable_mean'].item() == pytest.approx(lam_u)


def test_hyper_parameters_come_from_the_loss_config():
    # The same two samples as above with beta = 0.2, beta_D = 2, beta_U = 0.5, gamma = 2 and TRL's clamp z0 >= 0.
    cfg = LossConfig(beta=0.2, beta_d=2.0, beta_u=0.5, gamma=2.0, kl_clamp=[0.0, float('inf')])
    loss, m = hapo_loss(t(-1.0, -2.0), t(-1.5, -1.0), t(-3.0, -4.0), t(-3.2, -3.6), t(0.2, 0.4), b(True, False), cfg)
    w = (0.2 + 1e-4) / (0.2 + 1e-4)  # one sample per class: w = 1
    lam_d, lam_u = (1 - math.exp(-2.0 * w)) ** 2, math.exp(-0.5 * w) ** 2
    expected = lam_d * (1 - sig(0.2 * (0.5 - 0.0))) + lam_u * (1 - sig(0.2 * (0.0 + 1.0)))
    assert m['kl'].item() == 0.0 and m['kl/raw'].item() == pytest.approx(-0.1)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert m['rewards/chosen'].item() == pytest.approx(0.1)


def test_action_l1_normalized_is_the_distance_of_bin_centres():
    # loss.l1_space='normalized' (the reference's l_i): bins one apart give 2/256 per dimension, whatever the
    # raw range of the dimension; 'raw' (the default) is that distance scaled by (q99 - q01) / 2.
    stats = ActionStats(np.full(7, -0.5), np.full(7, 1.5))
    tok = ActionTokenizer(vocab_size=300, n_bins=256, stats=stats)
    actions = np.linspace(-0.4, 1.4, 14).reshape(2, 7)
    tokens = torch.from_numpy(tok.encode(actions))  # (2, 7)
    argmax = tokens.clone()
    argmax[0] += 1  # sample 0 one bin off in every dimension, sample 1 exact
    l1 = action_l1_normalized(tok, argmax, tokens)
    assert l1.tolist() == pytest.approx([2 / 256, 0.0], abs=1e-6)
    raw = (tok.decode_torch(argmax) - tok.decode_torch(tokens)).abs().mean(1)
    assert raw.tolist() == pytest.approx([2 / 256 * (1.5 + 0.5) / 2, 0.0], abs=1e-6)


def test_weights_within_class_by_hand():
    l1 = t(0.1, 0.3, 0.6, 0.2, 0.2)
    des = b(True, True, True, False, False)
    lam, w = adaptive_weights(l1, des, beta_d=2.0, beta_u=0.5, gamma=2.0, eps=1e-4)
    exp_w = [(0.1 + 1e-4) / (1.0 + 1e-4), (0.3 + 1e-4) / (1.0 + 1e-4), (0.6 + 1e-4) / (1.0 + 1e-4),
             (0.2 + 1e-4) / (0.4 + 1e-4), (0.2 + 1e-4) / (0.4 + 1e-4)]
    assert w.tolist() == pytest.approx(exp_w)
    exp_lam = [(1 - math.exp(-2.0 * x)) ** 2 for x in exp_w[:3]] + [math.exp(-0.5 * x) ** 2 for x in exp_w[3:]]
    assert lam.tolist() == pytest.approx(exp_lam)


def test_micro_batch_of_8_weights_match_design_numbers():
    # DESIGN: 6 desirable + 2 undesirable with equal errors -> lambda_D ~ 1 - exp(-1/6), lambda_U ~ exp(-1/2).
    des = b(*([True] * 6 + [False] * 2))
    lam, _ = adaptive_weights(torch.full((8,), 0.3, dtype=torch.float64), des)
    assert lam[0].item() == pytest.approx(1 - math.exp(-1 / 6), rel=1e-3)
    assert lam[7].item() == pytest.approx(math.exp(-0.5), rel=1e-3)


def test_plain_kto_has_unit_lambdas():
    args = (t(-1.0, -2.0, -0.5), t(-1.5, -1.0, -0.5), t(-3.0, -4.0, -1.0), t(-3.2, -3.6, -1.0),
            t(0.2, 0.4, 0.9), b(True, False, True))
    loss, m = hapo_loss(*args, adaptive=False)
    z0 = (0.2 - 0.4 + 0.0) / 3
    expected = (1 - sig(0.1 * (0.5 - z0))) + (1 - sig(0.1 * (z0 + 1.0))) + (1 - sig(0.1 * (0.0 - z0)))
    assert loss.item() == pytest.approx(expected)
    assert m['weights/desirable_mean'].item() == 1.0


@pytest.mark.parametrize(('kl_diffs', 'clamp', 'expected_z0'), [
    ((10.0, 12.0), (-5.0, 5.0), 5.0),
    ((-10.0, -12.0), (-5.0, 5.0), -5.0),
    ((-1.0, -2.0), (0.0, float('inf')), 0.0),  # TRL's rule: z0 >= 0
    ((-1.0, -2.0), None, -1.5),
    ((0.5, 1.5, 4.0), (-5.0, 5.0), 2.0),  # odd batch: plain mean of the rolled pairs
])
def test_kl_reference_point_clamp(kl_diffs, clamp, expected_z0):
    z0, raw = kl_reference_point(t(*kl_diffs), torch.zeros(len(kl_diffs), dtype=torch.float64), clamp)
    assert z0.item() == pytest.approx(expected_z0)
    assert raw.item() == pytest.approx(sum(kl_diffs) / len(kl_diffs))


def test_batch_size_one_uses_z0_zero():
    # Regression guard (TRL #2554): with B = 1 the roll pairs a sample with itself; z0 = r would cancel r.
    loss, m = hapo_loss(t(-1.0), t(-1.2), t(-1.0), t(-1.2), t(0.3), b(True))
    assert m['kl'].item() == 0.0 and m['kl/defined'].item() == 0.0
    lam = 1 - math.exp(-1.0)
    assert loss.item() == pytest.approx(lam * (1 - sig(0.1 * 0.2)))


def test_empty_class_contributes_zero_and_nan_metrics():
    loss, m = hapo_loss(t(-1.0, -2.0), t(-1.0, -2.0), t(-1.0, -2.0), t(-1.0, -2.0), t(0.2, 0.2), b(True, True))
    w = (0.2 + 1e-4) / (0.4 + 1e-4)
    assert loss.item() == pytest.approx(2 * (1 - math.exp(-w)) * 0.5)
    assert math.isnan(m['rewards/rejected'].item()) and math.isnan(m['weights/undesirable_mean'].item())


def test_per_class_metrics_with_labels():
    labels = torch.tensor([1, 2, 0, 1])
    _, m = hapo_loss(t(-1.0, -2.0, -3.0, -1.0), t(-1.5, -1.5, -2.0, -2.0), t(0, 0, 0, 0), t(0, 0, 0, 0),
                     t(0.1, 0.1, 0.1, 0.1), labels > 0, labels=labels)
    assert m['r/policy'].item() == pytest.approx(0.75)
    assert m['r/correction'].item() == pytest.approx(-0.5)
    assert m['r/undesirable'].item() == pytest.approx(-1.0)
    assert (m['batch/n_policy'].item(), m['batch/n_correction'].item(), m['batch/n_undesirable'].item()) == (2, 1, 1)
    assert m['lambda/undesirable'].item() == pytest.approx(math.exp(-1.0))


def test_gradient_flows_only_to_policy_logps():
    inputs = [torch.randn(6, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    l1 = torch.rand(6, dtype=torch.float64, requires_grad=True)
    des = b(True, True, False, True, False, True)
    loss, metrics = hapo_loss(*inputs, l1, des)
    loss.backward()
    assert inputs[0].grad is not None and inputs[0].grad.abs().sum() > 0
    for other in (*inputs[1:], l1):
        assert other.grad is None
    assert all(not v.requires_grad for v in metrics.values())


def test_gradient_matches_hand_derivative():
    # d/dp [lam * (1 - sigma(beta (p - ref - z0)))] = -lam * beta * sigma * (1 - sigma)
    p = t(-1.0, -2.0).requires_grad_()
    loss, _ = hapo_loss(p, t(-1.5, -1.0), t(0.0, 0.0), t(0.0, 0.0), t(0.2, 0.4), b(True, False), adaptive=False)
    loss.backward()
    s0, s1 = sig(0.1 * 0.5), sig(0.1 * (0.0 + 1.0))
    assert p.grad.tolist() == pytest.approx([-0.1 * s0 * (1 - s0), 0.1 * s1 * (1 - s1)])


def test_bad_shapes_are_refused():
    with pytest.raises(AssertionError, match='reference_logps has shape'):
        hapo_loss(t(1.0, 2.0), t(1.0), t(1.0, 2.0), t(1.0, 2.0), t(1.0, 2.0), b(True, False))


def test_bc_loss_masks_and_weights():
    logps = t(-1.0, -2.0, -3.0, -4.0, -5.0, -6.0).reshape(3, 2).requires_grad_()
    loss, m = bc_loss(logps, b(True, False, True))
    assert loss.item() == pytest.approx((1.5 + 5.5) / 2)
    wts = sirius_weights(torch.tensor([1, 0, 2]), {1: 1.0, 2: 2.0, 0: 0.0})
    assert wts.tolist() == [1.0, 0.0, 2.0]
    loss_w, _ = bc_loss(logps, b(True, True, True), wts)
    assert loss_w.item() == pytest.approx((1.5 + 2 * 5.5) / 3)
    loss_w.backward()
    assert logps.grad[1].abs().sum() == 0
    empty, _ = bc_loss(logps, b(False, False, False))
    assert empty.item() == 0.0 and empty.requires_grad


def test_registry():
    assert set(ALGOS) == {'bc', 'dagger', 'sirius', 'kto', 'hapo', 'hapo-m1', 'hapo-c', 'kto-pair'}
    for algo in ALGOS.values():
        assert sum(algo.ratios.values()) == pytest.approx(1.0)
    assert get_algo('hapo').adaptive and not get_algo('kto').adaptive
    assert get_algo('kto-pair').paired == 1.0 and not get_algo('kto').paired
    with pytest.raises(ValueError, match='unknown method'):
        get_algo('dpo')


def test_reweight_mean1_and_corrections_by_hand():
    lam, desirable = t(0.1, 0.3, 0.6, 0.2), b(True, True, False, False)
    labels = torch.tensor([1, 2, 0, 0])
    assert reweight(lam, desirable, 'paper') is lam
    np.testing.assert_allclose(reweight(lam, desirable, 'mean1').numpy(), [0.5, 1.5, 1.5, 0.5])
    np.testing.assert_allclose(reweight(lam, desirable, 'corrections', labels).numpy(), [1.0, 0.3, 1.0, 1.0])
    with pytest.raises(ValueError, match='unknown weighting'):
        reweight(lam, desirable, 'other')


def test_own_arms_change_only_the_lambdas():
    args = (t(-1.0, -2.0, -1.5), t(-1.5, -1.0, -1.2), t(-3.0, -4.0, -2.0), t(-3.2, -3.6, -2.5), t(0.2, 0.4, 0.1),
            b(True, True, False))
    labels = torch.tensor([1, 2, 0])
    paper, pm = hapo_loss(*args, labels=labels)
    mean1, mm = hapo_loss(*args, labels=labels, weighting='mean1')
    plain, _ = hapo_loss(*args, adaptive=False)
    assert mm['weights/desirable_mean'].item() == pytest.approx(1.0)
    assert mm['weights/undesirable_mean'].item() == pytest.approx(1.0)
    assert pm['weights/desirable_mean'].item() < 0.5  # the paper's shrink that mean1 undoes
    _, cm = hapo_loss(*args, labels=labels, weighting='corrections')
    assert cm['lambda/policy'].item() == 1.0 and cm['lambda/undesirable'].item() == 1.0
    assert cm['lambda/correction'].item() == pytest.approx(pm['lambda/correction'].item())
    assert len({round(x.item(), 9) for x in (paper, mean1, plain)}) == 3


def test_paired_loss_is_dpo_on_the_pairs_only_and_pushes_chosen_over_rejected():
    chosen = torch.tensor([-3.0, -2.0, -1.0], requires_grad=True)
    rejected = torch.tensor([-1.0, -2.0, -5.0], requires_grad=True)
    ref_c, ref_r = torch.tensor([-3.0, -2.5, -1.0]), torch.tensor([-1.0, -2.0, -1.0])
    paired = torch.tensor([True, True, False])
    loss, m = paired_loss(chosen, ref_c, rejected, ref_r, paired, beta=0.1)
    margins = torch.tensor([0.0, 0.5])  # (c - ref_c) - (r - ref_r) of the two pairs
    torch.testing.assert_close(loss, -torch.nn.functional.logsigmoid(0.1 * margins).sum())
    loss.backward()
    assert (chosen.grad[:2] < 0).all() and (rejected.grad[:2] > 0).all()  # descent raises chosen, lowers rejected
    assert chosen.grad[2] == 0 and rejected.grad[2] == 0  # not a pair
    assert m['pairs/n'] == 2 and m['pairs/accuracy'] == 0.5
    none, m = paired_loss(chosen, ref_c, rejected, ref_r, torch.zeros(3, dtype=torch.bool), beta=0.1)
    assert none.item() == 0.0 and none.requires_grad and torch.isnan(m['pairs/margin'])

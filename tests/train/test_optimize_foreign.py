# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""optimize with LoRA, and offline evaluation, on a foreign (transformers Llava) checkpoint: tests/foreign_vla.py's
tiny stand-in."""

from __future__ import annotations

import dataclasses

import foreign_vla
import numpy as np
import pytest
import torch
from train.episode_bags import CAMERA, step_action, write_bags

from hapo_policy.model import VlaPolicy
from hapo_policy.normalization import ActionStats
from hapo_trainer.config import TrainConfig
from hapo_trainer.dataset import BuildSpec, build_dataset
from hapo_trainer.evaluate import replay
from hapo_trainer.optimize import train


@pytest.fixture(scope='module')
def recorded(tmp_path_factory):
    assert foreign_vla.CAMERA == CAMERA
    root = tmp_path_factory.mktemp('foreign')
    write_bags(root / 'bags', n=2)
    rng = np.random.default_rng(123)
    stats = ActionStats.from_actions(np.stack([step_action(s, 0, rng) for s in [1, 2] * 50]))
    return root / 'bags', foreign_vla.write_foreign_checkpoint(root / 'base', stats), root / 'cache'


@pytest.mark.parametrize('method', ['hapo', 'bc'])
def test_lora_three_steps_train_only_adapters_and_save_a_loadable_merged_policy(recorded, tmp_path, method):
    bags, base, cache = recorded
    policy = VlaPolicy.from_pretrained(base, dtype=torch.float32)
    ds = build_dataset([bags], BuildSpec.for_policy(TrainConfig().data, policy), method=method, cache_dir=cache,
                       log=lambda m: None, progress=False)
    cfg = TrainConfig().replace(**{'loss.method': method, 'optim.max_steps': 3, 'optim.lr': 1e-2,
                                   'optim.warmup_steps': 0, 'run.tensorboard': False, 'run.checkpoint_every': 0,
                                   'model.lora': True, 'optim.micro_batch': 4})
    base_weights = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    result = train(policy, ds, cfg, tmp_path / 'out', progress=False, log=lambda m: None)
    assert result.step == 3 and not result.interrupted
    final = result.path
    params = dict(policy.model.named_parameters())
    trainable = [n for n, p in params.items() if p.requires_grad]
    assert trainable and all('lora_' in n for n in trainable)
    assert all(torch.isfinite(p).all() for p in params.values())
    lora_b = [n for n in trainable if 'lora_B' in n]
    assert lora_b and all(params[n].abs().sum() > 0 for n in lora_b), 'LoRA B starts at zero; it must have moved'
    frozen = {n.removeprefix('base_model.model.').replace('.base_layer.', '.'): p for n, p in params.items()
              if 'lora_' not in n}
    assert frozen.keys() == base_weights.keys()
    for name, before in base_weights.items():  # the base weights are untouched
        assert torch.equal(before, frozen[name].detach()), name

    reloaded = VlaPolicy.from_pretrained(final, dtype=torch.float32)  # merged adapters + processor + stats
    assert reloaded.foreign and reloaded.camera_names == [CAMERA]
    assert not any('lora_' in n for n, _ in reloaded.model.named_parameters())
    samples = [ds.sample(i) for i in range(4)]
    tokens = torch.from_numpy(policy.tokenizer.encode(ds.actions[:4]))
    with torch.no_grad():
        trained = policy.action_logprobs(policy.encode_batch(samples), tokens)[0]
        merged = reloaded.action_logprobs(reloaded.encode_batch(samples), tokens)[0]
        with policy.model.disable_adapter():
            original = policy.action_logprobs(policy.encode_batch(samples), tokens)[0]
    torch.testing.assert_close(merged, trained, atol=1e-3, rtol=1e-3)
    assert (merged - original).abs().max() > 1e-3  # the saved policy is the trained one, not the base
    assert np.isfinite(reloaded.predict(samples[0][0], samples[0][1]).action).all()


def test_offline_replay_of_a_foreign_checkpoint_agrees_with_per_sample_predict(recorded):
    bags, base, cache = recorded
    policy = VlaPolicy.from_pretrained(base, dtype=torch.float32)
    ds = build_dataset([bags], BuildSpec.for_policy(TrainConfig().data, policy), cache_dir=cache, log=lambda m: None,
                       progress=False)
    ds = dataclasses.replace(ds, instructions=[ds.instructions[0], 'lift'],  # two prompt lengths in every batch
                             instruction_id=(np.arange(len(ds)) % 2).astype(np.int32))
    result = replay(policy, ds, batch_size=5)
    preds = [policy.predict(*ds.sample(i)) for i in range(len(ds))]
    assert [p.tokens.tolist() for p in policy.predict_batch([ds.sample(i) for i in range(5)])] == \
        [p.tokens.tolist() for p in preds[:5]]
    tokens = policy.tokenizer.encode(ds.actions)
    l1 = sum(float(np.abs(p.action - a).mean()) for p, a in zip(preds, ds.actions, strict=True))
    acc = sum(float((p.tokens == t).mean()) for p, t in zip(preds, tokens, strict=True))
    classes = [c for c in result['classes'].values() if c['n']]
    assert result['samples'] == len(ds) == sum(c['n'] for c in classes)
    assert sum(c['n'] * c['action_l1'] for c in classes) == pytest.approx(l1, rel=1e-5)
    assert sum(c['n'] * c['token_accuracy'] for c in classes) == pytest.approx(acc, abs=1e-9)
    assert all(np.isfinite(c['logp_executed']) for c in classes)

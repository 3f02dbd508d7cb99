# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Files written by the code of commit 179cdb3 (issue 8's starting point) still load and mean the same.

Regression guard for issue 8 (a refactor with behaviour unchanged): ``tests/fixtures/legacy`` holds a tiny
checkpoint, one recorded episode bag and the dataset cache built from them (K = 3), written by that commit with
``tests/train/episode_bags.py`` (``tiny_policy(seed=3, hidden=16, layers=1)``, ``write_episode(index=1, seed=5,
k=3)``), and ``expected.json``: what that code read and computed from them. Never regenerate these files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hapo_policy.model import VlaPolicy
from hapo_recorder.bag_reader import read_episode
from hapo_trainer.config import DataConfig
from hapo_trainer.dataset import BuildSpec, PreferenceDataset, build_dataset

ROOT = Path(__file__).resolve().parents[1] / 'fixtures' / 'legacy'
EXPECTED = json.loads((ROOT / 'expected.json').read_text())


@pytest.fixture(scope='module')
def policy():
    return VlaPolicy.from_pretrained(ROOT / 'checkpoint')


@pytest.fixture(scope='module')
def cached():
    return PreferenceDataset.load(ROOT / 'dataset')


def test_checkpoint_loads_with_the_same_id_and_predictions(policy, cached):
    assert policy.policy_id == EXPECTED['policy_id']
    for i, (tokens, action) in enumerate(zip(EXPECTED['predict_tokens'], EXPECTED['predict_actions'], strict=True)):
        pred = policy.predict(*cached.sample(i))
        assert pred.tokens.tolist() == tokens
        np.testing.assert_allclose(pred.action, action, rtol=1e-6, atol=1e-7)


def test_bag_reads_back():
    ep = read_episode(next((ROOT / 'bags').iterdir()))
    assert not ep.truncated and ep.outcome == EXPECTED['episode']['outcome']
    assert ep.sources.tolist() == EXPECTED['episode']['sources']
    assert ep.labels.tolist() == EXPECTED['episode']['labels']


def test_dataset_cache_loads_and_equals_a_rebuild(tmp_path, policy, cached):
    assert len(cached) == EXPECTED['dataset']['samples']
    assert cached.labels.tolist() == EXPECTED['dataset']['labels']
    rebuilt = build_dataset([ROOT / 'bags'], BuildSpec.for_policy(DataConfig(K=3), policy), cache_dir=tmp_path,
                            progress=False, log=lambda m: None)
    for name in ('actions', 'labels', 'proprio', 'step', 'episode', 'instruction_id'):
        np.testing.assert_array_equal(getattr(rebuilt, name), getattr(cached, name), err_msg=name)
    for cam, frames in cached.images.items():
        np.testing.assert_array_equal(rebuilt.images[cam], frames)


def test_teacher_forced_logprobs_unchanged(policy, cached):
    idx = list(range(len(cached)))
    with torch.no_grad():
        batch = policy.encode_batch([cached.sample(i) for i in idx])
        tokens = torch.from_numpy(policy.tokenizer.encode(cached.actions))
        logp, argmax = policy.action_logprobs(batch, tokens)
    np.testing.assert_allclose(logp.sum(1).numpy(), EXPECTED['logp_executed'], rtol=1e-5, atol=1e-5)
    assert argmax.tolist() == EXPECTED['argmax_tokens']

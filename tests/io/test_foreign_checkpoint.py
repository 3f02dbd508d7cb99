# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The foreign-checkpoint path (OpenVLA-7B and other transformers VLAs) with a tiny Llava stand-in on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from foreign_vla import CAMERA, N_BINS, VOCAB, as_openvla, write_foreign_checkpoint

from hapo_policy import openvla
from hapo_policy.errors import CheckpointError
from hapo_policy.model import VlaPolicy
from hapo_policy.normalization import ActionStats

STATS = ActionStats(-np.linspace(1.0, 2.0, 7), np.linspace(0.5, 3.0, 7))


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    return write_foreign_checkpoint(tmp_path_factory.mktemp('foreign') / 'llava', STATS)


def _samples(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [({CAMERA: rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)},
             'lift the cube' if i % 2 else 'Pick up the red block and lift it.', None) for i in range(n)]


@pytest.mark.parametrize('dtype', [None, torch.float32])
def test_predict_gives_a_finite_action_inside_the_stats(ckpt, dtype):
    policy = VlaPolicy.from_pretrained(ckpt, dtype=dtype)
    assert policy.foreign and policy.camera_names == [CAMERA]
    assert policy.model.dtype == (dtype or torch.bfloat16)
    pred = policy.predict(_samples(1)[0][0], 'lift the cube')
    assert pred.action.shape == (7,) and pred.entropy.shape == (7,) and pred.tokens.shape == (7,)
    assert np.isfinite(pred.action).all() and np.isfinite(pred.entropy).all()
    assert (pred.action >= STATS.q01 - 1e-6).all() and (pred.action <= STATS.q99 + 1e-6).all()
    assert ((pred.tokens >= VOCAB - N_BINS) & (pred.tokens < VOCAB)).all()  # greedy stays on the action ids
    assert (pred.entropy > 0).all() and (pred.entropy <= np.log(N_BINS) + 1e-3).all()


def test_teacher_forcing_matches_greedy_and_ignores_padding(ckpt):
    policy = VlaPolicy.from_pretrained(ckpt, dtype=torch.float32)
    samples = _samples(3)
    pred = policy.predict(samples[0][0], samples[0][1])
    tokens = torch.from_numpy(policy.tokenizer.encode(np.zeros((3, 7))))  # (3, 7)
    tokens[0] = torch.from_numpy(pred.tokens)
    batch = policy.encode_batch(samples)  # rows of different prompt lengths
    logp, argmax = policy.action_logprobs(batch, tokens)
    assert logp.shape == argmax.shape == (3, 7) and logp.requires_grad and (logp < 0).all()
    assert torch.equal(argmax[0], tokens[0])  # greedy decoding == argmax of teacher forcing on its own ids
    for i in range(3):  # a row alone gives what it gives padded inside the batch
        alone, _ = policy.action_logprobs(policy.encode_batch(samples[i:i + 1]), tokens[i:i + 1])
        torch.testing.assert_close(alone[0], logp[i], atol=1e-4, rtol=1e-4)
    logp.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.model.parameters())


def test_openvla_encode_inverts_decode_within_half_a_bin():
    rng = np.random.default_rng(0)
    actions = np.concatenate([rng.uniform(STATS.q01, STATS.q99, (500, 7)), STATS.q01[None], STATS.q99[None]])
    ids = openvla.encode(actions, VOCAB, STATS, N_BINS)
    assert ids.min() >= VOCAB - N_BINS and ids.max() <= VOCAB - 1
    half_bin = (STATS.q99 - STATS.q01) / (N_BINS - 1)  # 255 intervals of 2/255 normalised each
    assert (np.abs(openvla.decode(ids, VOCAB, STATS, N_BINS) - actions) <= half_bin + 1e-9).all()
    assert openvla.encode(STATS.q01, VOCAB, STATS)[0] == VOCAB - 1  # OpenVLA: -1 -> the last id
    assert openvla.encode(STATS.q99, VOCAB, STATS)[0] == VOCAB - N_BINS
    tok = openvla.OpenVlaActionTokenizer(VOCAB, N_BINS, STATS)
    assert np.array_equal(tok.encode_torch(torch.from_numpy(actions)).numpy(), ids)
    np.testing.assert_allclose(tok.decode_torch(torch.from_numpy(ids)).numpy(), tok.decode(ids), atol=1e-5)


def test_save_round_trip_keeps_processor_and_stats(ckpt, tmp_path):
    policy = VlaPolicy.from_pretrained(ckpt, dtype=torch.float32)
    out = policy.save_pretrained(tmp_path / 'copy')
    again = VlaPolicy.from_pretrained(out, dtype=torch.float32)
    assert again.foreign and again.camera_names == [CAMERA]
    assert json.loads((out / 'action_stats.json').read_text())['tokenizer']['kind'] == 'openvla'
    obs = _samples(1)[0][0]
    assert np.array_equal(again.predict(obs, 'lift').tokens, policy.predict(obs, 'lift').tokens)


def test_trust_remote_code_is_off_unless_asked(ckpt, tmp_path, monkeypatch):
    import transformers

    seen = []
    real = transformers.AutoProcessor.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get('trust_remote_code'))
        return real(*args, **{**kwargs, 'trust_remote_code': False})

    monkeypatch.setattr(transformers.AutoProcessor, 'from_pretrained', spy)
    VlaPolicy.from_pretrained(ckpt)
    VlaPolicy.from_pretrained(ckpt, trust_remote_code=True)
    assert seen == [False, True]
    monkeypatch.undo()

    custom = tmp_path / 'custom'
    write_foreign_checkpoint(custom, STATS)
    config = json.loads((custom / 'config.json').read_text())
    config.update(model_type='openvla', auto_map={
        'AutoConfig': 'configuration_prismatic.OpenVLAConfig',
        'AutoModelForVision2Seq': 'modeling_prismatic.OpenVLAForActionPrediction'})
    (custom / 'config.json').write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        VlaPolicy.from_pretrained(custom)
    assert 'trust_remote_code' in str(err.value) and '\n' not in str(err.value)
    with pytest.raises(CheckpointError, match='configuration_prismatic.py') as err:  # asked: goes on to the code
        VlaPolicy.from_pretrained(custom, trust_remote_code=True)
    assert '\n' not in str(err.value)


@pytest.mark.parametrize('name', ['processor_config.json', 'tokenizer_config.json'])
def test_missing_processor_file_is_named(ckpt, tmp_path, name):
    import shutil

    broken = shutil.copytree(ckpt, tmp_path / 'broken')
    (broken / name).unlink()
    with pytest.raises(CheckpointError, match=name):
        VlaPolicy.from_pretrained(broken)


def test_stats_vocab_beyond_the_logits_is_refused(ckpt, tmp_path):
    import shutil

    broken = shutil.copytree(ckpt, tmp_path / 'broken')
    body = json.loads((broken / 'action_stats.json').read_text())
    body['tokenizer']['vocab_size'] = 10_000
    (broken / 'action_stats.json').write_text(json.dumps(body))
    with pytest.raises(CheckpointError, match='vocab_size 10000'):
        VlaPolicy.from_pretrained(broken)


def test_stats_vocab_other_than_the_tokenizers_is_refused(ckpt, tmp_path):
    import shutil

    broken = shutil.copytree(ckpt, tmp_path / 'broken')
    body = json.loads((broken / 'action_stats.json').read_text())
    body['tokenizer']['vocab_size'] = 640  # the padded embedding's rows (OpenVLA's 32064), not the tokenizer's
    (broken / 'action_stats.json').write_text(json.dumps(body))
    with pytest.raises(CheckpointError, match="differs from the tokenizer's 600"):
        VlaPolicy.from_pretrained(broken)


# OpenVLA as downloaded: no action_stats.json, per-dataset norm_stats in config.json ---------------------------
GRIPPER_FREE = [True] * 6 + [False]  # OpenVLA's mask: the gripper is not normalised


def _norm(stats, mask=None):
    return {'q01': stats.q01.tolist(), 'q99': stats.q99.tolist(), **({'mask': mask} if mask else {})}


def test_openvla_layout_loads_with_its_only_dataset_stats_and_mask(tmp_path):
    path = as_openvla(write_foreign_checkpoint(tmp_path / 'openvla', STATS), {'sim_lift': _norm(STATS, GRIPPER_FREE)})
    policy = VlaPolicy.from_pretrained(path, dtype=torch.float32)
    assert policy.tokenizer.vocab_size == VOCAB and policy.stats.mask.tolist() == GRIPPER_FREE
    pred = policy.predict(_samples(1)[0][0], 'lift the cube')
    assert (pred.action[:6] >= STATS.q01[:6] - 1e-6).all() and (pred.action[:6] <= STATS.q99[:6] + 1e-6).all()
    centres = (np.linspace(-1, 1, N_BINS)[:-1] + np.linspace(-1, 1, N_BINS)[1:]) / 2
    assert np.isclose(centres, pred.action[6], atol=1e-6).any()  # the gripper is a bin centre, not rescaled
    gripper = np.array([[0.0] * 6 + [1.0], [0.0] * 6 + [-1.0]])
    assert policy.tokenizer.encode(gripper)[:, 6].tolist() == [VOCAB - N_BINS, VOCAB - 1]  # raw +-1 -> end bins
    out = policy.save_pretrained(tmp_path / 'saved')  # action_stats.json written: mask and all
    assert VlaPolicy.from_pretrained(out).stats.mask.tolist() == GRIPPER_FREE


def test_several_datasets_need_an_unnorm_key_and_import_stats_writes_it(tmp_path):
    import subprocess
    import sys

    other = ActionStats(np.full(7, -0.5), np.full(7, 0.5))
    path = as_openvla(write_foreign_checkpoint(tmp_path / 'openvla', STATS),
                       {'bridge_orig': _norm(other), 'sim_lift': _norm(STATS, GRIPPER_FREE)})
    with pytest.raises(CheckpointError, match=r'2 datasets.*--unnorm-key KEY \(keys: bridge_orig, sim_lift\)') as err:
        VlaPolicy.from_pretrained(path)
    assert '\n' not in str(err.value)

    def run(*args):
        return subprocess.run([sys.executable, '-m', 'hapo_bringup.cli', 'import-stats', str(path), *args],
                              capture_output=True, text=True, timeout=60)

    listed = run('--list')
    assert listed.returncode == 0 and listed.stdout.split('\n')[:2] == ['bridge_orig\t7 action dims',
                                                                        'sim_lift\t7 action dims']
    wrong = run('--unnorm-key', 'fractal')
    assert wrong.returncode == 2 and "unnorm_key 'fractal'" in wrong.stderr
    assert not (path / 'action_stats.json').exists()
    done = run('--unnorm-key', 'sim_lift')
    assert done.returncode == 0, done.stderr
    assert 'unnorm_key sim_lift' in done.stdout and 'vocab_size 600' in done.stdout
    policy = VlaPolicy.from_pretrained(path, dtype=torch.float32)
    assert np.array_equal(policy.stats.q99, STATS.q99) and policy.stats.mask.tolist() == GRIPPER_FREE
    again = run('--unnorm-key', 'bridge_orig')
    assert again.returncode == 2 and '--force' in again.stderr
    assert run('--unnorm-key', 'bridge_orig', '--force').returncode == 0
    assert np.array_equal(VlaPolicy.from_pretrained(path).stats.q99, other.q99)


def test_prompt_suffix_ends_every_prompt_in_inference_and_training(ckpt, tmp_path):
    import shutil

    path = shutil.copytree(ckpt, tmp_path / 'suffixed')
    body = json.loads((path / 'action_stats.json').read_text())
    body['tokenizer']['prompt_suffix_ids'] = [7]  # stands in for OpenVLA's 29871
    (path / 'action_stats.json').write_text(json.dumps(body))
    plain = VlaPolicy.from_pretrained(ckpt, dtype=torch.float32)
    policy = VlaPolicy.from_pretrained(path, dtype=torch.float32)
    samples = _samples(2)
    batch, before = policy.encode_batch(samples), plain.encode_batch(samples)
    assert (batch['prompt_len'] == before['prompt_len'] + 1).all()
    for row, n in zip(batch['input_ids'], batch['prompt_len'].tolist(), strict=True):
        assert row[n - 1] == 7  # right after the processor's prompt, before the padding
    pred = policy.predict(samples[0][0], samples[0][1])
    _, argmax = policy.action_logprobs(policy.encode_batch(samples[:1]), torch.from_numpy(pred.tokens)[None])
    assert argmax[0].tolist() == pred.tokens.tolist()  # training sees the prompt inference saw
    saved = json.loads(policy.save_pretrained(tmp_path / 'saved').joinpath('action_stats.json').read_text())
    assert saved['tokenizer']['prompt_suffix_ids'] == [7]

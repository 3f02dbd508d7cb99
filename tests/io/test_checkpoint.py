# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""VlaPolicy checkpoints: save/load round trip, log-prob contract, refusals with one-line reasons."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from hapo_policy.checkpoint import atomic_dir
from hapo_policy.errors import CheckpointError
from hapo_policy.init_checkpoint import main as init_main
from hapo_policy.model import VlaPolicy
from hapo_policy.normalization import ActionStats
from hapo_policy.tiny import TinyVlaConfig

CAMS = ['agentview', 'robot0_eye_in_hand']


def _samples(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        images = {c: rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for c in CAMS}
        out.append((images, 'lift the cube' if i % 2 else 'pick up the red block and lift it', rng.normal(size=9)))
    return out


@pytest.fixture(scope='module')
def policy() -> VlaPolicy:
    stats = ActionStats(-np.full(7, 0.5), np.full(7, 0.8))
    return VlaPolicy.create(TinyVlaConfig(camera_names=CAMS), stats=stats, seed=3)


def test_round_trip_same_predictions_and_logprobs(policy, tmp_path):
    path = policy.save_pretrained(tmp_path / 'ck', run_config={'lr': 1e-4})
    assert sorted(p.name for p in path.iterdir()) == ['action_stats.json', 'config.json', 'model.safetensors',
                                                      'run_config.json']
    loaded = VlaPolicy.from_pretrained(path)
    assert loaded.camera_names == CAMS and loaded.proprio_dim == 9
    assert np.array_equal(loaded.stats.q99, policy.stats.q99) and loaded.tokenizer.spec() == policy.tokenizer.spec()
    assert len(loaded.policy_id) == 16 and loaded.policy_id == VlaPolicy.from_pretrained(path).policy_id
    for images, instruction, proprio in _samples(3):
        a, b = policy.predict(images, instruction, proprio), loaded.predict(images, instruction, proprio)
        assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.action, b.action)
        assert np.allclose(a.entropy, b.entropy, atol=1e-5)
        assert a.action.shape == (7,) and a.action.dtype == np.float32
        assert np.all(a.entropy >= 0) and np.all(a.entropy <= np.log(256) + 1e-4)
    samples = _samples(4, seed=1)
    tokens = policy.tokenizer.encode_torch(torch.rand(4, 7) * 1.3 - 0.5)  # (B, A)
    with torch.no_grad():
        lp_a, am_a = policy.action_logprobs(policy.encode_batch(samples), tokens)
        lp_b, am_b = loaded.action_logprobs(loaded.encode_batch(samples), tokens)
    assert lp_a.shape == (4, 7) and am_a.shape == (4, 7)
    assert torch.all(lp_a <= 0) and torch.allclose(lp_a, lp_b, atol=1e-5) and torch.equal(am_a, am_b)
    assert json.loads((path / 'run_config.json').read_text()) == {'lr': 1e-4}


def test_batched_logprobs_match_single_and_greedy(policy):
    # left-padding of the shorter prompt must not change a sample's log-probs or its greedy tokens
    samples = _samples(2)
    pred = policy.predict(*samples[0])
    tokens = torch.as_tensor(np.stack([pred.tokens, pred.tokens]))  # (B, A)
    with torch.no_grad():
        lp_batch, argmax = policy.action_logprobs(policy.encode_batch(samples), tokens)
        lp_one, _ = policy.action_logprobs(policy.encode_batch(samples[:1]), tokens[:1])
    assert torch.allclose(lp_batch[0], lp_one[0], atol=1e-4)
    assert argmax[0].tolist() == pred.tokens.tolist()  # teacher forcing on greedy tokens gives them back
    with torch.no_grad():
        tokens_batch, _ = policy.model.generate_actions(**policy.encode_batch(samples))  # padded batch decoding
    assert tokens_batch[0].tolist() == pred.tokens.tolist()


def test_logprobs_have_gradients(policy):
    batch = policy.encode_batch(_samples(2))
    tokens = torch.full((2, 7), policy.tokenizer.vocab_size - 1)
    logp, _ = policy.action_logprobs(batch, tokens)
    logp.sum().backward()
    grads = [p.grad for p in policy.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    policy.model.zero_grad(set_to_none=True)


def test_missing_camera_and_proprio_raise(policy):
    images, instruction, proprio = _samples(1)[0]
    with pytest.raises(ValueError, match="camera 'robot0_eye_in_hand' missing"):
        policy.predict({'agentview': images['agentview']}, instruction, proprio)
    with pytest.raises(ValueError, match='proprio needs 9 values'):
        policy.predict(images, instruction, None)


def test_refuses_missing_dir(tmp_path):
    with pytest.raises(CheckpointError, match=r'nope: no such directory$'):
        VlaPolicy.from_pretrained(tmp_path / 'nope')


def test_refuses_missing_stats(policy, tmp_path):
    path = policy.save_pretrained(tmp_path / 'ck')
    (path / 'action_stats.json').unlink()
    with pytest.raises(CheckpointError, match=r'ck: missing action_stats\.json'):
        VlaPolicy.from_pretrained(path)


def test_refuses_missing_config(policy, tmp_path):
    path = policy.save_pretrained(tmp_path / 'ck')
    (path / 'config.json').unlink()
    with pytest.raises(CheckpointError, match=r'missing config\.json'):
        VlaPolicy.from_pretrained(path)


def test_refuses_pickle_only(policy, tmp_path):
    path = policy.save_pretrained(tmp_path / 'ck')
    torch.save(policy.model.state_dict(), path / 'pytorch_model.bin')
    (path / 'model.safetensors').unlink()
    with pytest.raises(CheckpointError, match=r'only pickle weights \(pytorch_model\.bin\); refusing to unpickle'):
        VlaPolicy.from_pretrained(path)


def test_refuses_weights_of_another_shape(policy, tmp_path):
    path = policy.save_pretrained(tmp_path / 'ck')
    other = VlaPolicy.create(TinyVlaConfig(camera_names=['agentview'], proprio_dim=0)).save_pretrained(tmp_path / 'o')
    shutil.copy(other / 'model.safetensors', path / 'model.safetensors')
    with pytest.raises(CheckpointError, match='weights do not match the config'):
        VlaPolicy.from_pretrained(path)


def test_refuses_nan_weights(policy, tmp_path):
    """Argmax over NaN logits still gives valid-looking action tokens: a NaN weight must be refused at load."""
    from safetensors.torch import load_file, save_file
    path = policy.save_pretrained(tmp_path / 'ck')
    weights = load_file(str(path / 'model.safetensors'))
    name = sorted(k for k, t in weights.items() if t.is_floating_point() and t.ndim == 2)[0]
    weights[name][0, 0] = float('nan')
    save_file(weights, str(path / 'model.safetensors'), metadata={'format': 'pt'})
    with pytest.raises(CheckpointError, match=rf'ck.*weights not finite: {name} holds NaN or inf'):
        VlaPolicy.from_pretrained(path)


def test_save_refuses_non_checkpoint_dir_and_replaces_checkpoint(policy, tmp_path):
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / 'keep.txt').write_text('precious')
    with pytest.raises(CheckpointError, match='not a checkpoint directory; refusing to overwrite'):
        policy.save_pretrained(tmp_path / 'data')
    assert (tmp_path / 'data' / 'keep.txt').read_text() == 'precious'
    first = policy.save_pretrained(tmp_path / 'ck')
    policy.save_pretrained(first)  # an existing checkpoint is replaced atomically
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ck', 'data']  # no temp/old dirs left behind


_WRITER = """
import sys, time
from pathlib import Path
from hapo_policy.checkpoint import atomic_dir
with atomic_dir(Path(sys.argv[1])) as tmp:
    (tmp / 'half.bin').write_bytes(b'x' * 1000)
    print('writing', flush=True)
    time.sleep(60)
"""


def _start_writer(path):
    proc = subprocess.Popen([sys.executable, '-c', _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'writing'
    return proc


def test_atomic_dir_removes_what_a_killed_writer_left_and_spares_a_live_one(tmp_path):
    killed, live = _start_writer(tmp_path / 'ck'), _start_writer(tmp_path / 'ck')
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        partials = sorted(p.name for p in tmp_path.glob('.ck.*.partial'))
        assert len(partials) == 2  # SIGKILL ran no cleanup
        with atomic_dir(tmp_path / 'ck') as tmp:
            (tmp / 'done.txt').write_text('ok')
        left = sorted(p.name for p in tmp_path.glob('.ck.*.partial'))
        assert len(left) == 1 and left[0].startswith(f'.ck.{live.pid}-')  # the live writer's, untouched
        assert (tmp_path / 'ck' / 'done.txt').read_text() == 'ok'
    finally:
        for proc in (killed, live):
            proc.kill()
            proc.wait(10)


def test_init_checkpoint_cli(tmp_path, capsys):
    assert init_main(['--out', str(tmp_path / 'ck'), '--camera', 'a', '--camera', 'b', '--proprio-dim', '0']) == 0
    loaded = VlaPolicy.from_pretrained(tmp_path / 'ck')
    assert loaded.camera_names == ['a', 'b'] and loaded.proprio_dim == 0
    (tmp_path / 'x').write_text('')
    assert init_main(['--out', str(tmp_path / 'x')]) == 1
    assert 'refusing to overwrite' in capsys.readouterr().err

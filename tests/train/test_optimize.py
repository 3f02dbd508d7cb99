# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""optimize on a small dataset recorded with hapo_recorder's EpisodeWriter, with the real (tiny) VLA."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train.episode_bags import tiny_policy, write_bags
from unit.test_augment import which_shift

from hapo_policy.model import VlaPolicy
from hapo_trainer.algos import get_algo
from hapo_trainer.config import ConfigError, TrainConfig, dump_yaml
from hapo_trainer.dataset import BuildSpec, build_dataset
from hapo_trainer.metrics_plot import plot_metrics, read_metrics
from hapo_trainer.optimize import TrainResult, main, train
from hapo_trainer.sampler import epoch_batches
from hapo_trainer.steps import MicroBatches, ReferenceCache, TrainTensors

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp('recorded')
    write_bags(root / 'bags', n=4)
    return root / 'bags', tiny_policy(root / 'base'), root / 'cache'


def _dataset(recorded, policy, method='hapo'):
    bags, _, cache = recorded
    return build_dataset([bags], BuildSpec.for_policy(TrainConfig().data, policy), method=method, cache_dir=cache,
                         log=lambda m: None, progress=False)


def _cfg(method: str, steps: int, lr: float, **kw) -> TrainConfig:
    base = {'loss.method': method, 'optim.max_steps': steps, 'optim.lr': lr, 'optim.warmup_steps': 0,
            'run.tensorboard': False, 'run.checkpoint_every': 0}
    return TrainConfig().replace(**{**base, **kw})


@pytest.mark.parametrize('method', ['hapo', 'kto', 'kto-pair', 'sirius', 'dagger', 'bc'])
def test_three_steps_at_high_lr_change_every_trainable_parameter(recorded, tmp_path, method):
    policy = VlaPolicy.from_pretrained(recorded[1])
    ds = _dataset(recorded, policy, method)
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    result = train(policy, ds, _cfg(method, 3, 1e-2), tmp_path / 'out', progress=False, log=lambda m: None)
    assert result == TrainResult(tmp_path / 'out' / 'policy', 3, interrupted=False)
    final = result.path
    assert (final / 'model.safetensors').is_file()
    unchanged = [n for n, p in policy.model.named_parameters() if torch.equal(before[n], p.detach())]
    assert not unchanged, f'{method}: parameters not updated: {unchanged}'
    reloaded = VlaPolicy.from_pretrained(final)  # the policy node can load it directly
    for n, p in reloaded.model.named_parameters():
        assert torch.isfinite(p).all(), n
        torch.testing.assert_close(p, dict(policy.model.named_parameters())[n])


def _class_logps(policy, ds) -> dict[int, float]:
    tokens = torch.from_numpy(policy.tokenizer.encode(ds.actions))
    with torch.no_grad():
        batch = policy.encode_batch([ds.sample(i) for i in range(len(ds))])
        logps = policy.action_logprobs(batch, tokens)[0].sum(1).numpy()
    return {c: float(logps[ds.labels == c].mean()) for c in (0, 1, 2)}


@pytest.mark.parametrize('method', ['hapo', 'kto'])
def test_short_run_raises_corrections_relative_to_undesirable(recorded, tmp_path, method):
    policy = VlaPolicy.from_pretrained(recorded[1])
    ds = _dataset(recorded, policy)
    before = _class_logps(policy, ds)
    train(policy, ds, _cfg(method, 40, 3e-3), tmp_path / 'out', progress=False, log=lambda m: None)
    after = _class_logps(policy, ds)
    gain = (after[2] - after[0]) - (before[2] - before[0])
    assert gain > 1.0, f'{method}: correction - undesirable log-prob gap moved by {gain:.3f} ({before} -> {after})'
    assert after[0] < before[0]  # undesirable actions pushed down
    # the run's curves: r and lambda per class logged (TensorBoard and metrics.jsonl), drawn into one PNG
    rows = read_metrics(tmp_path / 'out' / 'metrics.jsonl')
    for c in ('policy', 'correction', 'undesirable'):
        assert any(r.get(f'r/{c}') is not None and r.get(f'lambda/{c}') is not None for r in rows), (c, rows[-1])
    png = plot_metrics(tmp_path / 'out' / 'metrics.jsonl', tmp_path / 'out' / 'metrics.png')
    assert png is not None and png.stat().st_size > 20_000
    assert plot_metrics(tmp_path / 'missing.jsonl', tmp_path / 'none.png') is None


def test_corrections_pair_with_the_proposal_of_their_observation_and_kto_pair_separates_them(recorded, tmp_path):
    from train.episode_bags import PROPOSAL

    policy = VlaPolicy.from_pretrained(recorded[1])
    ds = _dataset(recorded, policy, 'kto-pair')
    paired = ds.paired()
    assert ds.summary['paired_corrections'] == paired.sum() > 0 and ds.summary['unpaired_corrections'] > 0
    np.testing.assert_allclose(ds.proposals[paired], np.tile(PROPOSAL, (paired.sum(), 1)), atol=1e-6)
    assert np.isnan(ds.proposals[(ds.labels == 2) & ~paired]).all()  # the last correction of each bag has none

    def gap():
        idx = np.flatnonzero(paired)
        with torch.no_grad():
            batch = policy.encode_batch([ds.sample(i) for i in idx])
            chosen = policy.action_logprobs(batch, torch.from_numpy(policy.tokenizer.encode(ds.actions[idx])))[0]
            rejected = policy.action_logprobs(batch, torch.from_numpy(policy.tokenizer.encode(ds.proposals[idx])))[0]
        return float((chosen.sum(1) - rejected.sum(1)).mean())

    before = gap()
    train(policy, ds, _cfg('kto-pair', 30, 3e-3), tmp_path / 'out', progress=False, log=lambda m: None)
    assert gap() - before > 1.0, 'the correction did not gain on the proposal it replaced'


def _cli(recorded, out, *extra):
    bags, base, cache = recorded
    return ['--bags', str(bags), '--policy', str(base), '--out', str(out), '--cache-dir', str(cache),
            '--no-progress', '--lr', '1e-3', *extra]


@pytest.mark.parametrize('config', [None, {'loss': {'method': 'bc'}, 'optim': {'image_shift_px': 4}}],
                         ids=['hapo', 'bc-with-image-shift'])
def test_resume_reproduces_the_uninterrupted_run(recorded, tmp_path, config):
    full, part = tmp_path / 'full', tmp_path / 'part'
    args = ['--steps', '6', '--checkpoint-every', '3', '--log-every', '1']
    if config is not None:  # the shifts are seeded per micro-batch: a resumed run sees the same ones
        (tmp_path / 'c.yaml').write_text(dump_yaml(TrainConfig.from_dict(config)))
        args += ['--config', str(tmp_path / 'c.yaml')]
    assert main(_cli(recorded, full, *args)) == 0
    assert main(_cli(recorded, full, *args)) == 2  # an existing run is not overwritten without --resume
    (part / 'checkpoints').mkdir(parents=True)
    shutil.copytree(full / 'checkpoints' / 'step-000003', part / 'checkpoints' / 'step-000003')
    assert main(_cli(recorded, part, *args, '--resume')) == 0
    a, b = load_file(str(full / 'policy' / 'model.safetensors')), load_file(str(part / 'policy' / 'model.safetensors'))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    sa = load_file(str(full / 'policy' / 'train_state.safetensors'))
    sb = load_file(str(part / 'policy' / 'train_state.safetensors'))
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=0, atol=0, msg=k)


def test_image_shift_is_applied_per_micro_batch_and_reproducible(recorded):
    # The seam for base-policy training (BC from scratch with random-shift augmentation): configuration only.
    policy = VlaPolicy.from_pretrained(recorded[1])
    ds = _dataset(recorded, policy, 'bc')
    cfg = _cfg('bc', 3, 1e-3, **{'optim.image_shift_px': 4})
    data = TrainTensors(ds, policy, policy.device)

    def source(c):
        return MicroBatches(data, ReferenceCache(policy, lambda b, t: (t.float(), t), data), get_algo('bc'), c)

    shifted, again, plain = source(cfg), source(cfg), source(_cfg('bc', 3, 1e-3))
    moved = 0
    for m in (0, 1, 7):
        idx, samples = shifted(m)
        assert idx == plain(m)[0]  # the same samples, in the same order
        for i, (images, instruction, proprio), (images2, _, _) in zip(idx, samples, again(m)[1], strict=True):
            original, instr0, proprio0 = ds.sample(i)
            assert instruction == instr0 and np.array_equal(proprio, proprio0)
            for cam, img in images.items():
                np.testing.assert_array_equal(img, images2[cam])  # a pure function of (seed, rank, m)
                shift = which_shift(img, original[cam], 4)
                assert shift is not None
                moved += shift != (0, 0)
        assert all(np.array_equal(s[0][c], ds.sample(i)[0][c]) for i, s in zip(idx, plain(m)[1], strict=True)
                   for c in s[0])  # image_shift_px = 0: the recorded images
    assert moved > 0
    with pytest.raises(ConfigError, match=r"optim.image_shift_px=4 invalid: must be 0 with method 'hapo'"):
        _cfg('hapo', 3, 1e-3, **{'optim.image_shift_px': 4})


def test_on_epoch_end_is_called_at_each_epoch_boundary(recorded, tmp_path):
    # The seam for base-policy training's work between epochs. Two micro-batches per optimiser step, so an
    # epoch of odd length ends inside a step: the call comes after that step.
    policy = VlaPolicy.from_pretrained(recorded[1])
    ds = _dataset(recorded, policy, 'bc')
    cfg = _cfg('bc', 1, 1e-3, **{'optim.micro_batch': 4, 'optim.grad_accum': 2})
    epoch_len = len(epoch_batches(ds.labels, 4, cfg.loss.class_ratios(), cfg.run.seed))  # micro-batches
    steps = epoch_len + 1  # 2 * steps micro-batches: two epochs and a bit
    calls = []
    result = train(policy, ds, cfg.replace(**{'optim.max_steps': steps}), tmp_path / 'out', progress=False,
                   log=lambda m: None, on_epoch_end=lambda epoch, step: calls.append((epoch, step)))
    assert result.step == steps
    last = [(e + 1) * epoch_len - 1 for e in (0, 1)]  # the last micro-batch of epochs 0 and 1
    assert calls == [(0, last[0] // 2 + 1), (1, last[1] // 2 + 1)]


def _run(cmd, timeout=120) -> tuple[int, str]:
    """Run in its own process group; on timeout the whole group (torchrun and its workers) is killed."""
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f'timed out after {timeout} s: {out[-3000:]}') from None
    return proc.returncode, out


def test_two_process_gloo_ddp_matches_single_process(recorded, tmp_path):
    single, ddp = tmp_path / 'single', tmp_path / 'ddp'
    common = ['--steps', '3', '--micro-batch', '4', '--seed', '3']
    assert main(_cli(recorded, single, *common, '--grad-accum', '2')) == 0
    rc, out = _run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                    '-m', 'hapo_trainer.optimize', *_cli(recorded, ddp, *common, '--grad-accum', '1')])
    assert rc == 0, out[-3000:]
    a = load_file(str(single / 'policy' / 'model.safetensors'))
    b = load_file(str(ddp / 'policy' / 'model.safetensors'))
    base = load_file(str(recorded[1] / 'model.safetensors'))
    moved = max(float((a[k] - base[k]).abs().max()) for k in a)
    assert moved > 1e-4
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(recorded, tmp_path, capsys):
    out = tmp_path / 'run'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    proc = subprocess.Popen([sys.executable, '-m', 'hapo_trainer.optimize', *_cli(recorded, out, '--steps', '100000',
                            '--log-every', '1')], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 60
    while not list((out / 'tb').glob('events*')) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # a few steps
    assert main(_cli(recorded, out, '--steps', '3')) == 2  # a second run on the same directory is refused
    assert main(_cli(recorded, out, '--steps', '3', '--resume')) == 2
    assert f'{out} is in use by another run (pid {proc.pid})' in capsys.readouterr().err
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert 'interrupted; saved' in err
    saved = sorted((out / 'checkpoints').glob('step-*'))
    assert saved and VlaPolicy.from_pretrained(saved[-1])
    assert not list((out / 'checkpoints').glob('.*partial'))
    assert main(_cli(recorded, out, '--steps', str(int(saved[-1].name.split('-')[1]) + 1), '--resume')) == 0


def test_bad_input_fails_in_one_line(recorded, tmp_path, capsys):
    assert main(_cli(recorded, tmp_path / 'o', '--micro-batch', '0')) == 2
    assert 'optim.micro_batch=0' in capsys.readouterr().err
    bags, base, cache = recorded
    assert main(['--bags', str(tmp_path / 'nope'), '--policy', str(base), '--out', str(tmp_path / 'o')]) == 2
    assert main(_cli(recorded, tmp_path / 'o2', '--resume')) == 2
    assert np.isfinite(1.0)


def test_lora_trains_adapters_only_and_saves_merged_weights(recorded, tmp_path):
    # The large-backbone path (OpenVLA-7B with LoRA) run on the tiny model: only the adapters train,
    # the reference is the same model with its adapters disabled, the saved policy has them merged.
    policy = VlaPolicy.from_pretrained(recorded[1])
    base = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    ds = _dataset(recorded, policy)
    cfg = _cfg('hapo', 3, 1e-2, **{'model.lora': True})
    result = train(policy, ds, cfg, tmp_path / 'out', progress=False, log=lambda m: None)
    assert result.step == 3 and not result.interrupted
    final = result.path
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all('lora_' in n for n in trainable), trainable
    plain = lambda n: n.replace('base_model.model.', '').replace('.base_layer', '')  # noqa: E731 (peft's names)
    frozen_changed = [n for n, p in policy.model.named_parameters()
                      if not p.requires_grad and plain(n) in base and not torch.equal(base[plain(n)], p)]
    assert not frozen_changed, frozen_changed
    merged = VlaPolicy.from_pretrained(final)  # plain weights the policy node loads, adapters folded in
    assert set(dict(merged.model.named_parameters())) == set(base)
    changed = [n for n, p in merged.model.named_parameters() if not torch.equal(base[n], p)]
    targets = ('q_proj', 'k_proj', 'v_proj', 'o_proj')
    assert changed and all(any(t in n for t in targets) for n in changed), changed

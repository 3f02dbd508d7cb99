# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""PreferenceDataset from bags written by hapo_recorder's EpisodeWriter: pairing, labels, drops, cache, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from train.episode_bags import CAMERA, SOURCES, tiny_policy, write_bags, write_episode

from hapo_policy.model import VlaPolicy
from hapo_recorder.bag_reader import read_episode
from hapo_recorder.relabel import relabel
from hapo_trainer.config import DataConfig
from hapo_trainer.dataset import BuildSpec, DatasetError, PreferenceDataset, build_dataset, main


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    return VlaPolicy.from_pretrained(tiny_policy(tmp_path_factory.mktemp('ckpt') / 'base'))


def spec(policy, **data):
    return BuildSpec.for_policy(DataConfig(**data), policy)


def test_steps_paired_with_their_observation_and_relabelled(tmp_path, base):
    bags = write_bags(tmp_path / 'bags', n=2)
    ds = build_dataset([tmp_path / 'bags'], spec(base, K=3), cache_dir=tmp_path / 'cache', progress=False)
    per_ep = len(SOURCES) - 1  # the one NONE hold step is not a training step
    assert len(ds) == 2 * per_ep
    expected = relabel(np.array(SOURCES), 3)
    ep = read_episode(bags[0])
    rows = np.flatnonzero(ds.episode == 0)
    for r in rows:
        i = ds.step[r]
        assert ds.labels[r] == expected[i]
        np.testing.assert_array_equal(ds.actions[r], ep.actions[i])
        np.testing.assert_array_equal(ds.images[CAMERA][r], ep.images[CAMERA][int(ep.step_stamps_ns[i])])
        np.testing.assert_allclose(ds.proprio[r], ep.joint_states[int(ep.step_stamps_ns[i])][:9], rtol=1e-6)
    assert ds.class_counts() == {'policy': 2 * 16, 'correction': 2 * 5, 'undesirable': 2 * 3}
    summary = json.loads((ds.path / 'summary.json').read_text())
    assert summary['classes'] == ds.class_counts()
    assert summary['drops'] == {'not_training': 2}
    assert summary['intervention_ratio'] == pytest.approx(10 / 48)
    images, instruction, proprio = ds.sample(int(rows[0]))
    assert instruction == 'lift the cube' and images[CAMERA].shape == (16, 16, 3) and proprio.shape == (9,)


def test_simulated_episodes_are_ordered_by_seed_not_by_the_time_in_their_names(tmp_path, base):
    # a round's two workers interleave their episodes differently each run, and the names begin with the time:
    # ordered by name, the same episodes trained other weights (README, the demo)
    contents = {31: 5, 12: 6, 27: 7}  # sim seed -> content seed
    built = []
    for run, order in enumerate([(31, 12, 27), (27, 31, 12)]):
        for index, sim_seed in enumerate(order, start=1):
            write_episode(tmp_path / f'run{run}', index, seed=contents[sim_seed], sim_seed=sim_seed)
        write_episode(tmp_path / f'run{run}', 9, seed=8)  # no seed (a real robot's): after them
        built.append(build_dataset([tmp_path / f'run{run}'], spec(base, K=3), cache_dir=tmp_path / 'c',
                                   progress=False))
    a, b = built
    assert [read_episode(p).metadata.get('seed') or '-' for p in a.episodes] == ['12', '27', '31', '-']
    for field in ('actions', 'labels', 'episode', 'step', 'proprio'):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(a.images[CAMERA], b.images[CAMERA])


def test_cache_reused_and_invalidated(tmp_path, base):
    write_bags(tmp_path / 'bags', n=2)
    logs: list[str] = []
    kw = {'cache_dir': tmp_path / 'cache', 'log': logs.append, 'progress': False}
    first = build_dataset([tmp_path / 'bags'], spec(base), **kw)
    second = build_dataset([tmp_path / 'bags'], spec(base), **kw)
    assert 'from cache' in logs[-1] and second.path == first.path
    np.testing.assert_array_equal(second.images[CAMERA], first.images[CAMERA])
    assert build_dataset([tmp_path / 'bags'], spec(base, K=5), **kw).path != first.path  # option changed
    write_episode(tmp_path / 'bags', 3, seed=7)  # a bag added
    third = build_dataset([tmp_path / 'bags'], spec(base), **kw)
    assert third.path != first.path and 'built' in logs[-1] and len(third) == len(first) * 3 // 2


def test_drop_rules_counted_by_reason(tmp_path, base):
    write_bags(tmp_path / 'bags', n=1)
    # every step has |gripper| = 1 > 0.9: all 24 training steps dropped, counted, and the error says so
    with pytest.raises(DatasetError, match=r"drops \{'not_training': 1, 'too_large': 24\}"):
        build_dataset([tmp_path / 'bags'], spec(base, max_abs_action=0.9), cache_dir=tmp_path / 'c', progress=False)
    ds = build_dataset([tmp_path / 'bags'], spec(base, range_margin=-0.99), cache_dir=tmp_path / 'c', progress=False)
    assert ds.summary['drops'] == {'not_training': 1}  # negative margin keeps everything
    ds = build_dataset([tmp_path / 'bags'], spec(base, range_margin=0.0), cache_dir=tmp_path / 'c', progress=False)
    assert ds.summary['drops'].get('out_of_range', 0) > 0  # beyond the base checkpoint's q01/q99


def test_images_of_another_size_are_counted_and_skipped_not_trained_on(tmp_path, base):
    write_bags(tmp_path / 'bags', n=2)
    write_episode(tmp_path / 'bags', 3, seed=5, size=12)  # a camera that switched resolution for one episode
    logs: list[str] = []
    ds = build_dataset([tmp_path / 'bags'], spec(base), cache_dir=tmp_path / 'c', log=logs.append, progress=False)
    per_ep = len(SOURCES) - 1
    assert len(ds) == 2 * per_ep and ds.images[CAMERA].shape[1:] == (16, 16, 3)
    assert ds.summary['drops'] == {'not_training': 3, f'image_size_{CAMERA}': per_ep}
    assert any(f"camera '{CAMERA}': {per_ep} samples with images of another size" in m for m in logs), logs


def test_policy_steps_off_keeps_demos_and_corrections_only(tmp_path, base):
    write_bags(tmp_path / 'bags', n=1)
    write_episode(tmp_path / 'bags', 1, sources=[1] * 6, demo=True)  # a demo: every step c = 1
    ds = build_dataset([tmp_path / 'bags'], spec(base, K=3, policy_steps=False), cache_dir=tmp_path / 'c',
                       progress=False)
    assert ds.class_counts() == {'policy': 6, 'correction': 5, 'undesirable': 3}  # the 6 c = 1 are the demo's
    assert ds.summary['drops'] == {'not_training': 1, 'policy_step': 16}
    assert set(ds.episode[ds.labels == 1].tolist()) == {1}


def test_truncated_and_unreadable_bags_are_skipped_with_their_name(tmp_path, base):
    write_bags(tmp_path / 'bags', n=2)
    cut = write_episode(tmp_path / 'bags', 9, seed=3, close=False)
    junk = tmp_path / 'bags' / 'junk'
    junk.mkdir()
    (junk / 'junk.mcap').write_bytes(b'not an mcap file at all')
    logs: list[str] = []
    ds = build_dataset([tmp_path / 'bags'], spec(base), cache_dir=tmp_path / 'c', log=logs.append, progress=False)
    assert ds.summary['episodes_used'] == 2
    skipped = {s['path'] for s in ds.summary['skipped_bags']}
    assert skipped == {str(cut), str(junk)}
    assert any(str(cut) in line and 'truncated' in line for line in logs)


def test_a_bag_cut_by_a_crash_and_its_continuation_are_one_episode(tmp_path, base):
    # a recorder restarted mid-episode continues it in a bag of its own (hapo_recorder.recorder)
    write_bags(tmp_path / 'bags', n=1)
    cut = write_episode(tmp_path / 'bags', 9, sources=SOURCES[:11], seed=3, close=False)
    cont = write_episode(tmp_path / 'bags', 9, sources=SOURCES[11:], seed=4, continues=cut, steps_from=11)
    assert read_episode(cont).metadata['continuation_of'] == cut.name
    logs: list[str] = []
    ds = build_dataset([tmp_path / 'bags'], spec(base, K=3), cache_dir=tmp_path / 'c', log=logs.append,
                       progress=False)
    assert ds.summary['episodes_used'] == 2 and ds.summary['skipped_bags'] == [], ds.summary
    assert not any('truncated' in line for line in logs), logs
    joined = np.flatnonzero(ds.episode == ds.episodes.index(str(cont)))
    assert len(joined) == len(SOURCES) - 1  # every step of both bags but the hold
    expected = relabel(np.array(SOURCES), 3)  # the K steps before the takeover at step 12: 9, 10 cut, 11 continued
    assert [int(ds.labels[r]) for r in joined] == [int(expected[ds.step[r]]) for r in joined]
    assert sorted(ds.step[joined].tolist()) == [i for i, s in enumerate(SOURCES) if s != 0]


def test_missing_classes_are_a_clear_error_except_for_bc(tmp_path, base):
    root = tmp_path / 'bags'
    write_episode(root, 1, sources=[1] * 10, seed=1)
    with pytest.raises(DatasetError, match='no usable corrections'):
        build_dataset([root], spec(base), cache_dir=tmp_path / 'c', progress=False)
    assert len(build_dataset([root], spec(base), method='bc', cache_dir=tmp_path / 'c', progress=False)) == 10
    with pytest.raises(DatasetError, match='no undesirable samples'):
        build_dataset([tmp_path / 'bags2' if write_bags(tmp_path / 'bags2', n=1) else None], spec(base, K=0),
                      cache_dir=tmp_path / 'c', progress=False)


def test_cache_round_trip_is_exact(tmp_path, base):
    write_bags(tmp_path / 'bags', n=1)
    ds = build_dataset([tmp_path / 'bags'], spec(base), cache_dir=tmp_path / 'c', progress=False)
    copy = ds.save(tmp_path / 'copy')
    back = PreferenceDataset.load(copy)
    for name in ('proprio', 'actions', 'labels', 'episode', 'step', 'instruction_id'):
        np.testing.assert_array_equal(getattr(back, name), getattr(ds, name))
    assert back.summary == ds.summary and back.instructions == ds.instructions
    shutil.rmtree(copy)


@pytest.mark.parametrize('damage', ['meta_not_object', 'arrays_cut', 'arrays_missing'])
def test_damaged_cache_is_one_line_error(tmp_path, base, damage):
    write_bags(tmp_path / 'bags', n=1)
    ds = build_dataset([tmp_path / 'bags'], spec(base), cache_dir=tmp_path / 'c', progress=False)
    arrays = ds.path / 'arrays.safetensors'
    if damage == 'meta_not_object':
        (ds.path / 'meta.json').write_text('[2]\n')
    elif damage == 'arrays_cut':
        arrays.write_bytes(arrays.read_bytes()[:arrays.stat().st_size // 2])
    else:
        from safetensors.numpy import load_file, save_file
        kept = load_file(str(arrays))
        del kept['labels']
        save_file(kept, str(arrays))
    with pytest.raises(DatasetError, match=rf'dataset cache {ds.path} (unreadable|incomplete).*delete it to rebuild'):
        PreferenceDataset.load(ds.path)


def test_bad_and_second_proposals_never_reach_a_sample(tmp_path, base):
    """A NaN or out-of-range proposal the recorder stored raw is skipped and counted; a second proposal for the same
    observation (another publisher) does not replace the policy's first."""
    from train.episode_bags import IMG, JS, MS, T0, _image, _joint_state, step_action

    from hapo_interfaces.enums import ControlSource
    from hapo_recorder.bag_writer import EpisodeWriter
    info = {'task': 'lift', 'instruction': 'lift the cube', 'k': 2, 'demo': False, 'policy_id': 'base',
            'topics': {'cmd': '/hapo/cmd', 'cameras': {CAMERA: f'/camera/{CAMERA}/image_raw'}}}
    w = EpisodeWriter(tmp_path / 'bags', info)
    w.open(T0)
    good, second = np.full(7, 0.1), np.full(7, -0.2)
    proposals = [[good], [np.full(7, np.nan)], [np.full(7, 5.0)], [good, second], [good]]
    sources = [1, 1, 1, 2, 1]
    for i, (props, src) in enumerate(zip(proposals, sources, strict=True)):
        stamp = T0 + (i + 1) * 50 * MS
        w.write(f'/camera/{CAMERA}/image_raw', IMG, stamp, _image(stamp, np.full((16, 16, 3), i, np.uint8)))
        w.write('/robot/joint_states', JS, stamp, _joint_state(stamp, np.zeros(9), names=[f'j{j}' for j in range(9)]))
        for p in props:
            w.write('/hapo/policy/action', JS, stamp + 1, _joint_state(stamp, p, 'policy'))
        action = step_action(src, i, np.random.default_rng(i))
        w.write('/hapo/cmd', JS, stamp + 2, _joint_state(stamp, action, ControlSource(src).wire))
        w.add_step(stamp, src)
    w.close('success')
    ds = build_dataset([tmp_path / 'bags'], spec(base, K=1), method=None, cache_dir=tmp_path / 'c', progress=False)
    by_step = {int(s): ds.proposals[r] for r, s in enumerate(ds.step)}
    assert np.isnan(by_step[1]).all() and np.isnan(by_step[2]).all()  # none known: not a wrong number
    np.testing.assert_allclose(by_step[3], good)  # the correction pairs with the policy's own proposal
    assert ds.summary['malformed_messages'] == {'/hapo/policy/action': 2}


def test_cli(tmp_path, base, capsys):
    write_bags(tmp_path / 'bags', n=1)
    ckpt = tmp_path / 'ckpt'
    base.save_pretrained(ckpt)
    assert main(['--bags', str(tmp_path / 'bags'), '--policy', str(ckpt), '--cache-dir', str(tmp_path / 'c')]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['correction'] == 5 and (tmp_path / 'c').is_dir()
    assert main(['--bags', str(tmp_path / 'none'), '--policy', str(ckpt)]) == 2
    assert 'hapo dataset:' in capsys.readouterr().err

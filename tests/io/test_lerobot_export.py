# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""hapo export-lerobot: bags written by the recorder's EpisodeWriter -> LeRobot v3.0 dataset, read back with pyarrow
and PyAV and compared with the bags frame by frame (LeRobot itself cannot be installed beside our torch pin)."""

from __future__ import annotations

import json
import shutil

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from hapo_bringup import cli
from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import EpisodeMessage, encode_event
from hapo_interfaces.topics import ACTION_DIMS
from hapo_recorder.bag_reader import read_episode
from hapo_recorder.bag_writer import EpisodeWriter, typestore
from hapo_recorder.lerobot_export import ExportError, export, main

STORE = typestore()
JS, IMG, STR = 'sensor_msgs/msg/JointState', 'sensor_msgs/msg/Image', 'std_msgs/msg/String'
MS = 1_000_000
CAMERAS = ('agentview', 'wrist')
SIZE = 64
# Lossy video (libsvtav1, crf 30, yuv420p: LeRobot's defaults). Measured on these 64 px frames: mean absolute
# error per frame at most 4.9 of 255, 3.5 on average (on real 64 px sim renders: at most 8.5, 4-5 on average).
MAE_FRAME, MAE_MEAN = 6.5, 4.5
# (instruction, policy_id, outcome, sources, steps without a proposal, steps whose joint state / wrist image
# was lost: those take the newest earlier one, counted)
EPISODES = [
    ('lift the cube', 'pol-a', 'success', [1, 1, 1, 1, 2, 2, 2, 1, 0, 1], {5, 8}, set()),
    ('lift the red cube', 'pol-b', 'failure', [1, 1, 2, 2, 1, 3, 1, 1], {0}, {4}),
]


def _header(stamp_ns, frame=''):
    t = STORE.types['builtin_interfaces/msg/Time'](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return STORE.types['std_msgs/msg/Header'](stamp=t, frame_id=frame)


def _joint_state(stamp_ns, values, frame=''):
    names = ACTION_DIMS if len(values) == 7 else [f'j{i}' for i in range(len(values))]
    msg = STORE.types[JS](header=_header(stamp_ns, frame), name=list(names),
                          position=np.asarray(values, dtype=np.float64), velocity=np.zeros(0), effort=np.zeros(0))
    return STORE.serialize_cdr(msg, JS)


def frame_image(cam: int, i: int) -> np.ndarray:
    """A smooth scene with a square that moves every frame, different per camera (what a renderer gives)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    img = np.stack([xx * 3 + 20 * cam, yy * 3, np.full_like(xx, 90 + 40 * cam)], axis=-1).astype(np.float64)
    x0 = 4 + 3 * i
    img[20:36, x0:x0 + 14] = (230, 40 + 10 * i, 30)
    return np.clip(img, 0, 255).astype(np.uint8)


def _image(stamp_ns, data):
    msg = STORE.types[IMG](header=_header(stamp_ns, 'cam'), height=SIZE, width=SIZE, encoding='rgb8',
                           is_bigendian=0, step=SIZE * 3, data=data.reshape(-1))
    return STORE.serialize_cdr(msg, IMG)


def _string(text):
    return STORE.serialize_cdr(STORE.types[STR](data=text), STR)


def write_episode(root, index, instruction, policy_id, outcome, sources, no_proposal, lost):
    t0 = 1_700_000_000_000_000_000 + index * 10**10
    info = {'task': 'lift', 'instruction': instruction, 'k': 2, 'demo': False, 'policy_id': policy_id, 'seed': index,
            'topics': {'cmd': '/hapo/cmd', 'cameras': {c: f'/camera/{c}/image_raw' for c in CAMERAS}}}
    w = EpisodeWriter(root, info, index=index, chunk_size_bytes=1 << 16)
    path = w.open(t0)
    w.write('/hapo/episode', STR, t0, _string(encode_event(EpisodeMessage(EpisodeEvent.START, t0, 'test'))))
    for i in range(len(sources) + 1):  # + the final observation, which no executed step answers
        stamp = t0 + (i + 1) * 50 * MS
        for c, cam in enumerate(CAMERAS):
            if not (cam == 'wrist' and i in lost):
                w.write(f'/camera/{cam}/image_raw', IMG, stamp, _image(stamp, frame_image(c, i)))
        if i not in lost:
            w.write('/robot/joint_states', JS, stamp, _joint_state(stamp, [0.1 * i, -0.2 * i, 0.3]))
        if i < len(sources) and i not in no_proposal:
            w.write('/hapo/policy/action', JS, stamp + 1, _joint_state(stamp, [0.01 * i + 0.1 * d for d in range(7)]))
        if i < len(sources):
            w.write('/hapo/cmd', JS, stamp + 2, _joint_state(stamp, [0.5 * i - d for d in range(7)],
                                                             ControlSource(sources[i]).wire))
            w.add_step(stamp, sources[i])
    w.close(outcome)
    return path


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('bags')
    return root, [write_episode(root, i + 1, *spec) for i, spec in enumerate(EPISODES)]


@pytest.fixture(scope='module')
def dataset(bags, tmp_path_factory):
    out = tmp_path_factory.mktemp('export') / 'hapo_ds'
    assert main(['--bags', str(bags[0]), '--out', str(out), '--fps', '20', '--no-progress']) == 0
    return out


def observed(by_stamp, stamp):
    """What the step stamped ``stamp`` saw: the observation at its stamp, else the newest earlier one."""
    return by_stamp[max(t for t in by_stamp if t <= stamp)]


def decode(path):
    """Every frame of an mp4: (times in s, (F, H, W, 3) uint8)."""
    with av.open(str(path)) as c:
        frames = [(f.time, f.to_ndarray(format='rgb24')) for f in c.decode(c.streams.video[0])]
    return np.array([t for t, _ in frames]), np.stack([img for _, img in frames])


def test_frames_match_the_bags(bags, dataset):
    info = json.loads((dataset / 'meta/info.json').read_text())
    assert info['codebase_version'] == 'v3.0' and info['fps'] == 20
    assert (info['total_episodes'], info['total_frames'], info['total_tasks']) == (2, 18, 2)
    assert info['data_path'] == 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
    assert info['video_path'] == 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4'
    assert info['splits'] == {'train': '0:2'} and info['chunks_size'] == 1000
    feats = info['features']
    assert feats['action']['names'] == list(ACTION_DIMS) and feats['action']['shape'] == [7]
    assert feats['observation.state']['shape'] == [3]
    video = feats['observation.images.agentview']
    assert video['dtype'] == 'video' and video['shape'] == [SIZE, SIZE, 3]
    assert video['names'] == ['height', 'width', 'channels']
    assert {k: video['info'][k] for k in ('video.codec', 'video.pix_fmt', 'video.fps', 'video.height')} == {
        'video.codec': 'av1', 'video.pix_fmt': 'yuv420p', 'video.fps': 20, 'video.height': SIZE}
    assert feats['complementary_info.control_source']['info']['codebook'] == {
        '0': 'none', '1': 'policy', '2': 'human', '3': 'stopped'}
    assert feats['complementary_info.collector_policy_id']['info']['codebook'] == {
        '-1': 'none (hold: nobody drove)', '0': 'human', '1': 'pol-a', '2': 'pol-b'}

    data = pq.read_table(dataset / 'data/chunk-000/file-000.parquet').to_pydict()
    assert set(data) == {k for k, ft in feats.items() if ft['dtype'] != 'video'}
    episodes = pq.read_table(dataset / 'meta/episodes/chunk-000/file-000.parquet').to_pylist()
    tasks = pq.read_table(dataset / 'meta/tasks.parquet').to_pydict()
    assert tasks == {'task_index': [0, 1], 'task': ['lift the cube', 'lift the red cube']}
    videos = {cam: decode(dataset / f'videos/observation.images.{cam}/chunk-000/file-000.mp4') for cam in CAMERAS}
    assert all(len(t) == 18 for t, _ in videos.values())
    maes = []
    for e, (path, (instruction, policy_id, outcome, sources, no_prop, _lost), row) in enumerate(
            zip(bags[1], EPISODES, episodes, strict=True)):
        ep = read_episode(path)
        lo, hi = row['dataset_from_index'], row['dataset_to_index']
        n = len(sources)
        assert (row['episode_index'], row['length'], hi - lo, row['tasks']) == (e, n, n, [instruction])
        assert (row['data/chunk_index'], row['data/file_index'], row['meta/episodes/file_index']) == (0, 0, 0)
        assert (row['episode_success'], row['hapo/outcome'], row['hapo/policy_id']) == (
            outcome == 'success', outcome, policy_id)
        col = {k: v[lo:hi] for k, v in data.items()}
        assert col['episode_index'] == [e] * n and col['frame_index'] == list(range(n))
        assert col['index'] == list(range(lo, hi)) and col['task_index'] == [e] * n
        np.testing.assert_allclose(col['timestamp'], np.arange(n) / 20, rtol=0, atol=1e-6)
        assert col['complementary_info.stamp_ns'] == ep.step_stamps_ns.tolist()
        np.testing.assert_array_equal(np.array(col['action'], dtype=np.float32), ep.actions)
        assert col['complementary_info.control_source'] == sources
        assert col['complementary_info.label'] == ep.labels.tolist()
        assert col['complementary_info.is_intervention'] == [float(s == 2) for s in sources]
        assert col['complementary_info.is_hold'] == [s in (0, 3) for s in sources]
        assert col['complementary_info.collector_policy_id'] == [
            0 if s == 2 else -1 if s in (0, 3) else e + 1 for s in sources]
        assert col['next.done'] == [False] * (n - 1) + [True]
        assert col['next.reward'] == [0.0] * (n - 1) + [float(outcome == 'success')]
        proposal = np.array(col['complementary_info.policy_action'], dtype=np.float32)  # (n, 7)
        assert col['complementary_info.has_policy_action'] == [i not in no_prop for i in range(n)]
        for i in range(n):
            if i in no_prop:
                assert np.isnan(proposal[i]).all()
            else:
                j = ep.proposal_stamps_ns.tolist().index(int(ep.step_stamps_ns[i]))
                np.testing.assert_array_equal(proposal[i], ep.proposals[j])
            np.testing.assert_array_equal(np.float32(col['observation.state'][i]),
                                          np.float32(observed(ep.joint_states, int(ep.step_stamps_ns[i]))))
        for cam in CAMERAS:
            key = f'observation.images.{cam}'
            assert (row[f'videos/{key}/chunk_index'], row[f'videos/{key}/file_index']) == (0, 0)
            start, end = row[f'videos/{key}/from_timestamp'], row[f'videos/{key}/to_timestamp']
            assert (start, end) == pytest.approx((lo / 20, hi / 20), abs=1e-9)
            times, frames = videos[cam]
            # LeRobot looks a frame up at from_timestamp + timestamp, within tolerance_s = 1e-4
            for i, ts in enumerate(col['timestamp']):
                k = int(np.argmin(np.abs(times - (start + ts))))
                assert abs(times[k] - (start + ts)) < 1e-4 and k == lo + i
                bag_img = observed(ep.images[cam], int(ep.step_stamps_ns[i]))
                maes.append(np.abs(frames[k].astype(int) - bag_img.astype(int)).mean())
    assert max(maes) <= MAE_FRAME and np.mean(maes) <= MAE_MEAN, (max(maes), np.mean(maes))


def test_stats_as_lerobot_reads_them(dataset):
    stats = json.loads((dataset / 'meta/stats.json').read_text())
    data = pq.read_table(dataset / 'data/chunk-000/file-000.parquet').to_pydict()
    action = np.array(data['action'], dtype=np.float64)
    assert set(stats['action']) == {'min', 'max', 'mean', 'std', 'count', 'q01', 'q10', 'q50', 'q90', 'q99'}
    np.testing.assert_allclose(stats['action']['mean'], action.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats['action']['q99'], np.quantile(action, 0.99, axis=0), rtol=1e-12)
    assert stats['action']['count'] == [18] and stats['frame_index']['max'] == [9.0]
    proposals = np.array(data['complementary_info.policy_action'], dtype=np.float64)
    assert stats['complementary_info.policy_action']['count'] == [15]  # the rows with a proposal
    np.testing.assert_allclose(stats['complementary_info.policy_action']['min'], np.nanmin(proposals, axis=0))
    img = stats['observation.images.wrist']
    assert np.array(img['mean']).shape == (3, 1, 1) and 0 < img['mean'][2][0][0] < 1
    assert img['count'] == [18]
    episodes = pq.read_table(dataset / 'meta/episodes/chunk-000/file-000.parquet')
    assert episodes.column('stats/action/count').to_pylist() == [[10], [8]]
    assert np.array(episodes.column('stats/observation.images.wrist/std').to_pylist()[0]).shape == (3, 1, 1)
    tasks_meta = json.loads(pq.read_schema(dataset / 'meta/tasks.parquet').metadata[b'pandas'])
    assert tasks_meta['index_columns'] == ['task']  # pd.read_parquet (LeRobot's load_tasks): tasks as the index
    summary = json.loads((dataset / 'meta/hapo_export.json').read_text())
    assert summary['skipped'] == {} and summary['fps_source'] == '--fps' and summary['episodes'] == 2
    assert summary['counts'] == {'proposals_without_step': 0, 'duplicate_proposals': 0, 'state_not_at_step_stamp': 1,
                                 'image_not_at_step_stamp/agentview': 0, 'image_not_at_step_stamp/wrist': 1}


def test_fps_derived_and_files_rolled_over(bags, tmp_path):
    # no --fps: 50 ms between steps -> 20; a tiny file limit puts each episode in files of its own
    logs = []
    s = export([bags[0]], tmp_path / 'ds', video_file_mb=1e-6, data_file_mb=1e-6, log=logs.append)
    assert s.fps == 20 and 'derived' in s.fps_source and s.episodes == 2
    assert len(logs) == 1 and 'pass --fps' in logs[0]
    rows = pq.read_table(tmp_path / 'ds/meta/episodes/chunk-000/file-000.parquet').to_pylist()
    key = 'videos/observation.images.agentview'
    assert [(r['data/file_index'], r[f'{key}/file_index'], r[f'{key}/from_timestamp']) for r in rows] == [
        (0, 0, 0.0), (1, 1, 0.0)]
    times, _ = decode(tmp_path / 'ds/videos/observation.images.agentview/chunk-000/file-001.mp4')
    assert len(times) == 8 and pq.read_metadata(tmp_path / 'ds/data/chunk-000/file-001.parquet').num_rows == 8


def test_refuses_a_non_empty_out_and_leaves_it_alone(bags, dataset, tmp_path, capsys):
    out = tmp_path / 'busy'
    out.mkdir()
    (out / 'notes.txt').write_text('keep me')
    assert main(['--bags', str(bags[0]), '--out', str(out), '--no-progress']) == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'not empty' in err and '--overwrite' in err
    assert main(['--bags', str(bags[0]), '--out', str(out), '--overwrite', '--no-progress']) == 2
    assert 'not a LeRobot dataset' in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ['notes.txt']
    copy = tmp_path / 'copy'
    shutil.copytree(dataset, copy)
    (copy / 'stale.txt').write_text('old')
    assert main(['--bags', str(bags[1][0]), '--out', str(copy), '--fps', '20', '--overwrite', '--no-progress']) == 0
    assert not (copy / 'stale.txt').exists()
    assert json.loads((copy / 'meta/info.json').read_text())['total_episodes'] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['busy', 'copy']  # no temporary directory left


def test_bad_bags_one_line_each(bags, tmp_path, capsys):
    assert main(['--bags', str(tmp_path / 'nope'), '--out', str(tmp_path / 'o1'), '--no-progress']) == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'nope' in err and not (tmp_path / 'o1').exists()
    mixed = tmp_path / 'mixed'
    shutil.copytree(bags[1][0], mixed / bags[1][0].name)
    broken = mixed / 'zz_broken'
    broken.mkdir()
    (broken / 'zz_broken.mcap').write_bytes(b'\x89MCAP0\r\n' + b'garbage' * 20)
    (broken / 'metadata.yaml').write_text('rosbag2_bagfile_information: {custom_data: {}}\n')
    assert main(['--bags', str(mixed), '--out', str(tmp_path / 'o2'), '--fps', '20', '--no-progress']) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'skipped' in err[0] and 'zz_broken' in err[0]
    summary = json.loads((tmp_path / 'o2/meta/hapo_export.json').read_text())
    assert list(summary['skipped']) == [str(broken)] and summary['episodes'] == 1
    # --strict: the bad bag stops the export, and nothing (not even a temporary directory) is left
    assert main(['--bags', str(mixed), '--out', str(tmp_path / 'o3'), '--strict', '--no-progress']) == 2
    assert 'zz_broken' in capsys.readouterr().err

    def ctrl_c(_line):  # SIGINT arrives as KeyboardInterrupt: here after the good episode went into the files
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export([mixed], tmp_path / 'o5', fps=20, log=ctrl_c)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['mixed', 'o2']
    with pytest.raises(ExportError, match='--fps 0'):
        export([mixed], tmp_path / 'o4', fps=0)


def test_help_and_verb(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['--help'])
    assert exc.value.code == 0 and '--bags' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(['export-lerobot', '--help'])
    assert 'LeRobot v3.0' in capsys.readouterr().out
    cli.main([])
    assert 'export-lerobot' in capsys.readouterr().out

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""EpisodeWriter -> bag -> read_episode round trip, exact; the bag opens with rosbags and mcap; a crashed writer
(a real SIGKILL of a writing process) leaves a bag read back as truncated up to its last chunk."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from mcap.reader import make_reader
from rosbags.rosbag2 import Reader

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import EpisodeMessage, encode_event
from hapo_recorder.bag_reader import BagError, join_continuation, list_episodes, read_episode
from hapo_recorder.bag_writer import TAG_LABELS, EpisodeWriter, RecorderError, typestore
from hapo_recorder.relabel import relabel

STORE = typestore()
JS, IMG, STR = 'sensor_msgs/msg/JointState', 'sensor_msgs/msg/Image', 'std_msgs/msg/String'
T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def header(stamp_ns, frame=''):
    t = STORE.types['builtin_interfaces/msg/Time'](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return STORE.types['std_msgs/msg/Header'](stamp=t, frame_id=frame)


def joint_state(stamp_ns, values, frame='', names=('x', 'y', 'z', 'roll', 'pitch', 'yaw', 'gripper')):
    msg = STORE.types[JS](header=header(stamp_ns, frame), name=list(names),
                          position=np.asarray(values, dtype=np.float64), velocity=np.zeros(0), effort=np.zeros(0))
    return STORE.serialize_cdr(msg, JS)


def image(stamp_ns, value):
    data = np.full((4, 5, 3), value, dtype=np.uint8)
    data[0, 0] = (1, 2, 3)
    msg = STORE.types[IMG](header=header(stamp_ns, 'cam'), height=4, width=5, encoding='rgb8', is_bigendian=0,
                           step=15, data=data.reshape(-1))
    return STORE.serialize_cdr(msg, IMG)


def string(text):
    return STORE.serialize_cdr(STORE.types[STR](data=text), STR)


INFO = {'task': 'lift', 'instruction': 'lift the cube', 'k': 10, 'demo': False, 'policy_id': 'abc123',
        'topics': {'cmd': '/hapo/cmd', 'cameras': {'agentview': '/camera/agentview/image_raw'}}}
SOURCES = [1, 1, 1, 2, 2, 1, 0, 1]


def write_episode(root, sources=SOURCES, info=INFO, outcome='success'):
    w = EpisodeWriter(root, info, index=1, chunk_size_bytes=4096)
    path = w.open(T0)
    w.write('/hapo/episode', STR, T0, string(encode_event(EpisodeMessage(EpisodeEvent.START, T0, 'test'))))
    for i, src in enumerate(sources):
        stamp = T0 + (i + 1) * 50 * MS
        w.write('/camera/agentview/image_raw', IMG, stamp, image(stamp, i))
        w.write('/robot/joint_states', JS, stamp, joint_state(stamp, [i] * 3, names=('a', 'b', 'c')))
        w.write('/hapo/policy/action', JS, stamp + 1, joint_state(stamp, [0.1 * i] * 7))
        w.write('/hapo/cmd', JS, stamp + 2, joint_state(stamp, [0.5 * i] * 7, ControlSource(src).wire))
        w.add_step(stamp, src)
    custom = w.close(outcome, {'topic_counts': {'/hapo/cmd': {'received': 8, 'written': 8, 'dropped': 0}}})
    return path, custom


def test_roundtrip_exact(tmp_path):
    path, custom = write_episode(tmp_path)
    assert path.name.endswith('_ep0001_lift') and custom['label_counts']['undesirable'] == 3
    ep = read_episode(path)
    assert not ep.truncated and ep.labels_tagged
    assert (ep.task, ep.instruction, ep.outcome, ep.k, ep.demo, ep.policy_id) == (
        'lift', 'lift the cube', 'success', 10, False, 'abc123')
    assert ep.sources.tolist() == SOURCES
    assert ep.labels.tolist() == [0, 0, 0, 2, 2, 1, -1, 1] == relabel(SOURCES, 10).tolist()
    assert ep.step_stamps_ns.tolist() == [T0 + (i + 1) * 50 * MS for i in range(8)]
    assert ep.actions.dtype == np.float32 and ep.actions.shape == (8, 7)
    np.testing.assert_allclose(ep.actions[:, 0], np.arange(8) * 0.5)
    np.testing.assert_allclose(ep.proposals[:, 3], np.arange(8) * 0.1, rtol=1e-6)
    assert ep.proposal_stamps_ns.tolist() == ep.step_stamps_ns.tolist()
    frame = ep.images['agentview'][int(ep.step_stamps_ns[5])]
    assert frame.shape == (4, 5, 3) and frame.dtype == np.uint8 and frame[1, 1, 0] == 5
    assert frame[0, 0].tolist() == [1, 2, 3]
    assert ep.joint_states[int(ep.step_stamps_ns[2])].tolist() == [2.0, 2.0, 2.0]
    assert [e.event for e in ep.events] == [EpisodeEvent.START]
    assert ep.metadata['interventions'] == 1 == ep.interventions
    assert (ep.metadata['steps'], ep.metadata['driven_steps'], ep.metadata['hold_steps']) == (8, 7, 1)
    assert ep.metadata['topic_counts']['/hapo/cmd']['dropped'] == 0
    no_img = read_episode(path, decode_images=False)
    assert no_img.images == {'agentview': {}} and len(no_img.image_stamps['agentview']) == 8


def test_opens_with_rosbags_and_mcap(tmp_path):
    path, _ = write_episode(tmp_path)
    with Reader(path) as reader:
        assert reader.topics['/hapo/cmd'].msgcount == 8
        assert reader.storage.metadata.custom['outcome'] == 'success'
    with (path / f'{path.name}.mcap').open('rb') as f:
        mreader = make_reader(f)
        summary = mreader.get_summary()
        topics = {c.topic for c in summary.channels.values()}
        assert {'/hapo/cmd', '/camera/agentview/image_raw', TAG_LABELS} <= topics
        tags = [json.loads(STORE.deserialize_cdr(m.data, STR).data)
                for _s, _c, m in mreader.iter_messages(topics=[TAG_LABELS])]
    assert tags[0]['labels'] == [0, 0, 0, 2, 2, 1, -1, 1] and tags[0]['interventions'] == [[3, 5]]


@pytest.mark.parametrize(('sources', 'demo', 'expected'), [
    ([1, 1, 2, 1], True, [1, 1, 1, 1]),
    ([1, 1, 1, 1, 2, 2, 1, 1, 2, 2, 1], False, [0, 0, 0, 0, 2, 2, 0, 0, 2, 2, 1]),
])
def test_tagged_labels_match_recomputation(tmp_path, sources, demo, expected):
    path, _ = write_episode(tmp_path, sources, {**INFO, 'demo': demo})
    ep = read_episode(path, decode_images=False)
    assert ep.labels.tolist() == expected == relabel(ep.sources, ep.k, ep.demo).tolist()


def test_never_overwrites(tmp_path):
    p1, _ = write_episode(tmp_path)
    p2, _ = write_episode(tmp_path)
    assert p1 != p2 and list_episodes([tmp_path]) == sorted([p1, p2])


def test_unwritable_root_is_one_line_error(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(RecorderError, match=r'cannot create output root .*file/episodes') as info:
        EpisodeWriter(blocker / 'episodes', INFO).open()
    assert '\n' not in str(info.value)


def test_unreadable_bag_is_bag_error(tmp_path):
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'metadata.yaml').write_text('rosbag2_bagfile_information: {version: 9, storage_identifier: mcap}\n')
    (bad / 'bad.mcap').write_bytes(b'not an mcap')
    with pytest.raises(BagError, match=r'bad: unreadable'):
        read_episode(bad)
    with pytest.raises(BagError, match='not a bag directory'):
        read_episode(tmp_path / 'missing')


def test_changed_payload_bytes_are_bag_error(tmp_path):
    """rosbags writes no chunk CRCs, so a flipped byte in an image decodes as a wrong sample: the writer's
    payload CRC-32 in metadata.yaml catches it (issue 14, hostile files)."""
    path, custom = write_episode(tmp_path)
    f = next(path.glob('*.mcap'))
    data = bytearray(f.read_bytes())
    at = data.index(bytes([7]) * 12)  # inside the 8th image (image(stamp, 7) is filled with 7)
    data[at:at + 4] = b'\xff' * 4
    f.write_bytes(bytes(data))
    assert Reader(path) and len(list(make_reader(f.open('rb')).iter_messages())) > 0  # both readers still accept it
    with pytest.raises(BagError, match=r'_ep0001_lift: corrupt bag \(message payloads fail the CRC-32'):
        read_episode(path)
    assert isinstance(custom['payload_crc32'], int)


CRASH = textwrap.dedent('''
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from test_bag_roundtrip import INFO, T0, MS, JS, EpisodeWriter, joint_state, image, IMG
    w = EpisodeWriter(sys.argv[1], INFO, chunk_size_bytes=4096, flush_period_ns=10**12)
    w.open(T0)
    for i in range(40):
        stamp = T0 + i * MS
        w.write('/camera/agentview/image_raw', IMG, stamp, image(stamp, i))
        w.write('/hapo/cmd', JS, stamp, joint_state(stamp, [i] * 7, 'policy' if i < 30 else 'human'))
        w.add_step(stamp, 1 if i < 30 else 2)
        if i == 24:
            w.flush()
    os.kill(os.getpid(), signal.SIGKILL)
''')


def test_killed_writer_leaves_truncated_readable_bag(tmp_path):
    proc = subprocess.run([sys.executable, '-c', CRASH, str(tmp_path), str(tmp_path.parent)], check=False,
                          cwd=str(tmp_path), env={'PYTHONPATH': __file__.rsplit('/', 1)[0], 'PATH': '/usr/bin'})
    assert proc.returncode == -signal.SIGKILL
    (path,) = list_episodes([tmp_path])
    assert not (path / 'metadata.yaml').exists()
    ep = read_episode(path)
    assert ep.truncated and ep.outcome == 'truncated' and not ep.labels_tagged
    assert ep.task == 'lift' and ep.k == 10  # rebuilt from the episode-info tag
    # everything up to the explicit flush is there (more if rosbags closed a chunk by size); nothing half-read
    assert 25 <= len(ep.sources) <= 40 and ep.actions[:, 0].tolist() == list(range(len(ep.sources)))
    assert ep.labels.tolist() == relabel(ep.sources, 10).tolist()
    assert len(ep.image_stamps['agentview']) >= 25


def test_a_continuation_repeating_steps_of_the_cut_bag_joins_them_once(tmp_path):
    """hapo/cmd is transient local: a restarted recorder gets the mux's history, which repeats the last steps the cut
    bag holds. The join keeps each executed step once; a step executed twice with the same stamp (a real-arm mux, one
    human command per tick) repeats as often as it was executed."""
    import dataclasses

    path, _ = write_episode(tmp_path, sources=[1, 1, 2, 2, 2, 1, 1, 1])
    ep = read_episode(path)
    ep = dataclasses.replace(ep, step_stamps_ns=ep.step_stamps_ns.copy(), actions=ep.actions.copy())
    ep.step_stamps_ns[3], ep.actions[3] = ep.step_stamps_ns[2], ep.actions[2]  # the same human command twice

    def part(sl):
        return dataclasses.replace(ep, step_stamps_ns=ep.step_stamps_ns[sl], actions=ep.actions[sl],
                                   sources=ep.sources[sl], labels=ep.labels[sl])

    for cut in range(1, 8):
        for overlap in range(cut == 3, cut + 1):  # a cut right after a repeated command needs history: ambiguous
            whole = join_continuation(part(slice(0, cut)), part(slice(cut - overlap, 8)))
            assert whole.step_stamps_ns.tolist() == ep.step_stamps_ns.tolist(), (cut, overlap)
            assert whole.sources.tolist() == ep.sources.tolist()
            np.testing.assert_array_equal(whole.actions, ep.actions)

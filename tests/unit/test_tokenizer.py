# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""ActionTokenizer and ActionStats: round trips, bin edges, clipping, id range, JSON; LatestFrames and
JointsByStamp rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hapo_policy.frames import JointsByStamp, LatestFrames
from hapo_policy.normalization import ActionStats
from hapo_policy.prompt import ByteTokenizer, prompt
from hapo_policy.tokenizer import ActionTokenizer

VOCAB = 515


@pytest.fixture
def stats() -> ActionStats:
    return ActionStats(np.array([-0.5, -1, -2, 0, -0.1, -0.3, -1]), np.array([0.5, 1, 2, 4, 0.1, 0.3, 1]))


def test_round_trip_within_half_a_bin(stats):
    tok = ActionTokenizer(VOCAB, 256, stats)
    rng = np.random.default_rng(0)
    actions = rng.uniform(stats.q01, stats.q99, size=(2000, 7))
    back = tok.decode(tok.encode(actions))
    half_bin_raw = 0.5 * tok.bin_width * (stats.q99 - stats.q01) / 2  # normalised half bin -> raw units
    assert np.all(np.abs(back - actions) <= half_bin_raw + 1e-9)


def test_bin_edges_and_last_ids():
    tok = ActionTokenizer(VOCAB, 256, ActionStats.default())
    ids = tok.encode(np.array([[-1.0] * 7, [1.0] * 7, [0.0] * 7]))
    assert ids[0].tolist() == [VOCAB - 256] * 7  # -1 -> first bin -> first of the last 256 ids
    assert ids[1].tolist() == [VOCAB - 1] * 7  # +1 -> last bin -> last id
    assert ids[2].tolist() == [VOCAB - 128] * 7  # 0 is the lower edge of bin 128
    assert tok.decode(ids[1])[0] == pytest.approx(1 - 1 / 256)


def test_values_outside_q01_q99_clip(stats):
    tok = ActionTokenizer(VOCAB, 256, stats)
    ids = tok.encode(np.stack([stats.q01 - 10, stats.q99 + 10]))
    assert ids[0].tolist() == [VOCAB - 256] * 7
    assert ids[1].tolist() == [VOCAB - 1] * 7


@pytest.mark.parametrize('bad', [VOCAB - 257, 0, VOCAB, -1])
def test_non_action_ids_raise(bad):
    tok = ActionTokenizer(VOCAB, 256)
    ids = np.full(7, VOCAB - 10)
    ids[3] = bad
    with pytest.raises(ValueError, match=r'outside the action range \[259, 515\)'):
        tok.decode(ids)
    with pytest.raises(ValueError, match='outside the action range'):
        tok.decode_torch(torch.as_tensor(ids))


def test_torch_matches_numpy(stats):
    tok = ActionTokenizer(VOCAB, 256, stats)
    actions = np.random.default_rng(1).uniform(stats.q01 - 0.2, stats.q99 + 0.2, size=(500, 7))
    ids_t = tok.encode_torch(torch.as_tensor(actions, dtype=torch.float32))
    assert np.array_equal(ids_t.numpy(), tok.encode(actions.astype(np.float32)))
    assert np.allclose(tok.decode_torch(ids_t).numpy(), tok.decode(ids_t.numpy()), atol=1e-5)


def test_stats_from_actions_and_json_round_trip():
    actions = np.random.default_rng(2).normal(size=(1000, 7))
    stats = ActionStats.from_actions(actions)
    assert np.allclose(stats.q01, np.percentile(actions, 1, axis=0))
    back = ActionStats.from_json(stats.to_json())
    assert np.array_equal(back.q01, stats.q01) and np.array_equal(back.q99, stats.q99)
    with pytest.raises(ValueError, match="lack key 'q99'"):
        ActionStats.from_json({'q01': [0.0] * 7})


def test_normalize_inverse_and_constant_dim():
    stats = ActionStats(np.array([0.0, 2.0]), np.array([4.0, 2.0]))  # second dim constant
    assert stats.normalize(np.array([3.0, 2.0])).tolist() == [0.5, 0.0]
    assert np.allclose(stats.unnormalize(stats.normalize(np.array([1.0, 2.0]))), [1.0, 2.0])


def test_mask_leaves_unmasked_dims_raw_in_numpy_torch_and_json():
    stats = ActionStats(np.array([0.0, -2.0]), np.array([4.0, 2.0]), mask=np.array([True, False]))
    raw = np.array([[3.0, 0.5], [1.0, -3.0]])
    assert stats.normalize(raw).tolist() == [[0.5, 0.5], [-0.5, -1.0]]  # dim 2 as it is, clipped
    assert stats.unnormalize(np.array([0.5, 0.25])).tolist() == [3.0, 0.25]
    assert np.allclose(stats.normalize_torch(torch.from_numpy(raw)).numpy(), stats.normalize(raw))
    assert np.allclose(stats.unnormalize_torch(torch.tensor([0.5, 0.25])).numpy(), [3.0, 0.25])
    assert [b.tolist() for b in stats.bounds()] == [[0.0, -1.0], [4.0, 1.0]]
    body = stats.to_json()
    assert body['mask'] == [True, False] and ActionStats.from_json(body).mask.tolist() == [True, False]
    assert 'mask' not in ActionStats(np.zeros(2), np.ones(2)).to_json()  # all normalised: files stay as before
    with pytest.raises(ValueError, match='mask must be 2 booleans'):
        ActionStats(np.zeros(2), np.ones(2), mask=np.array([1, 0]))


def test_prompt_and_byte_tokenizer():
    text = prompt('Lift the cube.')
    assert text == 'In: What action should the robot take to lift the cube?\nOut:'
    ids = ByteTokenizer().encode(text, max_len=20)
    assert ids[0] == ByteTokenizer.BOS and len(ids) == 20 and ByteTokenizer().decode(ids).endswith('Out:')


def test_latest_frames_single_camera_replaces_and_counts():
    frames = LatestFrames(['a'])
    for stamp in (1, 2, 3):
        frames.put('a', stamp, np.full((2, 2, 3), stamp, np.uint8))
    got = frames.take(timeout_s=0.0)
    assert got.stamp_ns == 3 and frames.skipped == 2 and frames.received == 3
    assert frames.take(timeout_s=0.0) is None


def test_latest_frames_two_cameras_match_stamps():
    frames = LatestFrames(['a', 'b'])
    img = np.zeros((2, 2, 3), np.uint8)
    frames.put('a', 10, img)
    frames.put('a', 20, img)
    assert frames.take(timeout_s=0.0) is None  # b has no frame of stamp 10 or 20 yet
    frames.put('b', 10, img)
    assert frames.take(timeout_s=0.0).stamp_ns == 10
    frames.put('b', 5, img)  # older than the set already offered: never offered again
    assert frames.take(timeout_s=0.0) is None


@pytest.mark.parametrize('match_stamps', [True, False])
def test_latest_frames_start_afresh_when_the_camera_clock_jumps(match_stamps):
    # the fault matrix (bench/faults_stale.py): one frame stamped 1 h ahead kept every later frame out for good
    frames = LatestFrames(['a'], match_stamps)
    img = np.zeros((2, 2, 3), np.uint8)
    hour, s = 3600 * 10**9, 10**9
    frames.put('a', 100 * s + hour, img)
    assert frames.take(timeout_s=0.0).stamp_ns == 100 * s + hour
    frames.put('a', 100 * s + 50_000_000, img)  # the clock is back
    assert frames.take(timeout_s=0.0).stamp_ns == 100 * s + 50_000_000 and frames.clock_jumps == 1
    frames.put('a', 100 * s, img)  # 50 ms older: a late frame, not a jump; never offered
    late = frames.take(timeout_s=0.0)
    assert (late is None or late.stamp_ns == 100 * s + 50_000_000) and frames.clock_jumps == 1


def test_latest_frames_newest_of_each_uses_oldest_stamp():
    frames = LatestFrames(['a', 'b'], match_stamps=False)
    img = np.zeros((2, 2, 3), np.uint8)
    frames.put('a', 30, img)
    frames.put('b', 25, img)
    assert frames.take(timeout_s=0.0).stamp_ns == 25


def test_joints_by_stamp_pairs_exactly_else_latest():
    joints = JointsByStamp()
    assert joints.for_frame(5, wait_s=0.0) is None and joints.unmatched == 1  # nothing yet
    joints.put(10, np.array([1.0]))
    joints.put(20, np.array([2.0]))
    assert joints.for_frame(10, wait_s=0.0)[0] == 1.0 and joints.unmatched == 1
    assert joints.for_frame(15, wait_s=0.0)[0] == 2.0 and joints.unmatched == 2  # no own stamp: the latest
    assert JointsByStamp(match_stamps=False).for_frame(10, wait_s=0.0) is None

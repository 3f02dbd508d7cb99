# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Small recorded datasets for trainer tests: episodes written by hapo_recorder's EpisodeWriter, and a tiny
base checkpoint whose q01/q99 come from those actions. Not collected by pytest (no ``test_`` prefix)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import EpisodeMessage, encode_event
from hapo_policy.model import VlaPolicy
from hapo_policy.normalization import ActionStats
from hapo_policy.tiny import TinyVlaConfig
from hapo_recorder.bag_writer import EpisodeWriter, typestore

STORE = typestore()
JS, IMG, STR = 'sensor_msgs/msg/JointState', 'sensor_msgs/msg/Image', 'std_msgs/msg/String'
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
CAMERA = 'agentview'
DIMS = ('x', 'y', 'z', 'roll', 'pitch', 'yaw', 'gripper')
# An episode: 12 policy steps, a 5-step intervention, 4 policy steps, a hold (NONE), 3 policy steps.
PROPOSAL = np.array([0.05, 0, 0, 0, 0, 0, -1.0])  # what the policy proposes at every step (+x, open)
SOURCES = [1] * 12 + [2] * 5 + [1] * 4 + [0] + [1] * 3


def _header(stamp_ns: int, frame: str = ''):
    t = STORE.types['builtin_interfaces/msg/Time'](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return STORE.types['std_msgs/msg/Header'](stamp=t, frame_id=frame)


def _joint_state(stamp_ns: int, values, frame: str = '', names=DIMS) -> bytes:
    msg = STORE.types[JS](header=_header(stamp_ns, frame), name=list(names),
                          position=np.asarray(values, dtype=np.float64), velocity=np.zeros(0), effort=np.zeros(0))
    return STORE.serialize_cdr(msg, JS)


def _image(stamp_ns: int, img: np.ndarray) -> bytes:
    h, w, _ = img.shape
    msg = STORE.types[IMG](header=_header(stamp_ns, CAMERA), height=h, width=w, encoding='rgb8', is_bigendian=0,
                           step=w * 3, data=img.reshape(-1))
    return STORE.serialize_cdr(msg, IMG)


def _string(text: str) -> bytes:
    return STORE.serialize_cdr(STORE.types[STR](data=text), STR)


def step_action(source: int, i: int, rng: np.random.Generator) -> np.ndarray:
    """Policy steps push +x, the human's corrections push -x and close the gripper (distinguishable)."""
    a = rng.normal(0.0, 0.02, 7)
    a[0] += 0.05 if source == ControlSource.POLICY else -0.05
    a[6] = 1.0 if source == ControlSource.HUMAN else -1.0
    return a


def write_episode(root: Path, index: int, sources=SOURCES, seed: int = 0, size: int = 16, k: int = 10,
                  demo: bool = False, close: bool = True, continues: Path | None = None, steps_from: int = 0,
                  sim_seed: int | None = None) -> Path:
    """One episode bag under ``root``; images encode the step so observations differ. ``continues``: the bag of
    episode ``index`` a crash cut, continued from its step ``steps_from`` (as a restarted recorder writes it).
    ``sim_seed``: the simulator seed in its metadata (a sim's episode)."""
    rng = np.random.default_rng(seed)
    info = {'task': 'lift', 'instruction': 'lift the cube', 'k': k, 'demo': demo, 'policy_id': 'base',
            'topics': {'cmd': '/hapo/cmd', 'cameras': {CAMERA: f'/camera/{CAMERA}/image_raw'}},
            **({'continuation_of': continues.name} if continues else {}),
            **({'seed': sim_seed} if sim_seed is not None else {})}
    w = EpisodeWriter(root, info, index=index)
    start = T0 + index * 10**12
    last_human = max((j for j, x in enumerate(sources, start=steps_from) if x == ControlSource.HUMAN),
                     default=-1)  # no proposal
    path = w.open(start)
    w.write('/hapo/episode', STR, start, _string(encode_event(EpisodeMessage(EpisodeEvent.START, start, 'test'))))
    for i, src in enumerate(sources, start=steps_from):
        stamp = start + (i + 1) * 50 * MS
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        img[:, :, 0] = 255 if src == ControlSource.HUMAN else 0  # the observation says who should act
        w.write(f'/camera/{CAMERA}/image_raw', IMG, stamp, _image(stamp, img))
        joints = _joint_state(stamp, rng.normal(0, 1, 9), names=[f'j{j}' for j in range(9)])
        w.write('/robot/joint_states', JS, stamp, joints)
        action = np.zeros(7) if src == ControlSource.NONE else step_action(src, i, rng)
        if src != ControlSource.NONE and i != last_human:
            w.write('/hapo/policy/action', JS, stamp + 1, _joint_state(stamp, PROPOSAL, 'policy'))  # not the last
        w.write('/hapo/cmd', JS, stamp + 2, _joint_state(stamp, action, ControlSource(src).wire))
        w.add_step(stamp, src)
    if close:
        w.close('success', {'continuation_of': continues.name} if continues else None)
    else:
        w.flush()
        w.abort()
    return path


def write_bags(root: Path, n: int = 4, seed: int = 0, **kw) -> list[Path]:
    return [write_episode(root, i + 1, seed=seed + i, **kw) for i in range(n)]


def tiny_policy(path: Path, seed: int = 0, hidden: int = 32, layers: int = 1) -> Path:
    """A small untrained VLA checkpoint (the real model class) with stats covering the test actions."""
    rng = np.random.default_rng(123)
    acts = np.stack([step_action(s, 0, rng) for s in [1, 2] * 50])
    cfg = TinyVlaConfig(camera_names=[CAMERA], image_size=16, proprio_dim=9, hidden_size=hidden,
                        num_hidden_layers=layers, num_attention_heads=2, intermediate_size=2 * hidden, max_text_len=24)
    policy = VlaPolicy.create(cfg, ActionStats.from_actions(acts), seed=seed)
    policy.save_pretrained(path)
    return path


def write_sim_demos(root: Path, seeds, cameras=('agentview', 'robot0_eye_in_hand'), size: int = 64,
                    max_steps: int = 120) -> list[Path]:
    """Demo episodes of the scripted Lift expert on the real simulator, written by the recorder's EpisodeWriter
    with the topics and stamps the deploy graph records (source human, ``demo: true``, outcome by the sim)."""
    from hapo_sim.env import SimEnv
    from hapo_sim.experts import expert_for

    env = SimEnv('lift', cameras, size)
    paths = []
    try:
        for i, seed in enumerate(seeds):
            expert = expert_for('lift', seed=seed)
            info = {'task': 'lift', 'instruction': 'lift the cube', 'k': 10, 'demo': True, 'seed': seed,
                    'policy_id': '', 'topics': {'cmd': '/hapo/cmd',
                                                'cameras': {c: f'/camera/{c}/image_raw' for c in cameras}}}
            w = EpisodeWriter(root, info, index=i + 1)
            start = T0 + i * 10**12
            w.open(start)
            w.write('/hapo/episode', STR, start, _string(encode_event(EpisodeMessage(
                EpisodeEvent.START, start, 'sim', {'seed': seed, 'demo': True}))))
            obs, success = env.reset(seed), False
            for t in range(max_steps):
                stamp = start + (t + 1) * 50 * MS
                for c in cameras:
                    w.write(f'/camera/{c}/image_raw', IMG, stamp, _camera(stamp, c, obs.images[c]))
                w.write('/robot/joint_states', JS, stamp, _joint_state(stamp, obs.joint_positions,
                                                                        names=obs.joint_names))
                action = expert.act(obs)
                w.write('/hapo/cmd', JS, stamp + 2, _joint_state(stamp, action, ControlSource.HUMAN.wire))
                w.add_step(stamp, ControlSource.HUMAN)
                obs, success = env.step(action)
                if success:
                    break
            paths.append(w.path)
            w.close('success' if success else 'failure')
    finally:
        env.close()
    return paths


def _camera(stamp_ns: int, name: str, img: np.ndarray) -> bytes:
    h, w, _ = img.shape
    msg = STORE.types[IMG](header=_header(stamp_ns, name), height=h, width=w, encoding='rgb8', is_bigendian=0,
                           step=w * 3, data=np.ascontiguousarray(img).reshape(-1))
    return STORE.serialize_cdr(msg, IMG)

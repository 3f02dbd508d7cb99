# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""read_episode(path) -> Episode: one episode bag as numpy arrays, for the trainer and for replay (no ROS).

Messages are streamed from the MCAP file with ``mcap``'s StreamReader and deserialised with the rosbags
typestore (no ROS needed). A bag cut by a crash (no metadata.yaml, MCAP without footer) is read up to its
last complete chunk and comes back with ``truncated=True``, ``outcome='truncated'`` and labels recomputed
from the recorded sources (the label tag is written at close)::

    from hapo_recorder.bag_reader import list_episodes, read_episode
    for path in list_episodes(['runs/episodes']):
        ep = read_episode(path, decode_images=False)
        print(ep.task, ep.outcome, len(ep.sources), ep.labels)
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from mcap.exceptions import McapError
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader

from hapo_interfaces import topics as tp
from hapo_interfaces.enums import EpisodeEvent
from hapo_interfaces.images import ImageError, to_array
from hapo_interfaces.records import ACTION_LIMIT, EpisodeMessage, RecordError, decode_event, read_action, read_step
from hapo_interfaces.stamps import to_ns
from hapo_recorder.bag_writer import TAG_INFO, TAG_LABELS, episode_prefix, typestore
from hapo_recorder.episode import intervention_spans
from hapo_recorder.relabel import relabel

_YamlLoader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)  # libyaml when present: ~10x faster

# Role -> recorded (absolute) topic name, for bags whose episode_info carries no topic table: the default names.
DEFAULT_TOPICS = {role: '/' + name for role, name in (
    ('cmd', tp.CMD), ('episode', tp.EPISODE), ('policy_action', tp.POLICY_ACTION),
    ('entropy', tp.POLICY_ENTROPY), ('joint_states', tp.JOINT_STATES), ('instruction', tp.INSTRUCTION))}
_JS, _IMAGE, _STRING = 'sensor_msgs/msg/JointState', 'sensor_msgs/msg/Image', 'std_msgs/msg/String'  # role types
_CAMERA = re.compile(r'^/?(?:.*/)?camera/([^/]+)/image_raw$')


class BagError(RuntimeError):
    """An episode bag that cannot be read; the text is one line naming the path."""


@dataclass
class Episode:
    """One recorded episode. Step arrays are in execution order; stamps are observation stamps (ns)."""

    path: Path
    metadata: dict[str, Any]
    truncated: bool
    task: str
    instruction: str
    outcome: str
    demo: bool
    k: int
    policy_id: str
    step_stamps_ns: np.ndarray  # (N,) int64
    actions: np.ndarray  # (N, 7) float32
    sources: np.ndarray  # (N,) int8 ControlSource
    labels: np.ndarray  # (N,) int8 Label, -1 = not a training step
    labels_tagged: bool  # False: recomputed here (truncated bag without the recorder's label tag)
    proposal_stamps_ns: np.ndarray  # (M,) int64
    proposals: np.ndarray  # (M, 7) float32, the policy's action, also while the human drives
    entropy_stamps_ns: np.ndarray  # (E,) int64
    entropies: np.ndarray  # (E, 7) float32
    images: dict[str, dict[int, np.ndarray]]  # camera -> stamp_ns -> (H, W, 3) uint8; empty if not decoded
    image_stamps: dict[str, np.ndarray]  # camera -> (I,) int64, always filled
    joint_states: dict[int, np.ndarray]  # stamp_ns -> (J,) float64 positions
    events: list[EpisodeMessage]
    topic_counts: dict[str, int] = field(default_factory=dict)  # messages per topic found in the file
    skipped: dict[str, int] = field(default_factory=dict)  # malformed messages per topic (not in the arrays)

    @property
    def interventions(self) -> int:
        """Number of interventions (maximal runs of HUMAN steps)."""
        return len(intervention_spans(self.sources))


def list_episodes(paths: Iterable[str | Path]) -> list[Path]:
    """Episode bag directories: each path is a bag directory or a directory of them (sorted, one level)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if _is_bag(p):
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(c for c in p.iterdir() if _is_bag(c)))
        else:
            raise BagError(f'{p}: not an episode bag or a directory of them')
    return found


def require_episodes(paths: Iterable[str | Path]) -> list[Path]:
    """``list_episodes``, and a BagError when there is none (what every command reading bags needs)."""
    paths = list(paths)
    found = list_episodes(paths)
    if not found:
        raise BagError(f'no episode bags under {", ".join(map(str, paths))}')
    return found


def _is_bag(p: Path) -> bool:
    return p.is_dir() and ((p / 'metadata.yaml').exists() or any(p.glob('*.mcap')))


def _iter_mcap(mcap_path: Path, truncated: bool) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, msgtype, log_ns, raw) in file order, straight from the MCAP records.

    One pass over the file with no YAML or index work (rosbags' Reader parses metadata.yaml again;
    this is ~2x faster for short episodes). A bag cut by a crash ends at its last complete chunk.
    """
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    with mcap_path.open('rb') as f:
        try:
            for rec in StreamReader(f, skip_magic=False).records:
                if isinstance(rec, Message):
                    if rec.channel_id in channels:
                        topic, msgtype = channels[rec.channel_id]
                        yield topic, msgtype, rec.log_time, rec.data
                elif isinstance(rec, Channel):
                    channels[rec.id] = (rec.topic, schemas.get(rec.schema_id, ''))
                elif isinstance(rec, Schema):
                    schemas[rec.id] = rec.name
        except (McapError, struct.error, EOFError, ValueError):
            if not truncated:
                raise
            # the end of what the crashed writer put on disk: the partial chunk is lost


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The custom_data of a closed episode bag (task, seed, demo, outcome, steps, ...), without reading its MCAP
    file; None while it is open or after a crash (no metadata.yaml). BagError on an unreadable one."""
    path = Path(path)
    meta_path = path / 'metadata.yaml'
    if not meta_path.exists():
        return None
    try:
        info = yaml.load(meta_path.read_text(), Loader=_YamlLoader)['rosbag2_bagfile_information']
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise BagError(f'{path}: unreadable metadata.yaml ({exc})') from None
    custom = info.get('custom_data') or {}
    out: dict[str, Any] = {}
    for key, value in custom.items():
        try:
            out[key] = json.loads(value)
        except (json.JSONDecodeError, TypeError):
            out[key] = value
    for key in ('task', 'instruction', 'policy_id', 'outcome', 'input_device', 'software_version', 'seed'):
        if key in out and not isinstance(out[key], str):
            out[key] = str(out[key])
    out['message_count'] = info.get('message_count', 0)
    return out


def truncated_bag_of(root: str | Path, start_ns: int) -> Path | None:
    """The bag under ``root`` a crash cut (no metadata.yaml) whose episode started at ``start_ns``, else None: what a
    recorder restarted mid-episode continues (its episode_info tag, the first message, names the start)."""
    store = typestore()
    for path in sorted(Path(root).glob(f'{episode_prefix(start_ns)}*'), reverse=True):  # named by its start
        files = sorted(path.glob('*.mcap'))
        if not path.is_dir() or (path / 'metadata.yaml').exists() or not files:
            continue
        try:
            for topic, msgtype, _log_ns, raw in _iter_mcap(files[0], truncated=True):
                if topic == TAG_INFO and json.loads(store.deserialize_cdr(raw, msgtype).data).get('start_ns') == \
                        start_ns:
                    return path
                break  # the tag is the first message
        except (OSError, KeyError, ValueError, AttributeError):
            continue
    return None


def _header_stamp(msg: Any) -> int:
    return to_ns(msg.header.stamp)


def read_episode(path: str | Path, decode_images: bool = True) -> Episode:
    """Read one episode bag directory; raises ``BagError`` (one line naming the path) if it cannot."""
    path = Path(path)
    if not path.is_dir():
        raise BagError(f'{path}: not a bag directory')
    meta = read_metadata(path)
    truncated = meta is None
    files = sorted(path.glob('*.mcap'))
    if not files:
        raise BagError(f'{path}: no .mcap file' + (' and no metadata.yaml' if truncated else ''))
    records = _iter_mcap(files[0], truncated)
    store = typestore()
    info: dict[str, Any] = {}
    tags: dict[str, Any] | None = None
    by_topic: dict[str, list[tuple[str, int, bytes]]] = {}
    crc = 0
    try:
        for topic, msgtype, log_ns, raw in records:
            crc = zlib.crc32(raw, crc)
            if topic == TAG_INFO:
                info = json.loads(store.deserialize_cdr(raw, msgtype).data)
            elif topic == TAG_LABELS:
                tags = json.loads(store.deserialize_cdr(raw, msgtype).data)
            else:
                by_topic.setdefault(topic, []).append((msgtype, log_ns, raw))
    except (McapError, struct.error, EOFError, OSError, KeyError, json.JSONDecodeError, ValueError,
            AttributeError) as exc:  # AttributeError: a tag topic recorded with another type
        raise BagError(f'{path}: unreadable bag ({type(exc).__name__}: {exc})') from None
    if not truncated and meta.get('payload_crc32', crc) != crc:  # bags before the checksum carry none
        raise BagError(f'{path}: corrupt bag (message payloads fail the CRC-32 of metadata.yaml: changed bytes)')
    if truncated:
        meta = {**info, 'outcome': 'truncated', 'truncated': True}
    topics = {**DEFAULT_TOPICS, **{k: v for k, v in info.get('topics', {}).items() if k != 'cameras'}}
    cameras: dict[str, str] = dict(info.get('topics', {}).get('cameras', {}))
    for topic, msgs in by_topic.items():
        m = _CAMERA.match(topic)
        if msgs and msgs[0][0] == 'sensor_msgs/msg/Image' and topic not in cameras.values():
            cameras[m.group(1) if m else topic] = topic
    skipped: dict[str, int] = {}

    wrong = sorted({m for m, _, _ in by_topic.get(topics['cmd'], []) if m != _JS})
    if wrong:
        raise BagError(f'{path}: {topics["cmd"]} recorded as {", ".join(wrong)}, not {_JS}: no executed step '
                       'can be read (corrupt bag or a wrong remapping)')

    def decoded(role_topic: str, want: str = _JS) -> Iterator[Any]:
        for msgtype, _log_ns, raw in by_topic.get(role_topic, []):
            if msgtype != want:  # recorded with another type (a wrong remapping): counted, never read as ``want``
                skipped[role_topic] = skipped.get(role_topic, 0) + 1
                continue
            try:
                yield store.deserialize_cdr(raw, msgtype)
            except (KeyError, ValueError, struct.error, IndexError):
                skipped[role_topic] = skipped.get(role_topic, 0) + 1

    steps = []
    for msg in decoded(topics['cmd']):
        try:
            steps.append(read_step(msg))
        except RecordError:
            skipped[topics['cmd']] = skipped.get(topics['cmd'], 0) + 1
    stamps = np.array([s.stamp_ns for s in steps], dtype=np.int64)  # (N,)
    actions = np.array([s.action for s in steps], dtype=np.float32).reshape(-1, 7)  # (N, 7)
    sources = np.array([int(s.source) for s in steps], dtype=np.int8)  # (N,)

    def action_track(topic: str, limit: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        rows = []
        for msg in decoded(topic):
            try:
                rows.append((_header_stamp(msg), read_action(msg, limit)))
            except RecordError:
                skipped[topic] = skipped.get(topic, 0) + 1
        return (np.array([r[0] for r in rows], dtype=np.int64),  # (M,)
                np.array([r[1] for r in rows], dtype=np.float32).reshape(-1, 7))  # (M, 7)

    proposal_stamps, proposals = action_track(topics['policy_action'], ACTION_LIMIT)  # as the mux refuses them
    entropy_stamps, entropies = action_track(topics['entropy'])
    events = []
    for msg in decoded(topics['episode'], _STRING):
        try:
            events.append(decode_event(msg.data))
        except RecordError:
            skipped[topics['episode']] = skipped.get(topics['episode'], 0) + 1
    instruction = str(meta.get('instruction') or info.get('instruction') or '')
    if not instruction:
        for msg in decoded(topics['instruction'], _STRING):
            instruction = msg.data
    joint_states = {_header_stamp(m): np.asarray(m.position, dtype=np.float64) for m in decoded(topics['joint_states'])}
    images: dict[str, dict[int, np.ndarray]] = {}
    image_stamps: dict[str, np.ndarray] = {}
    for cam, topic in cameras.items():
        images[cam] = {}
        cam_stamps = []
        for msg in decoded(topic, _IMAGE):
            stamp = _header_stamp(msg)
            cam_stamps.append(stamp)
            if decode_images:
                try:
                    images[cam][stamp] = to_array(msg)
                except ImageError:
                    skipped[topic] = skipped.get(topic, 0) + 1
        image_stamps[cam] = np.array(cam_stamps, dtype=np.int64)  # (I,)

    k = int(meta.get('k', info.get('k', 10)))
    demo = bool(meta.get('demo', info.get('demo', False)))
    if tags is not None:
        labels = np.array(tags['labels'], dtype=np.int8)  # (N,)
        if len(labels) != len(sources) or list(tags['step_stamps_ns']) != stamps.tolist():
            raise BagError(f'{path}: label tag covers {len(labels)} steps but the bag holds {len(sources)} '
                           f'executed steps (corrupt bag)')
    else:
        labels = relabel(sources, k, demo)
    return Episode(
        path=path, metadata=meta, truncated=truncated, task=str(meta.get('task') or info.get('task') or ''),
        instruction=instruction, outcome=str(meta.get('outcome', 'truncated')), demo=demo, k=k,
        policy_id=str(meta.get('policy_id') or info.get('policy_id') or ''), step_stamps_ns=stamps,
        actions=actions, sources=sources, labels=labels, labels_tagged=tags is not None,
        proposal_stamps_ns=proposal_stamps, proposals=proposals, entropy_stamps_ns=entropy_stamps,
        entropies=entropies, images=images, image_stamps=image_stamps, joint_states=joint_states, events=events,
        topic_counts={t: len(v) for t, v in by_topic.items()}, skipped=skipped)


def _overlap(first: Episode, cont: Episode) -> int:
    """How many of ``cont``'s first steps repeat ``first``'s last ones: the longest prefix of the one equal to a
    suffix of the other, step by step (stamp, source, action)."""
    def keys(ep: Episode) -> list[tuple]:
        return [(int(t), int(s), a.tobytes()) for t, s, a in zip(ep.step_stamps_ns, ep.sources, ep.actions,
                                                                   strict=True)]
    a, b = keys(first), keys(cont)
    starts = [j for j, k in enumerate(a) if b and k == b[0]]  # where the repeated part may begin, longest first
    return next((len(a) - j for j in starts if a[j:] == b[:len(a) - j]), 0)


def join_continuation(first: Episode, cont: Episode) -> Episode:
    """One episode from a bag a crash cut (``first``) and the continuation a restarted recorder wrote of it
    (``cont``, whose metadata names ``first`` in ``continuation_of``): arrays in order, the steps executed while no
    recorder ran are there as far as the mux's history reached (hapo/cmd is transient local), their images are not;
    labels recomputed over the whole episode, outcome and metadata the continuation's. That history can repeat steps
    the cut bag holds: the continuation's first steps that repeat the cut bag's last ones are dropped."""
    keep = np.arange(len(cont.sources)) >= _overlap(first, cont)  # (N2,) bool
    sources = np.concatenate([first.sources, cont.sources[keep]])  # (N1 + N2',)
    cams = set(first.images) | set(cont.images)
    return dataclasses.replace(
        cont, step_stamps_ns=np.concatenate([first.step_stamps_ns, cont.step_stamps_ns[keep]]),
        actions=np.concatenate([first.actions, cont.actions[keep]]), sources=sources,
        labels=relabel(sources, cont.k, cont.demo), labels_tagged=False,
        proposal_stamps_ns=np.concatenate([first.proposal_stamps_ns, cont.proposal_stamps_ns]),
        proposals=np.concatenate([first.proposals, cont.proposals]),
        entropy_stamps_ns=np.concatenate([first.entropy_stamps_ns, cont.entropy_stamps_ns]),
        entropies=np.concatenate([first.entropies, cont.entropies]),
        images={c: {**first.images.get(c, {}), **cont.images.get(c, {})} for c in cams},
        image_stamps={c: np.concatenate([first.image_stamps.get(c, np.zeros(0, np.int64)),
                                         cont.image_stamps.get(c, np.zeros(0, np.int64))]) for c in cams},
        joint_states={**first.joint_states, **cont.joint_states},
        events=[*first.events, *(e for e in cont.events if e.event is not EpisodeEvent.START)],
        topic_counts={t: first.topic_counts.get(t, 0) + cont.topic_counts.get(t, 0)
                      for t in set(first.topic_counts) | set(cont.topic_counts)},
        skipped={t: first.skipped.get(t, 0) + cont.skipped.get(t, 0) for t in set(first.skipped) | set(cont.skipped)})

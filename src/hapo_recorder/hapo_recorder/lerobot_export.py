# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Recorded episode bags -> a LeRobot v3.0 dataset (parquet, mp4, meta/), written without LeRobot (no ROS).

    hapo export-lerobot --bags runs/episodes --out datasets/hapo_lift --fps 20
    python -m hapo_recorder.lerobot_export --bags DIR [DIR ...] --out DIR [--overwrite] [--strict] [--no-progress]

One frame per executed step (``hapo/cmd``), holds included and flagged. The layout and the names are LeRobot's
``codebase_version`` v3.0 (read in lerobot v0.4.4: ``datasets/utils.py``, ``lerobot_dataset.py``,
``compute_stats.py``, ``video_utils.py``)::

    meta/info.json                                 schema: fps, features (dtype, shape, names, info), path templates
    meta/stats.json                                per feature: min max mean std count q01 q10 q50 q90 q99
    meta/tasks.parquet                             task (the instruction; the pandas index) -> task_index
    meta/episodes/chunk-000/file-000.parquet       one row per episode: length, tasks, data and video file indices,
                                                   from/to rows and timestamps, stats/<feature>/<stat>, ours (hapo/*)
    data/chunk-CCC/file-FFF.parquet                the frames of many episodes, concatenated
    videos/observation.images.<camera>/chunk-CCC/file-FFF.mp4   the frames of many episodes, concatenated
    meta/hapo_export.json                          ours: source bags, skips with reasons, counters, fps source

LeRobot's ``timestamp`` is ``frame_index / fps`` (its video lookup needs that); the observation stamp from the bag
is kept in ``complementary_info.stamp_ns``. Per-frame extras follow the LeRobot-based human-in-the-loop recorders
(``complementary_info.is_intervention`` float 0/1, ``complementary_info.policy_action``,
``complementary_info.collector_policy_id`` int64 with a codebook in the feature's ``info``); the others are ours.
fps: ``--fps``, else ``control_rate_hz`` from the bag metadata (the sim's START event gives it), else the median
step interval of the first episode (a real robot's; older sim bags need ``--fps``: a lockstep sim stamps steps with
wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from hapo_interfaces.enums import ControlSource, Label
from hapo_interfaces.stamps import match_stamp
from hapo_interfaces.topics import ACTION_DIM, ACTION_DIMS
from hapo_recorder.bag_reader import BagError, Episode, read_episode, require_episodes
from hapo_recorder.lerobot_stats import aggregate_stats, image_stats, vector_stats

CODEBASE_VERSION = 'v3.0'
CHUNKS_SIZE = 1000  # LeRobot DEFAULT_CHUNK_SIZE: files per chunk directory
DATA_FILE_MB = 100  # LeRobot DEFAULT_DATA_FILE_SIZE_IN_MB
VIDEO_FILE_MB = 200  # LeRobot DEFAULT_VIDEO_FILE_SIZE_IN_MB
DATA_PATH = 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
VIDEO_PATH = 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4'
EPISODES_PATH = 'meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
HUMAN_CODE, HOLD_CODE = 0, -1  # collector_policy_id codes; policy ids get 1, 2, ... in order of appearance
CI = 'complementary_info.'


class ExportError(RuntimeError):
    """The export cannot go on; the text is one line naming the path or value and the fix."""


@dataclass
class VideoOptions:
    """Encoder settings; the defaults are LeRobot's (libsvtav1, yuv420p, g=2, crf=30, preset 12)."""

    codec: str = 'auto'  # auto: libsvtav1 when PyAV's ffmpeg has it, else libx264
    crf: int = 30
    g: int = 2
    preset: int = 12  # libsvtav1 only

    def resolve(self) -> VideoOptions:
        names = ['libsvtav1', 'libx264'] if self.codec == 'auto' else [self.codec]
        for name in names:
            try:
                av.codec.Codec(name, 'w')
            except (av.codec.codec.UnknownCodecError, ValueError):
                continue
            return VideoOptions(name, self.crf, self.g, self.preset)
        raise ExportError(f'video codec {self.codec!r}: no such encoder in this PyAV build; try --vcodec libx264')

    def av_options(self) -> dict[str, str]:
        opts = {'g': str(self.g), 'crf': str(self.crf)}
        if self.codec == 'libsvtav1':
            opts['preset'] = str(self.preset)
        return opts


@dataclass
class Layout:
    """What every episode must match: taken from the first exported one."""

    cameras: dict[str, tuple[int, int, int]]  # camera -> (H, W, 3)
    state_dim: int  # 0: the bags carry no joint states, no observation.state


@dataclass
class _Rolling:
    """Chunk/file index of one kind of file (data, or one camera's video) and when to start the next file."""

    limit_mb: float
    chunks_size: int
    chunk: int = 0
    file: int = 0

    def next_if_full(self, size_bytes: float) -> bool:
        """Move to the next file (and chunk, after ``chunks_size`` files) once the current one reached the limit."""
        if size_bytes / 2**20 < self.limit_mb:
            return False
        self.file += 1
        if self.file == self.chunks_size:
            self.chunk, self.file = self.chunk + 1, 0
        return True


class _Video:
    """One mp4 being written: episodes appended back to back, frame i at pts i / fps, each episode on a keyframe."""

    def __init__(self, path: Path, fps: int, shape: tuple[int, int, int], opts: VideoOptions):
        os.environ.setdefault('SVT_LOG', '1')  # libsvtav1 prints its config to stderr otherwise (1 = errors)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fps, self.frames = path, fps, 0
        self.bytes, self.muxed_frames, self.raw_frame_bytes = 0, 0, shape[0] * shape[1] * 3
        self.container = av.open(str(path), 'w')
        self.stream = self.container.add_stream(opts.codec, rate=fps, options=opts.av_options())
        self.stream.pix_fmt = 'yuv420p'
        self.stream.height, self.stream.width = shape[:2]

    def append(self, frames: np.ndarray) -> tuple[float, float]:
        """Encode (N, H, W, 3) uint8 frames; returns the episode's (from_timestamp, to_timestamp) in this file."""
        start = self.frames
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format='rgb24')
            vf.pts, vf.time_base = self.frames, Fraction(1, self.fps)
            if i == 0:  # an episode decodes on its own, as LeRobot's per-episode files concatenated would
                vf.pict_type = av.video.frame.PictureType.I
            self._mux(self.stream.encode(vf))
            self.frames += 1
        return start / self.fps, self.frames / self.fps

    def size(self) -> float:
        """Bytes so far: muxed, plus the frames the encoder still holds back (its lookahead) at the mean size of
        those muxed (a raw frame / 50 before the first packet), so a file limit holds for short episodes too."""
        pending = self.frames - self.muxed_frames
        per_frame = self.bytes / self.muxed_frames if self.muxed_frames else self.raw_frame_bytes / 50
        return self.bytes + pending * per_frame

    def _mux(self, packets) -> None:
        for packet in packets:
            self.bytes += packet.size
            self.muxed_frames += 1
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is not None:
            self._mux(self.stream.encode())
            self.container.close()
            self.container = None


# -- per-episode frames --------------------------------------------------------------------------------------
def _observed(by_stamp: dict[int, Any], steps: np.ndarray) -> list[int] | None:
    """The stamp of the observation each step answers (``match_stamp``: the exact one, else the newest earlier
    one; never a later one), or None when a step has none at or before its stamp."""
    stamps = sorted(by_stamp)
    picks = [match_stamp(stamps, s, max_lag_ns=2**62) for s in steps.tolist()]
    return None if None in picks else [stamps[j] for j in picks]


def episode_frames(ep: Episode, layout: Layout, policy_code: int, counts: dict[str, int]
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-frame columns (our names, without the LeRobot index columns) and camera -> (N, H, W, 3) frames.

    A step whose image or joint state is not at its exact observation stamp takes the newest earlier one
    (counted in ``counts``, which has every key; ``check_episode`` made sure there is one); a proposal is
    matched to the step by its stamp (the observation it answered).
    """
    n = len(ep.sources)
    stamps = ep.step_stamps_ns
    proposals = np.full((n, ACTION_DIM), np.nan, dtype=np.float32)  # (N, A)
    has = np.zeros(n, dtype=bool)
    row = {int(s): i for i, s in enumerate(stamps)}
    for stamp, prop in zip(ep.proposal_stamps_ns.tolist(), ep.proposals, strict=True):
        i = row.get(stamp)
        if i is None:
            counts['proposals_without_step'] += 1
            continue
        counts['duplicate_proposals'] += int(has[i])
        proposals[i], has[i] = prop, True  # the newest proposal for that observation
    sources = ep.sources.astype(np.int64)
    human = sources == ControlSource.HUMAN
    hold = np.isin(sources, (ControlSource.NONE, ControlSource.STOPPED))
    collector = np.where(human, HUMAN_CODE, np.where(hold, HOLD_CODE, policy_code)).astype(np.int64)
    reward = np.zeros(n, dtype=np.float32)
    done = np.zeros(n, dtype=bool)
    if n:
        done[-1] = True
        reward[-1] = float(ep.outcome == 'success')
    cols = {'action': ep.actions.astype(np.float32), 'next.reward': reward, 'next.done': done,
            CI + 'policy_action': proposals, CI + 'has_policy_action': has,
            CI + 'is_intervention': (human & (not ep.demo)).astype(np.float32), CI + 'control_source': sources,
            CI + 'is_hold': hold, CI + 'label': ep.labels.astype(np.int64), CI + 'collector_policy_id': collector,
            CI + 'stamp_ns': stamps.astype(np.int64)}
    if layout.state_dim:
        picks = _observed(ep.joint_states, stamps)
        cols['observation.state'] = np.stack([ep.joint_states[t] for t in picks]).astype(np.float32)  # (N, J)
        counts['state_not_at_step_stamp'] += int((np.array(picks) != stamps).sum())
    frames = {}
    for cam in layout.cameras:
        picks = _observed(ep.images[cam], stamps)
        frames[cam] = np.stack([ep.images[cam][t] for t in picks])  # (N, H, W, 3) uint8
        counts[f'image_not_at_step_stamp/{cam}'] += int((np.array(picks) != stamps).sum())
    return cols, frames


def check_episode(ep: Episode, layout: Layout) -> str | None:
    """Why ``ep`` cannot join a dataset of ``layout`` (one phrase), or None."""
    if not len(ep.sources):
        return 'no executed steps'
    for cam, shape in layout.cameras.items():
        imgs = ep.images.get(cam) or {}
        if _observed(imgs, ep.step_stamps_ns) is None:
            return f'a step with no image from camera {cam!r} at or before its stamp'
        bad = {img.shape for img in imgs.values()} - {shape}
        if bad:
            return f'camera {cam!r} images of shape {sorted(bad)[0]}, the dataset has {shape}'
    if layout.state_dim:
        if _observed(ep.joint_states, ep.step_stamps_ns) is None:
            return 'a step with no joint state at or before its stamp'
        dims = {len(q) for q in ep.joint_states.values()}
        if dims != {layout.state_dim}:
            return f'joint states of {sorted(dims)} positions, the dataset has {layout.state_dim}'
    return None


def layout_of(ep: Episode) -> Layout:
    cams = {}
    for cam in sorted(ep.images):
        if ep.images[cam]:
            cams[cam] = next(iter(ep.images[cam].values())).shape
            if len(cams[cam]) != 3 or cams[cam][2] != 3 or cams[cam][0] % 2 or cams[cam][1] % 2:
                raise ExportError(f'{ep.path}: camera {cam!r} images are {cams[cam]}; yuv420p video needs even '
                                  'height and width and 3 channels')
    dims = {len(q) for q in ep.joint_states.values()}
    return Layout(cams, dims.pop() if len(dims) == 1 else 0)


# -- features ------------------------------------------------------------------------------------------------
def _codebook(enum_type) -> dict[str, str]:
    return {str(int(v)): v.name.lower() for v in enum_type}


def features(layout: Layout) -> dict[str, dict]:
    """The ``features`` of info.json in LeRobot's format (dtype, shape, names; a video's ``info`` comes later)."""
    def scalar(dtype, name=None, **extra):
        return {'dtype': dtype, 'shape': [1], 'names': [name] if name else None, **extra}

    feats: dict[str, dict] = {'action': {'dtype': 'float32', 'shape': [ACTION_DIM], 'names': list(ACTION_DIMS)}}
    if layout.state_dim:
        # names: the bag reader keeps positions only; the order is the robot's JointState order
        feats['observation.state'] = {'dtype': 'float32', 'shape': [layout.state_dim], 'names': None}
    for cam, shape in layout.cameras.items():
        feats[f'observation.images.{cam}'] = {'dtype': 'video', 'shape': list(shape),
                                              'names': ['height', 'width', 'channels'], 'info': {}}
    feats['next.reward'] = scalar('float32', info={'meaning': '1 on the last frame of a successful episode, else 0'})
    feats['next.done'] = scalar('bool', info={'meaning': 'true on the last frame of each episode'})
    feats[CI + 'policy_action'] = {
        'dtype': 'float32', 'shape': [ACTION_DIM], 'names': list(ACTION_DIMS),
        'info': {'meaning': "the policy's proposal for this observation (also while the human drove); NaN where "
                            'it made none (see has_policy_action)'}}
    feats[CI + 'has_policy_action'] = scalar('bool', 'has_policy_action')
    feats[CI + 'is_intervention'] = scalar('float32', 'is_intervention', info={
        'meaning': '1 where the human took over from the policy (control_source human); 0 in a demonstration'})
    feats[CI + 'control_source'] = scalar('int64', 'control_source', info={'codebook': _codebook(ControlSource)})
    feats[CI + 'is_hold'] = scalar('bool', 'is_hold', info={'meaning': 'the mux sent a zero command (source none '
                                                                       'or stopped)'})
    feats[CI + 'label'] = scalar('int64', 'label', info={'codebook': _codebook(Label),
                                                         'meaning': 'HAPO preference label c'})
    feats[CI + 'collector_policy_id'] = scalar('int64', 'collector_policy_id', info={'codebook': {}})
    feats[CI + 'stamp_ns'] = scalar('int64', 'stamp_ns', info={'meaning': 'observation stamp in the bag (ns)'})
    for key in ('timestamp', 'frame_index', 'episode_index', 'index', 'task_index'):  # LeRobot DEFAULT_FEATURES
        feats[key] = scalar('float32' if key == 'timestamp' else 'int64')
    return feats


def _probe(path: Path) -> dict[str, Any]:
    """A video feature's ``info`` block, read from the file with the keys LeRobot's get_video_info writes."""
    with av.open(str(path)) as container:
        st = container.streams.video[0]
        return {'video.height': st.height, 'video.width': st.width, 'video.codec': st.codec.canonical_name,
                'video.pix_fmt': st.pix_fmt, 'video.is_depth_map': False, 'video.fps': int(st.base_rate),
                'video.channels': 3, 'has_audio': bool(container.streams.audio)}


def _arrow(feats: dict[str, dict], cols: dict[str, np.ndarray]):
    """The frame table in LeRobot's parquet schema: shape (1,) -> a scalar column, (n,) -> fixed-size list."""
    arrays, names = [], []
    for key, ft in feats.items():
        if ft['dtype'] == 'video':
            continue
        typ = {'float32': pa.float32(), 'int64': pa.int64(), 'bool': pa.bool_()}[ft['dtype']]
        values = np.asarray(cols[key])
        if ft['shape'] == [1]:
            arrays.append(pa.array(values.reshape(-1), type=typ))
        else:
            flat = pa.array(values.reshape(-1), type=typ)
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, ft['shape'][0]))
        names.append(key)
    return pa.Table.from_arrays(arrays, names=names)


# -- the export ----------------------------------------------------------------------------------------------
@dataclass
class Summary:
    """What an export did (also meta/hapo_export.json)."""

    out: str
    episodes: int = 0
    frames: int = 0
    fps: int = 0
    fps_source: str = ''
    cameras: list[str] = field(default_factory=list)
    video: dict[str, Any] = field(default_factory=dict)
    source_bags: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # bag -> reason
    counts: dict[str, int] = field(default_factory=dict)
    policy_ids: dict[str, str] = field(default_factory=dict)  # collector_policy_id code -> name


def _fps_of(ep: Episode, fps: int | None) -> tuple[int, str]:
    if fps is not None:
        return fps, '--fps'
    rate = ep.metadata.get('control_rate_hz')
    if rate:
        return round(float(rate)), f'control_rate_hz {rate} in the metadata of {ep.path.name}'
    steps = np.diff(ep.step_stamps_ns)
    if not len(steps) or np.median(steps) <= 0:
        raise ExportError(f'{ep.path}: cannot derive fps from fewer than 2 steps; pass --fps')
    med = float(np.median(steps))
    return max(1, round(1e9 / med)), (f'derived from the median step interval of {ep.path.name} '
                                      f'({med / 1e6:.1f} ms); the bags record no control rate')


def _task_of(ep: Episode) -> str:
    return ep.instruction or ep.task or 'task'


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False, allow_nan=False) + '\n')


def _write_tasks(path: Path, tasks: dict[str, int]) -> None:
    """meta/tasks.parquet as pandas writes ``DataFrame({'task_index': ...}, index=tasks)``: ``pd.read_parquet``
    (what LeRobot's load_tasks calls) gives the task strings back as the index."""
    names = list(tasks)
    table = pa.table({'task_index': pa.array([tasks[t] for t in names], pa.int64()),
                      'task': pa.array(names, pa.string())})
    pandas_meta = {'index_columns': ['task'], 'column_indexes': [], 'columns': [
        {'name': 'task_index', 'field_name': 'task_index', 'pandas_type': 'int64', 'numpy_type': 'int64',
         'metadata': None},
        {'name': 'task', 'field_name': 'task', 'pandas_type': 'unicode', 'numpy_type': 'object', 'metadata': None}],
        'creator': {'library': 'pyarrow', 'version': pa.__version__}, 'pandas_version': '2.2.3'}
    table = table.replace_schema_metadata({b'pandas': json.dumps(pandas_meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


class _Exporter:
    """Writes the dataset into ``root`` (a fresh directory), one episode at a time."""

    def __init__(self, root: Path, fps: int | None, video: VideoOptions, data_file_mb: float, video_file_mb: float,
                 chunks_size: int, summary: Summary):
        self.root, self.fps_arg, self.opts, self.summary = root, fps, video, summary
        self.chunks_size, self.video_file_mb = chunks_size, video_file_mb
        self.layout: Layout | None = None
        self.feats: dict[str, dict] = {}
        self.fps = 0
        self.tasks: dict[str, int] = {}
        self.policy_codes: dict[str, int] = {}
        self.data_roll = _Rolling(data_file_mb, chunks_size)
        self.video_roll: dict[str, _Rolling] = {}
        self.data_writer = None
        self.data_path: Path | None = None
        self.videos: dict[str, _Video] = {}
        self.rows: list[dict[str, Any]] = []
        self.columns: dict[str, list[np.ndarray]] = {}
        self.video_stats: dict[str, list[dict]] = {}

    def _start(self, ep: Episode) -> None:
        self.layout = layout_of(ep)
        self.fps, self.summary.fps_source = _fps_of(ep, self.fps_arg)
        self.feats = features(self.layout)
        self.summary.fps, self.summary.cameras = self.fps, list(self.layout.cameras)
        self.summary.counts = {'proposals_without_step': 0, 'duplicate_proposals': 0, 'state_not_at_step_stamp': 0,
                               **{f'image_not_at_step_stamp/{cam}': 0 for cam in self.layout.cameras}}
        self.video_roll = {cam: _Rolling(self.video_file_mb, self.chunks_size) for cam in self.layout.cameras}

    def add(self, ep: Episode) -> str | None:
        """Append one episode; returns why it was skipped (nothing written), or None."""
        if self.layout is None:
            if not len(ep.sources):
                return 'no executed steps'
            self._start(ep)
        reason = check_episode(ep, self.layout)
        rate = ep.metadata.get('control_rate_hz')
        if not reason and self.fps_arg is None and rate and round(float(rate)) != self.fps:
            reason = f'control_rate_hz {rate} differs from the dataset fps {self.fps} (pass --fps to export anyway)'
        if reason:
            return reason
        if ep.policy_id not in self.policy_codes and (ep.sources == ControlSource.POLICY).any():
            self.policy_codes[ep.policy_id] = len(self.policy_codes) + 1
        cols, frames = episode_frames(ep, self.layout, self.policy_codes.get(ep.policy_id, HOLD_CODE),
                                      self.summary.counts)
        n, index0, ep_index = len(ep.sources), self.summary.frames, self.summary.episodes
        task = _task_of(ep)
        self.tasks.setdefault(task, len(self.tasks))
        cols.update({'timestamp': (np.arange(n) / self.fps).astype(np.float32), 'frame_index': np.arange(n),
                     'episode_index': np.full(n, ep_index), 'index': np.arange(index0, index0 + n),
                     'task_index': np.full(n, self.tasks[task])})
        row: dict[str, Any] = {'episode_index': ep_index, 'tasks': [task], 'length': n}
        row.update(self._write_data(cols))
        row.update({'dataset_from_index': index0, 'dataset_to_index': index0 + n})
        for cam in self.layout.cameras:
            row.update(self._write_video(cam, frames[cam]))
        stats = {}
        for key, ft in self.feats.items():
            if ft['dtype'] == 'video':
                cam = key.removeprefix('observation.images.')
                stats[key] = image_stats(frames[cam])
                self.video_stats.setdefault(key, []).append(stats[key])
            else:
                stats[key] = vector_stats(cols[key])
                self.columns.setdefault(key, []).append(np.asarray(cols[key]))
        row.update({f'stats/{k}/{s}': v for k, st in stats.items() for s, v in st.items()})
        row.update({'meta/episodes/chunk_index': 0, 'meta/episodes/file_index': 0,
                    'episode_success': ep.outcome == 'success', 'hapo/outcome': ep.outcome, 'hapo/task': ep.task,
                    'hapo/demo': ep.demo, 'hapo/truncated': ep.truncated, 'hapo/policy_id': ep.policy_id,
                    'hapo/interventions': ep.interventions, 'hapo/seed': str(ep.metadata.get('seed', '')),
                    'hapo/bag': str(ep.path)})
        self.rows.append(row)
        self.summary.episodes += 1
        self.summary.frames += n
        self.summary.source_bags.append(str(ep.path))
        return None

    def _write_data(self, cols: dict[str, np.ndarray]) -> dict[str, int]:
        roll = self.data_roll
        if self.data_writer is not None and roll.next_if_full(self.data_path.stat().st_size):
            self.data_writer.close()
            self.data_writer = None
        table = _arrow(self.feats, cols)
        if self.data_writer is None:
            self.data_path = self.root / DATA_PATH.format(chunk_index=roll.chunk, file_index=roll.file)
            self.data_path.parent.mkdir(parents=True, exist_ok=True)
            self.data_writer = pq.ParquetWriter(self.data_path, table.schema, compression='snappy')
        self.data_writer.write_table(table)
        return {'data/chunk_index': roll.chunk, 'data/file_index': roll.file}

    def _write_video(self, cam: str, frames: np.ndarray) -> dict[str, Any]:
        roll, key = self.video_roll[cam], f'observation.images.{cam}'
        video = self.videos.get(cam)
        if video is not None and roll.next_if_full(video.size()):
            video.close()
            video = None
        if video is None:
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=roll.chunk, file_index=roll.file)
            video = self.videos[cam] = _Video(path, self.fps, self.layout.cameras[cam], self.opts)
        start, end = video.append(frames)
        return {f'videos/{key}/chunk_index': roll.chunk, f'videos/{key}/file_index': roll.file,
                f'videos/{key}/from_timestamp': start, f'videos/{key}/to_timestamp': end}

    def close(self) -> None:
        """Close open files (also on error: the caller removes the directory then)."""
        if self.data_writer is not None:
            self.data_writer.close()
            self.data_writer = None
        for video in self.videos.values():
            video.close()

    def finish(self) -> None:
        """Write the metadata once every episode is in: episodes, tasks, stats, info (with the codebooks)."""
        self.close()
        s = self.summary
        path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.rows), path, compression='snappy')
        _write_tasks(self.root / 'meta/tasks.parquet', self.tasks)
        stats = {}
        for key, parts in self.columns.items():
            st = vector_stats(np.concatenate(parts))
            if st['count'][0]:  # no NaN in JSON: a feature with no value anywhere (no proposal at all) has none
                stats[key] = st
        stats.update({key: aggregate_stats(per_ep) for key, per_ep in self.video_stats.items()})
        _write_json(self.root / 'meta/stats.json', stats)
        s.policy_ids = {str(HOLD_CODE): 'none (hold: nobody drove)', str(HUMAN_CODE): 'human',
                        **{str(c): pid or 'policy (no id recorded)' for pid, c in self.policy_codes.items()}}
        self.feats[CI + 'collector_policy_id']['info']['codebook'] = s.policy_ids
        for cam in self.layout.cameras:  # as LeRobot's update_video_info: from the first file, plus the settings
            key = f'observation.images.{cam}'
            info = _probe(self.root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0))
            info.update({'video.g': self.opts.g, 'video.crf': self.opts.crf, 'video.encoder': self.opts.codec})
            if self.opts.codec == 'libsvtav1':
                info['video.preset'] = self.opts.preset
            self.feats[key]['info'] = info
            s.video = info
        info = {'codebase_version': CODEBASE_VERSION, 'robot_type': None, 'total_episodes': s.episodes,
                'total_frames': s.frames, 'total_tasks': len(self.tasks), 'chunks_size': self.chunks_size,
                'data_files_size_in_mb': self.data_roll.limit_mb, 'video_files_size_in_mb': self.video_file_mb,
                'fps': self.fps, 'splits': {'train': f'0:{s.episodes}'}, 'data_path': DATA_PATH,
                'video_path': VIDEO_PATH if self.layout.cameras else None, 'features': self.feats}
        _write_json(self.root / 'meta/info.json', info)
        _write_json(self.root / 'meta/hapo_export.json', s.__dict__)


def export(bags: Iterable[str | Path], out: str | Path, *, fps: int | None = None, overwrite: bool = False,
           strict: bool = False, video: VideoOptions | None = None, data_file_mb: float = DATA_FILE_MB,
           video_file_mb: float = VIDEO_FILE_MB, chunks_size: int = CHUNKS_SIZE, progress: bool = False,
           log=None) -> Summary:
    """Export every episode bag under ``bags`` into a new LeRobot v3.0 dataset at ``out``; raises ``ExportError``.

    Written into a temporary sibling directory and renamed at the end, so an error or Ctrl-C leaves ``out`` as it
    was. A bag that cannot be read or does not fit the first episode's cameras/state is skipped with a one-line
    reason through ``log`` (``strict``: raises instead).
    """
    out = Path(out)
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    if fps is not None and fps <= 0:
        raise ExportError(f'--fps {fps}: must be a positive integer')
    try:
        paths = require_episodes(bags)
    except BagError as exc:
        raise ExportError(str(exc)) from None
    _check_out(out, overwrite)
    opts = (video or VideoOptions()).resolve()
    tmp = out.parent / f'.{out.name}.tmp-{os.getpid()}'
    summary = Summary(out=str(out))
    exporter = _Exporter(tmp, fps, opts, data_file_mb, video_file_mb, chunks_size, summary)
    try:
        tmp.mkdir(parents=True)
        for path in tqdm(paths, desc='export-lerobot', unit='episode', disable=not progress):
            try:
                reason = exporter.add(read_episode(path, decode_images=True))
            except BagError as exc:
                reason = str(exc).removeprefix(f'{path}: ')
            if reason:
                if strict:
                    raise ExportError(f'{path}: {reason} (--strict)')
                summary.skipped[str(path)] = reason
                log(f'hapo export-lerobot: skipped {path}: {reason}')
        if not summary.episodes:
            raise ExportError(f'none of the {len(paths)} bag(s) could be exported (see the lines above)')
        if summary.fps_source.startswith('derived'):
            log(f'hapo export-lerobot: fps {summary.fps} {summary.fps_source}; pass --fps with the control rate '
                '(a lockstep sim stamps its steps with wall time)')
        exporter.finish()
        _replace(tmp, out)
    finally:
        exporter.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f'--out {out}: exists and is not a directory')
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f'--out {out}: not empty; pass --overwrite to replace a dataset there')
        if not (out / 'meta' / 'info.json').exists():
            raise ExportError(f'--out {out}: not empty and not a LeRobot dataset (no meta/info.json); '
                              'refusing to replace it even with --overwrite')


def _replace(tmp: Path, out: Path) -> None:
    """Put the finished dataset at ``out``: the old one (if any) moves aside first and goes only after."""
    old = out.parent / f'.{out.name}.old-{os.getpid()}'
    if out.exists():
        out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        if old.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog='hapo export-lerobot', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Recorded episode bags -> a LeRobot v3.0 dataset (parquet data, mp4 videos, meta/info.json, '
                    'episodes, tasks, stats), one frame per executed step, holds flagged. LeRobot itself is not '
                    'needed to write it.',
        epilog='Load it with lerobot: LeRobotDataset("local/hapo", root=OUT).\n'
               'Exit status: 0 written (skipped bags listed, one line each), 1 write error, 2 bad input, 130 '
               'interrupted; an error or Ctrl-C leaves --out as it was.')
    ap.add_argument('--bags', nargs='+', required=True, metavar='DIR',
                    help='episode bag directories, or directories holding them')
    ap.add_argument('--out', required=True, type=Path, metavar='DIR', help='the dataset directory to create')
    ap.add_argument('--fps', type=int, default=None,
                    help='frames per second = the control rate (default: control_rate_hz from the bag metadata, '
                         'else derived from the step stamps, which a lockstep sim fills with wall time)')
    ap.add_argument('--overwrite', action='store_true', help='replace an existing dataset at --out')
    ap.add_argument('--strict', action='store_true', help='stop (exit 2) at the first bag that cannot be exported '
                                                          'instead of skipping it')
    ap.add_argument('--vcodec', default='auto', help="video encoder: auto (libsvtav1, LeRobot's default, else "
                                                      'libx264), libsvtav1, libx264 (default: %(default)s)')
    ap.add_argument('--crf', type=int, default=30, help='video quality, lower is better (default: %(default)s)')
    ap.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = ap.parse_args(argv)
    try:
        s = export(args.bags, args.out, fps=args.fps, overwrite=args.overwrite, strict=args.strict,
                   video=VideoOptions(args.vcodec, args.crf), progress=not args.no_progress)
    except ExportError as exc:
        print(f'hapo export-lerobot: {exc}', file=sys.stderr)
        return 2
    except OSError as exc:
        print(f'hapo export-lerobot: cannot write {args.out}: {exc.strerror or exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f'hapo export-lerobot: interrupted; nothing written to {args.out}', file=sys.stderr)
        return 130
    print(f'hapo export-lerobot: wrote {s.out}: {s.episodes} episodes, {s.frames} frames, fps {s.fps} '
          f'({s.fps_source}), cameras {", ".join(s.cameras) or "none"}, video {s.video.get("video.codec")} '
          f'crf {args.crf}; skipped {len(s.skipped)} bag(s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())

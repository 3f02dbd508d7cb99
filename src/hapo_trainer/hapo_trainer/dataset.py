# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Episode bags -> PreferenceDataset: one sample per executed training step, cached on disk.

Data flow::

    bag dir --read_episode--> Episode --relabel(sources, K, demo)--> labels (-1 = not a training step)
        each executed step: action + source + the observation it answered (image by stamp, joint state)
        drop rules (counted by reason) --> arrays --> <cache>/<key>/{arrays.safetensors, meta.json, summary.json}

Labels are recomputed with the requested K by ``hapo_recorder.relabel`` (the one relabel function, the same
the recorder tags with). The drop rule on out-of-range actions uses the *base checkpoint's* q01/q99, so
actions tokenise the way the policy was trained. The cache key hashes every bag file (path, size, mtime) and
the options, so a changed bag or option rebuilds and a second run reads arrays only (no image decoding).
Nothing is pickled: arrays go to safetensors, the rest to JSON.

Command line (also ``hapo dataset``)::

    python -m hapo_trainer.dataset --bags runs/episodes --policy ckpt/base [--K 10] [--method hapo]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from hapo_interfaces.enums import TRAINING_LABELS, ControlSource, Label
from hapo_interfaces.stamps import match_stamp
from hapo_policy.checkpoint import atomic_dir
from hapo_policy.observation import Observation
from hapo_recorder.bag_reader import BagError, join_continuation, read_episode, read_metadata, require_episodes
from hapo_recorder.relabel import relabel
from hapo_trainer.algos import METHODS, get_algo
from hapo_trainer.config import DataConfig

CACHE_VERSION = 2  # 2: the policy's proposal per sample


class DatasetError(RuntimeError):
    """A dataset that cannot be built or used; one line naming the cause and the fix."""


@dataclass
class PreferenceDataset:
    """Training samples as arrays (N = samples); ``sample(i)`` is what ``VlaPolicy.encode_batch`` takes."""

    images: dict[str, np.ndarray]  # camera -> (N, H, W, 3) uint8
    proprio: np.ndarray  # (N, P) float32 (P = 0 when the policy takes none)
    actions: np.ndarray  # (N, 7) float32, executed actions in raw units
    proposals: np.ndarray  # (N, 7) float32, the policy's proposal for the same observation (exact stamp); NaN: none
    labels: np.ndarray  # (N,) int8 Label values: 1 policy, 2 correction, 0 undesirable
    episode: np.ndarray  # (N,) int32 index into ``episodes``
    step: np.ndarray  # (N,) int32 step index inside its episode
    instruction_id: np.ndarray  # (N,) int32 index into ``instructions``
    instructions: list[str]
    episodes: list[str]  # bag paths
    summary: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # the cache directory it was loaded from / saved to

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def sample(self, i: int) -> Observation:
        """The observation of sample ``i`` (images by camera, instruction, proprio)."""
        proprio = self.proprio[i] if self.proprio.shape[1] else None
        return Observation({cam: arr[i] for cam, arr in self.images.items()}, self.instructions[self.instruction_id[i]],
                           proprio)

    def paired(self) -> np.ndarray:
        """(N,) bool: corrections whose observation has the policy's proposal (a chosen / rejected pair)."""
        return (self.labels == Label.CORRECTION) & np.isfinite(self.proposals).all(axis=1)

    def paired_corrections(self) -> int:
        return int(np.count_nonzero(self.paired()))

    def class_counts(self) -> dict[str, int]:
        """Samples per class, keyed by ``Label.display`` in ``TRAINING_LABELS`` order (as in summary.json)."""
        return {c.display: int(np.count_nonzero(self.labels == c)) for c in TRAINING_LABELS}

    # -- disk ---------------------------------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write the cache directory atomically (``checkpoint.atomic_dir``); safetensors + JSON only."""
        with atomic_dir(path) as tmp:
            arrays = {f'images/{cam}': np.ascontiguousarray(a) for cam, a in self.images.items()}
            arrays.update(proprio=self.proprio, actions=self.actions, proposals=self.proposals, labels=self.labels,
                          episode=self.episode,
                          step=self.step, instruction_id=self.instruction_id)
            save_file(arrays, str(tmp / 'arrays.safetensors'))
            meta = {'cache_version': CACHE_VERSION, 'instructions': self.instructions, 'episodes': self.episodes,
                    'cameras': list(self.images)}
            (tmp / 'meta.json').write_text(json.dumps(meta, indent=2) + '\n')
            (tmp / 'summary.json').write_text(json.dumps(self.summary, indent=2, sort_keys=True) + '\n')
        self.path = path
        return path

    @classmethod
    def load(cls, path: Path) -> PreferenceDataset:
        try:
            meta = json.loads((path / 'meta.json').read_text())
            summary = json.loads((path / 'summary.json').read_text())
            if not isinstance(meta, dict) or not isinstance(summary, dict):
                raise ValueError('meta.json or summary.json is not a JSON object')
            arrays = load_file(str(path / 'arrays.safetensors'))
        except (OSError, ValueError, SafetensorError) as exc:
            raise DatasetError(f'dataset cache {path} unreadable ({exc}); delete it to rebuild') from None
        if meta.get('cache_version') not in (1, CACHE_VERSION):
            raise DatasetError(f'dataset cache {path} has version {meta.get("cache_version")}, need {CACHE_VERSION}')
        if 'proposals' not in arrays and 'actions' in arrays:  # version 1 kept no proposals: none known
            arrays['proposals'] = np.full(arrays['actions'].shape, np.nan, np.float32)
        try:
            return cls(images={cam: arrays[f'images/{cam}'] for cam in meta['cameras']},
                       proprio=arrays['proprio'], actions=arrays['actions'], proposals=arrays['proposals'],
                       labels=arrays['labels'], episode=arrays['episode'], step=arrays['step'],
                       instruction_id=arrays['instruction_id'], instructions=meta['instructions'],
                       episodes=meta['episodes'], summary=summary, path=path)
        except (KeyError, TypeError) as exc:
            raise DatasetError(f'dataset cache {path} incomplete (no {exc}); delete it to rebuild') from None


@dataclass(frozen=True)
class BuildSpec:
    """What the dataset depends on besides the bags: data options and what the base policy expects."""

    data: DataConfig
    cameras: tuple[str, ...]
    proprio_dim: int
    q01: tuple[float, ...]  # ActionStats.bounds(): q01/q99, or -1/+1 where the stats mask is off
    q99: tuple[float, ...]

    @classmethod
    def for_policy(cls, data: DataConfig, policy: Any) -> BuildSpec:
        low, high = policy.stats.bounds()  # (7,), (7,): q01/q99 where normalised
        return cls(data, tuple(policy.camera_names), int(policy.proprio_dim),
                   tuple(float(v) for v in low), tuple(float(v) for v in high))

    def options(self) -> dict[str, Any]:
        """Everything that changes the arrays (cache_dir does not)."""
        data = {k: v for k, v in dataclasses.asdict(self.data).items() if k != 'cache_dir'}
        return {'data': data, 'cameras': list(self.cameras), 'proprio_dim': self.proprio_dim,
                'q01': list(self.q01), 'q99': list(self.q99), 'cache_version': CACHE_VERSION}


def cache_key(bags: Sequence[Path], spec: BuildSpec) -> str:
    """sha256 of every file of every bag (resolved path, size, mtime_ns) and the build options."""
    files = []
    for bag in bags:
        for f in sorted(p for p in Path(bag).rglob('*') if p.is_file()):
            st = f.stat()
            files.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    body = json.dumps({'files': files, 'options': spec.options()}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:20]


def default_cache_dir(data: DataConfig) -> Path:
    if data.cache_dir:
        return Path(data.cache_dir).expanduser()
    return Path(os.environ.get('HAPO_CACHE', Path.home() / '.cache' / 'hapo')) / 'datasets'


def _episode_samples(ep: Any, spec: BuildSpec, drops: dict[str, int]) -> dict[str, Any]:
    """Rows of one episode that survive the drop rules; every dropped step counted by its reason."""
    d = spec.data
    labels = relabel(ep.sources, d.K, demo=ep.demo)  # (N,) recomputed with the requested K
    q01, q99 = np.asarray(spec.q01), np.asarray(spec.q99)
    margin = d.range_margin * (q99 - q01)  # (7,)
    max_lag_ns = int(d.max_obs_lag_ms * 1e6)
    cam_stamps = {cam: np.sort(np.fromiter(ep.images.get(cam, {}).keys(), dtype=np.int64)) for cam in spec.cameras}
    js_stamps = np.sort(np.fromiter(ep.joint_states.keys(), dtype=np.int64))
    keep: list[tuple[int, dict[str, int], int | None]] = []
    for i, (stamp, action, label) in enumerate(zip(ep.step_stamps_ns.tolist(), ep.actions, labels, strict=True)):
        reason = None
        if label == Label.NOT_TRAINING:
            reason = 'not_training'  # NONE / STOPPED hold commands
        elif label == Label.POLICY and not (d.policy_steps or ep.demo):
            reason = 'policy_step'  # data.policy_steps false: demos and corrections only
        elif not np.all(np.isfinite(action)):
            reason = 'nonfinite'
        elif d.drop_noop and np.all(np.abs(action[:6]) <= d.noop_eps):
            reason = 'noop'
        elif d.max_abs_action > 0 and np.any(np.abs(action) > d.max_abs_action):
            reason = 'too_large'
        elif d.range_margin >= 0 and np.any((action < q01 - margin) | (action > q99 + margin)):
            reason = 'out_of_range'
        frames: dict[str, int] = {}
        if reason is None:
            for cam in spec.cameras:
                j = match_stamp(cam_stamps[cam], stamp, max_lag_ns)
                if j is None:
                    reason = f'no_image_{cam}'
                    break
                frames[cam] = int(cam_stamps[cam][j])
        js = None
        if reason is None and spec.proprio_dim > 0:
            j = match_stamp(js_stamps, stamp, max_lag_ns)
            if j is None or len(ep.joint_states[int(js_stamps[j])]) < spec.proprio_dim:
                reason = 'no_proprio'
            else:
                js = int(js_stamps[j])
        if reason is not None:
            drops[reason] = drops.get(reason, 0) + 1
            continue
        keep.append((i, frames, js))
    return {'keep': keep, 'labels': labels}


def episode_order(paths: Sequence[Path]) -> list[Path]:
    """The bags in the order their samples take: simulated episodes by seed, the rest (a real robot's, bags without
    metadata) after them by name (their start time). Not by name alone: a round's workers interleave their episodes
    differently each run, and the same bags in another order train other weights."""
    def key(path: Path) -> tuple[int, int, str]:
        try:
            seed = str((read_metadata(path) or {}).get('seed', ''))
        except BagError:
            seed = ''  # reported when the bag is read
        return (0, int(seed), path.name) if seed.lstrip('-').isdigit() else (1, 0, path.name)
    return sorted(paths, key=key)


def build_dataset(bags: Sequence[str | Path], spec: BuildSpec, *, method: str | None = 'hapo',
                  cache_dir: Path | None = None, rebuild: bool = False, log: Callable[[str], None] = print,
                  progress: bool = True) -> PreferenceDataset:
    """Build (or load from cache) the dataset of ``bags``; DatasetError when unusable for ``method`` (None: any)."""
    try:
        paths = episode_order(require_episodes(bags))
    except BagError as exc:
        raise DatasetError(str(exc)) from None
    cache_dir = cache_dir or default_cache_dir(spec.data)
    key = cache_key(paths, spec)
    target = cache_dir / key
    if target.is_dir() and not rebuild:
        ds = PreferenceDataset.load(target)
        log(f'dataset: {len(ds)} samples from cache {target}')
    else:
        ds = _build(paths, spec, log, progress)
        ds.summary['cache_key'] = key
        try:
            ds.save(target)  # atomic: a failed write leaves no entry behind
        except (OSError, SafetensorError) as exc:
            raise DatasetError(f'cannot write dataset cache {target}: {getattr(exc, "strerror", None) or exc}'
                               ) from None
        log(f'dataset: {len(ds)} samples built into {target}')
    if method is not None:
        check_usable(ds, method)
    return ds


def _one_size_per_camera(images: dict[str, list[np.ndarray]], drops: dict[str, int],
                         log: Callable[[str], None]) -> list[bool]:
    """Which samples to keep: per camera the most common image size wins; a sample with an image of another size
    (a camera switched resolution, a malformed frame the recorder stored raw) is dropped, counted as
    ``image_size_<cam>``."""
    n = len(next(iter(images.values()), []))
    keep = [True] * n
    for cam, frames in images.items():
        sizes = Counter(f.shape for f in frames)
        if len(sizes) < 2:
            continue
        common = sizes.most_common(1)[0][0]
        odd = [i for i, f in enumerate(frames) if f.shape != common and keep[i]]
        for i in odd:
            keep[i] = False
        drops[f'image_size_{cam}'] = drops.get(f'image_size_{cam}', 0) + len(odd)
        log(f'dataset: camera {cam!r}: {len(odd)} samples with images of another size than {common} skipped '
            f'(sizes seen: {dict(sizes)})')
    return keep


def _continued(paths: list[Path]) -> set[Path]:
    """The bags among ``paths`` a crash cut (no metadata.yaml) that another one of them continues
    (``continuation_of``: a recorder restarted mid-episode); the dataset reads each with its continuation as one
    episode."""
    cut = {p for p in paths if not (p / 'metadata.yaml').exists()}
    out = set()
    for path in set(paths) - cut:
        try:
            name = (read_metadata(path) or {}).get('continuation_of')
        except BagError:
            continue  # reported when it is read
        if name and path.parent / str(name) in cut:
            out.add(path.parent / str(name))
    return out


def _build(paths: list[Path], spec: BuildSpec, log: Callable[[str], None], progress: bool) -> PreferenceDataset:
    from tqdm import tqdm

    drops: dict[str, int] = {}
    skipped: list[dict[str, str]] = []
    images: dict[str, list[np.ndarray]] = {cam: [] for cam in spec.cameras}
    cols: dict[str, list] = {'proprio': [], 'actions': [], 'proposals': [], 'labels': [], 'episode': [], 'step': [],
                             'instr': []}
    nan7 = np.full(7, np.nan, np.float32)
    instructions: list[str] = []
    episodes: list[str] = []
    relabelled_steps = human_steps = 0
    malformed: dict[str, int] = {}  # messages per topic the bag reader skipped (never in a sample)
    continued = _continued(paths)
    for path in tqdm(paths, desc='dataset', unit='bag', disable=not progress):
        if path in continued:
            continue  # read with the continuation a restarted recorder wrote (its own bag, in this build)
        try:
            ep = read_episode(path, decode_images=True)
            if ep.metadata.get('continuation_of') and path.parent / ep.metadata['continuation_of'] in continued:
                ep = join_continuation(read_episode(path.parent / ep.metadata['continuation_of']), ep)
        except BagError as exc:
            log(f'dataset: skipping unreadable bag {path}: {exc}')
            skipped.append({'path': str(path), 'reason': str(exc)})
            continue
        if ep.truncated:
            log(f'dataset: skipping truncated bag {path} (no metadata.yaml: the recorder was killed)')
            skipped.append({'path': str(path), 'reason': 'truncated'})
            continue
        rows = _episode_samples(ep, spec, drops)
        relabelled_steps += int(np.count_nonzero(rows['labels'] == 0))
        human_steps += int(np.count_nonzero(ep.sources == ControlSource.HUMAN))
        if not rows['keep']:
            continue
        if ep.instruction not in instructions:
            instructions.append(ep.instruction)
        ei = len(episodes)
        episodes.append(str(path))
        proposal: dict[int, np.ndarray] = {}  # the first for a stamp: a second publisher cannot replace it
        for k, t in enumerate(ep.proposal_stamps_ns.tolist()):
            proposal.setdefault(int(t), ep.proposals[k])
        for topic, n_bad in ep.skipped.items():
            malformed[topic] = malformed.get(topic, 0) + n_bad
        for i, frames, js in rows['keep']:
            for cam in spec.cameras:
                images[cam].append(ep.images[cam][frames[cam]])
            cols['proprio'].append(ep.joint_states[js][:spec.proprio_dim] if js is not None else np.zeros(0))
            cols['actions'].append(ep.actions[i])
            cols['proposals'].append(proposal.get(int(ep.step_stamps_ns[i]), nan7))
            cols['labels'].append(rows['labels'][i])
            cols['episode'].append(ei)
            cols['step'].append(i)
            cols['instr'].append(instructions.index(ep.instruction))
    keep = _one_size_per_camera(images, drops, log)
    cols = {k: [v for v, ok in zip(col, keep, strict=True) if ok] for k, col in cols.items()}
    n = len(cols['labels'])
    stacked = {cam: np.stack([f for f, ok in zip(frames, keep, strict=True) if ok]) if n
               else np.zeros((0, 1, 1, 3), np.uint8) for cam, frames in images.items()}  # (N, H, W, 3)
    ds = PreferenceDataset(
        images=stacked,
        proprio=np.asarray(cols['proprio'], dtype=np.float32).reshape(n, spec.proprio_dim),  # (N, P)
        actions=np.asarray(cols['actions'], dtype=np.float32).reshape(n, 7),  # (N, 7)
        proposals=np.asarray(cols['proposals'], dtype=np.float32).reshape(n, 7),  # (N, 7)
        labels=np.asarray(cols['labels'], dtype=np.int8),  # (N,)
        episode=np.asarray(cols['episode'], dtype=np.int32), step=np.asarray(cols['step'], dtype=np.int32),
        instruction_id=np.asarray(cols['instr'], dtype=np.int32), instructions=instructions, episodes=episodes)
    counts = ds.class_counts()
    n_policy_or_human = sum(counts.values())
    ds.summary = {
        'samples': n, 'classes': counts, 'drops': dict(sorted(drops.items())), 'bags': len(paths),
        'episodes_used': len(episodes), 'skipped_bags': skipped, 'malformed_messages': dict(sorted(malformed.items())),
        'relabelled_undesirable_steps': relabelled_steps,
        'intervention_ratio': (counts['correction'] / n_policy_or_human) if n_policy_or_human else 0.0,
        'human_steps_in_bags': human_steps, 'options': spec.options(),
        'paired_corrections': ds.paired_corrections(),
        'unpaired_corrections': counts['correction'] - ds.paired_corrections(),
    }
    return ds


def check_usable(ds: PreferenceDataset, method: str) -> None:
    """DatasetError if ``method`` needs a class the dataset lacks (never a silent BC run)."""
    counts = ds.class_counts()
    for c in get_algo(method).needs_classes:
        if counts[c.display] == 0:
            why = {Label.CORRECTION: 'no usable corrections (correction, c=2): were there interventions, and did '
                                     'they survive the drop rules?',
                   Label.UNDESIRABLE: 'no undesirable samples (undesirable, c=0): K=0, or no policy steps before the '
                                      'interventions?',
                   Label.POLICY: 'no desirable policy/demo samples (policy, c=1)'}[c]
            raise DatasetError(f'dataset {ds.path or ""} has {why} Method {method!r} needs them '
                               f'(classes {counts}, drops {ds.summary.get("drops", {})}); use --method bc to '
                               f'train on demos only')


def main(argv: list[str] | None = None) -> int:
    """Build (or reuse) the dataset of some bags for a base policy and print its summary.json path."""
    parser = argparse.ArgumentParser(prog='hapo dataset', description=main.__doc__)
    parser.add_argument('--bags', nargs='+', required=True, help='episode bag directories, or directories of them')
    parser.add_argument('--policy', required=True, help='base checkpoint (gives cameras, proprio size, q01/q99)')
    parser.add_argument('--K', type=int, default=None, help='relabel window (default: the config, 10)')
    parser.add_argument('--method', default='hapo', choices=METHODS, help='checks the classes this method needs')
    parser.add_argument('--config', default=None, help='trainer YAML (its data: group applies)')
    parser.add_argument('--cache-dir', default=None, help='dataset cache directory')
    parser.add_argument('--rebuild', action='store_true', help='ignore an existing cache entry')
    args = parser.parse_args(argv)
    from hapo_policy.errors import CheckpointError
    from hapo_policy.model import VlaPolicy
    from hapo_trainer.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
        if args.K is not None:
            cfg = cfg.replace(**{'data.K': args.K})
        policy = VlaPolicy.from_pretrained(args.policy)
        ds = build_dataset(args.bags, BuildSpec.for_policy(cfg.data, policy), method=args.method,
                           cache_dir=Path(args.cache_dir) if args.cache_dir else None, rebuild=args.rebuild,
                           log=lambda m: print(m, file=sys.stderr))
    except (DatasetError, ConfigError, CheckpointError) as exc:
        print(f'hapo dataset: {exc}', file=sys.stderr)
        return 2
    print(json.dumps({'summary': str(ds.path / 'summary.json'), **ds.class_counts()}))
    return 0


if __name__ == '__main__':
    sys.exit(main())

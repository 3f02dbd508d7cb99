# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Fault matrix, group ``files`` (issue 14): hostile and broken files fed to the real command lines.

    .venv/bin/python bench/faults_files.py [--quick]

Each case builds one hostile file in a temp directory and runs what a user would run on it, as a subprocess
(``python -m hapo_bringup.cli ...`` = ``hapo ...``; checkpoints through the policy node, the loader the graph
starts: ``python -m hapo_policy.policy_node --ros-args -p checkpoint:=DIR``). Cases:

* checkpoints: pickle weights (``pytorch_model.bin``) instead of and beside ``model.safetensors``, weights of
  another shape, NaN weights, a ``config.json`` whose ``auto_map`` points outside its directory at code that
  would leave a marker file, a foreign (Llava) checkpoint without its tokenizer / processor file and with its
  ``auto_map`` pointing outside;
* bags (a real episode bag by the recorder's EpisodeWriter beside a good one): the ``.mcap`` cut in half, 64
  bytes flipped in the middle, no ``metadata.yaml``, a topic recorded with another message type; each through
  ``hapo bag-info`` and ``hapo dataset``;
* the dataset cache: its ``meta.json`` of another cache version, not a JSON object, and its arrays cut short.

Per case: ``command``, ``exit_code``, ``one_line`` (the stderr line that names the hostile file, else stderr's
last line), ``traceback`` (one in stderr), ``outcome``: ``refused`` (exit != 0, one line naming the file),
``skipped_counted`` (exit 0: the file named on stderr and counted in the output, the good one used),
``flagged`` (bag-info lists a bag cut by a crash as truncated), ``ignored`` (the pickle / outside path was not
used, the checkpoint loads from its safetensors) or ``FOUND: ...``. Every pickle and every outside module would
create a marker file when unpickled / imported: it must not exist afterwards. Exits 1 when a case did not
survive. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, isolate, report

sys.path.insert(0, str(ROOT / 'tests'))

HAPO = [sys.executable, '-m', 'hapo_bringup.cli']
POLICY_NODE = [sys.executable, '-m', 'hapo_policy.policy_node', '--ros-args', '-p']
STARTED = re.compile(r'\]: policy [0-9a-f]{16} \(')  # the policy node's log line once its checkpoint loaded
QUICK = {'ckpt_pickle_only', 'ckpt_nan_weights', 'bag_cut_mcap/dataset', 'bag_flipped_bytes/bag-info',
         'bag_wrong_type/bag-info',
         'cache_other_version'}


class Unpickled:
    """What a hostile pytorch_model.bin holds: unpickling it opens (creates) the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


def short(cmd: list[str], tmp: Path) -> str:
    """The command as a user would type it (``hapo`` for the CLI module, paths relative to the temp dir)."""
    text = ' '.join(cmd).replace(' '.join(HAPO), 'hapo').replace(sys.executable, 'python')
    return text.replace(str(tmp) + '/', '')


def run(cmd: list[str], timeout: float = 120.0) -> tuple[int, str, str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return p.returncode, p.stdout, p.stderr


def run_node(ckpt: Path, timeout: float = 90.0) -> tuple[int | None, str]:
    """Start the policy node on ``ckpt``: (exit code, stderr) when it exits, (None, stderr) once it has loaded
    the checkpoint (then it is stopped with SIGINT)."""
    p = subprocess.Popen([*POLICY_NODE, f'checkpoint:={ckpt}'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, cwd=ROOT)
    sel = selectors.DefaultSelector()
    sel.register(p.stderr, selectors.EVENT_READ)
    err: list[str] = []
    deadline = time.monotonic() + timeout
    started = False
    while time.monotonic() < deadline:
        if not sel.select(timeout=0.5):
            continue
        line = p.stderr.readline()
        if not line:
            break
        err.append(line)
        if STARTED.search(line):
            started = True
            break
    if not started:  # stderr closed: it is exiting
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=20)
    if started or p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            rest = p.communicate(timeout=20)[1]
        except subprocess.TimeoutExpired:
            p.kill()
            rest = p.communicate()[1]
        return None, ''.join(err) + (rest or '')
    p.wait()
    return p.returncode, ''.join(err) + p.stderr.read()


PROGRESS = re.compile(r'^.*\d+(?:\.\d+)?(?:bag|it)/s\]')  # a tqdm bar the next log line was appended to


def line_naming(text: str, name: str) -> str:
    lines = [PROGRESS.sub('', ln.split('\r')[-1]) for ln in text.splitlines() if ln.strip()]
    named = [ln for ln in lines if name in ln]
    return (named or lines or [''])[-1].strip()


def row(case: str, cmd: list[str], tmp: Path, code: int | None, out: str, err: str, hostile: Path,
        outcome: str, **extra) -> dict:
    tb = 'Traceback (most recent call last)' in err
    if tb and not outcome.startswith('FOUND'):
        outcome = f'FOUND: a Python traceback in stderr ({outcome} otherwise)'
    r = {'case': case, 'command': short(cmd, tmp), 'exit_code': code, 'traceback': tb,
         'one_line': line_naming(err, hostile.name).replace(str(tmp) + '/', ''), 'outcome': outcome, **extra}
    r['survived'] = not outcome.startswith('FOUND')
    return r


def refused(code, err: str, hostile: Path) -> bool:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return code not in (0, None) and bool(lines) and hostile.name in lines[-1]


# checkpoints ------------------------------------------------------------------------------------------------
def base_checkpoint(tmp: Path) -> Path:
    from train.episode_bags import tiny_policy
    return tiny_policy(tmp / 'base_ckpt')


def copy_ckpt(base: Path, tmp: Path, name: str) -> Path:
    return Path(shutil.copytree(base, tmp / name))


def edit_weights(ckpt: Path, edit) -> str:
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file
    f = ckpt / 'model.safetensors'
    with safe_open(str(f), 'np') as fh:
        meta = fh.metadata()
    arrays = load_file(str(f))
    name = edit(arrays)
    save_file(arrays, str(f), metadata=meta)
    return name


def node_case(case: str, ckpt: Path, tmp: Path, markers: list[Path], want: str) -> dict:
    """``want``: 'refused' (exit 2, one line naming the checkpoint) or 'ignored' (loads from its safetensors)."""
    cmd = [*POLICY_NODE, f'checkpoint:={ckpt}']
    code, err = run_node(ckpt)
    leaked = [str(m.relative_to(tmp)) for m in markers if m.exists()]
    if leaked:
        outcome = f'FOUND: code ran / a pickle was loaded: marker {leaked} exists'
    elif want == 'refused':
        outcome = 'refused' if refused(code, err, ckpt) else (
            'FOUND: the policy node loaded it and ran' if code is None else
            f'FOUND: exit {code} without a one-line reason naming {ckpt.name}')
    else:
        outcome = 'ignored' if code is None else f'FOUND: refused a checkpoint that should load (exit {code})'
    return row(case, cmd, tmp, code, '', err, ckpt, outcome, markers_absent=not leaked)


def checkpoint_cases(tmp: Path, base: Path, only) -> list[dict]:
    rows = []
    if only('ckpt_pickle_only'):
        ck = copy_ckpt(base, tmp, 'ckpt_pickle_only')
        marker = tmp / 'UNPICKLED_pickle_only'
        (ck / 'model.safetensors').unlink()
        (ck / 'pytorch_model.bin').write_bytes(pickle.dumps(Unpickled(marker)))
        rows.append(node_case('ckpt_pickle_only', ck, tmp, [marker], 'refused'))
    if only('ckpt_pickle_beside'):
        ck = copy_ckpt(base, tmp, 'ckpt_pickle_beside')
        marker = tmp / 'UNPICKLED_pickle_beside'
        for n in ('pytorch_model.bin', 'training_args.bin'):
            (ck / n).write_bytes(pickle.dumps(Unpickled(marker)))
        rows.append(node_case('ckpt_pickle_beside', ck, tmp, [marker], 'ignored'))
    if only('ckpt_wrong_shape'):
        ck = copy_ckpt(base, tmp, 'ckpt_wrong_shape')

        def wrong(arrays):
            name = max(arrays, key=lambda k: arrays[k].ndim * 10**9 + arrays[k].size)
            arrays[name] = np.ascontiguousarray(arrays[name][..., :-1])
            return name
        edit_weights(ck, wrong)
        rows.append(node_case('ckpt_wrong_shape', ck, tmp, [], 'refused'))
    if only('ckpt_nan_weights'):
        ck = copy_ckpt(base, tmp, 'ckpt_nan_weights')

        def nan(arrays):
            name = sorted(k for k in arrays if arrays[k].dtype.kind == 'f' and arrays[k].ndim == 2)[0]
            arrays[name] = arrays[name].copy()
            arrays[name].flat[::7] = np.nan
            return name
        edit_weights(ck, nan)
        rows.append(node_case('ckpt_nan_weights', ck, tmp, [], 'refused'))
    if only('ckpt_config_points_outside'):
        ck = copy_ckpt(base, tmp, 'ckpt_config_points_outside')
        marker = tmp / 'IMPORTED_outside_code'
        evil = tmp / 'outside'
        evil.mkdir()
        (evil / 'evil.py').write_text(f'open({str(marker)!r}, "w")\n')
        cfg = json.loads((ck / 'config.json').read_text())
        cfg.update(auto_map={'AutoConfig': '../outside/evil.EvilConfig', 'AutoModel': '../../outside/evil.Evil'},
                   tokenizer_file='../../etc/passwd', processor='../../etc', _name_or_path='../../etc')
        (ck / 'config.json').write_text(json.dumps(cfg))
        rows.append(node_case('ckpt_config_points_outside', ck, tmp, [marker], 'ignored'))
    return rows


def foreign_cases(tmp: Path, only) -> list[dict]:
    names = ('foreign_missing_tokenizer', 'foreign_missing_processor', 'foreign_config_points_outside')
    if not any(only(n) for n in names):
        return []
    from foreign_vla import write_foreign_checkpoint
    base = write_foreign_checkpoint(tmp / 'foreign_base')
    rows = []
    if only('foreign_missing_tokenizer'):
        ck = copy_ckpt(base, tmp, 'foreign_missing_tokenizer')
        (ck / 'tokenizer_config.json').unlink()
        rows.append(node_case('foreign_missing_tokenizer', ck, tmp, [], 'refused'))
    if only('foreign_missing_processor'):
        ck = copy_ckpt(base, tmp, 'foreign_missing_processor')
        for n in ('processor_config.json', 'preprocessor_config.json'):
            (ck / n).unlink(missing_ok=True)
        rows.append(node_case('foreign_missing_processor', ck, tmp, [], 'refused'))
    if only('foreign_config_points_outside'):
        ck = copy_ckpt(base, tmp, 'foreign_config_points_outside')
        marker = tmp / 'IMPORTED_foreign_outside_code'
        evil = tmp / 'foreign_outside'
        evil.mkdir()
        (evil / 'evil.py').write_text(f'open({str(marker)!r}, "w")\n')
        target = '../foreign_outside/evil.Evil'
        for name in ('config.json', 'tokenizer_config.json', 'processor_config.json', 'preprocessor_config.json'):
            f = ck / name
            if f.is_file():
                body = json.loads(f.read_text())
                body['auto_map'] = {k: target for k in ('AutoConfig', 'AutoModelForVision2Seq', 'AutoProcessor',
                                                        'AutoTokenizer', 'AutoImageProcessor')}
                if name == 'tokenizer_config.json':
                    body.update(tokenizer_file='../../etc/passwd', vocab_file='../../etc/passwd')
                f.write_text(json.dumps(body))
        rows.append(node_case('foreign_config_points_outside', ck, tmp, [marker], 'ignored'))
    return rows


# bags -------------------------------------------------------------------------------------------------------
def wrong_type_bag(root: Path, index: int) -> Path:
    """An episode whose /robot/joint_states and /hapo/cmd were recorded as sensor_msgs/Image and std_msgs/String
    (a remapping gone wrong), beside correct camera and policy topics."""
    from train.episode_bags import CAMERA, IMG, JS, MS, STR, T0, _image, _joint_state, _string

    from hapo_interfaces.enums import ControlSource, EpisodeEvent
    from hapo_interfaces.records import EpisodeMessage, encode_event
    from hapo_recorder.bag_writer import EpisodeWriter

    info = {'task': 'lift', 'instruction': 'lift the cube', 'k': 10, 'demo': False, 'policy_id': 'base',
            'topics': {'cmd': '/hapo/cmd', 'cameras': {CAMERA: f'/camera/{CAMERA}/image_raw'}}}
    w = EpisodeWriter(root, info, index=index)
    start = T0 + index * 10**12
    path = w.open(start)
    w.write('/hapo/episode', STR, start, _string(encode_event(EpisodeMessage(EpisodeEvent.START, start, 'test'))))
    rng = np.random.default_rng(index)
    for i in range(20):
        stamp = start + (i + 1) * 50 * MS
        img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        w.write(f'/camera/{CAMERA}/image_raw', IMG, stamp, _image(stamp, img))
        w.write('/robot/joint_states', IMG, stamp, _image(stamp, img))
        w.write('/hapo/policy/action', JS, stamp + 1, _joint_state(stamp, np.zeros(7), 'policy'))
        w.write('/hapo/cmd', STR, stamp + 2, _string('policy'))
        w.add_step(stamp, ControlSource.POLICY)
    w.close('success')
    return path


def bag_dir(tmp: Path, name: str, break_it) -> tuple[Path, Path]:
    """``tmp/name`` holding a good episode bag (1) and the hostile one (2): (directory, hostile bag)."""
    from train.episode_bags import write_episode
    root = tmp / name
    write_episode(root, 1, seed=1)
    hostile = break_it(root)
    return root, hostile


def cut_mcap(root: Path) -> Path:
    from train.episode_bags import write_episode
    bag = write_episode(root, 2, seed=2)
    f = next(bag.glob('*.mcap'))
    data = f.read_bytes()
    f.write_bytes(data[:len(data) // 2])
    return bag


def flip_bytes(root: Path) -> Path:
    from train.episode_bags import write_episode
    bag = write_episode(root, 2, seed=2)
    f = next(bag.glob('*.mcap'))
    data = bytearray(f.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    f.write_bytes(bytes(data))
    return bag


def no_metadata(root: Path) -> Path:
    from train.episode_bags import write_episode
    bag = write_episode(root, 2, seed=2)
    (bag / 'metadata.yaml').unlink()
    return bag


def bag_info_case(case: str, root: Path, hostile: Path, tmp: Path) -> dict:
    cmd = [*HAPO, 'bag-info', str(root)]
    code, out, err = run(cmd)
    good_listed = sum(1 for ln in out.splitlines() if '_ep0001_' in ln) == 1
    named_err = hostile.name in err
    truncated_line = [ln for ln in out.splitlines() if hostile.name in ln and 'truncated' in ln]
    if code == 0 and good_listed and named_err and hostile.name not in out:
        outcome = 'skipped_counted'
    elif code == 0 and good_listed and truncated_line and case.startswith('bag_no_metadata'):
        outcome = 'flagged'
        err = truncated_line[0]
    elif code == 0 and good_listed and hostile.name in out:
        outcome = f'FOUND: listed as readable: {line_naming(out, hostile.name)[-160:]}'
    else:
        outcome = f'FOUND: exit {code}, good bag listed {good_listed}, hostile bag named on stderr {named_err}'
    return row(case, cmd, tmp, code, out, err, hostile, outcome)


def dataset_case(case: str, root: Path, hostile: Path, tmp: Path, ckpt: Path) -> dict:
    cache = tmp / f'cache_{case.replace("/", "_")}'
    cmd = [*HAPO, 'dataset', '--bags', str(root), '--policy', str(ckpt), '--method', 'bc', '--cache-dir', str(cache)]
    code, out, err = run(cmd)
    extra: dict = {}
    if code == 0:
        summary = json.loads(Path(json.loads(out.splitlines()[-1])['summary']).read_text())
        skipped = [s for s in summary['skipped_bags'] if Path(s['path']).name == hostile.name]
        extra = {'episodes_used': summary['episodes_used'], 'skipped_bags': len(summary['skipped_bags']),
                 'drops': summary['drops']}
        if skipped and summary['episodes_used'] == 1 and hostile.name in err:
            outcome = 'skipped_counted'
        else:
            outcome = (f'FOUND: exit 0 with the hostile bag not in skipped_bags (episodes_used '
                       f'{summary["episodes_used"]}, drops {summary["drops"]})')
    else:
        outcome = 'refused' if refused(code, err, hostile) else f'FOUND: exit {code}, the good bag not used'
    return row(case, cmd, tmp, code, out, err, hostile, outcome, **extra)


def bag_cases(tmp: Path, ckpt: Path, only) -> list[dict]:
    rows = []
    for name, make in (('bag_cut_mcap', cut_mcap), ('bag_flipped_bytes', flip_bytes),
                       ('bag_no_metadata', no_metadata),
                       ('bag_wrong_type', lambda r: wrong_type_bag(r, 2))):
        want = [v for v in ('bag-info', 'dataset') if only(f'{name}/{v}')]
        if not want:
            continue
        root, hostile = bag_dir(tmp, name, make)
        if 'bag-info' in want:
            rows.append(bag_info_case(f'{name}/bag-info', root, hostile, tmp))
        if 'dataset' in want:
            rows.append(dataset_case(f'{name}/dataset', root, hostile, tmp, ckpt))
    return rows


# dataset cache ----------------------------------------------------------------------------------------------
def cache_cases(tmp: Path, ckpt: Path, only) -> list[dict]:
    names = ('cache_other_version', 'cache_meta_not_object', 'cache_arrays_cut')
    if not any(only(n) for n in names):
        return []
    from train.episode_bags import write_episode

    from hapo_policy.model import VlaPolicy
    from hapo_trainer.config import load_config
    from hapo_trainer.dataset import BuildSpec, build_dataset
    bags = tmp / 'cache_bags'
    write_episode(bags, 1, seed=1)
    spec = BuildSpec.for_policy(load_config(None).data, VlaPolicy.from_pretrained(ckpt))  # what `hapo dataset` uses
    rows = []
    for name in names:
        if not only(name):
            continue
        cache = tmp / f'cache_{name}'
        cmd = [*HAPO, 'dataset', '--bags', str(bags), '--policy', str(ckpt), '--method', 'bc', '--cache-dir',
               str(cache)]
        build_dataset([bags], spec, method='bc', cache_dir=cache, log=lambda _: None, progress=False)
        entry = next(p for p in cache.iterdir() if p.is_dir() and not p.name.startswith('.'))
        if name == 'cache_other_version':
            meta = json.loads((entry / 'meta.json').read_text())
            meta['cache_version'] = 99
            (entry / 'meta.json').write_text(json.dumps(meta))
            hostile = entry / 'meta.json'
        elif name == 'cache_meta_not_object':
            (entry / 'meta.json').write_text('[2]\n')
            hostile = entry / 'meta.json'
        else:
            f = entry / 'arrays.safetensors'
            f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])
            hostile = f
        code, out, err = run(cmd)
        named = refused(code, err, entry)  # the cache entry is named (its directory)
        outcome = 'refused' if named else (f'FOUND: exit {code} without one line naming {entry.name}' if code
                                           else 'FOUND: the tampered cache was used')
        rows.append(row(name, cmd, tmp, code, out, err, entry, outcome))
        del hostile
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help=f'only {sorted(QUICK)} (the test suite)')
    args = ap.parse_args()
    isolate()  # the policy node joins a ROS graph: keep it off others
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    t0 = time.monotonic()

    def only(case: str) -> bool:
        return not args.quick or case in QUICK

    with tempfile.TemporaryDirectory(prefix='hapo_faults_files_') as d:
        tmp = Path(d)
        ckpt = base_checkpoint(tmp)
        cases = checkpoint_cases(tmp, ckpt, only) + foreign_cases(tmp, only) + bag_cases(tmp, ckpt, only) + \
            cache_cases(tmp, ckpt, only)
        markers = sorted(p.name for p in tmp.iterdir() if p.name.startswith(('UNPICKLED', 'IMPORTED')))
    survived = sum(c['survived'] for c in cases)
    report({'bench': 'faults_files', 'quick': args.quick, 'cases': cases, 'tried': len(cases), 'survived': survived,
            'markers_created': markers, 'wall_s': round(time.monotonic() - t0, 1)})
    return 0 if survived == len(cases) and not markers else 1


if __name__ == '__main__':
    sys.exit(main())

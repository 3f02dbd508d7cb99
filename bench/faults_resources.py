# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Fault matrix, group ``resources`` (issue 14): a full disk, two runs on one directory, Ctrl-C at every stage.

    .venv/bin/python bench/faults_resources.py [--quick]

Every case runs the real command lines as subprocesses (``python -m hapo_bringup.cli ...`` = ``hapo ...``) on a
tiny policy and small recorded bags (tests/train/episode_bags.py); a full disk is a real ENOSPC on a tmpfs this
bench mounts (root only; else the case is reported ``skipped``) and fills to a few KB:

* ``disk_full/dataset``: ``hapo dataset`` with its cache on the full disk: one line naming the cache, then, with
  space again, the rerun builds a cache equal to one built on a roomy disk (no half entry reused);
* ``disk_full/checkpoint``: ``hapo optimize --resume`` whose next checkpoint does not fit: one line, the previous
  checkpoint stays loadable and is what ``--resume`` continues from once there is space;
* ``two_runs/same_out``: a second ``hapo optimize`` on the directory a running one writes is refused in one line
  (fresh and ``--resume``); after the first is killed with SIGKILL the directory is free at once;
* ``ctrl_c/round/<stage>`` (not in ``--quick``: ~5 min): ``hapo round`` on the shipped base at tiny sizes, SIGINT
  in its deploy, optimize and evaluate stages in turn, rerun each time: exit 130 with one line, the rerun reuses
  the finished stages and the round completes with every deployment episode once. (The recorder's own full disk
  is tests/graph/test_recorder_node.py; ``hapo demo`` is this round plus its evaluation.)

Per case: the commands, exit codes, the one line the user sees, whether stderr held a traceback, ``outcome``
``survived`` or ``FOUND: ...``. Exits 1 when a case did not survive. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import ROOT, isolate, report

sys.path.insert(0, str(ROOT / 'tests'))

HAPO = [sys.executable, '-m', 'hapo_bringup.cli']
ENOSPC = 'No space left on device'
TRACEBACK = 'Traceback (most recent call last)'
ROUND_STAGES = (('deploy', re.compile(r'round: deploy: +50%')), ('optimize', re.compile(r'optimize\[\w+\]: +\d')),
                ('evaluate', re.compile(r'round: evaluate .*: +50%')))  # what each stage shows once under way


def run(cmd: list[str], timeout: float = 300.0) -> tuple[int, str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return p.returncode, p.stderr


def last_line(err: str) -> str:
    lines = [ln.split('\r')[-1].strip() for ln in err.splitlines() if ln.split('\r')[-1].strip()]
    return lines[-1] if lines else ''


def case_row(case: str, commands: list[str], codes: list, line: str, errs: list[str], found: list[str]) -> dict:
    if any(TRACEBACK in e for e in errs):
        found.append('a Python traceback in stderr')
    return {'case': case, 'commands': commands, 'exit_codes': codes, 'one_line': line,
            'traceback': any(TRACEBACK in e for e in errs),
            'outcome': 'FOUND: ' + '; '.join(found) if found else 'survived'}


@contextlib.contextmanager
def small_disk(where: Path, size: str = '64m'):
    """A tmpfs mounted at ``where`` (None when this user cannot mount one)."""
    where.mkdir(parents=True)
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(where)],
                      capture_output=True).returncode:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(['umount', '-l', str(where)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Fill ``disk`` with one file until ENOSPC, then give ``leave_bytes`` back; the filler's path."""
    filler = disk / 'filler'
    block = b'\0' * 65536
    with filler.open('wb', buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(block)
    st = os.statvfs(disk)
    give = max(0, leave_bytes - st.f_bavail * st.f_frsize)
    os.truncate(filler, max(0, filler.stat().st_size - give))
    return filler


def optimize(bags: Path, ckpt: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [*HAPO, 'optimize', '--bags', str(bags), '--policy', str(ckpt), '--out', str(out), '--cache-dir',
            str(cache), '--method', 'bc', '--lr', '1e-3', '--no-progress', *extra]


def short(cmd: list[str], tmp: Path) -> str:
    return ' '.join(cmd).replace(' '.join(HAPO), 'hapo').replace(str(tmp) + '/', '')


# cases ------------------------------------------------------------------------------------------------------
def disk_full_dataset(tmp: Path, bags: Path, ckpt: Path) -> dict:
    from safetensors.numpy import load_file
    cmd_ref = [*HAPO, 'dataset', '--bags', str(bags), '--policy', str(ckpt), '--method', 'bc', '--cache-dir']
    code, err = run([*cmd_ref, str(tmp / 'roomy_cache')])
    if code:
        return case_row('disk_full/dataset', [short(cmd_ref, tmp)], [code], last_line(err), [err],
                        ['the reference build failed'])
    with small_disk(tmp / 'disk_ds', '4m') as disk:
        if disk is None:
            return {'case': 'disk_full/dataset', 'outcome': 'skipped: cannot mount a tmpfs (needs root)'}
        filler = fill(disk, 8192)
        cmd = [*cmd_ref, str(disk / 'cache')]
        code1, err1 = run(cmd)
        filler.unlink()
        code2, err2 = run(cmd)
        found = []
        line = last_line(err1)
        if code1 == 0:
            found.append('the build on a full disk exited 0')
        elif not (ENOSPC in line and 'cache' in line):
            found.append(f'exit {code1} without one line naming the cache and ENOSPC')
        if code2:
            found.append(f'the rerun with space exited {code2}: {last_line(err2)}')
        else:
            def arrays(root: Path) -> dict:
                entry = next(p for p in root.iterdir() if p.is_dir() and not p.name.startswith('.'))
                return load_file(str(entry / 'arrays.safetensors'))
            a, b = arrays(tmp / 'roomy_cache'), arrays(disk / 'cache')
            if a.keys() != b.keys() or any(not np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == 'f')
                                           for k in a):  # proposals: NaN where none was recorded
                found.append('the rerun cache differs from one built on a roomy disk')
        return case_row('disk_full/dataset', [short(cmd, tmp), '(space freed) ' + short(cmd, tmp)], [code1, code2],
                        line.replace(str(tmp) + '/', ''), [err1, err2], found)


def disk_full_checkpoint(tmp: Path, bags: Path, ckpt: Path) -> dict:
    from hapo_policy.model import VlaPolicy
    from hapo_trainer.train_state import latest_checkpoint
    with small_disk(tmp / 'disk_ck', '64m') as disk:
        if disk is None:
            return {'case': 'disk_full/checkpoint', 'outcome': 'skipped: cannot mount a tmpfs (needs root)'}
        out = disk / 'run'
        first = optimize(bags, ckpt, out, tmp / 'cache', '--steps', '2')
        resume = optimize(bags, ckpt, out, tmp / 'cache', '--steps', '4', '--checkpoint-every', '1', '--resume')
        code0, err0 = run(first)
        if code0:
            return case_row('disk_full/checkpoint', [short(first, tmp)], [code0], last_line(err0), [err0],
                            ['the first run failed'])
        filler = fill(disk, 8192)
        code1, err1 = run(resume)
        found, line = [], last_line(err1)
        last = latest_checkpoint(out)
        if code1 == 0:
            found.append('the save on a full disk exited 0')
        elif not (ENOSPC in line and 'latest loadable checkpoint' in line):
            found.append(f'exit {code1} without one line naming ENOSPC and the checkpoint kept')
        if last is None or json.loads((last / 'train_state.json').read_text())['step'] != 2:
            found.append(f'the step-2 checkpoint is not the latest any more ({last})')
        else:
            try:
                VlaPolicy.from_pretrained(last)
            except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
                found.append(f'the kept checkpoint does not load: {exc}')
        if [p.name for p in out.rglob('*.partial')]:
            found.append('a partial checkpoint directory was left')
        filler.unlink()
        code2, err2 = run(resume)
        if code2 or json.loads((out / 'policy' / 'train_state.json').read_text())['step'] != 4:
            found.append(f'--resume with space did not finish at step 4 (exit {code2}: {last_line(err2)})')
        return case_row('disk_full/checkpoint', [short(first, tmp), '(disk full) ' + short(resume, tmp),
                                                 '(space freed) ' + short(resume, tmp)],
                        [code0, code1, code2], line.replace(str(tmp) + '/', ''), [err0, err1, err2], found)


def two_runs(tmp: Path, bags: Path, ckpt: Path) -> dict:
    out = tmp / 'shared_run'
    long = optimize(bags, ckpt, out, tmp / 'cache', '--steps', '100000', '--log-every', '1')
    second = optimize(bags, ckpt, out, tmp / 'cache', '--steps', '3')
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    first = subprocess.Popen(long, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    found, codes, errs = [], [], []
    try:
        deadline = time.monotonic() + 90
        while not (out / 'metrics.jsonl').exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if not (out / 'metrics.jsonl').exists():
            found.append('the first run did not start training')
        for cmd in (second, [*second, '--resume']):
            code, err = run(cmd)
            codes.append(code)
            errs.append(err)
            if code == 0 or f'in use by another run (pid {first.pid})' not in last_line(err):
                found.append(f'{short(cmd, tmp)}: exit {code}, {last_line(err)!r}')
        alive = first.poll() is None
    finally:
        first.kill()
        first.communicate()
    if not alive:
        found.append('the first run ended while the second was refused')
    fresh = [*second, '--resume'] if (out / 'checkpoints').exists() else second
    code, err = run(fresh)
    codes.append(code)
    errs.append(err)
    if code:
        found.append(f'after the first was killed -9 the directory stayed locked: {last_line(err)!r}')
    return case_row('two_runs/same_out', [short(long, tmp) + ' &', short(second, tmp), short(second, tmp) +
                                          ' --resume', '(first killed -9) ' + short(fresh, tmp)],
                    ['running', *codes], last_line(errs[0]).replace(str(tmp) + '/', ''), errs, found)


def drain(fd: int, chunks: list[bytes]) -> None:
    """Read ``fd`` until EOF into ``chunks`` (progress bars end in \\r, not in a newline)."""
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)


def ctrl_c_round(tmp: Path) -> list[dict]:
    out = tmp / 'round'
    cmd = [*HAPO, 'round', '--policy', str(ROOT / 'config/policies/lift_base'), '--scenario', 'lift_far',
           '--episodes', '2', '--method', 'bc', '--eval-seeds', '100000:100002', '--eval-scenarios', 'lift_far',
           '--steps', '20', '--workers', '1', '--out', str(out), 'horizon:=60']
    rows = []
    for stage, marker in ROUND_STAGES:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
                                start_new_session=True)
        chunks: list[bytes] = []
        reader = threading.Thread(target=drain, args=(proc.stderr.fileno(), chunks), daemon=True)
        reader.start()
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline and not marker.search(b''.join(chunks).decode(
                errors='replace')):
            time.sleep(0.2)
        reached = proc.poll() is None and time.monotonic() < deadline
        time.sleep(2.0)
        with contextlib.suppress(ProcessLookupError):  # (ended by itself: reported below)
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=10)
        err = b''.join(chunks).decode(errors='replace')
        found = [] if reached else [f'stage {stage} never showed ({marker.pattern})']
        line = last_line(err)
        if proc.returncode != 130 or 'interrupted; rerun the same command' not in line:
            found.append(f'exit {proc.returncode}, last line {line!r}')
        rows.append(case_row(f'ctrl_c/round/{stage}', [short(cmd, tmp) + f' (Ctrl-C in {stage})'],
                             [proc.returncode], line.replace(str(tmp) + '/', ''), [err], found))
    code, err = run(cmd, timeout=900)
    found = []
    deploy = json.loads((out / 'deploy.json').read_text()) if (out / 'deploy.json').exists() else {}
    bags = sorted(p.name for p in (out / 'bags').iterdir() if p.is_dir()) if (out / 'bags').exists() else []
    if code or not (out / 'round.json').exists():
        found.append(f'the final rerun exited {code}: {last_line(err)}')
    seeds = sorted(e.get('seed') for e in deploy.get('episodes', []))
    if len(bags) != 2 or len(seeds) != 2 or len(set(seeds)) != 2:
        found.append(f'deployment: {len(bags)} bags, episodes of seeds {seeds} (want 2, once each)')
    reused = [s for s in ('deploy', 'optimize') if f'hapo round: {s}: reusing' in err]
    rows.append(case_row('ctrl_c/round/rerun', [short(cmd, tmp)], [code], f'reused {reused}', [err], found))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='without the Ctrl-C cases of hapo round (the test suite)')
    args = ap.parse_args()
    isolate()
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    t0 = time.monotonic()
    from train.episode_bags import tiny_policy, write_bags
    with tempfile.TemporaryDirectory(prefix='hapo_faults_resources_') as d:
        tmp = Path(d)
        os.environ['HAPO_CACHE'] = str(tmp / 'hapo_cache')  # the round's dataset cache too
        bags = tmp / 'bags'
        write_bags(bags, n=2)
        ckpt = tiny_policy(tmp / 'base')
        cases = [disk_full_dataset(tmp, bags, ckpt), disk_full_checkpoint(tmp, bags, ckpt), two_runs(tmp, bags, ckpt)]
        if not args.quick:
            cases += ctrl_c_round(tmp)
    tried = [c for c in cases if not c['outcome'].startswith('skipped')]
    survived = sum(c['outcome'] == 'survived' for c in tried)
    report({'bench': 'faults_resources', 'quick': args.quick, 'cases': cases, 'tried': len(tried),
            'survived': survived, 'wall_s': round(time.monotonic() - t0, 1)})
    return 0 if survived == len(tried) else 1


if __name__ == '__main__':
    sys.exit(main())

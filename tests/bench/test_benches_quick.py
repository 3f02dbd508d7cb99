# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Every bench runs in its quick form and passes its own correctness check (exit 0, one JSON object).

Goals are not asserted here: CI machines are noisy, and the figures belong in the issue notes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / 'bench'
QUICK = {
    'bench_mux.py': ['--quick'],
    'bench_loop.py': ['--quick', '--warmup-s', '1', '--view'],
    'bench_recorder.py': ['--quick'],
    'bench_dataset.py': ['--episodes', '2', '--repeats', '1'],
    'bench_train_step.py': ['--repeats', '3', '--warmup', '1'],
    'bench_sim.py': ['--steps', '10', '--size', '64'],
    'bench_evaluate.py': ['--quick'],
    'bench_collect.py': ['--quick'],
    'bench_camera.py': ['--quick'],
    'bench_servo.py': ['--quick'],
    'faults.py': ['--quick'],  # the fault matrix (issue 14): fails when the graph does not recover from a kill
    'faults_files.py': ['--quick'],  # its hostile-files group: fails on a traceback, an unpickle, a silent accept
    'faults_resources.py': ['--quick'],  # full disk, two runs on one directory: fails on a traceback or a lost run
    'faults_malformed.py': ['--quick'],  # its malformed-messages group: fails on a crash, a bad command, log floods
    'faults_stale.py': ['--quick'],  # its stale-inputs group: fails on no hold in time, a stale command, a lock-out
}


def test_every_bench_is_listed():
    faults = {'faults.py', 'faults_files.py', 'faults_malformed.py', 'faults_resources.py', 'faults_stale.py'}
    assert {p.name for p in BENCH.glob('bench_*.py')} | faults == set(QUICK)


@pytest.mark.parametrize('script', sorted(QUICK))
def test_bench_quick(script, ros_domain):
    proc = subprocess.run([sys.executable, str(BENCH / script), *QUICK[script]], capture_output=True, text=True,
                          timeout=300, cwd=BENCH.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout[proc.stdout.index('{'):])
    assert isinstance(result, dict) and result

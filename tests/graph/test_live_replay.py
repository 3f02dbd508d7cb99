# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""`hapo evaluate --live`: bags replayed over DDS at their recorded pace into a real policy_node process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'train'))
from episode_bags import tiny_policy, write_bags  # noqa: E402

pytestmark = pytest.mark.graph


def test_live_replay_matches_offline_policy(start_node, ros_domain, tmp_path):
    ckpt = tiny_policy(tmp_path / 'ckpt')
    write_bags(tmp_path / 'episodes', n=2)
    node = start_node('hapo_policy.policy_node', params={'checkpoint': str(ckpt)})
    out = tmp_path / 'live.json'
    proc = subprocess.run([sys.executable, '-m', 'hapo_trainer.evaluate', '--live', '--policy', str(ckpt),
                           '--bags', str(tmp_path / 'episodes'), '--out', str(out), '--K', '3', '--timeout', '60',
                           '--rate', '0.25'],  # a quarter pace: a loaded 2-core CI box still answers most
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:] + node.log()[-2000:]
    result = json.loads(out.read_text())
    assert result['mode'] == 'live_bag_replay' and result['steps'] == 2 * 24  # 25 steps, one of them a hold
    classes = result['classes']
    assert (classes['correction']['n'], classes['undesirable']['n']) == (10, 6)
    # Best-effort frames: a starved box drops some (0.85 with three busy loops on 2 cores); a broken path answers none.
    assert result['answered_fraction'] >= 0.5, result
    for c in classes.values():  # the live path computes exactly what the checkpoint computes offline
        assert c['agrees_with_offline'] == 1.0, result
    assert (tmp_path / 'live.png').stat().st_size > 1000


def test_live_replay_without_a_policy_node_fails_in_one_line(ros_domain, tmp_path):
    ckpt = tiny_policy(tmp_path / 'ckpt')
    write_bags(tmp_path / 'episodes', n=1)
    proc = subprocess.run([sys.executable, '-m', 'hapo_trainer.evaluate', '--live', '--policy', str(ckpt),
                           '--bags', str(tmp_path / 'episodes'), '--timeout', '2'],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith('hapo evaluate: ')]
    assert len(lines) == 1 and lines[0].startswith('hapo evaluate: no policy node answering'), proc.stderr[-3000:]

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""evaluate (offline bag replay) on recorder-written bags: per-class metrics, JSON, and a trained policy that
moves toward the corrections."""

from __future__ import annotations

import json
from pathlib import Path

from train.episode_bags import tiny_policy, write_bags

from hapo_trainer.evaluate import main as evaluate
from hapo_trainer.optimize import main as optimize


def test_offline_replay_reports_per_class_and_sees_training(tmp_path, capsys):
    write_bags(tmp_path / 'bags', n=3)
    base = tiny_policy(tmp_path / 'base')
    cache = str(tmp_path / 'cache')
    assert evaluate(['--policy', str(base), '--bags', str(tmp_path / 'bags'), '--out', str(tmp_path / 'b.json'),
                     '--cache-dir', cache]) == 0
    before = json.loads((tmp_path / 'b.json').read_text())
    assert before['classes']['correction']['n'] == 15 and before['classes']['undesirable']['n'] == 30
    assert before['plot'] and Path(before['plot']).stat().st_size > 1000  # matplotlib is a pinned dependency
    assert optimize(['--bags', str(tmp_path / 'bags'), '--policy', str(base), '--out', str(tmp_path / 'run'),
                     '--cache-dir', cache, '--steps', '40', '--lr', '3e-3', '--no-progress']) == 0
    assert evaluate(['--policy', str(tmp_path / 'run' / 'policy'), '--bags', str(tmp_path / 'bags'),
                     '--out', str(tmp_path / 'a.json'), '--cache-dir', cache]) == 0
    after = json.loads((tmp_path / 'a.json').read_text())
    gap = {r: d['classes']['correction']['logp_executed'] - d['classes']['undesirable']['logp_executed']
           for r, d in (('before', before), ('after', after))}
    assert gap['after'] > gap['before'] + 1.0
    capsys.readouterr()
    assert evaluate(['--policy', str(tmp_path / 'missing'), '--bags', str(tmp_path / 'bags')]) == 2
    assert 'hapo evaluate:' in capsys.readouterr().err

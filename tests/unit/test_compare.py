# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""hapo compare: Wilson interval, exact McNemar, paired counts on common seeds, refusals."""

from __future__ import annotations

import json

import pytest

from hapo_trainer.compare import compare, main, mcnemar_exact, summarize, wilson95


def _result(path, successes: dict[int, bool], policy='p'):
    episodes = [{'seed': s, 'success': ok, 'steps': 40, 'takeovers': 0, 'human_steps': 0}
                for s, ok in successes.items()]
    path.write_text(json.dumps({'policy': policy, 'episodes': episodes, **summarize(episodes)}))
    return path


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = wilson95(9, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.596, 0.982)
    assert wilson95(0, 0) == (0.0, 1.0)
    lo, hi = wilson95(50, 50)
    assert hi == 1.0 and round(lo, 3) == 0.929


def test_mcnemar_is_the_two_sided_binomial_tail():
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 7) == mcnemar_exact(7, 3)


def test_compare_pairs_only_common_seeds(tmp_path, capsys):
    a = _result(tmp_path / 'a.json', {0: True, 1: True, 2: False, 3: True, 4: False, 9: True}, 'A')
    b = _result(tmp_path / 'b.json', {0: True, 1: False, 2: True, 3: False, 4: False, 7: False}, 'B')
    assert main([str(a), str(b), '--json']) == 0
    c = json.loads(capsys.readouterr().out)
    assert (c['common_seeds'], c['both'], c['neither'], c['only_a'], c['only_b']) == (5, 1, 1, 2, 1)
    assert c['only_a_seeds'] == [1, 3] and c['only_b_seeds'] == [2]
    assert c['mcnemar_p'] == pytest.approx(mcnemar_exact(2, 1)) and c['a_success_rate'] == 0.6
    assert main([str(a), str(b)]) == 0
    assert 'McNemar exact p' in capsys.readouterr().out


@pytest.mark.parametrize('body, field', [
    ('not json', 'unreadable'),
    ('{"episodes": 3}', 'no "episodes" list'),
    ('{"episodes": [{"seed": 1, "success": true}]}', 'episodes[0] lacks steps, takeovers, human_steps'),
    ('{"episodes": [{"seed": 1, "success": true, "steps": 1, "takeovers": 0, "human_steps": 0},'
     ' {"seed": 1, "success": true, "steps": 1, "takeovers": 0, "human_steps": 0}]}', 'episodes[1].seed 1'),
])
def test_bad_result_file_is_one_line_naming_the_field(tmp_path, capsys, body, field):
    bad = tmp_path / 'bad.json'
    bad.write_text(body)
    good = _result(tmp_path / 'good.json', {1: True})
    assert main([str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and field in err


def test_no_common_seed_is_refused(tmp_path, capsys):
    a = _result(tmp_path / 'a.json', {0: True})
    b = _result(tmp_path / 'b.json', {1: True})
    assert main([str(a), str(b)]) == 2
    assert 'share no seed' in capsys.readouterr().err
    assert compare(json.loads(a.read_text()), json.loads(a.read_text()))['both'] == 1

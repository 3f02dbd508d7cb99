# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The experiment's protocol as units: the shipped config plans the counts the issue asks for, keys depend on
inputs only (a changed line re-runs what it changes and nothing else), round seeds never meet evaluation seeds,
and a broken protocol is a one-line error naming the file and the field. The winner rule and the cells."""

from __future__ import annotations

import copy

import pytest
import yaml

from hapo_bringup import experiment_plan
from hapo_bringup.experiment_plan import PlanError, load, plan
from hapo_bringup.experiment_stats import cell, winner
from hapo_bringup.graph import config_dir

CONFIG = config_dir() / 'experiment.yaml'


def shipped(name):
    return f'id-of-{name}'


def keys(p, stage):
    return {u.key for u in p.units if u.stage == stage}


def test_the_shipped_protocol_plans_every_arm_seed_and_scenario():
    cfg = load(CONFIG)
    p = plan(cfg, shipped)
    arms, seeds = cfg['arms'], cfg['training_seeds']
    disruptions = sum(len(t['disruptions']) for t in cfg['tasks'].values())
    assert len(seeds) >= 3 and len(disruptions * [0]) >= 3
    per_arm = {a: len(seeds) if 'seeds' not in s else s['seeds'] for a, s in arms.items()}
    assert per_arm['hapo-mb64'] == 1 and sum(1 for s in arms.values() if s.get('own')) >= 2
    assert len(p.arms) == disruptions * sum(per_arm.values())
    for (task, scenario, _arm, _seed), u in p.arms.items():
        assert (u.key, scenario) in p.evals and (u.key, cfg['tasks'][task]['original']) in p.evals
        assert u.deps[0] == p.bases[task] and u.deps[1] == p.rounds[(task, scenario)]
    a, b = map(int, cfg['evaluation']['seeds'].split(':'))
    assert b - a >= 60 and all(u.params['seeds'] == [a, b] for u in p.units if u.stage == 'eval')
    for u in p.units:
        if u.stage == 'round':
            lo, hi = u.params['seeds']
            assert hi <= a or lo >= b
    life = cfg['lifelong']
    assert life['rounds'] >= 3 and len(life['seeds']) >= 2 and {'kto', 'hapo'} <= set(life['arms'])
    order = {u.key: i for i, u in enumerate(p.units)}
    for chain in p.chains.values():
        assert len(chain) == life['rounds']
        for prev, this in zip(chain, chain[1:], strict=False):
            assert this['round'].deps[0] == prev['policy'] and this['policy'].deps[0] == prev['policy']
            assert this['round'].params['seeds'][0] >= prev['round'].params['seeds'][1]  # new placements
        assert all(order[d.key] < order[u.key] for links in chain for u in links.values() for d in u.deps)


def test_keys_are_stable_and_change_only_with_the_inputs_they_hash():
    cfg = load(CONFIG)
    before = plan(cfg, shipped)
    assert [u.key for u in plan(copy.deepcopy(cfg), shipped).units] == [u.key for u in before.units]
    lr = copy.deepcopy(cfg)
    lr['train']['lr'] = 1e-4
    after = plan(lr, shipped)
    for stage in ('demos', 'base'):
        assert keys(after, stage) == keys(before, stage)
    first = {u.key for u in before.rounds.values()}  # deploy the base: untouched; later lifelong rounds: new
    assert keys(after, 'round') & keys(before, 'round') == first
    assert not keys(after, 'train') & keys(before, 'train')
    assert keys(after, 'eval') & keys(before, 'eval') == {before.evals[(b.key, s)].key for b in before.bases.values()
                                                          for s in ('lift', 'lift_far', 'lift_color', 'pick_place_can',
                                                                    'pick_place_can_distractor')
                                                          if (b.key, s) in before.evals}
    assert keys(plan(cfg, lambda name: 'retrained'), 'base') != keys(before, 'base')  # new shipped weights


def test_a_stage_version_bump_reruns_that_stage_and_what_depends_on_it(monkeypatch):
    cfg = load(CONFIG)
    before = plan(cfg, shipped)
    monkeypatch.setitem(experiment_plan.STAGE_VERSIONS, 'train', 99)
    after = plan(cfg, shipped)
    assert keys(after, 'round') & keys(before, 'round') and not keys(after, 'train') & keys(before, 'train')


def test_quick_is_the_same_protocol_at_small_sizes():
    p = plan(load(CONFIG, quick=True), shipped)
    assert 5 < len(p.units) < 20 and {u.stage for u in p.units} == {'demos', 'base', 'round', 'train', 'eval'}


@pytest.mark.parametrize(('edit', 'message'), [
    (lambda c: c.pop('arms'), 'missing arms:'),
    (lambda c: c['arms']['kto'].update(lr=1), "arms.kto: needs method:"),
    (lambda c: c['arms']['kto'].update(method='nope'), "arms.kto: loss.method='nope' invalid"),
    (lambda c: c['arms']['bc'].update(ratios={'policy': 2}), 'arms.bc: loss.ratios='),
    (lambda c: c['evaluation'].update(seeds='20000:20060'), 'are not evaluation seeds'),
    (lambda c: c['evaluation'].update(seeds='oops'), 'evaluation.seeds'),
    (lambda c: c['tasks']['lift'].pop('original'), 'tasks.lift: needs'),
    (lambda c: c['lifelong'].update(arms=['nope']), 'lifelong:'),
])
def test_a_broken_protocol_is_one_line_naming_the_file_and_field(tmp_path, edit, message):
    cfg = yaml.safe_load(CONFIG.read_text())
    edit(cfg)
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(PlanError, match=message) as err:
        load(path)
    assert str(path) in str(err.value) and '\n' not in str(err.value)


def test_quick_without_a_quick_block_and_unreadable_yaml(tmp_path):
    path = tmp_path / 'e.yaml'
    path.write_text('tasks: [unclosed')
    with pytest.raises(PlanError, match=str(path)):
        load(path)
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg.pop('quick')
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(PlanError, match='quick: block'):
        load(path, quick=True)


def outcome(successes):
    eps = [{'seed': 100000 + i, 'success': bool(s), 'steps': 10, 'takeovers': 0, 'human_steps': 0}
           for i, s in enumerate(successes)]
    return {'episodes': eps, 'success_rate': sum(successes) / len(successes), 'wilson95': [0.0, 1.0]}


def test_a_cell_pairs_each_seed_with_the_base_and_averages_over_training_seeds():
    base = outcome([0] * 10)
    c = cell(base, [outcome([1] * 8 + [0] * 2), outcome([1] * 6 + [0] * 4), None], [None, None, None])
    assert c['n'] == 2 and c['of'] == 3 and c['mean'] == pytest.approx(0.7)
    assert c['spread'] == pytest.approx(0.1414, abs=1e-3)
    assert [(s['wins'], s['losses']) for s in c['per_seed']] == [(8, 0), (6, 0)]
    assert c['per_seed'][0]['mcnemar_p'] == pytest.approx(2 / 2 ** 8)


def table(adapt, retain, base_retain):
    return {'arms': {a: {'adaptation': cell(outcome([0] * 10), [outcome(s)], [None]),
                         'retention': cell(outcome(base_retain), [outcome(retain[a])], [None])}
                     for a, s in adapt.items()}}


def test_the_winner_rule_excludes_worse_retention_and_breaks_ties_by_simplicity():
    cfg = {'arms': {'kto': {}, 'hapo': {}, 'bc': {}},
           'winner': {'alpha': 0.05, 'simplicity': ['bc', 'kto', 'hapo']}}
    good = [1] * 10
    adapt = {'kto': [1] * 7 + [0] * 3, 'hapo': [1] * 9 + [0], 'bc': [1] * 7 + [0] * 3}
    w = winner({'t': table(adapt, {'kto': good, 'hapo': [0] * 10, 'bc': good}, good)}, cfg)
    assert w['arm'] == 'bc' and w['tied'] == ['bc', 'kto'] and 'hapo' in w['excluded']  # hapo forgot lift
    w = winner({'t': table(adapt, {'kto': good, 'hapo': good, 'bc': good}, good)}, cfg)
    assert w['arm'] == 'hapo' and not w['excluded']

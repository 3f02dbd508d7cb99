# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""TrainConfig: validation in one line, YAML round trip, generated config files in sync."""

from __future__ import annotations

import dataclasses

import pytest

from hapo_interfaces.enums import Label
from hapo_trainer.algos import get_algo
from hapo_trainer.config import GROUPS, ConfigError, TrainConfig, dump_yaml, generated_files, load_config
from hapo_trainer.optimize import _parser, resolve_config

P, C, U = Label.POLICY, Label.CORRECTION, Label.UNDESIRABLE


def test_defaults_follow_design():
    cfg = TrainConfig()
    assert cfg.optim.micro_batch == 8 and cfg.data.K == 10 and cfg.loss.method == 'hapo'
    assert (cfg.loss.beta, cfg.loss.beta_d, cfg.loss.beta_u, cfg.loss.gamma, cfg.loss.eps) == (0.1, 1, 1, 1, 1e-4)
    assert cfg.loss.kl_clamp == [-5.0, 5.0]
    assert cfg.loss.ratios == {} and cfg.loss.class_ratios() == {P: 0.5, C: 0.25, U: 0.25}


def test_every_field_has_help():
    for kind in GROUPS.values():
        for f in dataclasses.fields(kind):
            assert f.metadata.get('help'), f'{kind.__name__}.{f.name} has no help'


def test_yaml_round_trip(tmp_path):
    cfg = TrainConfig().replace(**{'loss.method': 'kto', 'optim.lr': 3e-4, 'loss.kl_clamp': [0.0, float('inf')],
                                   'loss.ratios': {'policy': 0.6, 'correction': 0.2, 'undesirable': 0.2},
                                   'data.cache_dir': '/tmp/x y'})
    path = tmp_path / 'c.yaml'
    path.write_text(dump_yaml(cfg))
    assert 'ratios: {policy: 0.6, correction: 0.2, undesirable: 0.2}' in path.read_text()
    assert load_config(path) == cfg
    assert load_config(path).loss.class_ratios() == {P: 0.6, C: 0.2, U: 0.2}


def test_ratios_by_class_name_and_the_old_list_form(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('loss:\n  ratios: {undesirable: 0.25, policy: 0.75}\n')
    assert load_config(path).loss.class_ratios() == {P: 0.75, C: 0.0, U: 0.25}  # a class left out gets 0
    # The form written before issue 8, [c=1, c=2, c=0], still loads (and means the same).
    path.write_text('loss:\n  ratios: [0.6, 0.2, 0.2]\n')
    cfg = load_config(path)
    assert cfg.loss.ratios == {'policy': 0.6, 'correction': 0.2, 'undesirable': 0.2}
    assert cfg.loss.class_ratios() == {P: 0.6, C: 0.2, U: 0.2}
    path.write_text('loss:\n  ratios: []\n')
    assert load_config(path).loss.ratios == {}


@pytest.mark.parametrize('method', ['hapo', 'kto', 'sirius', 'dagger', 'bc'])
def test_method_picks_its_default_ratios(method, repo_root):
    cfg = TrainConfig().replace(**{'loss.method': method})
    assert cfg.loss.class_ratios() == get_algo(method).ratios
    # One config file for every method: `hapo optimize --config config/optimize.yaml --method dagger` trains
    # dagger with dagger's ratios (config/train/<method>.yaml are gone).
    args = _parser().parse_args(['--bags', 'b', '--policy', 'p', '--out', 'o', '--method', method,
                                 '--config', str(repo_root / 'config' / 'optimize.yaml')])
    cfg = resolve_config(args)
    assert cfg.loss.method == method and cfg.loss.class_ratios() == get_algo(method).ratios


@pytest.mark.parametrize(('overrides', 'match'), [
    ({'optim.micro_batch': 0}, r'optim.micro_batch=0 invalid: must be >= 1'),
    ({'loss.method': 'dpo'}, r"loss.method='dpo' invalid"),
    ({'loss.kl_clamp': [5.0, -5.0]}, r'loss.kl_clamp'),
    ({'loss.l1_space': 'bins'}, r"loss.l1_space='bins' invalid: must be 'raw' or 'normalized'"),
    ({'loss.ratios': [0.5, 0.5, 0.5]}, r'loss.ratios'),
    ({'loss.ratios': [0.5, 0.5]}, r'loss.ratios=\[0.5, 0.5\] invalid'),
    ({'loss.ratios': {'correct': 0.5, 'correction': 0.5}}, r"loss.ratios=\{'correct'.* invalid: must be \{\} or "
                                                           r'shares >= 0 of policy, correction, undesirable'),
    ({'loss.ratios': {'policy': 1.5, 'undesirable': -0.5}}, r'loss.ratios=.* invalid'),
    ({'loss.ratios': {'policy': 0.5}}, r'loss.ratios=.* summing to 1'),
    ({'data.K': -1}, r'data.K=-1'),
    ({'model.device': 'tpu'}, r'model.device'),
])
def test_bad_values_fail_in_one_line(overrides, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig().replace(**overrides)


def test_unknown_keys_are_refused(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('optim:\n  learning_rate: 0.1\n')
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key\(s\) \['learning_rate'\] in optim"):
        load_config(path)
    path.write_text('trainer: {}\n')
    with pytest.raises(ConfigError, match='unknown config group'):
        load_config(path)


def test_generated_config_files_have_not_drifted(repo_root):
    # Regression guard: config/optimize.yaml is generated from the dataclasses;
    # a field added or a default changed without `python -m hapo_trainer.config --write` fails here.
    for path, text in generated_files(repo_root).items():
        assert path.is_file(), f'{path} missing: run python -m hapo_trainer.config --write'
        assert path.read_text() == text, f'{path} drifted from TrainConfig: run python -m hapo_trainer.config --write'
        assert load_config(path) == TrainConfig.from_dict(load_config(path).to_dict())

# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""TrainConfig: validation in one line, YAML round trip, generated config files in sync."""

from __future__ import annotations

import dataclasses

import pytest

from hapo_trainer.config import GROUPS, ConfigError, TrainConfig, dump_yaml, generated_files, load_config


def test_defaults_follow_design():
    cfg = TrainConfig()
    assert cfg.optim.micro_batch == 8 and cfg.data.K == 10 and cfg.loss.method == 'hapo'
    assert (cfg.loss.beta, cfg.loss.beta_d, cfg.loss.beta_u, cfg.loss.gamma, cfg.loss.eps) == (0.1, 1, 1, 1, 1e-4)
    assert cfg.loss.kl_clamp == [-5.0, 5.0]
    assert cfg.loss.class_ratios() == {1: 0.5, 2: 0.25, 0: 0.25}


def test_every_field_has_help():
    for kind in GROUPS.values():
        for f in dataclasses.fields(kind):
            assert f.metadata.get('help'), f'{kind.__name__}.{f.name} has no help'


def test_yaml_round_trip(tmp_path):
    cfg = TrainConfig().replace(**{'loss.method': 'kto', 'optim.lr': 3e-4, 'loss.kl_clamp': [0.0, float('inf')],
                                   'loss.ratios': [0.6, 0.2, 0.2], 'data.cache_dir': '/tmp/x y'})
    path = tmp_path / 'c.yaml'
    path.write_text(dump_yaml(cfg))
    assert load_config(path) == cfg
    assert load_config(path).loss.class_ratios() == {1: 0.6, 2: 0.2, 0: 0.2}


@pytest.mark.parametrize(('overrides', 'match'), [
    ({'optim.micro_batch': 0}, r'optim.micro_batch=0 invalid: must be >= 1'),
    ({'loss.method': 'dpo'}, r"loss.method='dpo' invalid"),
    ({'loss.kl_clamp': [5.0, -5.0]}, r'loss.kl_clamp'),
    ({'loss.ratios': [0.5, 0.5, 0.5]}, r'loss.ratios'),
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
    # Regression guard: config/optimize.yaml and config/train/*.yaml are generated from the dataclasses;
    # a field added or a default changed without `python -m hapo_trainer.config --write` fails here.
    for path, text in generated_files(repo_root).items():
        assert path.is_file(), f'{path} missing: run python -m hapo_trainer.config --write'
        assert path.read_text() == text, f'{path} drifted from TrainConfig: run python -m hapo_trainer.config --write'
        assert load_config(path) == TrainConfig.from_dict(load_config(path).to_dict())

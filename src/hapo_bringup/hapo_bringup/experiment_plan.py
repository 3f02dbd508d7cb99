# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The experiment's protocol as units of work: ``config/experiment.yaml`` -> ``Unit``s with content keys.

A unit is one independent task (a demo set, a base, one deployment round, one arm's training on one seed, one
checkpoint evaluated on one scenario and seed range). Its key hashes its stage, the stage's protocol version, its
parameters and the keys of the units it depends on, and a shipped base enters by the hash of its weights: never a
path or an mtime. Bumping ``STAGE_VERSIONS[stage]`` after a fix re-runs that stage and what depends on it only.
Pure Python: nothing here runs a graph or trains.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hapo_sim import seeds as seed_uses

STAGE_VERSIONS = {'demos': 1, 'base': 1, 'round': 1, 'train': 1, 'eval': 1}
ARM_KEYS = {'method', 'demos', 'ratios', 'policy_steps', 'micro_batch', 'seeds', 'own'}


class PlanError(ValueError):
    """A protocol that cannot be run; the text names the file and the field."""


@dataclass(frozen=True)
class Unit:
    """One cached task: ``stage`` with ``params``, after ``deps`` (their outcomes and artifacts are its inputs)."""

    stage: str
    params: dict[str, Any]
    deps: tuple[Unit, ...] = ()
    key: str = field(init=False)

    def __post_init__(self) -> None:
        body = {'stage': self.stage, 'version': STAGE_VERSIONS[self.stage], 'params': self.params,
                'deps': [d.key for d in self.deps]}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        object.__setattr__(self, 'key', digest)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unit) and other.key == self.key

    @property
    def label(self) -> str:
        p = self.params
        bits = [p.get(k) for k in ('task', 'scenario', 'arm', 'seed') if p.get(k) is not None]
        if 'seeds' in p:
            bits.append(f'{p["seeds"][0]}:{p["seeds"][1]}')
        return f'{self.stage}[{" ".join(map(str, bits))}]'


@dataclass
class Plan:
    """Every unit of the protocol in the order they run, plus the handles ``results`` reads them by."""

    config: dict[str, Any]
    units: list[Unit] = field(default_factory=list)
    bases: dict[str, Unit] = field(default_factory=dict)  # task -> base
    arms: dict[tuple[str, str, str, int], Unit] = field(default_factory=dict)  # (task, disruption, arm, seed)
    evals: dict[tuple[str, str], Unit] = field(default_factory=dict)  # (policy unit key, scenario) -> eval
    rounds: dict[tuple[str, str], Unit] = field(default_factory=dict)  # (task, disruption) -> first round
    chains: dict[tuple[str, int], list[dict[str, Unit]]] = field(default_factory=dict)  # (arm, seed) -> rounds

    def add(self, unit: Unit) -> Unit:
        if unit not in self._seen:
            self._seen.add(unit)
            self.units.append(unit)
        return unit

    def __post_init__(self) -> None:
        self._seen: set[Unit] = set()


def train_config(params: dict[str, Any]) -> Any:
    """The trainer config (``hapo_trainer.config.TrainConfig``) of a train unit's parameters: an arm's spec over
    the protocol's ``train:`` budget and a training seed. ConfigError on a value the trainer refuses."""
    from hapo_trainer.config import load_config

    overrides = {'loss.method': params['method'], 'optim.lr': params.get('lr'), 'optim.max_steps': params.get('steps'),
                 'run.seed': params.get('seed'), 'optim.micro_batch': params.get('micro_batch'),
                 'loss.ratios': params.get('ratios'), 'data.policy_steps': params.get('policy_steps'),
                 'run.tensorboard': False}
    return load_config(None).replace(**{k: v for k, v in overrides.items() if v is not None})


def load(path: Path, quick: bool = False) -> dict[str, Any]:
    """The protocol of ``path`` (``quick``: its ``quick:`` block over it), checked."""
    try:
        cfg = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f'{path}: {exc}') from None
    if not isinstance(cfg, dict):
        raise PlanError(f'{path}: expected a mapping')
    if quick:
        if not isinstance(cfg.get('quick'), dict):
            raise PlanError(f'{path}: --quick needs a quick: block')
        cfg = {**cfg, **cfg['quick']}
    cfg.pop('quick', None)
    for name in ('tasks', 'arms', 'train', 'round', 'evaluation', 'training_seeds'):
        if name not in cfg:
            raise PlanError(f'{path}: missing {name}:')
    for arm, spec in cfg['arms'].items():
        unknown = set(spec) - ARM_KEYS
        if 'method' not in spec or unknown:
            raise PlanError(f'{path}: arms.{arm}: needs method:, knows {sorted(ARM_KEYS)}'
                            + (f' (not {sorted(unknown)})' if unknown else ''))
        try:
            train_config({**spec, **cfg['train']})
        except ValueError as exc:  # hapo_trainer's ConfigError
            raise PlanError(f'{path}: arms.{arm}: {exc}') from None
    try:
        seeds = seed_uses.parse(str(cfg['evaluation']['seeds']))
    except seed_uses.SeedError as exc:
        raise PlanError(f'{path}: evaluation.seeds: {exc}') from None
    if seed_uses.check(seeds, 'evaluation'):
        raise PlanError(f'{path}: evaluation.seeds {seeds.start}:{seeds.stop} are not evaluation seeds')
    for task, spec in cfg['tasks'].items():
        if not {'base', 'original', 'disruptions'} <= set(spec):
            raise PlanError(f'{path}: tasks.{task}: needs base:, original: and disruptions:')
    life = cfg.get('lifelong')
    if life and (life['task'] not in cfg['tasks'] or any(a not in cfg['arms'] for a in life['arms'])):
        raise PlanError(f'{path}: lifelong: task and arms must be among tasks: and arms:')
    return cfg


def plan(cfg: dict[str, Any], shipped_id: Any) -> Plan:
    """The units of ``cfg`` in run order: per task its base and demos, then per disruption its round, every arm's
    seed 0 with its evaluations, then the other seeds, then the lifelong chains. ``shipped_id(name)`` is the weights
    hash of a shipped base under config/."""
    p = Plan(cfg)
    ev = cfg['evaluation']
    ev_seeds = [int(x) for x in str(ev['seeds']).split(':')]
    rnd = cfg['round']
    n_seeds = len(cfg['training_seeds'])

    def evaluate(policy: Unit, scenario: str) -> Unit:
        u = p.add(Unit('eval', {'scenario': scenario, 'seeds': ev_seeds, 'overrides': list(ev.get('overrides', []))},
                       (policy,)))
        p.evals[(policy.key, scenario)] = u
        return u

    def deploy(task: str, scenario: str, policy: Unit, block: int) -> Unit:
        first = seed_uses.first('rounds', rnd['episodes'] * (block + 1))
        seeds = [first.stop - rnd['episodes'], first.stop]
        return p.add(Unit('round', {'task': task, 'scenario': scenario, 'seeds': seeds,
                                    'overrides': list(rnd.get('overrides', []))}, (policy,)))

    def train(task: str, scenario: str, arm: str, seed: int, policy: Unit, round_: Unit, demos: Unit | None) -> Unit:
        spec = cfg['arms'][arm]
        deps = (policy, round_, *((demos,) if spec.get('demos') and demos else ()))
        params = {'task': task, 'scenario': scenario, 'arm': arm, 'seed': seed,
                  **{k: v for k, v in spec.items() if k not in ('seeds', 'own')}, **cfg['train']}
        return p.add(Unit('train', params, deps))

    demos_of: dict[str, Unit | None] = {}
    for task, spec in cfg['tasks'].items():
        n = int(spec.get('demos', 0))
        demos = p.add(Unit('demos', {'task': task, 'scenario': spec['original'], 'seeds': [0, n]})) if n else None
        demos_of[task] = demos
        if isinstance(spec['base'], str):
            base = p.add(Unit('base', {'task': task, 'shipped': spec['base'], 'policy_id': shipped_id(spec['base'])}))
        else:
            if demos is None:
                raise PlanError(f'tasks.{task}: a base trained here needs demos: > 0')
            base = p.add(Unit('base', {'task': task, **spec['base']}, (demos,)))
        p.bases[task] = base
        for s in [spec['original'], *spec['disruptions']]:
            evaluate(base, s)
    for task, spec in cfg['tasks'].items():
        base = p.bases[task]
        for rank in range(n_seeds):
            for scenario in spec['disruptions']:
                round_ = p.rounds.setdefault((task, scenario), deploy(task, scenario, base, 0))
                for arm, arm_spec in cfg['arms'].items():
                    if rank >= int(arm_spec.get('seeds', n_seeds)):
                        continue
                    seed = cfg['training_seeds'][rank]
                    u = train(task, scenario, arm, seed, base, round_, demos_of[task])
                    p.arms[(task, scenario, arm, seed)] = u
                    evaluate(u, scenario)
                    evaluate(u, spec['original'])
    life = cfg.get('lifelong')
    if life:
        task, scenario = life['task'], life['scenario']
        for seed in life['seeds']:
            for arm in life['arms']:
                policy, chain = p.bases[task], []
                for r in range(int(life['rounds'])):
                    round_ = deploy(task, scenario, policy, r) if r else p.rounds.get((task, scenario)) \
                        or deploy(task, scenario, policy, 0)
                    policy = train(task, scenario, arm, seed, policy, round_, demos_of[task])
                    chain.append({'round': round_, 'policy': policy, 'eval': evaluate(policy, scenario),
                                  'original': evaluate(policy, cfg['tasks'][task]['original'])})
                p.chains[(arm, seed)] = chain
    return p

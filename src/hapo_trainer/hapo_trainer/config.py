# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""TrainConfig: the trainer's settings as dataclasses (data, model, loss, optim, run), YAML in and out.

Every field carries ``metadata={'help': ...}`` (TRL ``KTOConfig`` style) and each group validates itself in
``__post_init__`` with a one-line message naming the field, its value and the legal range. The one trainer
config file, ``config/optimize.yaml``, is generated from these dataclasses, and a test fails when it drifts::

    python -m hapo_trainer.config --write      # rewrites config/optimize.yaml

It serves every method: ``hapo optimize --method dagger`` (or ``loss.method``) picks the method, and the
method brings its defaults (``loss.ratios: {}`` = the method's ratios, ``hapo_trainer.algos``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hapo_interfaces.enums import TRAINING_LABELS, Label
from hapo_trainer.algos import METHODS, get_algo

_CLASS_NAMES = tuple(c.display for c in TRAINING_LABELS)  # the keys of loss.ratios: policy, correction, undesirable


class ConfigError(ValueError):
    """A config value outside its legal range, or an unknown key; the text names the field."""


def _f(default: Any, help: str) -> Any:  # noqa: A002 (the dataclass metadata key is 'help', as in TRL)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={'help': help})
    return field(default=default, metadata={'help': help})


def _check(ok: bool, group: str, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f'{group}.{name}={value!r} invalid: must be {rule}')


@dataclass
class DataConfig:
    """Bags -> preference dataset."""

    K: int = _f(10, 'Relabel window: POLICY steps before each intervention labelled undesirable (c=0). '  # noqa: N815
                    '0 = no undesirable samples.')
    drop_noop: bool = _f(True, 'Drop steps whose 6 motion dims are all within noop_eps of 0 (gripper ignored): '
                               'a held arm teaches nothing.')
    noop_eps: float = _f(1e-6, 'Threshold for drop_noop, in action units (m / rad per step).')
    range_margin: float = _f(0.5, "Drop an action whose dim lies beyond the base checkpoint's [q01, q99] by more "
                                  'than this fraction of (q99 - q01); it would tokenise to a clipped bin. '
                                  'Negative = keep all.')
    max_abs_action: float = _f(0.0, 'Drop an action with any |value| above this (action units). 0 = off.')
    max_obs_lag_ms: float = _f(100.0, 'When no image carries the exact stamp of a step, use the latest earlier one '
                                      'within this lag; else the step is dropped (no_observation).')
    policy_steps: bool = _f(True, 'Keep the steps the policy drove in deployed (non-demo) episodes as c=1; false = '
                                  'demos and corrections only (DAgger\'s aggregate; c=0 stays as K says).')
    cache_dir: str = _f('', "Dataset cache directory; '' = $HAPO_CACHE or ~/.cache/hapo/datasets.")

    def __post_init__(self) -> None:
        _check(self.K >= 0, 'data', 'K', self.K, '>= 0')
        _check(self.noop_eps >= 0, 'data', 'noop_eps', self.noop_eps, '>= 0')
        _check(self.max_abs_action >= 0, 'data', 'max_abs_action', self.max_abs_action, '>= 0')
        _check(self.max_obs_lag_ms >= 0, 'data', 'max_obs_lag_ms', self.max_obs_lag_ms, '>= 0')


@dataclass
class ModelConfig:
    """Policy and adapters."""

    lora: bool = _f(False, 'Train LoRA adapters (peft) instead of all weights; the reference is the same model '
                           'with adapters disabled. For large backbones (OpenVLA-7B).')
    lora_rank: int = _f(8, 'LoRA rank r.')
    lora_alpha: int = _f(16, 'LoRA alpha.')
    lora_dropout: float = _f(0.0, 'LoRA dropout.')
    lora_targets: list[str] = _f(['q_proj', 'k_proj', 'v_proj', 'o_proj'], 'Module names LoRA wraps.')
    bf16: bool = _f(True, 'bf16 autocast on CUDA (ignored on CPU, which trains in float32).')
    device: str = _f('auto', "'auto' (cuda:LOCAL_RANK if available, else cpu), 'cpu' or 'cuda'.")
    trust_remote_code: bool = _f(False, 'Allow custom code shipped with a foreign checkpoint. Off unless you trust it.')

    def __post_init__(self) -> None:
        _check(self.lora_rank >= 1, 'model', 'lora_rank', self.lora_rank, '>= 1')
        _check(0 <= self.lora_dropout < 1, 'model', 'lora_dropout', self.lora_dropout, 'in [0, 1)')
        _check(self.device in ('auto', 'cpu', 'cuda'), 'model', 'device', self.device, "'auto', 'cpu' or 'cuda'")


@dataclass
class LossConfig:
    """Method and loss hyper-parameters (DESIGN.md 'The method')."""

    method: str = _f('hapo', f'One of {", ".join(METHODS)} (see hapo_trainer.algos).')
    beta: float = _f(0.1, 'KTO beta: scale of the log-ratio inside the sigmoid.')
    beta_d: float = _f(1.0, 'HAPO beta_D of lambda_D = (1 - exp(-beta_D w))^gamma.')
    beta_u: float = _f(1.0, 'HAPO beta_U of lambda_U = exp(-beta_U w)^gamma.')
    gamma: float = _f(1.0, 'HAPO gamma exponent of both lambdas.')
    eps: float = _f(1e-4, 'HAPO eps in w_i = (l_i + eps) / (sum_j l_j + eps).')
    kl_clamp: list[float] = _f([-5.0, 5.0], "Clamp of the KL reference point z0 [lo, hi]; TRL's rule is [0, .inf].")
    l1_space: str = _f('raw', "HAPO error l_i of the greedy action: 'raw' = action units against the recorded "
                              "action (DESIGN.md), 'normalized' = normalised bin centres of both (the reference's "
                              'rule; see steps.action_l1_normalized).')
    ratios: dict[str, float] = _f({}, 'Batch shares by class, e.g. {policy: 0.5, correction: 0.25, undesirable: 0.25} '
                                      "(a class left out gets 0); {} = the method's default (hapo_trainer.algos). "
                                      'The old list form [c=1, c=2, c=0] still loads.')

    def __post_init__(self) -> None:
        _check(self.method in METHODS, 'loss', 'method', self.method, f'one of {list(METHODS)}')
        _check(self.beta > 0, 'loss', 'beta', self.beta, '> 0')
        _check(self.eps > 0, 'loss', 'eps', self.eps, '> 0')
        _check(len(self.kl_clamp) == 2 and self.kl_clamp[0] <= self.kl_clamp[1], 'loss', 'kl_clamp', self.kl_clamp,
               '[lo, hi] with lo <= hi')
        _check(self.l1_space in ('raw', 'normalized'), 'loss', 'l1_space', self.l1_space, "'raw' or 'normalized'")
        if isinstance(self.ratios, list):  # the form before issue 8: [c=1, c=2, c=0], or [] for the default
            _check(len(self.ratios) in (0, 3), 'loss', 'ratios', self.ratios, 'a mapping (or the old list of 3 shares)')
            self.ratios = dict(zip(_CLASS_NAMES, self.ratios, strict=False))
        ok = (isinstance(self.ratios, dict) and set(self.ratios) <= set(_CLASS_NAMES)
              and all(isinstance(r, (int, float)) and r >= 0 for r in self.ratios.values())
              and (not self.ratios or abs(sum(self.ratios.values()) - 1) < 1e-6))
        _check(ok, 'loss', 'ratios', self.ratios, f'{{}} or shares >= 0 of {", ".join(_CLASS_NAMES)} summing to 1')
        self.ratios = {name: self.ratios[name] for name in _CLASS_NAMES if name in self.ratios}  # reporting order

    def class_ratios(self) -> dict[Label, float]:
        """Class -> share of each batch (every training class), from ``ratios`` or the method's default."""
        if self.ratios:
            return {c: float(self.ratios.get(c.display, 0.0)) for c in TRAINING_LABELS}
        return dict(get_algo(self.method).ratios)


@dataclass
class OptimConfig:
    """Optimiser and schedule."""

    micro_batch: int = _f(8, 'Samples per loss call per process. The HAPO weights are normalised within a class '
                             'in the batch the loss sees, so this sets their size (8: lambda_D ~ 0.15, lambda_U '
                             '~ 0.6, as the reference; DESIGN.md). Grow the batch with grad_accum / DDP instead.')
    grad_accum: int = _f(1, 'Micro-batches accumulated per optimiser step (per process).')
    lr: float = _f(5e-5, 'Peak AdamW learning rate.')
    weight_decay: float = _f(0.0, 'AdamW weight decay.')
    adam_betas: list[float] = _f([0.9, 0.999], 'AdamW betas.')
    warmup_steps: int = _f(10, 'Linear warm-up steps from 0 to lr.')
    min_lr_ratio: float = _f(0.1, 'Cosine decay floor as a fraction of lr.')
    max_steps: int = _f(200, 'Optimiser steps of the run (the cosine ends here).')
    grad_clip: float = _f(1.0, 'Clip the global gradient norm to this; 0 = off.')
    image_shift_px: int = _f(0, 'Random-shift augmentation (DrQ): each training image shifted by up to this many '
                                'pixels each way, borders replicated, seeded per micro-batch (--resume stays exact). '
                                '0 = off. BC methods only (the reference log-probs are of the recorded images).')

    def __post_init__(self) -> None:
        _check(self.micro_batch >= 1, 'optim', 'micro_batch', self.micro_batch, '>= 1')
        _check(self.grad_accum >= 1, 'optim', 'grad_accum', self.grad_accum, '>= 1')
        _check(self.lr > 0, 'optim', 'lr', self.lr, '> 0')
        _check(self.weight_decay >= 0, 'optim', 'weight_decay', self.weight_decay, '>= 0')
        _check(len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas), 'optim', 'adam_betas',
               self.adam_betas, 'two values in [0, 1)')
        _check(self.warmup_steps >= 0, 'optim', 'warmup_steps', self.warmup_steps, '>= 0')
        _check(0 <= self.min_lr_ratio <= 1, 'optim', 'min_lr_ratio', self.min_lr_ratio, 'in [0, 1]')
        _check(self.max_steps >= 1, 'optim', 'max_steps', self.max_steps, '>= 1')
        _check(self.grad_clip >= 0, 'optim', 'grad_clip', self.grad_clip, '>= 0')
        _check(self.image_shift_px >= 0, 'optim', 'image_shift_px', self.image_shift_px, '>= 0')


@dataclass
class RunConfig:
    """Seeds, checkpoints, logging."""

    seed: int = _f(0, 'Seed of sampler order, dropout and init of adapters (offset per DDP rank for dropout).')
    checkpoint_every: int = _f(100, 'Save a checkpoint every N optimiser steps (and always at the end). 0 = end only.')
    log_every: int = _f(10, 'Log metrics (TensorBoard, progress bar) every N optimiser steps.')
    tensorboard: bool = _f(True, 'Write TensorBoard event files under <out>/tb.')

    def __post_init__(self) -> None:
        _check(self.checkpoint_every >= 0, 'run', 'checkpoint_every', self.checkpoint_every, '>= 0')
        _check(self.log_every >= 1, 'run', 'log_every', self.log_every, '>= 1')


GROUPS = {'data': DataConfig, 'model': ModelConfig, 'loss': LossConfig, 'optim': OptimConfig, 'run': RunConfig}


@dataclass
class TrainConfig:
    """The whole run; dumped into every checkpoint (``run_config.json``) and ``<out>/config.yaml``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        shift, algo = self.optim.image_shift_px, get_algo(self.loss.method)
        _check(shift == 0 or algo.loss == 'bc', 'optim', 'image_shift_px', shift,
               f'0 with method {algo.name!r} (its reference log-probs are of the unshifted images)')

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, body: dict[str, Any] | None) -> TrainConfig:
        """Strict: an unknown group or key is a ConfigError naming it."""
        body = body or {}
        if not isinstance(body, dict):
            raise ConfigError(f'config must be a mapping of groups {list(GROUPS)}, got {type(body).__name__}')
        unknown = set(body) - set(GROUPS)
        if unknown:
            raise ConfigError(f'unknown config group(s) {sorted(unknown)}; expected {list(GROUPS)}')
        groups = {}
        for name, kind in GROUPS.items():
            values = body.get(name) or {}
            names = {f.name for f in dataclasses.fields(kind)}
            bad = set(values) - names
            if bad:
                raise ConfigError(f'unknown key(s) {sorted(bad)} in {name}; expected {sorted(names)}')
            try:
                groups[name] = kind(**values)
            except TypeError as exc:
                raise ConfigError(f'{name}: {exc}') from None
        return cls(**groups)

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with ``'group.key': value`` overrides applied (and validated)."""
        body = self.to_dict()
        for dotted, value in overrides.items():
            group, key = dotted.split('.', 1)
            body[group][key] = value
        return TrainConfig.from_dict(body)


def load_config(path: str | Path | None) -> TrainConfig:
    """Read a YAML config (``None`` = defaults); ConfigError names the file on any problem."""
    if path is None:
        return TrainConfig()
    try:
        body = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f'cannot read config {path}: {exc}') from None
    try:
        return TrainConfig.from_dict(body)
    except ConfigError as exc:
        raise ConfigError(f'{path}: {exc}') from None


def dump_yaml(config: TrainConfig) -> str:
    """YAML text with each field's help as a comment above it (what the files under ``config/`` hold)."""
    lines = ['# HAPO trainer config (hapo_trainer.config.TrainConfig). Generated: python -m hapo_trainer.config '
             '--write', '# Use with: hapo optimize --config <this file> --bags DIR --policy CKPT --out DIR '
             f'[--method {"|".join(METHODS)}]', '']
    for name, kind in GROUPS.items():
        lines.append(f'{name}:  # {kind.__doc__.strip()}')
        group = getattr(config, name)
        for f in dataclasses.fields(kind):
            lines.append(f'  # {f.metadata["help"]}')
            value = yaml.safe_dump(getattr(group, f.name), default_flow_style=True, width=10_000,
                                   sort_keys=False).strip()
            value = value.removesuffix('\n...').removesuffix('...').strip()
            lines.append(f'  {f.name}: {value}')
        lines.append('')
    return '\n'.join(lines)


def generated_files(root: Path) -> dict[Path, str]:
    """Every generated config file under ``root`` and its expected text."""
    return {root / 'config' / 'optimize.yaml': dump_yaml(TrainConfig())}


def main(argv: list[str] | None = None) -> int:
    """Print the default config, or (``--write``) regenerate config/optimize.yaml."""
    parser = argparse.ArgumentParser(prog='python -m hapo_trainer.config', description=main.__doc__)
    parser.add_argument('--write', action='store_true', help='rewrite config/optimize.yaml')
    parser.add_argument('--root', type=Path, default=Path.cwd(), help='workspace root (default: cwd)')
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(dump_yaml(TrainConfig()))
        return 0
    for path, text in generated_files(args.root).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())

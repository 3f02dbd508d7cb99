# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""VlaPolicy: the one class the policy node and the trainer use (construction, save, predict, encode, log-probs).

``from_pretrained`` reads the shared files of a checkpoint (layout and names in checkpoint.py), builds the action
tokenizer and hands the weights to ``tiny.load`` (model_type 'hapo_tiny_vla') or ``openvla.load`` (any other).
Preprocessing is the chain images -> ``images_to_tensor``, instruction -> ``prompt`` -> ``ByteTokenizer``,
tokens -> ``ActionTokenizer.decode`` (stats normalisation inside); all of its state is in those files. One sample
is an ``Observation`` (observation.py); log-probs are ``logprobs.action_logprobs`` on the policy's own model.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

from hapo_policy import checkpoint, import_stats, openvla, tiny
from hapo_policy.checkpoint import CONFIG_FILE, RUN_CONFIG_FILE, STATS_FILE
from hapo_policy.errors import CheckpointError
from hapo_policy.logprobs import action_logprobs
from hapo_policy.normalization import ActionStats
from hapo_policy.observation import Observation
from hapo_policy.prompt import ByteTokenizer, prompt
from hapo_policy.tiny import TinyVla, TinyVlaConfig, images_to_tensor
from hapo_policy.tokenizer import ActionTokenizer


@dataclass(frozen=True)
class Prediction:
    """One greedy decoding: action (A,) float32 raw units, tokens (A,) int64, entropy (A,) float32 nats."""

    action: np.ndarray
    tokens: np.ndarray
    entropy: np.ndarray


class VlaPolicy:
    """A VLA with its action statistics and tokenizer; build with ``create`` or ``from_pretrained``."""

    def __init__(self, model: torch.nn.Module, tokenizer: ActionTokenizer, policy_id: str, *,
                 processor: Any = None, source: str = ''):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.policy_id = policy_id
        self.source = source  # checkpoint path, or '' for a fresh model
        self._processor = processor  # foreign models only
        self._text = ByteTokenizer()

    # construction -------------------------------------------------------------------------------
    @classmethod
    def create(cls, config: TinyVlaConfig | None = None, stats: ActionStats | None = None,
               seed: int = 0) -> VlaPolicy:
        """A fresh, untrained tiny VLA; the same seed gives the same weights."""
        config = config or TinyVlaConfig()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = TinyVla(config)
        tokenizer = ActionTokenizer(config.vocab_size, config.n_bins, stats or ActionStats.default(config.action_dim))
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        return cls(model, tokenizer, checkpoint.bytes_id(safetensors_bytes(state)))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = 'cpu', dtype: torch.dtype | None = None,
                        trust_remote_code: bool = False) -> VlaPolicy:
        """Load a checkpoint directory; raises CheckpointError naming the path and what is wrong."""
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(path, 'no such directory' if not path.exists() else 'not a directory')
        if not (path / CONFIG_FILE).is_file():
            raise CheckpointError(path, f'missing {CONFIG_FILE}')
        weights = checkpoint.weights_files(path)
        config = checkpoint.read_json(path, CONFIG_FILE)
        if (path / STATS_FILE).is_file():
            body = checkpoint.read_json(path, STATS_FILE)
        else:
            body = import_stats.stats_body(path, config)  # an OpenVLA checkpoint as downloaded
            if body is None:
                raise CheckpointError(path, f'missing {STATS_FILE} (action q01/q99 statistics and tokenizer spec '
                                            'travel with the checkpoint)')
        foreign = config.get('model_type') != TinyVlaConfig.model_type
        tokenizer = _action_tokenizer(path, body, foreign)
        if foreign:
            model, processor = openvla.load(path, tokenizer, device, dtype, trust_remote_code)
        else:
            model, processor = tiny.load(path, tokenizer, device, dtype)
        _require_finite(path, model)
        return cls(model, tokenizer, checkpoint.policy_id(weights), processor=processor, source=str(path))

    def save_pretrained(self, path: str | os.PathLike, run_config: dict[str, Any] | None = None) -> Path:
        """Write a checkpoint atomically (``checkpoint.atomic_dir``); an existing checkpoint is replaced, any
        other non-empty path is refused."""
        path = Path(path)
        if path.exists() and not (path.is_dir() and (checkpoint.is_checkpoint(path) or not any(path.iterdir()))):
            raise CheckpointError(path, 'exists and is not a checkpoint directory; refusing to overwrite')
        with checkpoint.atomic_dir(path) as tmp:
            self.model.save_pretrained(tmp)
            if self.foreign:  # the processor (tokenizer + image preprocessing) travels with the weights
                self._processor.save_pretrained(tmp)
            body = {**self.stats.to_json(), 'tokenizer': self.tokenizer.spec()}
            (tmp / STATS_FILE).write_text(json.dumps(body, indent=2) + '\n')
            if run_config is not None:
                (tmp / RUN_CONFIG_FILE).write_text(json.dumps(run_config, indent=2, sort_keys=True, default=str) + '\n')
        return path

    def with_model(self, model: torch.nn.Module) -> VlaPolicy:
        """The same policy (tokenizer, processor, id, source) around another model, e.g. LoRA merged."""
        return VlaPolicy(model, self.tokenizer, self.policy_id, processor=self._processor, source=self.source)

    # properties ---------------------------------------------------------------------------------
    @property
    def foreign(self) -> bool:
        return self._processor is not None

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def stats(self) -> ActionStats:
        return self.tokenizer.stats

    @property
    def camera_names(self) -> list[str]:
        return list(getattr(self.config, 'camera_names', ['primary']))

    @property
    def proprio_dim(self) -> int:
        return int(getattr(self.config, 'proprio_dim', 0))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # inference ----------------------------------------------------------------------------------
    def predict(self, images: dict[str, np.ndarray], instruction: str,
                proprio: np.ndarray | None = None) -> Prediction:
        """Greedy action for one observation; raises ValueError on a missing camera or proprio."""
        return self.predict_batch([Observation(images, instruction, proprio)])[0]

    @torch.inference_mode()
    def predict_batch(self, observations: Sequence[Observation]) -> list[Prediction]:
        """Greedy actions for B observations, decoded in one batch (a foreign model: row by row)."""
        batch = self.encode_batch(observations)
        if self.foreign:
            tokens, entropy = _unwrap(self.model).generate_actions(batch, self.tokenizer.action_dim)  # (B, A), (B, A)
        else:
            tokens, entropy = self.model.generate_actions(**batch)  # (B, A), (B, A)
        tokens = tokens.cpu().numpy().astype(np.int64)
        actions = self.tokenizer.decode(tokens).astype(np.float32)  # (B, A)
        return [Prediction(a, t, e) for a, t, e in zip(actions, tokens, entropy.float().cpu().numpy(), strict=True)]

    # training API -------------------------------------------------------------------------------
    def encode_batch(self, samples: Sequence[Observation]) -> dict[str, Any]:
        """B samples -> {'images': {cam: (B, 3, S, S) float in [0, 1]}, 'proprio': (B, P) | None,
        'text_ids': (B, L) long (left-padded), 'text_mask': (B, L) long} on the model's device.

        A foreign model: the processor's outputs for (first camera's image, prompt) per sample, batched by
        ``openvla.ForeignVla.encode`` ({'input_ids' (B, L) right-padded, 'attention_mask', 'prompt_len' (B,),
        'pixel_values', ...}); proprio is not used."""
        if not samples:
            raise ValueError('encode_batch needs at least one sample')
        samples = [Observation(*s) for s in samples]
        if self.foreign:
            cam = self.camera_names[0]
            return _unwrap(self.model).encode(self._processor, [(s.image(cam), prompt(s.instruction)) for s in samples])
        cfg, device = self.config, self.device
        dtype = next(self.model.parameters()).dtype
        images = {}
        for cam in cfg.camera_names:
            arrays = [s.image(cam) for s in samples]
            if len({a.shape for a in arrays}) == 1:
                x = images_to_tensor(arrays, cfg.image_size)  # (B, 3, S, S)
            else:
                x = torch.cat([images_to_tensor([a], cfg.image_size) for a in arrays])  # (B, 3, S, S)
            images[cam] = x.to(device=device, dtype=dtype)
        proprio = None
        if cfg.proprio_dim > 0:
            rows = []
            for s in samples:
                p = None if s.proprio is None else np.asarray(s.proprio, dtype=np.float32).reshape(-1)
                if p is None or p.shape[0] < cfg.proprio_dim:
                    got = 'none' if p is None else p.shape[0]
                    raise ValueError(f'proprio needs {cfg.proprio_dim} values (joint positions), got {got}')
                rows.append(p[:cfg.proprio_dim])
            proprio = torch.from_numpy(np.stack(rows)).to(device=device, dtype=dtype)  # (B, P)
        ids = [self._text_ids(s.instruction) for s in samples]
        length = max(len(i) for i in ids)
        text_ids = torch.full((len(ids), length), ByteTokenizer.PAD, dtype=torch.long)  # (B, L)
        text_mask = torch.zeros((len(ids), length), dtype=torch.long)  # (B, L)
        for row, seq in enumerate(ids):
            text_ids[row, length - len(seq):] = torch.tensor(seq)
            text_mask[row, length - len(seq):] = 1
        return {'images': images, 'proprio': proprio, 'text_ids': text_ids.to(device),
                'text_mask': text_mask.to(device)}

    def action_logprobs(self, batch: dict[str, Any], action_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced log p of the given action ids (B, A) and the argmax ids (B, A), both over the
        ``n_bins`` action ids only (the same distribution ``predict`` decodes from). Gradients flow."""
        a = self.tokenizer.action_dim
        assert action_tokens.ndim == 2 and action_tokens.shape[1] == a, f'action_tokens must be (B, {a})'
        return action_logprobs(self.model, self.tokenizer.first_id, batch, action_tokens)

    @functools.lru_cache(maxsize=64)  # noqa: B019 (instructions repeat every step; the policy lives as long)
    def _text_ids(self, instruction: str) -> tuple[int, ...]:
        return tuple(self._text.encode(prompt(instruction), self.config.max_text_len))


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The ForeignVla inside a peft wrapper (LoRA training), or the model itself."""
    get = getattr(model, 'get_base_model', None)
    return get() if get is not None else model


@torch.no_grad()
def _require_finite(path: Path, model: torch.nn.Module) -> None:
    """CheckpointError naming the first weight holding NaN/inf (such a model still emits valid-looking action
    tokens: argmax over NaN logits)."""
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(path, f'weights not finite: {name} holds NaN or inf')


def _action_tokenizer(path: Path, body: dict[str, Any], foreign: bool) -> ActionTokenizer:
    """The action tokenizer ``action_stats.json`` (or the imported statistics) describes."""
    try:
        stats = ActionStats.from_json(body)
        spec = body['tokenizer']
        n_bins, vocab_size = int(spec['n_bins']), int(spec['vocab_size'])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f'{STATS_FILE} invalid: {exc}') from None
    if not foreign:
        return ActionTokenizer(vocab_size, n_bins, stats)
    try:
        suffix = tuple(int(i) for i in spec.get('prompt_suffix_ids', ()))
        return openvla.OpenVlaActionTokenizer(vocab_size, n_bins, stats, prompt_suffix_ids=suffix)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f'{STATS_FILE} tokenizer invalid: {exc}') from None

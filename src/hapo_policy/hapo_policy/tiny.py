# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The CPU default VLA (DESIGN.md 'Models'): conv stem per camera + byte prompt + proprio -> tiny Llama.

Sequence fed to the transformer (T prefix positions, then the A = 7 action tokens)::

    [cam_0: 16 tokens] ... [cam_k: 16 tokens] [proprio: 1 token] [PAD.. BOS prompt bytes] [a_1 .. a_7]

Text is left-padded inside a batch so the action tokens always follow the prompt; padding is masked and
position ids skip it, so a padded training sample sees the same positions as the unpadded one at inference.
A conv stem (not a ViT) because it learns faster from ~200 demos (DESIGN measured 95 % Lift success). The
action distribution is the softmax over the last ``n_bins`` logits only (see ``action_logits``).
``load`` reads a saved one back (the tiny half of ``VlaPolicy.from_pretrained``; ``openvla.load`` is the other).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from transformers import LlamaConfig, LlamaModel, PretrainedConfig, PreTrainedModel
from transformers import initialization as init

from hapo_interfaces.topics import ACTION_DIM
from hapo_policy.checkpoint import CONFIG_FILE, STATS_FILE
from hapo_policy.errors import CheckpointError
from hapo_policy.prompt import ByteTokenizer
from hapo_policy.tokenizer import ActionTokenizer

STEM_GRID = 4  # 4 x 4 = 16 tokens per camera


class TinyVlaConfig(PretrainedConfig):
    """Everything needed to rebuild the tiny VLA; written to ``config.json``."""

    model_type = 'hapo_tiny_vla'

    def __init__(self, camera_names: list[str] | None = None, image_size: int = 64, proprio_dim: int = 9,
                 text_vocab_size: int = ByteTokenizer.vocab_size, n_bins: int = 256, vocab_size: int | None = None,
                 action_dim: int = ACTION_DIM, hidden_size: int = 128, num_hidden_layers: int = 4,
                 num_attention_heads: int = 4, intermediate_size: int = 256, max_text_len: int = 96,
                 initializer_range: float = 0.02, **kwargs):
        self.camera_names = list(camera_names) if camera_names else ['agentview']
        self.image_size = int(image_size)
        self.proprio_dim = int(proprio_dim)
        self.text_vocab_size = int(text_vocab_size)
        self.n_bins = int(n_bins)
        self.vocab_size = int(vocab_size) if vocab_size else self.text_vocab_size + self.n_bins
        self.action_dim = int(action_dim)
        self.hidden_size = int(hidden_size)
        self.num_hidden_layers = int(num_hidden_layers)
        self.num_attention_heads = int(num_attention_heads)
        self.intermediate_size = int(intermediate_size)
        self.max_text_len = int(max_text_len)
        self.initializer_range = float(initializer_range)
        if self.vocab_size < self.text_vocab_size + self.n_bins:
            raise ValueError(f'vocab_size {self.vocab_size} < text {self.text_vocab_size} + bins {self.n_bins}')
        if self.image_size < 16 or self.proprio_dim < 0:
            raise ValueError(f'image_size {self.image_size} must be >= 16 and proprio_dim >= 0')
        kwargs.setdefault('tie_word_embeddings', False)
        super().__init__(**kwargs)

    def llama_config(self) -> LlamaConfig:
        return LlamaConfig(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                           intermediate_size=self.intermediate_size, num_hidden_layers=self.num_hidden_layers,
                           num_attention_heads=self.num_attention_heads,
                           num_key_value_heads=self.num_attention_heads, max_position_embeddings=512,
                           initializer_range=self.initializer_range, tie_word_embeddings=False)


class ConvStem(nn.Module):
    """(B, 3, S, S) float in [0, 1] -> (B, 16, D) tokens."""

    def __init__(self, d: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(128, d, 3, stride=2, padding=1),
            nn.AdaptiveAvgPool2d(STEM_GRID))
        self.pos = nn.Embedding(STEM_GRID * STEM_GRID, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.net((x - 0.5) / 0.25)  # (B, D, 4, 4)
        return feat.flatten(2).transpose(1, 2) + self.pos.weight  # (B, 16, D)


def images_to_tensor(images: list[np.ndarray], size: int) -> torch.Tensor:
    """B arrays (H, W, 3) uint8 (same shape) -> (B, 3, size, size) float32 in [0, 1] (area resize)."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode='area')  # (B, 3, S, S)
    return x


class TinyVla(PreTrainedModel):
    """Conv stems + proprio + byte prompt -> LlamaModel -> logits over the vocabulary."""

    config_class = TinyVlaConfig
    base_model_prefix = 'vla'
    main_input_name = 'text_ids'

    def __init__(self, config: TinyVlaConfig):
        super().__init__(config)
        d = config.hidden_size
        self.stems = nn.ModuleDict({name: ConvStem(d) for name in config.camera_names})
        self.proprio = nn.Linear(config.proprio_dim, d) if config.proprio_dim > 0 else None
        self.llm = LlamaModel(config.llama_config())
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):  # N(0, 0.02) would starve a from-scratch conv stem
            init.kaiming_normal_(module.weight, nonlinearity='relu')
            init.zeros_(module.bias)
        else:
            super()._init_weights(module)

    def prefix(self, images: dict[str, torch.Tensor], proprio: torch.Tensor | None, text_ids: torch.Tensor,
               text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix embeddings (B, T, D) and attention mask (B, T) long."""
        parts = [self.stems[name](images[name]) for name in self.config.camera_names]  # each (B, 16, D)
        if self.proprio is not None:
            parts.append(self.proprio(proprio).unsqueeze(1))  # (B, 1, D)
        n_obs = sum(p.shape[1] for p in parts)
        parts.append(self.llm.embed_tokens(text_ids))  # (B, L, D)
        embeds = torch.cat(parts, dim=1)  # (B, T, D)
        obs_mask = torch.ones(text_ids.shape[0], n_obs, dtype=torch.long, device=text_ids.device)
        return embeds, torch.cat([obs_mask, text_mask.long()], dim=1)  # (B, T)

    def action_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., n_bins): logits of the action ids only. Restricting to the bins keeps greedy
        decoding inside the action range (OpenVLA argmaxes the full vocabulary and can emit text ids)."""
        return self.lm_head(hidden)[..., -self.config.n_bins:]

    def forward(self, images: dict[str, torch.Tensor], proprio: torch.Tensor | None, text_ids: torch.Tensor,
                text_mask: torch.Tensor, action_tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: (B, A) action token ids -> (B, A, n_bins) logits predicting each of them."""
        embeds, mask = self.prefix(images, proprio, text_ids, text_mask)  # (B, T, D), (B, T)
        t = embeds.shape[1]
        a = action_tokens.shape[1]
        embeds = torch.cat([embeds, self.llm.embed_tokens(action_tokens[:, :-1])], dim=1)  # (B, T + A - 1, D)
        mask = torch.cat([mask, torch.ones_like(action_tokens[:, :-1])], dim=1)  # (B, T + A - 1)
        pos = (mask.cumsum(-1) - 1).clamp_min(0)  # (B, T + A - 1)
        hidden = self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos).last_hidden_state
        return self.action_logits(hidden[:, t - 1:t - 1 + a])  # (B, A, n_bins)

    @torch.no_grad()
    def generate_actions(self, images: dict[str, torch.Tensor], proprio: torch.Tensor | None,
                         text_ids: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding with the KV cache -> token ids (B, A) and entropies (B, A) in nats."""
        embeds, mask = self.prefix(images, proprio, text_ids, text_mask)  # (B, T, D), (B, T)
        pos = (mask.cumsum(-1) - 1).clamp_min(0)  # (B, T)
        padded = not bool(mask.all())  # unpadded (always so in predict): no mask, HF skips building one per step
        out = self.llm(inputs_embeds=embeds, attention_mask=mask if padded else None, position_ids=pos,
                       use_cache=True)
        first_id = self.config.vocab_size - self.config.n_bins
        tokens, entropies = [], []
        for step in range(self.config.action_dim):
            logp = torch.log_softmax(self.action_logits(out.last_hidden_state[:, -1]).float(), dim=-1)  # (B, n_bins)
            entropies.append(-(logp.exp() * logp).sum(-1))  # (B,)
            tok = logp.argmax(-1) + first_id  # (B,)
            tokens.append(tok)
            if step + 1 == self.config.action_dim:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)  # (B, T + step + 1)
            pos = pos[:, -1:] + 1  # (B, 1)
            out = self.llm(inputs_embeds=self.llm.embed_tokens(tok[:, None]), attention_mask=mask if padded else None,
                           position_ids=pos, past_key_values=out.past_key_values, use_cache=True)
        return torch.stack(tokens, dim=1), torch.stack(entropies, dim=1)  # (B, A), (B, A)


def load(path: Path, tokenizer: ActionTokenizer, device: str = 'cpu', dtype: torch.dtype | None = None,
         ) -> tuple[TinyVla, None]:
    """-> (model, None: the tiny model has no processor); raises CheckpointError when the weights do not match
    the config or the tokenizer (``action_stats.json``) does not match the model."""
    try:
        model, info = TinyVla.from_pretrained(path, use_safetensors=True, dtype=dtype or torch.float32,
                                              output_loading_info=True, ignore_mismatched_sizes=True)
    except (OSError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(path, f'cannot load weights: {str(exc).strip().splitlines()[0]}') from None
    bad = {k: v for k, v in info.items() if k in ('missing_keys', 'unexpected_keys', 'mismatched_keys') and v}
    # (ignore_mismatched_sizes: a tensor of another shape is listed here instead of a many-line RuntimeError)
    if bad:
        raise CheckpointError(path, f'weights do not match the config: {_short(bad)}')
    cfg = model.config
    if (tokenizer.vocab_size, tokenizer.n_bins) != (cfg.vocab_size, cfg.n_bins):
        raise CheckpointError(path, f'{STATS_FILE} tokenizer (vocab_size={tokenizer.vocab_size}, '
                                    f'n_bins={tokenizer.n_bins}) differs from {CONFIG_FILE} ({cfg.vocab_size}, '
                                    f'{cfg.n_bins})')
    if tokenizer.action_dim != cfg.action_dim:
        raise CheckpointError(path, f'{STATS_FILE} has {tokenizer.action_dim} dims, model has {cfg.action_dim}')
    return model.to(device), None


def _short(bad: dict[str, Any]) -> str:
    return '; '.join(f'{k} {sorted(map(str, v))[:3]}{"..." if len(v) > 3 else ""}' for k, v in bad.items())
